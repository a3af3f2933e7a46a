"""Tests for secagg.paillier: known answers, bit-for-bit agreement with phe,
single-use noise pools, and the packing plan's overflow proof."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError, DecodeError, IntegrityError, OverflowRiskError
from tests.vectors import load

phe = pytest.importorskip("phe")
pytest.importorskip("gmpy2")

from secagg import paillier as P  # noqa: E402

TEST_KEY_BITS = 512  # insecure, fast; 2048-bit keys only in bench/he.py


@pytest.fixture(scope="session")
def keypair():
    return P.generate_keypair(TEST_KEY_BITS)


@pytest.mark.parametrize("case", load("paillier_kat")["cases"])
def test_known_answer_small_primes(case):
    pk = P.PaillierPublicKey(case["n"])
    sk = P.PaillierSecretKey(pk, case["p"], case["q"])
    assert pk.nsquare == case["nsquare"]
    assert P.obfuscator(pk, case["r"]) == case["r_to_n"]
    assert P.encrypt_raw(pk, case["m"], case["r_to_n"]) == case["c"]
    assert (1 + case["m"] * case["n"]) % pk.nsquare == case["g_to_m"]
    assert pow(case["c"], case["lambda"], pk.nsquare) == case["c_to_lambda"]
    assert P.decrypt_raw(sk, case["c"]) == case["m"]
    # phe, the reference implementation, agrees on the same r
    assert phe.PaillierPublicKey(case["n"]).raw_encrypt(case["m"], r_value=case["r"]) == case["c"]


def test_ciphertexts_equal_phe_bit_for_bit(keypair):
    pk, sk = keypair
    ref_pk = phe.PaillierPublicKey(pk.n)
    ref_sk = phe.PaillierPrivateKey(ref_pk, sk.p, sk.q)
    for m in (0, 1, 12345, pk.n - 1, secrets.randbelow(pk.n)):
        r = secrets.randbelow(pk.n - 1) + 1
        c = P.encrypt_raw(pk, m, P.obfuscator(pk, r))
        assert c == ref_pk.raw_encrypt(m, r_value=r)
        assert P.decrypt_raw(sk, c) == ref_sk.raw_decrypt(c) == m


def test_crt_pool_element_is_r_to_the_n(keypair):
    pk, sk = keypair
    for _ in range(5):
        y_p = secrets.randbelow(sk.p - 1) + 1
        y_q = secrets.randbelow(sk.q - 1) + 1
        rn, r = P.crt_obfuscator_from_roots(sk, y_p, y_q)
        assert rn == pow(r, pk.n, pk.nsquare)
        m = secrets.randbelow(pk.n)
        assert P.encrypt_raw(pk, m, rn) == phe.PaillierPublicKey(pk.n).raw_encrypt(m, r_value=r)


@pytest.mark.parametrize("method", P.POOL_METHODS)
@pytest.mark.parametrize("with_secret", [True, False])
def test_pool_elements_decrypt_and_are_single_use(keypair, with_secret, method):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk if with_secret else None, method=method)
    pool.fill(3)
    seen = set()
    for m in (5, 6, 7):
        rn = pool.take()
        assert rn not in seen
        seen.add(rn)
        assert P.decrypt_raw(sk, P.encrypt_raw(pk, m, rn)) == m
    with pytest.raises(ConfigError):
        pool.take()


@pytest.mark.parametrize("with_secret", [True, False])
def test_djn_pool_elements_are_n_th_residues_and_decrypt(keypair, with_secret):
    import math

    pk, sk = keypair
    pool = P.NoisePool(pk, sk if with_secret else None, method="djn")
    pool.fill(4)
    lam = math.lcm(sk.p - 1, sk.q - 1)
    items = [pool.take() for _ in range(4)]
    assert len(set(items)) == 4
    for rn in items:
        assert pow(rn, lam, pk.nsquare) == 1  # an n-th residue: (r^n)^lambda = 1 mod n^2
        assert P.decrypt_raw(sk, P.encrypt_raw(pk, 77, rn)) == 77


def test_djn_comb_matches_powmod_and_phe(keypair):
    pk, _ = keypair
    h = (-pow(12345, 2, pk.n)) % pk.n
    table = P._comb_table(pow(h, pk.n, pk.nsquare), pk.nsquare, 256)
    for alpha in (0, 1, 255, 256, secrets.randbits(256)):
        rn = int(P._comb_pow(table, alpha, pk.nsquare))
        r = pow(h, alpha, pk.n)
        assert rn == pow(h, pk.n * alpha, pk.nsquare)
        assert P.encrypt_raw(pk, 5, rn) == phe.PaillierPublicKey(pk.n).raw_encrypt(5, r_value=r)


@pytest.mark.parametrize("method", P.POOL_METHODS)
def test_pool_fill_with_two_workers(keypair, method):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk, method=method)
    count = 2 * P.PARALLEL_MIN_ITEMS  # enough for two processes
    pool.fill(count, workers=2)
    assert len(pool) == count
    items = [pool.take() for _ in range(count)]
    assert len(set(items)) == len(items)
    assert P.decrypt_raw(sk, P.encrypt_raw(pk, 9, items[0])) == 9


def test_plan_matches_research_capacity():
    # he-anchors.md: 16-bit values, 20-bit slots, 102 per 2048-bit plaintext at n=10
    plan = P.PackingPlan.for_bits(10, 16, 2048)
    assert (plan.slot_bits, plan.slots) == (20, 102)
    assert P.PackingPlan.for_bits(1000, 16, 2048).slots == 78


def test_plan_rejects_impossible_settings():
    with pytest.raises(OverflowRiskError):
        P.PackingPlan(n_clients=2**40, bound=2**30, key_bits=64)
    with pytest.raises(ConfigError):
        P.PackingPlan(n_clients=0, bound=5)
    plan = P.PackingPlan.for_bits(3, 8, TEST_KEY_BITS)
    with pytest.raises(OverflowRiskError):
        plan.pack(np.array([128]))
    with pytest.raises(ConfigError):
        plan.pack(np.array([0.5]))


def _packed_sum(keypair, plan, vectors, workers=1):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk)
    cts = []
    for v in vectors:
        pool.fill(plan.n_ciphertexts(v.size))
        cts.append(P.encrypt_packed(pk, plan, v, pool))
    total = P.sum_ciphertexts(pk, cts)
    wire = P.ciphertexts_from_bytes(pk, P.ciphertexts_to_bytes(pk, total), len(total))
    return P.decrypt_packed(sk, plan, wire, vectors[0].size, len(vectors), workers=workers)


@settings(max_examples=25)
@given(data=st.data(), n=st.integers(1, 12), bits=st.integers(2, 30), length=st.integers(0, 40),
       max_weight=st.integers(1, 100))
def test_packed_sum_equals_plaintext_sum(keypair, data, n, bits, length, max_weight):
    plan = P.PackingPlan.for_bits(n, bits, TEST_KEY_BITS, max_weight=max_weight)
    k = data.draw(st.integers(1, n))  # contributors (others dropped)
    vectors = [np.array(data.draw(st.lists(st.integers(-plan.bound, plan.bound),
                                           min_size=length, max_size=length)), dtype=np.int64)
               for _ in range(k)]
    got = _packed_sum(keypair, plan, vectors)
    assert np.array_equal(got, np.sum(vectors, axis=0, dtype=np.int64) if length else got)


@pytest.mark.parametrize("sign", [1, -1])
def test_worst_case_at_the_clip_bound(keypair, sign):
    n = 7
    plan = P.PackingPlan.for_bits(n, 16, TEST_KEY_BITS, max_weight=3)
    vectors = [np.full(2 * plan.slots + 1, sign * plan.bound, dtype=np.int64) for _ in range(n)]
    assert np.array_equal(_packed_sum(keypair, plan, vectors), n * vectors[0])


def test_decrypt_with_two_workers(keypair):
    plan = P.PackingPlan.for_bits(2, 8, TEST_KEY_BITS)
    length = plan.slots * P.PARALLEL_MIN_ITEMS
    rng = np.random.default_rng(1)
    vectors = [rng.integers(-127, 128, length) for _ in range(2)]
    assert np.array_equal(_packed_sum(keypair, plan, vectors, workers=2), vectors[0] + vectors[1])


def test_corrupted_ciphertext_detected_or_rejected(keypair):
    pk, sk = keypair
    plan = P.PackingPlan.for_bits(4, 16, TEST_KEY_BITS)
    pool = P.NoisePool(pk, sk)
    pool.fill(1)
    cts = P.encrypt_packed(pk, plan, np.arange(plan.slots), pool)
    blob = bytearray(P.ciphertexts_to_bytes(pk, cts))
    with pytest.raises(DecodeError):
        P.ciphertexts_from_bytes(pk, bytes(blob[:-1]))
    with pytest.raises(DecodeError):
        P.ciphertexts_from_bytes(pk, b"\xff" * len(blob))
    blob[3] ^= 0x40
    bad = P.ciphertexts_from_bytes(pk, bytes(blob))
    # Paillier is malleable: a flipped bit decrypts to a random plaintext, which
    # unpack rejects because it overflows the slots (w.h.p. 1 - 2^-(unused bits + slots)).
    with pytest.raises(IntegrityError):
        P.decrypt_packed(sk, plan, bad, plan.slots, 1)


@pytest.mark.parametrize("make_bad", [lambda sk: sk.public.n, lambda sk: 5 * sk.p, lambda sk: sk.q * sk.q])
def test_non_unit_ciphertexts_are_rejected_naming_their_index(keypair, make_bad):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk)
    pool.fill(3)
    cts = [pool.take() for _ in range(3)]
    P.check_units(pk, cts)  # units (r^n mod n²) pass
    cts[1] = make_bad(sk)
    with pytest.raises(IntegrityError) as err:
        P.check_units(pk, cts)
    assert err.value.index == 1
    with pytest.raises(IntegrityError) as err:
        P.ciphertexts_from_bytes(pk, P.ciphertexts_to_bytes(pk, cts))
    assert err.value.index == 1


def test_secret_key_repr_hides_factors(keypair):
    _, sk = keypair
    assert str(sk.p) not in repr(sk)


@pytest.mark.slow
def test_2048_bit_packed_sum_matches_phe_decryption():
    pk, sk = P.generate_keypair(2048)
    plan = P.PackingPlan.for_bits(10, 16, 2048)
    assert plan.slots == 102
    rng = np.random.default_rng(5)
    vectors = [rng.integers(-plan.bound, plan.bound + 1, 3 * plan.slots) for _ in range(10)]
    vectors[0][:] = plan.bound
    for method in P.POOL_METHODS:
        pool = P.NoisePool(pk, sk, method=method)
        pool.fill(30, workers=2)
        total = P.sum_ciphertexts(pk, [P.encrypt_packed(pk, plan, v, pool) for v in vectors])
        ref_sk = phe.PaillierPrivateKey(phe.PaillierPublicKey(pk.n), sk.p, sk.q)
        assert [P.decrypt_raw(sk, c) for c in total] == [ref_sk.raw_decrypt(c) for c in total]
        assert np.array_equal(P.decrypt_packed(sk, plan, total, vectors[0].size, 10),
                              np.sum(vectors, axis=0))
