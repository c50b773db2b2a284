"""The console backend: prints each message to standard output (``console://``)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from weekly_mailer.delivery.backends.base import Envelope, SendResult


class ConsoleBackend:
    """Writes every message, with its envelope, to a stream. See ``Backend``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, envelope: Envelope) -> SendResult:
        out = self.stream or sys.stdout
        text = envelope.data.decode("utf-8", "replace").replace("\r\n", "\n")
        with self._lock:
            out.write(f"----- MAIL FROM:<{envelope.sender}> RCPT TO:<{envelope.recipient}>\n")
            out.write(text if text.endswith("\n") else text + "\n")
            out.write("----- end of message\n")
            out.flush()
        return SendResult(250, "2.0.0 Printed")

    def close(self) -> None:
        pass

    def __enter__(self) -> ConsoleBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
