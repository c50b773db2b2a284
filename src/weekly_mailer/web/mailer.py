"""Confirmation e-mails, sent by one background thread so a sign-up never waits on SMTP.

Sending in the request would make the answer slower for new addresses than for known active
ones (which get no mail), telling an observer which addresses are subscribed. The request only
queues the job after its transaction commits; this thread builds the message with the composer
and hands it to the configured backend, which is used from this one thread only. A temporary
failure (or a backend that is down) is retried a few times over about 40 seconds; after that the
e-mail is logged as not sent and ``on_give_up`` is called, which takes the e-mail out of the
person's daily limit so that they can ask again at once. A permanent refusal (5xx: the address
cannot receive mail) keeps the limit, so the form cannot be used to hammer a dead address.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import TYPE_CHECKING

from weekly_mailer.delivery.backends.base import Envelope
from weekly_mailer.errors import DeliveryError, PermanentFailure, WeeklyMailerError

if TYPE_CHECKING:
    from weekly_mailer.config import Settings
    from weekly_mailer.delivery.backends.base import Backend

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ConfirmationJob:
    """One confirmation e-mail; the subscriber fields say what to undo if it cannot be sent."""

    email: str
    name: str
    confirm_url: str
    subscriber_id: int | None = None
    event_id: int | None = None  # the confirmation_sent event recorded for it
    sent_at: dt.datetime | None = None  # the confirmation_sent_at it set
    previous_sent_at: dt.datetime | None = None  # the value before


GiveUpHook = Callable[[ConfirmationJob, str], None]


class ConfirmationMailer:
    """A queue of confirmation e-mails and the thread that sends them."""

    def __init__(
        self, settings: Settings, backend: Backend, *, on_give_up: GiveUpHook | None = None
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.on_give_up = on_give_up
        self.sender = parseaddr(settings.from_address)[1]
        self._queue: queue.Queue[ConfirmationJob | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.retry_pauses: tuple[float, ...] = (2.0, 10.0, 30.0)
        self.sent = 0
        self.failed = 0

    def submit(self, job: ConfirmationJob) -> None:
        """Queue one confirmation e-mail (starts the thread on first use)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="confirmation-mailer", daemon=True
                )
                self._thread.start()
        self._queue.put(job)

    def join(self) -> None:
        """Wait until every queued e-mail was handed over (or failed)."""
        self._queue.join()

    def close(self) -> None:
        """Send what is queued, stop the thread and close the backend."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()  # no more waiting between retries: one last try each
            self._queue.put(None)
            thread.join(timeout=60)
        self.backend.close()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._send(job)
            finally:
                self._queue.task_done()

    def _send(self, job: ConfirmationJob) -> None:
        from weekly_mailer.compose import build_confirmation_message

        try:
            data = build_confirmation_message(
                self.settings, email=job.email, name=job.name, confirm_url=job.confirm_url
            )
            headers = BytesHeaderParser().parsebytes(data)
            message_id = str(headers.get("Message-ID", "")).strip()
            envelope = Envelope(self.sender, job.email, data, message_id)
            for attempt, pause in enumerate((*self.retry_pauses, None), start=1):
                try:
                    self.backend.send(envelope)
                    break
                except PermanentFailure:
                    raise
                except DeliveryError as exc:  # temporary, or the backend is down: try again
                    if pause is None or self._stopping.is_set():
                        raise
                    log.info("confirmation e-mail to %s, try %d: %s", job.email, attempt, exc)
                    self._stopping.wait(pause)
        except PermanentFailure as exc:
            self.failed += 1
            log.warning("confirmation e-mail to %s refused: %s", job.email, exc)
        except WeeklyMailerError as exc:
            self.failed += 1
            log.warning("confirmation e-mail to %s not sent: %s", job.email, exc)
            self._give_up(job, str(exc))
        except Exception as exc:  # the thread must outlive any one message
            self.failed += 1
            log.exception("confirmation e-mail to %s not sent", job.email)
            self._give_up(job, f"{type(exc).__name__}: {exc}")
        else:
            self.sent += 1
            log.info("confirmation e-mail sent to %s", job.email)

    def _give_up(self, job: ConfirmationJob, reason: str) -> None:
        if self.on_give_up is None:
            return
        try:
            self.on_give_up(job, " ".join(reason.split()))
        except Exception:
            log.exception("could not lift the daily limit for %s", job.email)
