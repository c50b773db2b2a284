"""DKIM signing of each personalised message, at OpenSSL speed (the ``cryptography`` package).

Enabled when ``dkim_domain`` and one key are configured:

* RSA-2048, ``rsa-sha256``: ``dkim_selector`` and ``dkim_key_file`` (a PEM private key);
* Ed25519, ``ed25519-sha256`` (RFC 8463): ``dkim_ed25519_selector`` and ``dkim_ed25519_key_file``
  (a PEM private key, or dkimpy's one-line base64 seed).

With both keys every message carries two ``DKIM-Signature`` headers (RSA first: receivers that
know only RSA often look at the first one). Either way the signature oversigns From, To, Subject,
Date, Message-ID, Content-Type, List-Unsubscribe and List-Unsubscribe-Post
(``compose.DKIM_HEADERS``: ``h=`` names each once more than the message has it, RFC 6376 §8.15,
so a copy added or prepended in transit, or one the message lacked, breaks the signature), and
signs MIME-Version, List-Id, Precedence, Feedback-ID and Auto-Submitted where they appear
(``compose.DKIM_PRESENT_HEADERS``), with relaxed/relaxed canonicalisation (RFC 6376 §3.4.2 and
§3.4.4). dkimpy signs in pure Python at about 6 ms an RSA signature; OpenSSL takes a fraction of
a millisecond, which is what lets DKIM keep up with the SMTP engine.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from weekly_mailer.clock import utcnow
from weekly_mailer.compose import DKIM_HEADERS, DKIM_PRESENT_HEADERS
from weekly_mailer.errors import ConfigError

if TYPE_CHECKING:
    from weekly_mailer.config import Settings

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
_WSP_RUN = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r?\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_LINE = 76  # fold the signature header before this many characters
_CACHE_LINES = 20_000  # canonical body lines a signer remembers (then it starts afresh)


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: lower-case name, unfolded value, WSP runs as one space, trimmed."""
    value = _WSP_RUN.sub(b" ", _FOLD.sub(b"", value)).strip(b" \t")
    return name.lower().rstrip(b" \t") + b":" + value + b"\r\n"


def relaxed_body(body: bytes, cache: dict[bytes, bytes] | None = None) -> bytes:
    """RFC 6376 §3.4.4: no WSP at line ends, WSP runs as one space, no empty lines at the end,
    one CRLF after the last line; an empty body is empty.

    Line by line, with ``bytes.replace`` rather than a regular expression; ``cache`` maps lines
    already seen to their canonical form (a signer sees the same skeleton lines in every copy
    of an issue, so only the few personalised ones are worked out again)."""
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        *lines, last = body.split(b"\r\n")  # ``last`` has no CRLF: its end WSP stays (dkimpy)
        if cache is None:
            out = [_relaxed_line(line) for line in lines]
        else:
            if len(cache) > _CACHE_LINES:
                cache.clear()
            out = []
            for line in lines:
                done = cache.get(line)
                if done is None:
                    done = cache[line] = _relaxed_line(line)
                out.append(done)
        out.append(_squeezed(last))
        body = b"\r\n".join(out)
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _squeezed(line: bytes) -> bytes:
    if b"\t" in line:
        line = line.replace(b"\t", b" ")
    while b"  " in line:
        line = line.replace(b"  ", b" ")
    return line


def _relaxed_line(line: bytes) -> bytes:
    line = _squeezed(line)
    return line[:-1] if line.endswith(b" ") else line


def split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """``([(name, raw value with folding), ...], body)`` of a CRLF message (bare LFs become
    CRLF first, as the SMTP client will send them)."""
    if b"\n" in message and message.count(b"\n") != message.count(b"\r\n"):
        message = _BARE_LF.sub(b"\r\n", message)
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep and head.startswith(b"\r\n"):  # no headers at all
        head, body = b"", head[2:]
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body


def signed_headers(
    fields: Sequence[tuple[bytes, bytes]], names: Sequence[bytes]
) -> list[tuple[bytes, bytes]]:
    """The instance of each name to sign, bottom-up (RFC 6376 §5.4.2), as dkimpy picks them."""
    chosen: list[tuple[bytes, bytes]] = []
    last: dict[bytes, int] = {}
    for name in names:
        i = last.get(name, len(fields))
        while i > 0:
            i -= 1
            if fields[i][0].lower().rstrip(b" \t") == name:
                chosen.append(fields[i])
                break
        last[name] = i
    return chosen


def _h_tag(names: Sequence[bytes]) -> list[bytes]:
    """``h=a:b:…;`` in pieces that fit a folded line; the folding whitespace falls after a colon,
    where RFC 6376 §3.5 allows it."""
    pieces: list[bytes] = []
    piece = b"h="
    for i, name in enumerate(names):
        end = b";" if i == len(names) - 1 else b":"
        if len(piece) + len(name) + 1 > _LINE - 8 and piece != b"h=":
            pieces.append(piece)
            piece = b""
        piece += name + end
    pieces.append(piece)
    return pieces


def _fold(tags: Sequence[bytes]) -> bytes:
    """``tag=value; tag=value`` over lines of at most ``_LINE`` characters (CRLF SP between)."""
    lines: list[bytes] = []
    line = b"DKIM-Signature:"
    for tag in tags:
        if len(line) + 1 + len(tag) > _LINE and line != b"DKIM-Signature:":
            lines.append(line)
            line = b""
        line += b" " + tag
    lines.append(line)
    return b"\r\n".join(lines)


class _Key:
    """One signing key: algorithm, selector and the loaded private key."""

    __slots__ = ("algorithm", "selector", "key")

    def __init__(
        self, algorithm: str, selector: bytes, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ) -> None:
        self.algorithm, self.selector, self.key = algorithm, selector, key

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(hashlib.sha256(data).digest())  # RFC 8463 §3: sign the hash


def load_private_key(data: bytes, *, where: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """An RSA or Ed25519 key from PEM, or Ed25519 from dkimpy's base64 seed; ``ConfigError``."""
    text = data.strip()
    if b"PRIVATE KEY" not in text:
        try:
            seed = base64.b64decode(text, validate=True)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise ConfigError(f"{where} is not a PEM private key")
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"{where} cannot be read as a private key: {reason}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{where} is neither an RSA nor an Ed25519 key")
    return key


class DkimSigner:
    """Signs serialised messages with one or two keys (relaxed/relaxed canonicalisation).

    ``private_key`` is the RSA key (PEM bytes), ``ed25519_key`` the optional Ed25519 one; keys
    are loaded on first use, so a bad one fails ``sign`` with a ``ConfigError``.
    """

    def __init__(
        self,
        *,
        domain: str,
        selector: str = "",
        private_key: bytes = b"",
        ed25519_selector: str = "",
        ed25519_key: bytes = b"",
        headers: Sequence[bytes] = DKIM_HEADERS,
        present_headers: Sequence[bytes] = DKIM_PRESENT_HEADERS,
        timestamp: bool = True,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.private_key = private_key
        self.ed25519_selector = ed25519_selector.encode("ascii")
        self.ed25519_key = ed25519_key
        self.headers = tuple(h.lower() for h in headers)
        self.present_headers = tuple(h.lower() for h in present_headers)
        self.timestamp = timestamp
        self.clock = clock
        self._keys: list[_Key] | None = None
        self._lines: dict[bytes, bytes] = {}  # see relaxed_body
        self._headers: dict[tuple[bytes, bytes], bytes] = {}  # see _header

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """A signer when DKIM is configured, ``None`` when it is not; ``ConfigError`` if half-set
        or a key cannot be read."""
        rsa_values = (settings.dkim_selector, settings.dkim_key_file)
        ed_values = (settings.dkim_ed25519_selector, settings.dkim_ed25519_key_file)
        if not settings.dkim_domain and not any(rsa_values) and not any(ed_values):
            return None
        if any(ed_values) and not (settings.dkim_domain and all(ed_values)):
            raise ConfigError(
                "dkim_domain, dkim_ed25519_selector and dkim_ed25519_key_file must be set "
                "together (or none)"
            )
        if (any(rsa_values) or not any(ed_values)) and not (
            settings.dkim_domain and all(rsa_values)
        ):
            raise ConfigError(
                "dkim_domain, dkim_selector and dkim_key_file must be set together (or none)"
            )
        if all(rsa_values) and settings.dkim_selector == settings.dkim_ed25519_selector:
            raise ConfigError("dkim_ed25519_selector must differ from dkim_selector")
        signer = cls(
            domain=settings.dkim_domain,
            selector=settings.dkim_selector,
            private_key=_read_key("dkim_key_file", settings.dkim_key_file),
            ed25519_selector=settings.dkim_ed25519_selector,
            ed25519_key=_read_key("dkim_ed25519_key_file", settings.dkim_ed25519_key_file),
        )
        signer.sign(b"From: a@example.org\r\nSubject: key check\r\n\r\nx\r\n")  # fail early
        return signer

    def keys(self) -> list[_Key]:
        """The loaded keys, RSA first; ``ConfigError`` naming the one that does not load."""
        if self._keys is None:
            keys: list[_Key] = []
            for algorithm, selector, pem, setting in (
                (RSA, self.selector, self.private_key, "dkim_key_file"),
                (ED25519, self.ed25519_selector, self.ed25519_key, "dkim_ed25519_key_file"),
            ):
                if not pem:
                    continue
                try:
                    key = load_private_key(pem, where=setting)
                except ConfigError as exc:
                    raise ConfigError(f"DKIM signing failed (check {setting}): {exc}") from exc
                wanted = rsa.RSAPrivateKey if algorithm == RSA else ed25519.Ed25519PrivateKey
                if not isinstance(key, wanted):
                    kind = "RSA" if algorithm == RSA else "Ed25519"
                    raise ConfigError(f"DKIM signing failed: {setting} is not an {kind} key")
                keys.append(_Key(algorithm, selector, key))
            if not keys:
                raise ConfigError("DKIM signing failed: no key configured")
            self._keys = keys
        return self._keys

    def sign(self, message: bytes) -> bytes:
        """The message with one ``DKIM-Signature`` header per key in front; ``ConfigError`` when
        a key cannot sign (the worker stops the send rather than fail every row)."""
        fields, body = split_message(message)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body, self._lines)).digest())
        names = self.names_for(fields)
        chosen = b"".join(self._header(n, v) for n, v in signed_headers(fields, names))
        stamp = str(int(self.clock().timestamp())).encode("ascii") if self.timestamp else b""
        out = []
        for key in self.keys():
            tags = [
                b"v=1;",
                b"a=" + key.algorithm.encode("ascii") + b";",
                b"c=relaxed/relaxed;",
                b"d=" + self.domain + b";",
                b"s=" + key.selector + b";",
                *([b"t=" + stamp + b";"] if stamp else []),
                *_h_tag(names),
                b"bh=" + body_hash + b";",
                b"b=",
            ]
            header = _fold(tags)
            name, _, value = header.partition(b":")
            data = chosen + relaxed_header(name, value).rstrip(b"\r\n")
            try:
                signature = base64.b64encode(key.sign(data))
            except (ValueError, TypeError) as exc:  # pragma: no cover - keys are checked
                raise ConfigError(f"DKIM signing failed: {exc}") from exc
            chunks = [signature[i : i + 72] for i in range(0, len(signature), 72)]
            out.append(header + b"\r\n " + b"\r\n ".join(chunks) + b"\r\n")
        return b"".join(out) + message

    def names_for(self, fields: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """``h=`` for these header fields: each oversigned name once more than it occurs, each
        present-only name as often as it occurs."""
        counts: dict[bytes, int] = {}
        for name, _ in fields:
            key = name.lower().rstrip(b" \t")
            counts[key] = counts.get(key, 0) + 1
        names = [n for n in self.headers for _ in range(counts.get(n, 0) + 1)]
        names += [n for n in self.present_headers for _ in range(counts.get(n, 0))]
        return names

    def _header(self, name: bytes, value: bytes) -> bytes:
        """``relaxed_header``, remembered: From, Subject and the List headers' post value are
        the same in every copy of an issue."""
        key = (name, value)
        done = self._headers.get(key)
        if done is None:
            if len(self._headers) > _CACHE_LINES:
                self._headers.clear()
            done = self._headers[key] = relaxed_header(name, value)
        return done


def _read_key(setting: str, path: str) -> bytes:
    if not path:
        return b""
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path!r}: {exc.strerror}") from exc
    load_private_key(key, where=f"{setting}: {path!r}")
    return key


def public_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The DNS TXT record value (``v=DKIM1; k=...; p=...``) that verifies ``key``."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
