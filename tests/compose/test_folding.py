"""Header lines are folded at 78 characters where the header allows it (RFC 5322 2.1.1), never
inside a URL or an encoded word, on the bytes a real SMTP server received: an issue copy, a
confirmation, a ``preview --send-test`` copy and an editor's proof, with long names everywhere,
each still verified by dkimpy."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import dkim
import pytest

from tests.support.send import Workspace
from tests.support.smtpd import Received, SMTPServer
from weekly_mailer import subscribers as subs
from weekly_mailer.cli.dkim import generate_keys
from weekly_mailer.compose.headers import fold_line
from weekly_mailer.store.db import Database

DOMAIN = "news.the-hedge-weekly.example.org"
SELECTOR = "wm1"
LIST_NAME = "The Hedge Weekly: notes on gardens, allotments and the long patience of soil"
LONG_NAME = "Dr. Annabelle Featherstonehaugh-Cholmondeley of the Lower Allotments"
ACCENTED = "Zoë Ångström-Łukasiewicz, gardienne des allées du potager municipal"
TITLE = "Rivières qui se souviennent : notes du delta du Mékong, et bien d'autres choses"
READERS = {
    "a-very-long-reader-address@subdomain.example.org": LONG_NAME,
    "zoe@example.net": ACCENTED,
}
ARTICLE = f"""---
title: "{TITLE}"
date: 2026-11-20
author: Robin Field
summary: What a small plot teaches about patience.
---
The allotment is quiet in November. [Read more](https://example.org/allotment).
"""


def head_of(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def too_long(data: bytes) -> list[bytes]:
    """The header lines over 78 characters that a space would have let us fold."""
    out = []
    for line in head_of(data):
        if len(line) <= 78:
            continue
        value = line.split(b":", 1)[1] if line[:1] not in (b" ", b"\t") else line
        if len(value.split()) > 1:  # two tokens or more: it could have been folded
            out.append(line)
    return out


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("dkim") / "dkim_private.pem"
    return path, generate_keys(path).encode()


@pytest.mark.slow
def test_every_kind_of_message_is_folded_at_78_and_verifies(
    tmp_path: Path, dkim_key: tuple[Path, bytes]
) -> None:
    key_file, record = dkim_key

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record

    with SMTPServer() as smtp:
        ws = Workspace(
            tmp_path,
            backend_url=smtp.url,
            from_address=f"The Hedge Weekly Newsletter of Everything <newsletter@{DOMAIN}>",
            reply_to=f"Editors of The Hedge Weekly <editors-desk@{DOMAIN}>",
            bounce_address=f"bounces@{DOMAIN}",
            list_name=LIST_NAME,
            unsubscribe_mailto=f"unsubscribe-requests@{DOMAIN}",
            base_url="https://newsletter.the-hedge-weekly.example.org",
            dkim_domain=DOMAIN,
            dkim_selector=SELECTOR,
            dkim_key_file=str(key_file),
            editors=["editor-in-chief@example.org"],
            smtp_helo_name="mail.the-hedge-weekly.example.org",
            preflight="off",
            processes=1,
        )
        (tmp_path / "article.md").write_text(ARTICLE, encoding="utf-8")
        rows = "email,name\n" + "".join(f'{a},"{n}"\n' for a, n in READERS.items())
        with Database(ws.settings) as db, db.sessions.begin() as session:
            report = subs.import_file(session, rows.encode(), filename="r.csv", confirmed=True)
            assert report.added == 2 and not report.errors
        for args in (
            ("send", "--yes"),
            ("subscribers", "add", "pat.the.gardener@example.org"),
            ("preview", "--send-test", "editor@example.net", "-o", str(tmp_path / "p")),
        ):
            result = ws.run(*args)
            assert result.returncode == 0, result.stdout + result.stderr
        _send_a_proof(ws, smtp)
        received = {m.rcpt_tos[0]: m for m in smtp.received()}

    assert set(received) == {*READERS, "pat.the.gardener@example.org", "editor@example.net",
                             "editor-in-chief@example.org"}  # fmt: skip
    for rcpt, got in received.items():
        assert too_long(got.data) == [], rcpt
        assert dkim.verify(got.data, dnsfunc=dns), rcpt
    _check_issue_copies(received)
    confirmation = received["pat.the.gardener@example.org"]
    assert b"\r\nSubject: Confirm your subscription to The Hedge Weekly: notes on gardens,\r\n " \
        in confirmation.data  # fmt: skip


def _check_issue_copies(received: dict[str, Received]) -> None:
    for rcpt, name in READERS.items():
        data = received[rcpt].data
        msg = email.message_from_bytes(data, policy=email.policy.default)
        # Unfolded, every value is what it was: the names, the subject, the links.
        assert msg["To"].addresses[0].display_name == name
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert msg["Subject"] == TITLE
        assert msg["List-Id"] == f'"{LIST_NAME}" <weekly.{DOMAIN}>'
        # The subject's encoded words are short, apart by spaces (no line over 78).
        subject = re.search(rb"\r\nSubject: (.*?)\r\n(?! )", data, re.S)
        assert subject and all(len(line) <= 78 for line in subject.group(0).split(b"\r\n"))
        # List-Unsubscribe folds between its URLs, each whole.
        found = re.search(
            rb"\r\nList-Unsubscribe: <(https://[^>\s]+)>,\r\n <mailto:unsubscribe-requests@"
            + DOMAIN.encode() + rb"\?subject=unsubscribe>\r\n",
            data,
        )  # fmt: skip
        assert found, data[:2000]
        assert str(msg["List-Unsubscribe"]).startswith(f"<{found.group(1).decode()}>, <mailto:")
        test_copy = received["editor@example.net"].data
        assert b"\r\nList-Unsubscribe: <https://" in test_copy
    # The long reader's To is folded between the name and the address.
    long_copy = received["a-very-long-reader-address@subdomain.example.org"].data
    assert f'\r\nTo: "{LONG_NAME}"\r\n <a-very-long-reader-address@'.encode() in long_copy


def _send_a_proof(ws: Workspace, smtp: SMTPServer) -> None:
    """An editor's proof of the week's issue, built as proofs.make builds it, sealed and sent
    through the configured backend."""
    from weekly_mailer.compose import Recipient, make_message_id, unsubscribe_url
    from weekly_mailer.compose.proof_mail import build_proof_message
    from weekly_mailer.delivery import resolve_backend
    from weekly_mailer.delivery.envelopes import Envelopes
    from weekly_mailer.issues import get_issue

    settings = ws.settings
    to = "editor-in-chief@example.org"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with Database(settings) as db, db.sessions() as session:
        issue = get_issue(session, 1)
        skeleton, subject = issue.skeleton, issue.subject
    from weekly_mailer.compose import personalise

    url = unsubscribe_url(settings, 99, to)
    copy = personalise(skeleton, Recipient(99, to, "", url), message_id="<p@x>", date=now)
    mid = make_message_id(settings, "proof-1", 99)
    data = build_proof_message(
        settings, to=to, subject=subject, summary="A summary.\n", copy=copy, date=now,
        message_id=mid,
    )  # fmt: skip
    with resolve_backend(settings) as backend:
        backend.send(Envelopes.from_settings(settings).seal(to, data, mid))


@pytest.mark.parametrize(
    ("line", "folded"),
    [
        ("Subject: short", "Subject: short"),
        ("X: " + "a" * 90, "X: " + "a" * 90),  # one token: left whole
        ("X: " + "a" * 90 + " b", "X: " + "a" * 90 + "\r\n b"),
        ('To: "A B" <' + "x" * 80 + "@e.org>", 'To: "A B"\r\n <' + "x" * 80 + "@e.org>"),
        ("List-Unsubscribe: <https://a.b/u/t>, <mailto:l@e.org?subject=unsubscribe>",
         "List-Unsubscribe: <https://a.b/u/t>,\r\n <mailto:l@e.org?subject=unsubscribe>"),
        ("List-Unsubscribe: <https://a.b/u/t>", "List-Unsubscribe: <https://a.b/u/t>"),
    ],
)  # fmt: skip
def test_fold_line(line: str, folded: str) -> None:
    assert fold_line(line) == folded
    assert fold_line(line).replace("\r\n", "") == line  # unfolding gives the line back


def test_words_fill_each_line_and_unfold_exactly() -> None:
    line = "Subject: " + " ".join(f"word{i}" for i in range(60))
    folded = fold_line(line)
    assert folded.replace("\r\n", "") == line
    lines = folded.split("\r\n")
    assert all(len(x) <= 78 for x in lines) and len(lines) == 6
    assert all(len(x) + len(y.split()[0]) + 1 > 78 for x, y in zip(lines, lines[1:], strict=False))
