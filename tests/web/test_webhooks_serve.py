"""``weekly-mailer serve`` as a real subprocess, over HTTP: an SNS subscription confirmed and an
SES bounce applied, with the signing certificate fetched over https from the test's loopback
server (the serve process trusts the test's CA through SSL_CERT_FILE); a replay and a forgery
are refused and change nothing; a provider left unconfigured is 404."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.web_server import SERVE_SECRET, Server, run_cli, serve_env
from tests.support.webhooks import TOPIC, readers, ses_bounce, snapshot, sns_host, status
from weekly_mailer.config import Settings
from weekly_mailer.store.db import Database

pytestmark = pytest.mark.slow


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


def test_serve_applies_a_verified_ses_bounce_once(tmp_path: Path) -> None:
    with sns_host(tmp_path) as sns:
        env = serve_env(
            tmp_path,
            ses_topic_arns=f"arn:aws:sns:eu-west-1:123456789012:other, {TOPIC}",
            sns_certificate_hosts=f"sns.*.amazonaws.com, {sns.hosts}",
            bounce_limit="1",
        )
        env["SSL_CERT_FILE"] = str(sns.ca_file)  # the serve process trusts the test's CA
        assert run_cli(tmp_path, env, "db", "upgrade").returncode == 0
        db = Database(Settings(database_url=env["WEEKLY_MAILER_DATABASE_URL"],
                               secret_key=SERVE_SECRET))  # fmt: skip
        try:
            with db.sessions.begin() as session:
                readers(session, sent_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
            server = Server(tmp_path, env).start()
            try:
                url = server.url + "/webhooks/ses"
                now = dt.datetime.now(dt.UTC)  # the serve process's clock is the real one
                confirm = sns.message(kind="SubscriptionConfirmation", message_id="s-1", at=now)
                assert _post(url, json.dumps(confirm).encode()) == (200, b"ok\n")
                assert "/confirm?Token=2336412f" in sns.paths
                bounce = sns.message(
                    ses_bounce("ann@example.org", diagnostic="smtp; 550 5.1.1 user unknown"),
                    version="2", message_id="m-1", at=now,
                )  # fmt: skip
                forged = {**bounce, "Message": bounce["Message"].replace("ann@", "bob@")}
                with db.sessions.begin() as session:
                    before = snapshot(session)
                assert _post(url, json.dumps(forged).encode()) == (403, b"refused\n")
                with db.sessions.begin() as session:
                    assert snapshot(session) == before
                assert _post(url, json.dumps(bounce).encode()) == (200, b"ok\n")
                with db.sessions.begin() as session:
                    assert status(session, "ann@example.org") == "bounced"
                    assert status(session, "bob@example.org") == "active"
                    after = snapshot(session)
                assert _post(url, json.dumps(bounce).encode()) == (403, b"refused\n")
                with db.sessions.begin() as session:
                    assert snapshot(session) == after
                assert _post(server.url + "/webhooks/mailgun", b"{}")[0] == 404
            finally:
                assert server.stop() == 0
        finally:
            db.close()
        log = server.log.read_text()
        assert "signature does not match" in log  # the reason is in the log, not the answer
        assert "Traceback" not in log
