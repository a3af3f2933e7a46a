"""Tests for secagg.kex: X25519 agreement (RFC 7748) and Ed25519 identities."""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from secagg import kex
from secagg.errors import ConfigError, IntegrityError
from secagg.testing.strategies import seeds
from tests.vectors import load

X25519 = load("x25519_rfc7748")

# Low-order points of Curve25519 (u = 0, u = 1 and the two order-8 points), whose
# shared secret is all zeros whatever the scalar (RFC 7748 §6.1, §7).
LOW_ORDER_POINTS = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
]


def _x25519(scalar: bytes, u: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u))


@pytest.mark.parametrize("vector", X25519["scalar_mult"], ids=lambda v: v["name"])
def test_x25519_scalar_mult_matches_rfc7748(vector: dict) -> None:
    out = _x25519(bytes.fromhex(vector["scalar"]), bytes.fromhex(vector["u"]))
    assert out.hex() == vector["output"]


def test_x25519_iterated_matches_rfc7748() -> None:
    k = u = bytes.fromhex(X25519["iterated"]["start"])
    for i in range(1, 1001):
        k, u = _x25519(k, u), k
        if i == 1:
            assert k.hex() == X25519["iterated"]["after_1"]
    assert k.hex() == X25519["iterated"]["after_1000"]


def test_rfc7748_dh_keypairs_and_agree() -> None:
    dh = X25519["diffie_hellman"]
    alice = kex.KeyPair(bytes.fromhex(dh["alice_private"]), bytes.fromhex(dh["alice_public"]))
    bob = kex.KeyPair(bytes.fromhex(dh["bob_private"]), bytes.fromhex(dh["bob_public"]))
    context = b"round=1|1->2"
    expected = kex._hkdf(bytes.fromhex(dh["shared"]), kex.AGREE_INFO + context, 32)
    assert kex.agree(alice, bob.public_bytes, context=context) == expected
    assert kex.agree(bob, alice.public_bytes, context=context) == expected
    # Raw private bytes work too.
    assert kex.agree(alice.private_bytes, bob.public_bytes, context=context) == expected


def test_keypair_rejects_mismatched_public() -> None:
    a, b = kex.generate_keypair(), kex.generate_keypair()
    with pytest.raises(ConfigError):
        kex.KeyPair(a.private_bytes, b.public_bytes)


@given(seed_a=seeds(), seed_b=seeds(), context=st.binary(max_size=64), length=st.integers(1, 96))
def test_agreement_is_symmetric(seed_a: bytes, seed_b: bytes, context: bytes, length: int) -> None:
    a, b = kex.generate_keypair(seed_a), kex.generate_keypair(seed_b)
    key = kex.agree(a, b.public_bytes, context=context, length=length)
    assert len(key) == length
    assert key == kex.agree(b, a.public_bytes, context=context, length=length)


def test_context_separates_keys() -> None:
    a, b = kex.generate_keypair(), kex.generate_keypair()
    assert kex.agree(a, b.public_bytes, context=b"x") != kex.agree(a, b.public_bytes, context=b"y")


@given(seed=seeds())
def test_seeded_keypairs_are_deterministic(seed: bytes) -> None:
    assert kex.generate_keypair(seed) == kex.generate_keypair(seed)
    assert kex.generate_identity(seed).public_bytes == kex.generate_identity(seed).public_bytes
    # Key agreement and identity keys come from the same seed through different labels.
    assert kex.generate_keypair(seed).private_bytes != kex.generate_identity(seed).private_bytes


def test_unseeded_keypairs_differ_and_hide_private_bytes() -> None:
    a, b = kex.generate_keypair(), kex.generate_keypair()
    assert a != b
    assert a.private_bytes.hex() not in repr(a)
    ident = kex.generate_identity()
    assert ident.private_bytes.hex() not in repr(ident)


@pytest.mark.parametrize("seed", [b"", b"x" * 15, b"x" * 24, b"x" * 33, "s" * 16, 123])
def test_bad_seed_is_config_error(seed: object) -> None:
    with pytest.raises(ConfigError):
        kex.generate_keypair(seed)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        kex.generate_identity(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_low_order_peer_key_is_integrity_error(point: bytes) -> None:
    with pytest.raises(IntegrityError):
        kex.agree(kex.generate_keypair(), point, context=b"")


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_peer_key_of_wrong_length_is_integrity_error(size: int) -> None:
    with pytest.raises(IntegrityError):
        kex.agree(kex.generate_keypair(), b"\x09" * size, context=b"")


def test_caller_mistakes_are_config_errors() -> None:
    a, b = kex.generate_keypair(), kex.generate_keypair()
    with pytest.raises(ConfigError):
        kex.agree(a.private_bytes[:31], b.public_bytes, context=b"")
    with pytest.raises(ConfigError):
        kex.agree(a, b.public_bytes, context="text")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        kex.agree(a, "00" * 32, context=b"")  # type: ignore[arg-type]
    for length in (0, -1, kex.MAX_AGREE_LENGTH + 1, True, 2.0):
        with pytest.raises(ConfigError):
            kex.agree(a, b.public_bytes, context=b"", length=length)  # type: ignore[arg-type]


def test_keys_pickle_round_trip() -> None:
    a, ident = kex.generate_keypair(), kex.generate_identity()
    a2, ident2 = pickle.loads(pickle.dumps((a, ident)))
    assert a2 == a and ident2 == ident
    b = kex.generate_keypair()
    assert kex.agree(a2, b.public_bytes, context=b"c") == kex.agree(a, b.public_bytes, context=b"c")
    kex.verify(ident.public_bytes, ident2.sign(b"m"), b"m")


@given(message=st.binary(max_size=200), data=st.data())
def test_signature_verifies_and_any_bit_flip_fails(message: bytes, data: st.DataObject) -> None:
    ident = kex.generate_identity(b"\x01" * 32)
    signature = ident.sign(message)
    assert len(signature) == kex.SIGNATURE_BYTES
    kex.verify(ident.public_bytes, signature, message)
    target = data.draw(st.sampled_from(["signature", "message", "public"] if message else ["signature", "public"]))
    parts = {"signature": signature, "message": message, "public": ident.public_bytes}
    blob = bytearray(parts[target])
    bit = data.draw(st.integers(0, 8 * len(blob) - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    parts[target] = bytes(blob)
    with pytest.raises(IntegrityError):
        kex.verify(parts["public"], parts["signature"], parts["message"])


@pytest.mark.parametrize("public_len,sig_len", [(31, 64), (32, 63), (32, 65), (0, 0)])
def test_verify_wrong_lengths_is_integrity_error(public_len: int, sig_len: int) -> None:
    with pytest.raises(IntegrityError):
        kex.verify(b"\x01" * public_len, b"\x02" * sig_len, b"m")


@pytest.mark.parametrize("bad", [10**9, 1.5, "seed", [1]], ids=repr)
def test_non_bytes_arguments_are_config_errors(bad: object) -> None:
    from secagg import kex as kex_module

    pair = kex_module.generate_keypair()
    for call in (lambda: kex_module.generate_keypair(bad), lambda: kex_module.agree(pair, bad, context=b"c"),  # type: ignore[arg-type]
                 lambda: kex_module.agree(pair, pair.public_bytes, context=bad)):  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="must be bytes"):
            call()
