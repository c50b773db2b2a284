"""The relay, asked as a send would ask it, with nothing sent: connect, ``EHLO``, STARTTLS (or
smtps) with the certificate verified, ``AUTH`` with the configured login, ``MAIL FROM`` our
envelope sender, then ``RSET`` and ``QUIT``.

A step a real send takes and the relay refuses (nothing listening, TLS asked for and refused or
not verified, the login refused, our sender refused) is ``fatal``: every message would fail, so
``send`` stops before storing the issue. A relay reached without TLS fails too (mailbox
providers require TLS of bulk senders, and the login would cross in clear), but a send still
works, so it is not fatal; a relay on this machine (a local Postfix) may go without.
"""

from __future__ import annotations

import smtplib
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from weekly_mailer.compose import envelope_sender
from weekly_mailer.delivery.backends.smtp_url import parse_smtp_url
from weekly_mailer.errors import ConfigError
from weekly_mailer.preflight.model import Check, fail, ok, warn

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def is_smtp(settings: Settings) -> bool:
    return urlsplit(settings.backend_url).scheme in ("smtp", "smtps")


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else (
        str(exc.smtp_error)
    )
    return f"{exc.smtp_code} {' '.join(text.split())}".strip()


def check_relay(settings: Settings) -> Check:
    """See the module docstring; one line, whatever happens."""
    try:
        target = parse_smtp_url(settings.backend_url)
    except ConfigError as exc:
        return fail("relay", f"relay: {exc}", fatal=True)
    where = f"{target.host}:{target.port}"
    sender = envelope_sender(settings)
    local = target.host in LOOPBACK
    timeout = min(settings.smtp_timeout, 15.0)
    smtp: smtplib.SMTP | None = None
    step = "connect"
    try:
        if target.implicit_tls:
            step = "tls"
            smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout,
                                    context=target.ssl_context)  # fmt: skip
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
        step = "ehlo"
        code, text = smtp.ehlo(settings.helo_name)
        if code != 250:
            reply = f"{code} {text.decode(errors='replace')}"
            return fail("relay", f"relay {where} refused EHLO: {reply}", fatal=True)
        tls = "smtps"
        if target.starttls:
            if not smtp.has_extn("starttls"):
                return fail("relay", f"relay {where} does not offer STARTTLS, and backend_url asks "
                            "for it: use the relay's submission port (587) or smtps:// (465)",
                            fatal=True)  # fmt: skip
            step = "tls"
            smtp.starttls(context=target.ssl_context)
            smtp.ehlo(settings.helo_name)
            tls = "STARTTLS"
        elif not target.implicit_tls:
            tls = ""
        if target.username:
            step = "auth"
            if not smtp.has_extn("auth"):
                return fail("relay", f"relay {where} offers no AUTH; the login in backend_url "
                            "cannot be used", fatal=True)  # fmt: skip
            smtp.login(target.username, target.password)
        step = "mail"
        code, text = smtp.mail(sender)
        if code != 250:
            reply = f"{code} {' '.join(text.decode('utf-8', 'replace').split())}"
            return fail("relay", f"relay {where} refuses our envelope sender {sender} ({reply}): "
                        "let the relay's account send as it, or change bounce_address",
                        fatal=True)  # fmt: skip
        smtp.rset()
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or str(exc)
        return fail("relay", f"relay {where}: its TLS certificate does not verify ({reason}): "
                    "use the host name the certificate names in backend_url, or cafile= for a "
                    "private CA", fatal=True)  # fmt: skip
    except smtplib.SMTPAuthenticationError as exc:
        return fail("relay", f"relay {where} refused the login of {target.username!r} "
                    f"({_reply(exc)}): check the user and password in backend_url",
                    fatal=True)  # fmt: skip
    except smtplib.SMTPNotSupportedError as exc:
        return fail("relay", f"relay {where}: {exc}", fatal=True)
    except smtplib.SMTPResponseException as exc:
        return fail("relay", f"relay {where} refused at {step}: {_reply(exc)}", fatal=True)
    except (ssl.SSLError, smtplib.SMTPException, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if step == "connect":
            return fail("relay", f"relay {where} does not answer ({reason}): check backend_url "
                        "and that the relay is running", fatal=True)  # fmt: skip
        what = "TLS failed" if step == "tls" else f"the connection failed at {step}"
        return fail("relay", f"relay {where}: {what} ({reason})", fatal=True)
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    login = f", AUTH as {target.username}" if target.username else ""
    if not tls:
        line = (f"relay {where} takes our sender {sender}, without TLS{login}: set "
                "backend_url to smtp://…:587?starttls=true or smtps://…:465")  # fmt: skip
        return warn("relay", line) if local and not target.username else fail("relay", line)
    verified = target.ssl_context is not None and target.ssl_context.verify_mode != ssl.CERT_NONE
    if not verified:
        return warn("relay", f"relay {where} ({tls}{login}) takes our sender {sender}, but "
                    "verify=false: its certificate is not checked")  # fmt: skip
    return ok("relay", f"relay {where}: {tls} certificate verified{login}, our sender {sender} "
              "accepted (nothing sent)")  # fmt: skip
