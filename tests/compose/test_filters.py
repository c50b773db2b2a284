"""Our messages as real mail filters score them (issue #25): rspamd 3.4 and SpamAssassin 4.0,
started by the tests with a local configuration and no network rules, on the bytes our SMTP
engine put on the wire (an issue copy from `send`, of our own article and of the seed article,
and a confirmation from `subscribers add`), as a receiving relay hands them on: with a Received
line written from the greeting the SMTP server recorded.

None of HFILTER_HELO_*, URI_COUNT_ODD, HTML_FONT_LOW_CONTRAST, STY_INVIS_DIRECT or
MIME_QP_LONG_LINE may fire (rspamd's MANY_INVISIBLE_PARTS, +0.05, fires on any hidden
preheader: we keep the preheader). Run with ``-s`` to see each filter's score and rules."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import os
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import SEED, run_cli
from tests.support.filters import (
    Greeted,
    GreetingSMTPServer,
    Relay,
    Rspamd,
    Verdict,
    relayed,
    require_filters,
    rspamd_server,
    spamassassin,
)
from tests.support.nsd import nsd_server, zone_text
from tests.support.send import Workspace
from weekly_mailer.config import Settings

pytestmark = pytest.mark.slow

HELO = "mail.example.org"  # the configured greeting
SENDER_IP = "93.184.216.34"  # any public address: nothing is asked of it, no DNS list is queried
READER = "ana@example.net"
FLAGGED = (
    "HFILTER_HELO_*",
    "URI_COUNT_ODD",
    "HTML_FONT_LOW_CONTRAST",
    "STY_INVIS_DIRECT",
    "MIME_QP_LONG_LINE",
)
# What the relay's DNS says: the greeting name and the sender's domains resolve, to the sender.
ZONES = {
    "example.org": zone_text(
        "example.org",
        [
            ("@", "A", SENDER_IP),
            ("@", "MX", f"10 {HELO}."),
            ("mail", "A", SENDER_IP),
            ("news", "A", SENDER_IP),
            ("news", "MX", f"10 {HELO}."),
        ],
    ),
    "216.184.93.in-addr.arpa": zone_text("216.184.93.in-addr.arpa", [("34", "PTR", f"{HELO}.")]),
}
# `smtp_helo_name` lands with branch `message`; until then the engines greet with the host's
# name (`localhost` here), and the relay's line is written from the configured name instead.
HAS_HELO_SETTING = "smtp_helo_name" in {f.name for f in dataclasses.fields(Settings)}


@dataclasses.dataclass(frozen=True)
class Sent:
    kind: str
    received: Greeted

    @property
    def relay(self) -> Relay:
        helo = self.received.helo if HAS_HELO_SETTING else HELO
        return Relay(helo, SENDER_IP, HELO, self.received.mail_from, self.received.rcpt_tos[0])

    @property
    def as_delivered(self) -> bytes:
        return relayed(self.received.data, self.relay)


def _workspace(root: Path, smtp: GreetingSMTPServer, article: Path | None) -> Workspace:
    extra: dict[str, str] = {"smtp_helo_name": HELO} if HAS_HELO_SETTING else {}
    if article is not None:
        extra["article_source"] = str(article)
    return Workspace(root, backend_url=smtp.url, bounce_address="bounces@news.example.org", **extra)


def _one(smtp: GreetingSMTPServer, before: int) -> Greeted:
    got = smtp.received()[before:]
    assert len(got) == 1, [m.rcpt_tos for m in got]
    message = got[0]
    assert isinstance(message, Greeted)
    return message


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sent]:
    """An issue copy of our article, one of the seed article, and a confirmation, each as the
    SMTP server received it from our engine."""
    out: dict[str, Sent] = {}
    with GreetingSMTPServer() as smtp:
        ws = _workspace(tmp_path_factory.mktemp("issue"), smtp, None)
        ws.add_subscribers(1, domain="example.net")
        done = ws.run("send", "--yes")
        assert done.returncode == 0, done.stderr
        out["issue"] = Sent("issue", _one(smtp, 0))

        # The strictest confirmation: without a postal address its body is plain ASCII, and
        # SpamAssassin's STY_INVIS_DIRECT spares only bodies with 8-bit characters in them.
        before = len(smtp.received())
        env = ws.env() | {"WEEKLY_MAILER_POSTAL_ADDRESS": ""}
        done = run_cli("subscribers", "add", READER, cwd=ws.root, env=env)
        assert done.returncode == 0, done.stderr
        out["confirmation"] = Sent("confirmation", _one(smtp, before))

        if SEED.exists():
            seed = _workspace(tmp_path_factory.mktemp("seed"), smtp, SEED)
            seed.add_subscribers(1, domain="example.net")
            before = len(smtp.received())
            done = seed.run("send", "--yes")
            assert done.returncode == 0, done.stderr
            out["seed issue"] = Sent("seed issue", _one(smtp, before))
            subjects = {k: out[k].received.message["Subject"] for k in ("issue", "seed issue")}
            assert subjects["issue"] != subjects["seed issue"], subjects
    return out


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    require_filters()
    with nsd_server(tmp_path_factory.mktemp("dns"), ZONES) as nameserver:
        with rspamd_server(nameserver) as server:
            yield server


@pytest.fixture(params=["issue", "seed issue", "confirmation"])
def message(request: pytest.FixtureRequest, sent: dict[str, Sent]) -> Sent:
    if request.param not in sent:
        reason = f"the seed article is not beside the checkout ({SEED})"
        if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_SEED") == "1":
            pytest.fail(f"the seed article is required here: {reason}")
        pytest.skip(reason)
    return sent[request.param]


def _report(kind: str, verdict: Verdict) -> None:
    print(f"\n{kind}: {verdict.line()}")


def test_rspamd_flags_none_of_the_rules(message: Sent, rspamd: Rspamd) -> None:
    verdict = rspamd.scan(message.as_delivered, message.relay)
    _report(message.kind, verdict)
    assert verdict.fired(*FLAGGED) == []
    assert "maps.rspamd.com" not in rspamd.log.read_text()  # no map was fetched


def test_spamassassin_flags_none_of_the_rules(message: Sent, tmp_path: Path) -> None:
    require_filters()
    verdict = spamassassin(message.as_delivered, tmp_path)
    _report(message.kind, verdict)
    assert verdict.fired(*FLAGGED) == []


def test_the_filters_do_flag_a_localhost_greeting(
    sent: dict[str, Sent], rspamd: Rspamd, tmp_path: Path
) -> None:
    """The harness can fail: the same confirmation, relayed from `EHLO localhost` (the greeting
    every connection sent before #25), gets rspamd's HFILTER_HELO_5 (+3.0) and SpamAssassin's
    HELO_LOCALHOST (+2.6 with local tests only; +3.6 with the network tests on)."""
    message = sent["confirmation"]
    relay = dataclasses.replace(message.relay, helo="localhost")
    data = relayed(message.received.data, relay)
    flagged = rspamd.scan(data, relay)
    _report("confirmation from localhost", flagged)
    assert flagged.fired("HFILTER_HELO_*") == ["HFILTER_HELO_5"]
    sa = spamassassin(data, tmp_path)
    _report("confirmation from localhost", sa)
    assert "HELO_LOCALHOST" in sa.rules


def _spoiled(data: bytes) -> bytes:
    """``data`` with what #25 took out of our messages put back: a link in the text part only,
    white-on-white text, hidden text, and quoted-printable lines past 76 characters."""
    policy = email.policy.SMTP.clone(max_line_length=998)  # keeps long QP lines, as we once did
    msg = email.message_from_bytes(data, policy=policy)
    assert isinstance(msg, EmailMessage)
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    text.set_content(
        f"{text.get_content()}\nhttps://example.org/only-in-text\n", cte="quoted-printable"
    )
    extra = (
        '<div style="display: none; max-height: 0;">A preview line nobody sees.</div>'
        '<p style="color: #ffffff; background-color: #ffffff;">White words on white paper.</p>'
        f"<p>{'A line long enough to pass seventy-six characters. ' * 4}</p>"
    )
    body = html.get_content().replace('<p class="greeting"', extra + '<p class="greeting"', 1)
    html.set_content(body, subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=policy)


def test_the_filters_do_flag_the_body_rules(
    sent: dict[str, Sent], rspamd: Rspamd, tmp_path: Path
) -> None:
    """The harness can fail on the body too: the confirmation spoiled as main's templates were
    before #25 gets every rule this file asserts absent (but the greeting's)."""
    message = sent["confirmation"]
    data = relayed(_spoiled(message.received.data), message.relay)
    flagged = rspamd.scan(data, message.relay)
    _report("spoiled confirmation", flagged)
    assert flagged.fired(*FLAGGED) == ["URI_COUNT_ODD"]
    sa = spamassassin(data, tmp_path)
    _report("spoiled confirmation", sa)
    assert sa.fired(*FLAGGED) == ["HTML_FONT_LOW_CONTRAST", "MIME_QP_LONG_LINE", "STY_INVIS_DIRECT"]


@pytest.mark.xfail(
    not HAS_HELO_SETTING, strict=True, reason="smtp_helo_name lands with branch message"
)
@pytest.mark.parametrize("kind", ["issue", "confirmation"])
def test_the_smtp_server_is_greeted_with_the_configured_name(
    kind: str, sent: dict[str, Sent]
) -> None:
    assert sent[kind].received.helo == HELO
