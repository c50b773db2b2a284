"""Real mail filters for tests: Debian's rspamd and SpamAssassin, run on loopback with a local
configuration and no network rules, scoring the bytes an SMTP server received.

rspamd is started by ``rspamd_server`` with a config of its own in a temporary folder (the
package's rules and modules from /etc/rspamd, our ``local.d`` overrides on top): its normal
worker on a free loopback port, no proxy, controller or fuzzy worker, every module that asks the
network (RBLs, URL blocklists, DKIM/SPF/DMARC/ARC, fuzzy, neural and the Redis-based ones, the
maps fetched over HTTP) disabled, and its resolver pointed at a DNS server the test starts (nsd):
hfilter resolves the greeting name, and without a resolver every name is ``NORES``. Messages are
scanned over the worker's HTTP ``/checkv2`` with the envelope a relay would pass (IP, HELO,
hostname, MAIL FROM, RCPT TO).

SpamAssassin runs as ``spamassassin -L -t`` (local tests only: no DNS, no Razor/Pyzor) with the
rules Debian ships in /usr/share/spamassassin (``--configpath``, so no ``sa-update`` download is
needed), a site config of our own (``--siteconfigpath``: no Bayes, no auto-welcomelist) and a
temporary home; the rule names are read from its ``X-Spam-Status`` header.

A relay writes the client's greeting into ``Received``; both filters judge the greeting from that
line, so ``relayed`` prepends one the way Postfix writes it.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.nsd import NSD
from tests.support.smtpd import Received, SMTPServer, _Handler, free_port

RSPAMD = Path("/usr/bin/rspamd")
SPAMASSASSIN = Path("/usr/bin/spamassassin")
RSPAMD_CONFDIR = Path("/etc/rspamd")
SA_RULES = Path("/usr/share/spamassassin")  # Debian's spamassassin package ships the rules here
SA_SITE = Path("/etc/spamassassin")  # its plugin loaders (*.pre) that a site config must carry
RSPAMD_USER = "_rspamd"  # Debian's; rspamd refuses to run its workers as root

# The modules that ask the network (DNS lists, HTTP maps, remote hashes, Redis) or judge what a
# test cannot give them (a real DKIM key in DNS, a real SPF record): off.
NETWORK_MODULES = (
    "rbl", "surbl", "emails", "fuzzy_check", "neural", "dkim", "spf", "dmarc", "arc", "asn",
    "phishing", "whitelist", "multimap", "reputation", "url_redirector", "ratelimit",
    "greylist", "replies", "history_redis", "dcc", "mx_check", "rspamd_update", "bimi",
    "antivirus", "external_services", "clickhouse", "elastic", "metadata_exporter", "p0f",
    "spamtrap", "dkim_signing", "milter_headers", "spamassassin", "external_relay",
    "metric_exporter", "aws_s3",
)  # fmt: skip

# What our site config tells SpamAssassin: local, repeatable, nothing learnt between runs.
SA_SITE_CONFIG = """\
use_bayes 0
bayes_auto_learn 0
use_auto_whitelist 0
skip_rbl_checks 1
dns_available no
"""


def require_filters() -> None:
    """Skip (or, with WEEKLY_MAILER_TEST_REQUIRE_FILTERS=1, fail) when a filter is missing (or
    nsd, the resolver rspamd is given)."""
    missing = [str(p) for p in (RSPAMD, SPAMASSASSIN, Path(NSD)) if not p.exists()]
    if not (SA_RULES / "50_scores.cf").exists():
        missing.append(f"{SA_RULES}/*.cf (SpamAssassin's rules)")
    if missing:
        reason = f"missing {', '.join(missing)} (apt-get install rspamd spamassassin nsd)"
        if os.environ.get("WEEKLY_MAILER_TEST_REQUIRE_FILTERS") == "1":
            pytest.fail(f"mail filters required (WEEKLY_MAILER_TEST_REQUIRE_FILTERS=1): {reason}")
        pytest.skip(reason)


@dataclass(frozen=True)
class Verdict:
    """What one filter said of one message: its score and the rules (symbols) that fired."""

    filter: str
    score: float
    rules: dict[str, float] = field(default_factory=dict)

    def fired(self, *patterns: str) -> list[str]:
        """The rules that fired among ``patterns`` (a trailing ``*`` matches a prefix)."""
        out = []
        for name in self.rules:
            for p in patterns:
                if name == p or (p.endswith("*") and name.startswith(p[:-1])):
                    out.append(name)
        return sorted(set(out))

    def line(self) -> str:
        rules = " ".join(f"{k}({v:+.2f})" for k, v in sorted(self.rules.items()))
        return f"{self.filter}: score {self.score:.2f}: {rules}"


@dataclass(frozen=True)
class Relay:
    """The SMTP client as the receiving relay saw it: greeting, address, reverse name."""

    helo: str
    ip: str
    hostname: str
    mail_from: str
    rcpt: str
    by: str = "mx.example.net"


def relayed(data: bytes, relay: Relay) -> bytes:
    """``data`` as the receiving relay hands it on: a Return-Path and a Received line that carry
    the envelope sender and the client's greeting, in Postfix's form, prepended."""
    stamp = format_datetime(dt.datetime.now(dt.UTC))
    head = (
        f"Return-Path: <{relay.mail_from}>\r\n"
        f"Received: from {relay.helo} ({relay.hostname} [{relay.ip}])\r\n"
        f"\tby {relay.by} (Postfix) with ESMTPS id 4Q1x2y3z4Z\r\n"
        f"\tfor <{relay.rcpt}>; {stamp}\r\n"
    )
    return head.encode() + data


# ---------------------------------------------------------------------------------------------
# An SMTP server that also records the client's greeting


@dataclass
class Greeted(Received):
    helo: str = ""


class _GreetingHandler(_Handler):
    async def handle_DATA(self, srv: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(srv, session, envelope)
        if reply.startswith("250"):
            with self.server.lock:
                last = self.server.messages[-1]
                self.server.messages[-1] = Greeted(
                    last.mail_from, last.rcpt_tos, last.data, helo=str(session.host_name or "")
                )
        return reply


class GreetingSMTPServer(SMTPServer):
    """``SMTPServer`` whose received messages are ``Greeted``: they carry the EHLO/HELO name."""

    def _controller(self) -> Controller:
        return Controller(
            _GreetingHandler(self),
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=10,
            **self._kwargs,
        )


# ---------------------------------------------------------------------------------------------
# rspamd


def _rspamd_config(root: Path, port: int, nameserver: str) -> None:
    local = root / "local.d"
    local.mkdir(parents=True)
    for name in ("db", "run", "log"):
        (root / name).mkdir()
    (root / "rspamd.conf").write_text(
        f"""\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"""
    )
    (local / "options.inc").write_text(
        f"""\
dns {{
    nameserver = ["{nameserver}"];
    timeout = 0.5s;
    retransmits = 1;
}}
control_socket = "$DBDIR/rspamd.sock mode=0600";
"""
    )
    for module in NETWORK_MODULES:
        (local / f"{module}.conf").write_text("enabled = false;\n")
    # No Redis anywhere: the statistics (Bayes) classifier needs one.
    (local / "classifier-bayes.conf").write_text("enabled = false;\n")
    # The maps these modules would refresh over HTTP: the copies the package ships, only.
    override = root / "override.d"
    override.mkdir()
    (override / "mime_types.conf").write_text('file = ["${CONFDIR}/maps.d/mime_types.inc"];\n')
    (override / "mid.conf").write_text('source { url = ["${CONFDIR}/maps.d/mid.inc"]; }\n')


@dataclass
class Rspamd:
    url: str
    log: Path

    def scan(self, data: bytes, relay: Relay) -> Verdict:
        """rspamd's verdict on ``data`` (already ``relayed``) received from ``relay``."""
        request = urllib.request.Request(
            f"{self.url}/checkv2",
            data=data,
            method="POST",
            headers={
                "IP": relay.ip,
                "Helo": relay.helo,
                "Hostname": relay.hostname,
                "From": relay.mail_from,
                "Rcpt": relay.rcpt,
                "Pass": "all",
            },
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            result = json.loads(reply.read())
        rules = {k: float(v.get("score", 0.0)) for k, v in result.get("symbols", {}).items()}
        return Verdict("rspamd", float(result["score"]), rules)


@contextmanager
def rspamd_server(nameserver: str) -> Iterator[Rspamd]:
    """rspamd on a free loopback port with our local config; resolves through ``nameserver``
    (``127.0.0.1:PORT``). Stopped on the way out."""
    root = Path(tempfile.mkdtemp(prefix="rspamd-"))
    port = free_port()
    _rspamd_config(root, port, nameserver)
    cmd = [
        str(RSPAMD), "-f", "-c", str(root / "rspamd.conf"),
        "--var", f"CONFDIR={RSPAMD_CONFDIR}", "--var", f"LOCAL_CONFDIR={root}",
        "--var", f"DBDIR={root / 'db'}", "--var", f"RUNDIR={root / 'run'}",
        "--var", f"LOGDIR={root / 'log'}",
    ]  # fmt: skip
    if os.geteuid() == 0:  # rspamd will not run its workers as root: give it its own user
        user = pwd.getpwnam(RSPAMD_USER)
        os.chmod(root, 0o755)
        for path in [root, *root.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        cmd += ["-u", RSPAMD_USER, "-g", RSPAMD_USER]
    log = root / "log" / "rspamd.log"
    with open(root / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_rspamd(proc, url, root)
        yield Rspamd(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_rspamd(proc: subprocess.Popen[bytes], url: str, root: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rspamd exited {proc.returncode}: {_tail(root)}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"rspamd did not answer within 60 s: {_tail(root)}")


def _tail(root: Path) -> str:
    text = ""
    for name in ("stderr", "log/rspamd.log"):
        path = root / name
        if path.exists():
            text += path.read_text(errors="replace")[-3000:]
    return text


# ---------------------------------------------------------------------------------------------
# SpamAssassin

_STATUS = re.compile(r"score=(-?[\d.]+)\s.*?tests=(.*?)(?:\s+autolearn=|\s+version=|$)", re.S)
_REPORT_LINE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", re.M)


def spamassassin(data: bytes, folder: Path) -> Verdict:
    """SpamAssassin's verdict on ``data`` (already ``relayed``), local tests only."""
    site = folder / "site"
    home = folder / "home"
    site.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    for pre in SA_SITE.glob("*.pre"):  # the plugins (Check, HTMLEval, ...) load from these
        if pre.name != "sa-compile.pre":  # compiled rules would need sa-compile's output
            shutil.copy(pre, site / pre.name)
    (site / "local.cf").write_text(SA_SITE_CONFIG)
    (home / "user_prefs").write_text("")
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    done = subprocess.run(
        [
            str(SPAMASSASSIN), "-L", "-t",
            f"--configpath={SA_RULES}", f"--siteconfigpath={site}",
            "-p", str(home / "user_prefs"), "--cf", "report_safe 0",
        ],
        input=data, capture_output=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    out = done.stdout.decode("utf-8", "replace")
    head = out.split("\n\n", 1)[0]
    msg = email.message_from_string(head + "\n\n", policy=email.policy.compat32)
    found = _STATUS.search(str(msg.get("X-Spam-Status", "")))
    assert found, f"no X-Spam-Status from spamassassin (exit {done.returncode}): {done.stderr!r}"
    names = [n.strip() for n in found.group(2).split(",") if n.strip() not in ("", "none")]
    scores = {name: float(value) for value, name in _REPORT_LINE.findall(out)}
    return Verdict("SpamAssassin", float(found.group(1)), {n: scores.get(n, 0.0) for n in names})
