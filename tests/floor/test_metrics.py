"""``weekly_mailer.metrics``: the config keys, the listener, and several processes' values."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.support.metrics import scrape, value
from tests.support.smtpd import free_port
from weekly_mailer import metrics
from weekly_mailer.config import load_settings
from weekly_mailer.errors import ConfigError
from weekly_mailer.store.db import Database
from weekly_mailer.store.gauges import DatabaseCollector


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"METRICS_ADDRESS": "9108"}, "metrics_address: '9108' is not host:port (for example"),
        ({"METRICS_ADDRESS": "localhost"}, "metrics_address: 'localhost' is not host:port"),
        ({"METRICS_ADDRESS": "a b:9108"}, "metrics_address: 'a b:9108' is not host:port"),
        ({"METRICS_ADDRESS": "::1:9108"}, "metrics_address: '::1:9108' is not host:port"),
        ({"METRICS_ADDRESS": "127.0.0.1:0"}, "metrics_address: '127.0.0.1:0' has no TCP port"),
        ({"METRICS_ADDRESS": "127.0.0.1:99999"}, "'127.0.0.1:99999' has no TCP port (1-65535)"),
        (
            {"METRICS_ADDRESS": "0.0.0.0:8080"},
            "metrics_address: '0.0.0.0:8080' uses the web app's port 8080",
        ),
        (
            {"METRICS_ADDRESS": "127.0.0.1:9108", "PORT": "9108"},
            "metrics_address: '127.0.0.1:9108' uses the web app's port 9108",
        ),
        ({"METRICS_LINGER_SECONDS": "-1"}, "metrics_linger_seconds: must be 0 or more"),
        ({"METRICS_LINGER_SECONDS": "1e6"}, "metrics_linger_seconds: '1e6' is too large"),
    ],
)
def test_bad_metrics_settings_name_the_key(
    workdir: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={f"WEEKLY_MAILER_{k}": v for k, v in env.items()})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_metrics_are_off_by_default_and_take_host_port(workdir: Path) -> None:
    assert load_settings(environ={}).metrics_address == ""
    for address in ("127.0.0.1:9108", "[::1]:9108", "metrics.internal:9108"):
        env = {"WEEKLY_MAILER_METRICS_ADDRESS": address}
        assert load_settings(environ=env).metrics_address == address


def test_the_listener_serves_the_counts_and_a_taken_port_is_one_line() -> None:
    port = free_port()
    listener = metrics.start_listener(f"127.0.0.1:{port}")
    try:
        before = scrape(f"http://127.0.0.1:{port}/metrics")
        metrics.count_messages("issue", "sent", 3)
        metrics.count_reply(250)
        metrics.count_reply(None)
        after = scrape(f"http://127.0.0.1:{port}/metrics")
        with pytest.raises(ConfigError) as info:
            metrics.start_listener(f"127.0.0.1:{port}")
    finally:
        listener.close()
    name = "weekly_mailer_messages_total"
    labels = {"kind": "issue", "outcome": "sent", "bounce_class": "none"}
    assert value(after, name, **labels) - value(before, name, **labels) == 3
    replies = "weekly_mailer_smtp_replies_total"
    assert value(after, replies, code="250") - value(before, replies, code="250") == 1
    assert value(after, replies, code="none") - value(before, replies, code="none") == 1
    assert str(info.value) == (
        f"metrics_address: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    with pytest.raises(ConnectionRefusedError):  # closed: nobody listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_web_methods_are_a_bounded_set() -> None:
    metrics.count_request("/", "BREW", 405)
    samples = {
        labels for name, labels, _ in _samples() if name == "weekly_mailer_web_requests_total"
    }
    assert not any(("method", "BREW") in ls for ls in samples)
    assert any({("route", "/"), ("method", "other"), ("status", "405")} <= ls for ls in samples)


def _samples() -> list[tuple[str, frozenset[tuple[str, str]], float]]:
    return [
        (s.name, frozenset(s.labels.items()), s.value)
        for family in metrics.REGISTRY.collect()
        for s in family.samples
    ]


PARENT = textwrap.dedent(
    """
    import multiprocessing, sys, urllib.request
    from weekly_mailer import metrics

    def child(directory, n):
        metrics.child_init(directory)
        metrics.count_messages("issue", "sent", n)
        metrics.count_reply(250)

    if __name__ == "__main__":
        listener = metrics.start_listener(sys.argv[1])  # before or after: either works
        metrics.count_messages("confirmation", "sent", 1)  # before: carried over
        directory = metrics.enable_multiprocess()
        metrics.count_messages("confirmation", "sent", 2)  # the parent's own, in the files
        spawn = multiprocessing.get_context("spawn")
        procs = [spawn.Process(target=child, args=(directory, n)) for n in (5, 7)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            metrics.child_exited(p.pid)
        with urllib.request.urlopen(f"http://{sys.argv[1]}/metrics") as r:
            sys.stdout.write(r.read().decode())
        listener.close()
        metrics.end_multiprocess(directory)
        import os
        print("# left:", os.path.exists(directory))
    """
)


def test_several_processes_are_summed_by_the_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    address = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, str(script), address],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    from prometheus_client.parser import text_string_to_metric_families

    found = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(result.stdout.split("# left:")[0])
        for s in family.samples
    }
    sent = "weekly_mailer_messages_total"
    issue = frozenset({("kind", "issue"), ("outcome", "sent"), ("bounce_class", "none")})
    confirmation = issue - {("kind", "issue")} | {("kind", "confirmation")}
    assert found[(sent, issue)] == 12
    assert found[(sent, confirmation)] == 3  # 1 before the switch, 2 after
    assert found[("weekly_mailer_smtp_replies_total", frozenset({("code", "250")}))] == 2
    assert result.stdout.rstrip().endswith("# left: False")


def test_docs_list_every_metric_and_the_alerts_use_only_real_ones(database: Database) -> None:
    import re

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = text[text.index("## Metrics") : text.index("## Logs")]
    documented = set(re.findall(r"^\| `(weekly_mailer_\w+)`", section, re.MULTILINE))
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(database.engine))
    exposed = set()
    for family in [*metrics.REGISTRY.collect(), *registry.collect()]:
        exposed.add(family.name + ("_total" if family.type == "counter" else ""))
    assert documented == exposed
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    rules = yaml.safe_load(blocks[-1])["groups"][0]["rules"]
    assert len(rules) >= 9
    used = {n for r in rules for n in re.findall(r"weekly_mailer_\w+", r["expr"])}
    used |= set(re.findall(r"weekly_mailer_\w+", section.split("```promql")[1].split("```")[0]))
    assert used <= exposed
