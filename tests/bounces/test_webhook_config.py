"""The webhooks' keys: lists from TOML arrays or comma-separated variables, and a bad value is
one line naming the key with exit code 2, from a real CLI subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.webhooks import SendGridKey
from weekly_mailer.bounces.webhooks import verify
from weekly_mailer.config import load_settings
from weekly_mailer.errors import ConfigError

ARN = "arn:aws:sns:us-east-1:123456789012:ses-bounces"


def test_lists_from_toml_and_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "weekly_mailer.toml"
    file.write_text(
        f'ses_topic_arns = ["{ARN}"]\nsns_certificate_hosts = ["sns.*.amazonaws.com", '
        '"localhost:8443"]\n'
    )
    settings = load_settings(file, environ={})
    assert settings.ses_topic_arns == (ARN,)
    assert settings.sns_certificate_hosts == ("sns.*.amazonaws.com", "localhost:8443")
    env = {"WEEKLY_MAILER_SES_TOPIC_ARNS": f"{ARN}, {ARN}-2"}
    assert load_settings(None, environ=env).ses_topic_arns == (ARN, f"{ARN}-2")
    assert load_settings(None, environ={}).sns_certificate_hosts == verify.SNS_HOSTS_DEFAULT


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sns_certificate_hosts", "sns.*.*"),
        ("sns_certificate_hosts", "*.com"),
        ("sns_certificate_hosts", "evil.org/x"),
        ("sns_certificate_hosts", "localhost:99999"),
        ("ses_topic_arns", "ses-bounces"),
        ("postmark_webhook_credentials", "no-colon"),
        ("sendgrid_verification_key", "bm90IGEga2V5"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load_settings(None, environ={f"WEEKLY_MAILER_{key.upper()}": value})


def test_a_real_sendgrid_key_is_accepted() -> None:
    key = SendGridKey().public
    env = {"WEEKLY_MAILER_SENDGRID_VERIFICATION_KEY": key}
    assert load_settings(None, environ=env).sendgrid_verification_key == key


def test_the_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {"WEEKLY_MAILER_SNS_CERTIFICATE_HOSTS": "sns.*.*"}
    result = run_cli("doctor", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: sns_certificate_hosts: 'sns.*.*' is not a host pattern (labels of letters, "
        "digits and hyphens, '*' for one label but not in the last two, optional :port)"
    ]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://localhost:8443/cert.pem", True),
        ("https://localhost/cert.pem", False),
        ("https://localhost:8444/cert.pem", False),
        ("http://localhost:8443/cert.pem", False),
    ],
)
def test_a_pattern_with_a_port_allows_that_port_only(url: str, ok: bool) -> None:
    assert verify.sns_url_allowed(url, ["localhost:8443"]) is ok


def test_doctor_says_which_webhooks_are_on_and_warns_about_plain_http() -> None:
    from weekly_mailer.bounces.webhooks.service import config_notes
    from weekly_mailer.cli.doctor import _webhook_findings

    off = load_settings(None, environ={})
    assert config_notes(off) == []
    env = {
        "WEEKLY_MAILER_SES_TOPIC_ARNS": ARN,
        "WEEKLY_MAILER_SNS_CERTIFICATE_HOSTS": "",
        "WEEKLY_MAILER_POSTMARK_WEBHOOK_CREDENTIALS": "hooks:pw",
        "WEEKLY_MAILER_BASE_URL": "http://news.example.org",
    }
    findings = _webhook_findings(load_settings(None, environ=env))
    assert [(f.level, f.what.split(":")[0]) for f in findings] == [
        ("ok", "webhooks on"),
        ("warn", "ses_topic_arns is set but sns_certificate_hosts is empty"),
        ("warn", "webhooks on but base_url http"),
    ]
    assert findings[0].what == "webhooks on: POST /webhooks/ses, POST /webhooks/postmark"
