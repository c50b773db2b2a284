"""The DNS checks against a real authoritative server (nsd on loopback): every record right is
every check ``ok``; each record broken in turn fails exactly that check, naming the record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.preflight.world import CASES, record_of, world_settings, write_keys, zones
from tests.support.nsd import nsd_server
from weekly_mailer.config import Settings
from weekly_mailer.preflight import dns_checks


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Iterator[str]:
    with nsd_server(tmp_path_factory.mktemp("nsd"), zones(keys)) as address:
        yield address


def levels(settings: Settings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for check in dns_checks(settings):
        out.setdefault(check.name, []).append(check.level)
    return out


def test_all_records_right_every_check_ok(settings: Settings, keys, resolver) -> None:
    checks = dns_checks(world_settings(settings, "ok", keys, resolver))
    assert [(c.name, c.level) for c in checks] == [
        ("dkim", "ok"), ("dkim", "ok"), ("spf", "ok"), ("dmarc", "ok"), ("bounce", "ok"),
    ], checks  # fmt: skip
    assert "DKIM (RSA) wm1._domainkey.ok.test publishes our public key" in checks[0].what
    assert "(2 of 10 lookups)" in checks[2].what


BROKEN = {
    # case: (the check that fails, words of its line, the record or setting it names)
    "dkim-other": ("dkim", "is not the one of our private key", "publish TXT at "
                   "wm1._domainkey.dkim-other.test: \"v=DKIM1; k=rsa; p="),
    "dkim-missing": ("dkim", "no key record at wm1._domainkey.dkim-missing.test",
                     "publish TXT at wm1._domainkey.dkim-missing.test: \"v=DKIM1; k=rsa; p="),
    "spf-missing": ("spf", "there is no SPF record at bounce.spf-missing.test",
                    'publish TXT at bounce.spf-missing.test: "v=spf1 ip4:'),
    "spf-eleven": ("spf", "needs more than 10 DNS lookups (11 counted",
                   "publish TXT at bounce.spf-eleven.test"),
    "spf-plusall": ("spf", "ends in +all", 'publish TXT at bounce.spf-plusall.test: '
                    '"v=spf1 ip4:127.0.0.1 -all"'),
    "dmarc-missing": ("dmarc", "no record at _dmarc.dmarc-missing.test",
                      'publish TXT at _dmarc.dmarc-missing.test: "v=DMARC1; p=none;'),
    "unaligned": ("dmarc", "DKIM d=ok.test is not aligned with the From domain unaligned.test",
                  "set dkim_domain to unaligned.test"),
    "nomx": ("bounce", "bounce.nomx.test has no MX and no address",
             'publish MX at bounce.nomx.test: "10 '),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_record_fails_exactly_its_check(
    settings: Settings, keys, resolver, case: str
) -> None:
    name, words, fix = BROKEN[case]
    checks = dns_checks(world_settings(settings, case, keys, resolver))
    failed = [c for c in checks if c.level == "fail"]
    assert [c.name for c in failed] == [name], checks
    assert words in failed[0].what
    assert fix in failed[0].what
    assert all(c.level == "ok" for c in checks if c.name != name), checks


def test_a_missing_dkim_record_names_the_exact_record(settings: Settings, keys, resolver) -> None:
    checks = dns_checks(world_settings(settings, "dkim-missing", keys, resolver))
    assert f'"{record_of(keys["rsa"])}"' in checks[0].what


def test_a_resolver_that_does_not_answer_is_a_warning(settings: Settings, keys) -> None:
    from tests.support.nsd import free_udp_tcp_port

    silent = f"127.0.0.1:{free_udp_tcp_port()}"
    checks = dns_checks(world_settings(settings, "ok", keys, silent))
    assert {c.level for c in checks} == {"warn"}, checks
    assert "cannot ask DNS" in checks[0].what


def test_all_cases_are_tested() -> None:
    assert set(CASES) == {"ok", *BROKEN}
