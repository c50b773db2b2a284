"""A real Dovecot (Debian's dovecot-imapd and dovecot-pop3d) for tests, on loopback ports.

Each :class:`Dovecot` has its own config folder (``dovecot -c FILE -F``), one test user in a
passwd-file, a certificate a test CA (trustme) issued for 127.0.0.1, and four listeners: IMAP
(STARTTLS), IMAPS, POP3 (STLS) and POP3S. Dovecot's mail processes refuse to run as root, so
as root the test user's mail belongs to ``nobody`` (and the folder is world-readable: the
unprivileged login and auth processes must reach it); as anyone else, everything runs as the
current user. Mail is put in with IMAP APPEND, as a mail client would.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.smtpd import free_port

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "p@ss/word"  # characters that must be URL-encoded


def dovecot_missing() -> str | None:
    """None when Dovecot with IMAP and POP3 is installed, else the reason."""
    if not Path(DOVECOT).exists():
        return f"Dovecot is not installed ({DOVECOT}; apt-get install dovecot-imapd dovecot-pop3d)"
    for name in ("imap", "pop3"):
        if not Path(f"/usr/lib/dovecot/{name}").exists():
            return f"Dovecot's {name} server is not installed (apt-get install dovecot-{name}d)"
    return None


def _user_ids() -> tuple[int, int, str, str]:
    """(mail uid, mail gid, login user, internal user)."""
    if os.getuid() == 0:
        nobody = pwd.getpwnam("nobody")
        login = "dovenull" if _exists("dovenull") else "nobody"
        internal = "dovecot" if _exists("dovecot") else "nobody"
        return nobody.pw_uid, nobody.pw_gid, login, internal
    me = pwd.getpwuid(os.getuid())
    return me.pw_uid, me.pw_gid, me.pw_name, me.pw_name


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


class Dovecot:
    """One Dovecot server; ``with Dovecot() as server:`` starts it and stops it."""

    def __init__(self, *, extra: str = "") -> None:
        reason = dovecot_missing()
        if reason:
            pytest.skip(reason)
        self.extra = extra
        self.ca = trustme.CA()
        self.folder = Path(tempfile.mkdtemp(prefix="wm-dovecot-"))
        self.cafile = self.folder / "ca.pem"
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.pop3_port, self.pop3s_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    # -- the server ------------------------------------------------------------------------

    def _write_config(self) -> Path:
        root = self.folder
        os.chmod(root, 0o755)
        uid, gid, login, internal = _user_ids()
        self.ca.cert_pem.write_to_path(str(self.cafile))
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        mail = root / "mail"
        mail.mkdir()
        os.chown(mail, uid, gid)
        passwd = root / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{mail}/{USER}::\n")
        os.chmod(passwd, 0o644)
        for sub in ("run", "state"):
            (root / sub).mkdir(mode=0o755)
        conf = root / "dovecot.conf"
        conf.write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
default_login_user = {login}
default_internal_user = {internal}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = 0
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
# A refused login is answered at once, not after Dovecot's default 2 s: same answer, sooner.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
{self.extra}
"""
        )
        return conf

    def start(self) -> Dovecot:
        """Start the server (again, after :meth:`halt`: same ports, same mail)."""
        conf = self.folder / "dovecot.conf"
        if not conf.exists():
            conf = self._write_config()
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        ports = (self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"dovecot exited {self.proc.returncode}: {out}{self.log()}")
            if all(_listening(p) for p in ports):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen within 20 s: {self.log()}")

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self.halt()
        shutil.rmtree(self.folder, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server, keep its folder (the CA file): a mailbox that is down."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- URLs for bounce_mailbox -----------------------------------------------------------

    def url(self, scheme: str = "imaps", folder: str = "INBOX", *, password: str = PASSWORD) -> str:
        from urllib.parse import quote

        port = {
            "imap": self.imap_port,
            "imaps": self.imaps_port,
            "pop3": self.pop3_port,
            "pop3s": self.pop3s_port,
        }[scheme]
        path = f"/{quote(folder)}" if scheme.startswith("imap") else ""
        login = f"{quote(USER, safe='')}:{quote(password, safe='')}"
        return f"{scheme}://{login}@127.0.0.1:{port}{path}?cafile={self.cafile}"

    # -- the test user's mail, as a mail client sees it ------------------------------------

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.cafile))
        imap = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context, timeout=30)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, data: bytes, folder: str = "INBOX", *, flags: str = "") -> None:
        """One message into ``folder`` (created when missing), with IMAP APPEND."""
        imap = self.client()
        try:
            if folder != "INBOX":
                imap.create(folder)  # NO when it exists: fine
            typ, _ = imap.append(
                folder, flags or None, None, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            )
            assert typ == "OK"
        finally:
            imap.logout()

    def messages(self, folder: str = "INBOX") -> list[tuple[bytes, set[str]]]:
        """(bytes, flags) of every message in ``folder``, read with BODY.PEEK (nothing marked);
        [] when the folder does not exist."""
        imap = self.client()
        try:
            typ, _ = imap.select(_quoted(folder), readonly=True)
            if typ != "OK":
                return []
            typ, found = imap.uid("SEARCH", "ALL")
            uids = found[0].split()
            out = []
            for uid in uids:
                typ, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                head, body = parts[0]  # type: ignore[misc]
                flags = set(imaplib.ParseFlags(head))
                out.append((body, {f.decode() for f in flags}))
            return out
        finally:
            imap.logout()


def _quoted(folder: str) -> str:
    return f'"{folder}"'


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
