"""aiosmtpd relays for the pre-flight: STARTTLS with a certificate a test CA (trustme) issued,
AUTH with one login, and a sender it refuses."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.smtpd import SMTPServer, _Handler

USER, PASSWORD = "newsroom", "s3cret"


class _Refusing(_Handler):
    def __init__(self, server: SMTPServer, refuse_sender: str) -> None:
        super().__init__(server)
        self.refuse_sender = refuse_sender.lower()

    async def handle_MAIL(
        self, srv: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() == self.refuse_sender:
            return "553 5.7.1 Sender address rejected: not owned by user newsroom"
        envelope.mail_from = address
        return "250 OK"


def _login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


class Relay(SMTPServer):
    """``SMTPServer`` with optional STARTTLS (a certificate for ``cert_host``), AUTH (``USER``,
    ``PASSWORD``) and a refused envelope sender."""

    def __init__(
        self,
        folder: Path,
        *,
        tls: bool = True,
        cert_host: str = "127.0.0.1",
        auth: bool = True,
        refuse_sender: str = "",
    ) -> None:
        self.ca = trustme.CA()
        self.cafile = folder / "relay-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.cafile))
        self.tls = tls
        self.refuse_sender = refuse_sender
        kwargs: dict[str, Any] = {}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert(cert_host).configure_cert(context)
            kwargs["tls_context"] = context
        if auth:
            kwargs["authenticator"] = _login
            kwargs["auth_require_tls"] = tls
        super().__init__(**kwargs)

    def _controller(self) -> Controller:
        handler = _Refusing(self, self.refuse_sender)
        return Controller(
            handler, hostname="127.0.0.1", port=self.port, ready_timeout=10, **self._kwargs
        )

    def backend_url(self, *, user: str = USER, password: str = PASSWORD) -> str:
        login = f"{user}:{password}@" if user else ""
        tls = f"?starttls=true&cafile={self.cafile}"
        return f"smtp://{login}127.0.0.1:{self.port}{tls}"
