"""``weekly-mailer preview``: files written, lint shown, errors as one line, a real test send."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.smtpd import SMTPServer
from weekly_mailer.cli import main

DATA = Path(__file__).parents[1] / "data"


def write_config(workdir: Path, **extra: str) -> Path:
    values = {
        "database_url": f"sqlite:///{workdir / 'x.db'}",
        "backend_url": "file://./outbox",
        "secret_key": "preview-secret",
        "from_address": "In Brief <news@example.org>",
        "list_name": "In Brief",
        "base_url": "https://news.example.org",
        "postal_address": "1 Example Street",
        "article_source": str(DATA / "article.md"),
    } | extra
    path = workdir / "weekly_mailer.toml"
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()), encoding="utf-8")
    return path


def test_preview_writes_html_and_text(workdir: Path, runner: CliRunner) -> None:
    write_config(workdir)
    result = runner.invoke(main, ["preview", "--output", "out/issue"], catch_exceptions=False)
    assert result.exit_code == 1 and "cannot write out/issue.html" in result.output
    (workdir / "out").mkdir()
    result = runner.invoke(main, ["preview", "--output", "out/issue"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Subject: Rivers That Remember: Notes from the Mekong Delta" in result.output
    assert "Wrote out/issue.html" in result.output and "out/issue.txt" in result.output
    assert "Lint:\n  OK: no problems found" in result.output
    html = (workdir / "out" / "issue.html").read_text(encoding="utf-8")
    text = (workdir / "out" / "issue.txt").read_text(encoding="utf-8")
    assert "Hello Reader," in html and "Hello Reader," in text
    assert "@@WM" not in html + text
    assert 'href="https://news.example.org/unsubscribe/' in html
    assert "Rivers That Remember" not in result.output.split("Subject:")[0]  # no --text


def test_preview_default_files_and_text_flag(workdir: Path, runner: CliRunner) -> None:
    write_config(workdir)
    result = runner.invoke(main, ["preview", "--text"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (workdir / "preview.html").exists() and (workdir / "preview.txt").exists()
    assert result.output.startswith("Rivers That Remember: Notes from the Mekong Delta\n=====")
    assert "Unsubscribe: https://news.example.org/unsubscribe/" in result.output


def test_preview_open(workdir: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(workdir)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    result = runner.invoke(main, ["preview", "--open"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert opened == [(workdir / "preview.html").resolve().as_uri()]
    assert "No browser could be started" not in result.output
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: False)  # a headless server
    result = runner.invoke(main, ["preview", "--open"], catch_exceptions=False)
    assert f"No browser could be started here: open {workdir / 'preview.html'}" in result.output


def test_preview_lint_errors_are_shown(workdir: Path, runner: CliRunner) -> None:
    article = workdir / "broken.md"
    article.write_text("# Broken\n\nA [relative link](/about) and ![](https://x.org/i.png)\n")
    write_config(workdir, article_source=str(article))
    result = runner.invoke(main, ["preview"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "  error: a link is relative or of an unsupported kind: '/about'" in result.output
    assert "`send` would refuse this issue" in result.output


@pytest.mark.parametrize(
    ("args", "source", "message"),
    [
        (["preview"], "", "Error: no article: pass SOURCE or set article_source"),
        (["preview", "missing.md"], None, "Error: missing.md: cannot read the article"),
        (["preview", "bad.md"], None, "Error: bad.md: bad front matter"),
    ],
)
def test_preview_errors(
    workdir: Path, runner: CliRunner, args: list[str], source: str | None, message: str
) -> None:
    (workdir / "bad.md").write_text("---\ntitle: [x\n---\nBody\n")
    if source is None:
        write_config(workdir)
    else:
        write_config(workdir, article_source=source)
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(message), result.output
    assert "Traceback" not in result.output


def test_preview_send_test_through_smtp(workdir: Path, runner: CliRunner) -> None:
    with SMTPServer() as server:
        write_config(workdir, backend_url=server.url, unsubscribe_mailto="leave@example.org")
        result = runner.invoke(
            main, ["preview", "--send-test", "editor@example.net"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert "Sent a test copy to editor@example.net (Message-ID <wm.test-" in result.output
        (received,) = server.received()
    assert received.rcpt_tos == ["editor@example.net"]
    assert received.mail_from == "news@example.org"
    msg = received.message
    assert msg["Subject"] == "[TEST] Rivers That Remember: Notes from the Mekong Delta"
    assert msg["To"] == "editor@example.net"
    assert str(msg["List-Unsubscribe"]).startswith("<https://news.example.org/unsubscribe/")
    assert str(msg["List-Unsubscribe"]).endswith(", <mailto:leave@example.org?subject=unsubscribe>")
    text = msg.get_body(("plain",))
    assert text is not None and "Hello there," in text.get_content()


def test_preview_send_test_refuses_bad_address(workdir: Path, runner: CliRunner) -> None:
    write_config(workdir)
    result = runner.invoke(main, ["preview", "--send-test", "x@y.org\r\nBcc: z@w.org"])
    assert result.exit_code == 1
    assert "Error: the address contains a line break" in result.output


def test_preview_from_a_folder_source(workdir: Path, runner: CliRunner) -> None:
    folder = workdir / "articles"
    folder.mkdir()
    (folder / "2001-01-03-old.md").write_text("# Old week\n\nNot this one.\n")
    (folder / "next.md").write_text("# Undated note\n\nThe body.\n")
    write_config(workdir, article_source=str(folder))
    result = runner.invoke(main, ["preview"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Subject: Undated note" in result.output
    (folder / "next.md").unlink()
    result = runner.invoke(main, ["preview"])
    assert result.exit_code == 1 and "Error: no file for " in result.output


def test_preview_send_test_is_dkim_signed(workdir: Path, runner: CliRunner) -> None:
    import dkim

    from weekly_mailer.cli.dkim import generate_keys

    record = generate_keys(workdir / "dkim.pem")
    with SMTPServer() as server:
        write_config(
            workdir,
            backend_url=server.url,
            dkim_domain="example.org",
            dkim_selector="wm",
            dkim_key_file=str(workdir / "dkim.pem"),
            bounce_address="bounces@example.org",
        )
        result = runner.invoke(main, ["preview", "--send-test", "editor@example.net"])
        assert result.exit_code == 0, result.output
        (received,) = server.received()
    assert received.data.startswith(b"DKIM-Signature:")
    assert received.mail_from == "bounces@example.org"  # the envelope sender, as every message

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"wm._domainkey.example.org."
        return record.encode()

    assert dkim.verify(received.data, dnsfunc=dns)


def test_bounces_go_to_bounce_address(workdir: Path, runner: CliRunner) -> None:
    with SMTPServer() as server:
        write_config(workdir, backend_url=server.url, bounce_address="bounces@example.org")
        result = runner.invoke(main, ["preview", "--send-test", "editor@example.net"])
        assert result.exit_code == 0, result.output
        (received,) = server.received()
    assert received.mail_from == "bounces@example.org"
    assert received.message["From"] == "In Brief <news@example.org>"
