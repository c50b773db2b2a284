"""`weekly-mailer doctor` (a subprocess) against the whole mail world: nsd serving the zones,
an aiosmtpd relay with STARTTLS and AUTH, a one-click endpoint: every pre-flight line ok; with
the DKIM record of another key pair, exactly that line fails, naming the record, and exit 1."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from tests.preflight.relays import Relay
from tests.preflight.world import ED_SELECTOR, RSA_SELECTOR, record_of, write_keys, zones
from tests.support.nsd import nsd_server
from tests.support.send import Workspace


class _Answers200(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


PREFLIGHT = ("DKIM (", "relay ", "SPF of ", "DMARC at ", "bounces to ", "one-click ", "message: ")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["ok", "dkim-other"])
def test_doctor_checks_the_mail_world(workdir: Path, case: str) -> None:
    keys = write_keys(workdir / "keys")
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers200)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with nsd_server(workdir / "nsd", zones(keys)) as resolver, Relay(workdir) as relay:
            ws = Workspace(
                workdir,
                backend_url=relay.backend_url(),
                from_address=f"News <news@{case}.test>",
                bounce_address=f"bounces@bounce.{case}.test",
                base_url=f"http://127.0.0.1:{web.server_port}",
                dkim_domain=f"{case}.test",
                dkim_selector=RSA_SELECTOR,
                dkim_key_file=str(keys["rsa"]),
                dkim_ed25519_selector=ED_SELECTOR,
                dkim_ed25519_key_file=str(keys["ed25519"]),
                dns_resolver=resolver,
                secret_key="s" * 40,
                smtp_helo_name=f"mail.{case}.test",  # getfqdn() is `localhost` here: a FAIL
            )
            result = ws.run("doctor")
    finally:
        web.shutdown()
        web.server_close()
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stdout.splitlines() if line[6:].startswith(PREFLIGHT)]
    # 2 DKIM, relay, SPF, DMARC, bounces, one-click, 2 message lines
    assert len(lines) == 9, result.stdout
    failed = [line for line in lines if line.startswith("FAIL")]
    if case == "ok":
        assert failed == [] and all(line.startswith("ok") for line in lines), result.stdout
        assert result.returncode == 0, result.stdout
    else:
        assert len(failed) == 1 and "wm1._domainkey.dkim-other.test" in failed[0]
        assert f'publish TXT at wm1._domainkey.dkim-other.test: "{record_of(keys["rsa"])}"' in (
            failed[0]
        )
        assert result.returncode == 1
