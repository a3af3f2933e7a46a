"""Tests for secagg.ckks_compact: sums decrypt within the stated bound, each
encryption is fresh, the server cannot decrypt, malformed or tampered bytes
raise typed errors, and the parameters respect the 128-bit table."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from secagg import ckks_compact as K
from secagg.ckks import open_chunk, tag_chunk
from secagg.errors import ConfigError, DecodeError, IntegrityError, MissingExtraError, OverflowRiskError

PRECISE = K.choose_compact_params(10, max_weight=3)
COARSE = K.choose_compact_params(10, 1e-2, allow_coarse=True)


@pytest.fixture(scope="module", params=[PRECISE, COARSE], ids=["precise", "coarse"])
def holder(request):
    pytest.importorskip("seal")
    return K.CompactKeyHolder(request.param)


def _aggregate(holder, updates, weights):
    p = holder.params
    server = K.CompactServer(p, holder.server_context_bytes())
    acc = K.CompactAccumulator(server, updates[0].size)
    for u, w in zip(updates, weights):
        acc.add(list(holder.encrypt(K.encode_update(p, u, w))))
    return acc.result()


def _sum(holder, updates, weights):
    return K.decode_sum(holder.params, holder.decrypt(_aggregate(holder, updates, weights)), updates[0].size)


def test_params_are_compact_and_within_the_128_bit_table():
    for p in (PRECISE, COARSE):
        assert p.modulus_bits <= min(K.HE_STANDARD_MAX_LOG_Q[p.poly_degree], K.SEAL_MAX_PRIME_BITS)
        assert p.bytes_per_param < 8
    assert PRECISE.error_bound <= 1e-6 and COARSE.error_bound <= 1e-2
    for p in (PRECISE, COARSE):  # the largest integer sum, times the scale, stays below q/8
        assert 2 * p.n_clients * p.bound * 2**p.scale_bits <= 2 ** (p.modulus_bits - 2)
    assert COARSE.bytes_per_param < PRECISE.bytes_per_param


def test_standard_table_matches_seal():
    seal = pytest.importorskip("seal")
    for degree, max_bits in K.HE_STANDARD_MAX_LOG_Q.items():
        assert seal.CoeffModulus.MaxBitCount(degree, seal.sec_level_type.tc128) == max_bits


def test_choose_params_refuses_unsafe_settings():
    with pytest.raises(ConfigError):
        K.choose_compact_params(10, 1e-4)  # coarser than 1e-6 needs allow_coarse
    with pytest.raises(OverflowRiskError):
        K.choose_compact_params(10, 1e-14)  # no prime under 60 bits is that precise
    with pytest.raises(ConfigError):
        K.choose_compact_params(0)
    with pytest.raises(OverflowRiskError):
        K.choose_compact_params(10, clip=2.0**30)


def test_missing_seal_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "seal", None)
    with pytest.raises(MissingExtraError, match="he-compact"):
        K.CompactKeyHolder(PRECISE)


@settings(max_examples=20, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 2500), elements=st.floats(-1, 1)))
def test_round_trip_within_the_bound(holder, x):
    total, weight = _sum(holder, [x], [1])
    assert weight == 1
    assert np.max(np.abs(total - x)) <= holder.params.error_bound


@settings(max_examples=10, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 10),
    length=st.integers(1, 1500),
)
def test_sum_of_clients_within_the_bound(holder, data, n, length):
    p = holder.params
    updates = [data.draw(arrays(np.float64, length, elements=st.floats(-1, 1))) for _ in range(n)]
    weights = [data.draw(st.integers(1, p.max_weight)) for _ in range(n)]
    total, weight = _sum(holder, updates, weights)
    expected = sum(w * u for u, w in zip(updates, weights))
    assert np.max(np.abs(total - expected)) <= p.error_bound
    assert weight == sum(weights)
    exact = sum(K.encode_update(p, u, w) for u, w in zip(updates, weights))
    assert np.array_equal(holder.decrypt(_aggregate(holder, updates, weights))[: length + 1], exact)


def test_encryptions_are_fresh(holder):
    x = K.encode_update(holder.params, np.linspace(-1, 1, 100))
    first, second = next(holder.encrypt(x)), next(holder.encrypt(x))
    seed_at = slice(6, 6 + K.SEED_BYTES)
    assert first[seed_at] != second[seed_at]
    assert first[seed_at.stop :] != second[seed_at.stop :]


def test_wire_sizes_are_exact(holder):
    p = holder.params
    chunks = list(holder.encrypt(K.encode_update(p, np.zeros(3 * p.values_per_chunk))))
    assert len(chunks) == p.n_chunks(3 * p.values_per_chunk) == 4
    assert all(len(c) == p.chunk_bytes for c in chunks)
    assert p.chunk_bytes == 6 + K.SEED_BYTES + p.poly_degree * p.modulus_bits // 8


def test_server_has_no_secret_key_and_cannot_decrypt(holder):
    seal = pytest.importorskip("seal")
    context = holder.server_context_bytes()
    server = K.CompactServer(holder.params, context)
    assert not server.has_secret_key
    held = list(vars(server).values())
    assert not any(isinstance(v, (seal.SecretKey, seal.Decryptor, seal.Encryptor)) for v in held)
    assert len(context) == 15 and holder.secret_bytes()[4:40] not in context
    with pytest.raises(ConfigError, match="cannot decrypt"):
        server.decrypt(next(holder.encrypt(np.ones(3, dtype=np.int64))))


def test_secret_bytes_round_trip(holder):
    p = holder.params
    x = np.linspace(-1, 1, 50)
    server = K.CompactServer(p, holder.server_context_bytes())
    acc = K.CompactAccumulator(server, x.size)
    acc.add(list(holder.encrypt(K.encode_update(p, x))))
    other = K.CompactKeyHolder.from_secret_bytes(p, holder.secret_bytes())
    total, _ = K.decode_sum(p, other.decrypt(acc.result()), x.size)
    assert np.max(np.abs(total - x)) <= p.error_bound
    with pytest.raises(DecodeError):
        K.CompactKeyHolder.from_secret_bytes(p, b"CKS1" + bytes(40))


def test_encrypt_refuses_integers_outside_the_bound(holder):
    p = holder.params
    with pytest.raises(OverflowRiskError):
        next(holder.encrypt(np.array([p.bound + 1])))
    with pytest.raises(ConfigError):
        next(holder.encrypt(np.ones(3)))  # floats: encode_update first


@settings(max_examples=30, deadline=None)
@given(position=st.integers(0, 10**9), flip=st.integers(1, 255))
def test_a_tampered_chunk_never_gives_a_silent_sum(holder, position, flip):
    p = holder.params
    server = K.CompactServer(p, holder.server_context_bytes())
    x = K.encode_update(p, np.linspace(-1, 1, 10))
    honest, victim = next(holder.encrypt(x)), next(holder.encrypt(x))
    i = position % len(victim)
    tampered = victim[:i] + bytes([victim[i] ^ flip]) + victim[i + 1 :]
    acc = K.CompactAccumulator(server, 10)
    acc.add([honest])
    try:
        acc.add([tampered])
    except DecodeError:
        return
    with pytest.raises(IntegrityError):
        holder.decrypt(acc.result())


def test_malformed_chunks_raise_decode_error(holder):
    p = holder.params
    server = K.CompactServer(p, holder.server_context_bytes())
    chunk = next(holder.encrypt(np.ones(5, dtype=np.int64)))
    head = 6 + K.SEED_BYTES
    bad = [
        chunk[:-1],
        chunk + b"\x00",
        b"XXXX" + chunk[4:],
        chunk[:4] + bytes([chunk[4] + 1]) + chunk[5:],  # another ring degree
        chunk[:head] + b"\xff" * (len(chunk) - head),  # every coefficient 2^bits - 1 ≥ q
        "not bytes",
    ]
    for blob in bad:
        with pytest.raises(DecodeError):
            server.load(blob)  # type: ignore[arg-type]
    acc = K.CompactAccumulator(server, 5)
    with pytest.raises(DecodeError):
        acc.add([chunk, chunk])  # wrong chunk count
    acc.add([chunk])
    assert acc.count == 1  # the failed add left the sum as it was


def test_malformed_aggregates_and_contexts_raise(holder):
    p = holder.params
    server = K.CompactServer(p, holder.server_context_bytes())
    acc = K.CompactAccumulator(server, 5)
    acc.add(list(holder.encrypt(K.encode_update(p, np.ones(5)))))
    (blob,) = acc.result()
    for bad in (blob[:-1], b"XXXX" + blob[4:], blob[:6] + (0).to_bytes(4, "little") + blob[10:]):
        with pytest.raises(DecodeError):
            holder.decrypt([bad])
    context = holder.server_context_bytes()
    with pytest.raises(DecodeError):
        K.CompactServer(p, context[:-1])
    with pytest.raises(DecodeError):
        K.CompactServer(p, context[:7] + (4).to_bytes(8, "little"))  # not an NTT prime
    other = COARSE if p is not COARSE else PRECISE
    with pytest.raises(ConfigError):
        K.CompactServer(other, context)


@settings(max_examples=30, deadline=None)
@given(position=st.integers(0, 10**9), flip=st.integers(1, 255))
def test_any_tampered_byte_of_a_tagged_chunk_is_caught(holder, position, flip):
    key, ad = b"k" * 32, b"session|round|client-3|chunk-0"
    tagged = tag_chunk(key, ad, next(holder.encrypt(np.ones(4, dtype=np.int64))))
    i = position % len(tagged)
    tampered = tagged[:i] + bytes([tagged[i] ^ flip]) + tagged[i + 1 :]
    with pytest.raises(IntegrityError):
        open_chunk(key, ad, tampered)


@given(st.integers(20, 60).flatmap(lambda b: st.tuples(st.just(b), st.lists(st.integers(0, 2**b - 1), max_size=50))))
def test_coefficient_packing_round_trips(case):
    bits, values = case
    coeffs = np.array(values, dtype=np.uint64)
    body = K.pack_coefficients(coeffs, bits)
    assert len(body) == -(-len(values) * bits // 8)
    assert np.array_equal(K.unpack_coefficients(body, len(values), bits, 2**bits), coeffs)


def _recover_key(seal, params, aggregate, modulus, published):
    """Li and Micciancio (Eurocrypt 2021): re-encode decrypted values to c0 + a·s, solve for s."""
    body = aggregate[10:]
    c0 = K.unpack_coefficients(body[: params.body_bytes], params.poly_degree, params.modulus_bits, modulus)
    a = K.unpack_coefficients(body[params.body_bytes :], params.poly_degree, params.modulus_bits, modulus)
    context, _ = K._context(seal, params)
    half = params.poly_degree // 2
    z = published[:half] + 1j * published[half:]
    plain = seal.CKKSEncoder(context).encode_complex(z, 2.0**params.scale_bits)
    noisy = K._SealCodec(seal, context, params.poly_degree).plaintext_coeffs(plain.to_bytes())
    return [(int(m) - int(c)) * pow(int(x), -1, modulus) % modulus for m, c, x in zip(noisy, c0, a)]


def test_raw_decryptions_reveal_the_key_so_only_exact_sums_leave_the_key_holder(holder):
    seal = pytest.importorskip("seal")
    p = holder.params
    server = K.CompactServer(p, holder.server_context_bytes())
    updates = [np.linspace(-1, 1, 100) / (k + 1) for k in range(3)]
    (aggregate,) = _aggregate(holder, updates, [1, 1, 1])
    _, c0, a = K._read_aggregate(p, server.modulus, aggregate)
    secret_key = holder.secret_bytes()[4:]
    secret = [int(v) for v in K._SealCodec(seal, holder._context, p.poly_degree).plaintext_coeffs(secret_key)]
    raw = holder._decrypt_values(c0, a)  # noise included: the attack recovers the key
    assert _recover_key(seal, p, aggregate, server.modulus, raw) == secret
    published = holder.decrypt([aggregate]).astype(np.float64)  # exact sums: it does not
    assert _recover_key(seal, p, aggregate, server.modulus, published) != secret
