"""secagg.kex: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given

from secagg import kex
from secagg.errors import ConfigError
from secagg.testing.strategies import seeds


def _hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=kex.KEY_BYTES, salt=None, info=info).derive(ikm)


@given(seeds())
def test_seeded_keys_are_hkdf_of_the_seed_under_their_own_label(seed: bytes) -> None:
    """A seed gives the X25519 and the Ed25519 key through HKDF with different labels, never one key for both."""
    pair, identity = kex.generate_keypair(seed), kex.generate_identity(seed)
    assert pair.private_bytes == _hkdf_sha256(seed, kex.KEYPAIR_INFO)
    assert identity.private_bytes == _hkdf_sha256(seed, kex.IDENTITY_INFO)
    assert pair.private_bytes != identity.private_bytes


def test_agree_accepts_every_length_up_to_the_hkdf_limit() -> None:
    a, b = kex.generate_keypair(), kex.generate_keypair()
    for length in (1, kex.MAX_AGREE_LENGTH):
        key = kex.agree(a, b.public_bytes, context=b"c", length=length)
        assert len(key) == length
        assert key == kex.agree(b, a.public_bytes, context=b"c", length=length)


@pytest.mark.parametrize("private_len, public_len", [(31, 32), (32, 31), (33, 33)])
def test_keypair_of_a_wrong_length_is_config_error(private_len: int, public_len: int) -> None:
    pair = kex.generate_keypair()
    with pytest.raises(ConfigError, match="32 bytes"):
        kex.KeyPair(pair.private_bytes[:private_len].ljust(private_len, b"\x01"), pair.public_bytes[:public_len])
