"""``bounce_mailbox`` and its sibling keys: parsed once, bad values a ConfigError naming the key
(exit 2 from the CLI), the password never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from weekly_mailer.config import load_settings
from weekly_mailer.config_mailbox import parse_mailbox_url
from weekly_mailer.errors import ConfigError


def test_each_scheme_its_port_tls_and_the_url_encoded_login() -> None:
    url = parse_mailbox_url("imaps://news%40example.org:p%40ss%2Fw@mail.example.org/Bounces%20In")
    assert (url.scheme, url.host, url.port, url.implicit_tls) == (
        "imaps", "mail.example.org", 993, True,
    )  # fmt: skip
    assert (url.username, url.password, url.folder) == ("news@example.org", "p@ss/w", "Bounces In")
    assert url.key == "imaps://news%40example.org@mail.example.org:993/Bounces%20In"
    assert "p@ss" not in repr(url) and "p%40ss" not in url.key
    imap = parse_mailbox_url("imap://u:p@mail.example.org:1143?cafile=/etc/ca.pem")
    assert (imap.port, imap.implicit_tls, imap.folder, imap.cafile) == (
        1143, False, "INBOX", "/etc/ca.pem",
    )  # fmt: skip
    pop = parse_mailbox_url("pop3://u:p@pop.example.org?verify=false")
    assert (pop.port, pop.implicit_tls, pop.folder, pop.verify, pop.imap) == (
        110, False, "", False, False,
    )  # fmt: skip
    assert parse_mailbox_url("pop3s://u:p@pop.example.org").port == 995
    assert parse_mailbox_url("pop3s://u:p@pop.example.org").key == "pop3s://u@pop.example.org:995"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("https://u:secret@mail.example.org/", "is not an imaps://, imap://, pop3s:// or pop3://"),
        ("imaps://u:secret@/INBOX", "names no host"),
        ("imaps://u:secret@mail.example.org:99999/INBOX", "has a bad port"),
        ("imaps://mail.example.org/INBOX", "needs a user and a password"),
        ("imaps://u@mail.example.org/INBOX", "needs a user and a password"),
        ("imaps://u:secret@mail.example.org/INBOX?ca=x", "unknown option(s) ca"),
        ("imaps://u:secret@mail.example.org/INBOX?verify=maybe", "verify='maybe' is not true"),
        ("pop3s://u:secret@pop.example.org/INBOX", "POP3 has no folders"),
        ("imaps://u:secret@mail.example.org/IN BOX", "contains a space"),
    ],
)
def test_a_bad_url_names_the_key_and_never_the_password(value: str, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"WEEKLY_MAILER_BOUNCE_MAILBOX": value})
    text = str(err.value)
    assert text.startswith("bounce_mailbox: ") and said in text, text
    assert "secret" not in text


def test_the_sibling_keys_defaults_and_bounds() -> None:
    s = load_settings(environ={})
    assert (s.bounce_mailbox, s.bounce_processed_folder, s.bounce_poll_seconds) == (
        "", "Processed", 300.0,
    )  # fmt: skip
    env = {
        "WEEKLY_MAILER_BOUNCE_POLL_SECONDS": "30",
        "WEEKLY_MAILER_BOUNCE_PROCESSED_FOLDER": "Done",
    }
    s = load_settings(environ=env)
    assert (s.bounce_poll_seconds, s.bounce_processed_folder) == (30.0, "Done")
    for key, value, said in [
        ("BOUNCE_POLL_SECONDS", "0", "bounce_poll_seconds: must be positive"),
        ("BOUNCE_POLL_SECONDS", "1e9", "bounce_poll_seconds: '1e9' is too large"),
        ("BOUNCE_PROCESSED_FOLDER", " ", "bounce_processed_folder: must name a folder"),
    ]:
        with pytest.raises(ConfigError, match=said):
            load_settings(environ={f"WEEKLY_MAILER_{key}": value})


def test_the_cli_says_one_line_and_exits_2_for_a_bad_url(workdir: Path) -> None:
    env = {"WEEKLY_MAILER_BOUNCE_MAILBOX": "imaps://u:hunter2@mail.example.org:x/INBOX"}
    r = run_cli("bounces", "fetch", cwd=workdir, env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "Error: bounce_mailbox: 'imaps://u:***@mail.example.org:x/INBOX' has a bad port"
    ), r.stderr
    assert "hunter2" not in r.stderr + r.stdout


def test_fetch_without_a_mailbox_says_so(workdir: Path) -> None:
    r = run_cli("bounces", "fetch", cwd=workdir)
    assert r.returncode == 2
    assert r.stderr.startswith("Error: bounce_mailbox: not set"), r.stderr
    assert "Traceback" not in r.stderr


def test_help_names_the_keys(workdir: Path) -> None:
    r = run_cli("bounces", "fetch", "--help", cwd=workdir)
    assert r.returncode == 0
    for word in ("bounce_mailbox", "bounce_processed_folder", "bounce_poll_seconds", "--dry-run"):
        assert word in r.stdout
