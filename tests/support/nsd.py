"""A real authoritative DNS server for tests: Debian's ``nsd``, started on a free loopback port
with its own config and zone files in a temporary folder, stopped in a ``finally``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query

NSD = shutil.which("nsd") or "/usr/sbin/nsd"


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (nsd binds both)."""
    for _ in range(50):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for nsd")


def txt(value: str) -> str:
    """A TXT record's data in zone-file syntax: strings of at most 255 characters, quoted."""
    chunks = [value[i : i + 250] for i in range(0, len(value), 250)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def zone_text(origin: str, records: list[tuple[str, str, str]]) -> str:
    """A zone file for ``origin``: SOA, NS, and ``(name, type, data)`` rows (name relative, or
    ``@``; TXT data given unquoted)."""
    lines = [
        f"$ORIGIN {origin}.",
        "$TTL 300",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300",
        f"@ IN NS ns.{origin}.",
        "ns IN A 127.0.0.1",
    ]
    for name, kind, data in records:
        lines.append(f"{name} IN {kind} {txt(data) if kind == 'TXT' else data}")
    return "\n".join(lines) + "\n"


@contextmanager
def nsd_server(folder: Path, zones: dict[str, str]) -> Iterator[str]:
    """Serve ``zones`` (origin → zone text); yields ``127.0.0.1:PORT`` for ``dns_resolver``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_udp_tcp_port()
    conf = [
        "server:",
        f"  ip-address: 127.0.0.1@{port}",
        f"  port: {port}",
        '  username: ""',
        '  chroot: ""',
        f'  zonesdir: "{folder}"',
        '  database: ""',
        f'  pidfile: "{folder / "nsd.pid"}"',
        f'  xfrdfile: "{folder / "xfrd.state"}"',
        f'  zonelistfile: "{folder / "zone.list"}"',
        f'  logfile: "{folder / "nsd.log"}"',
        "  do-ip6: no",
        "  server-count: 1",
        "  verbosity: 1",
        "remote-control:",
        "  control-enable: no",
    ]
    for origin, text in zones.items():
        (folder / f"{origin}.zone").write_text(text)
        conf += ["zone:", f"  name: {origin}", f'  zonefile: "{origin}.zone"']
    (folder / "nsd.conf").write_text("\n".join(conf) + "\n")
    with open(folder / "nsd.stderr", "wb") as err:
        proc = subprocess.Popen(
            [NSD, "-d", "-c", str(folder / "nsd.conf")], stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        _wait_ready(proc, port, next(iter(zones)), folder)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, origin: str, folder: Path) -> None:
    query = dns.message.make_query(origin, "SOA")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (folder / "nsd.log").read_text() if (folder / "nsd.log").exists() else ""
            err = (folder / "nsd.stderr").read_text()
            raise RuntimeError(f"nsd exited {proc.returncode}: {err} {log}")
        try:
            answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
            if answer.answer:
                return
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError("nsd did not answer within 15 s")
