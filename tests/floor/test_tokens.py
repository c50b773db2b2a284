"""The token maker's fast path: byte for byte what itsdangerous makes, and read back by it."""

from __future__ import annotations

import hashlib
import time

import pytest
from itsdangerous import URLSafeTimedSerializer

from weekly_mailer.errors import TokenError
from weekly_mailer.tokens import Purpose, TokenSigner, _address_digest


def _reference(secret: str, purpose: Purpose, subscriber_id: int, digest: str) -> str:
    serializer = URLSafeTimedSerializer(
        secret,
        salt=f"weekly_mailer.{purpose.value}",
        signer_kwargs={"digest_method": hashlib.sha256},
    )
    return serializer.dumps([subscriber_id, digest])


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize("secret", ["bench-secret", "ü-non-ascii key", "x" * 200])
def test_make_gives_the_bytes_itsdangerous_gives(purpose: Purpose, secret: str) -> None:
    signer = TokenSigner(secret)
    # ids of every width (the JSON), digests that compress and that do not (zlib's branch)
    cases = [(1, "a@example.org", ""), (0, "b@x.org", "signup-1"), (2**40, "c@x.org", "")]
    cases += [(i * 7919, f"reader{i:06d}@example.org", "") for i in range(200)]
    for subscriber_id, key, bound in cases:
        digest = _address_digest(key, bound)
        for _ in range(5):  # the two must fall in the same second
            before = int(time.time())
            ours = signer.make(purpose, subscriber_id, key, bound_to=bound)
            theirs = _reference(secret, purpose, subscriber_id, digest)
            if int(time.time()) == before:
                break
        assert ours == theirs
        assert signer.load(purpose, ours) == (subscriber_id, digest)
    repetitive = "0" * 12  # a payload zlib does shorten: the compressed form, as itsdangerous
    for _ in range(5):
        before = int(time.time())
        ours, theirs = (
            signer._dumps(purpose, 10**17, repetitive),
            _reference(secret, purpose, 10**17, repetitive),
        )
        if int(time.time()) == before:
            break
    assert ours == theirs
    assert signer.load(purpose, ours) == (10**17, repetitive)


def test_a_token_from_itsdangerous_still_loads_and_purposes_stay_apart() -> None:
    signer = TokenSigner("k")
    digest = _address_digest("a@example.org")
    old = _reference("k", Purpose.UNSUBSCRIBE, 42, digest)  # a link mailed before
    assert signer.load(Purpose.UNSUBSCRIBE, old) == (42, digest)
    with pytest.raises(TokenError):
        signer.load(Purpose.CONFIRM, signer.make(Purpose.UNSUBSCRIBE, 42, "a@example.org"))
    with pytest.raises(TokenError):
        TokenSigner("other").load(Purpose.UNSUBSCRIBE, old)


def test_the_zlib_shortcut_agrees_with_zlib() -> None:
    """``_incompressible`` says so only where zlib indeed does not shorten the payload."""
    import os
    import random
    import zlib

    from weekly_mailer.tokens import _incompressible

    rnd = random.Random(10)
    shortened = 0
    for i in range(20_000):
        sid = rnd.choice([rnd.randrange(10), rnd.randrange(10**6), rnd.randrange(10**18)])
        digest = os.urandom(6).hex() if i % 3 else "0" * rnd.randrange(13) + os.urandom(6).hex()
        data = f'[{sid},"{digest[:12]}"]'.encode()
        zlib_shortens = len(zlib.compress(data)) < len(data) - 1
        shortened += zlib_shortens
        if _incompressible(data):
            assert not zlib_shortens, data
    assert shortened > 100  # the other branch is exercised too
