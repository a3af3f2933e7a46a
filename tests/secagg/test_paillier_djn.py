"""DJN noise pools (the default): decryption inverts them, every ciphertext gets
fresh randomness, the cached comb tables give exactly plain gmpy2 powmod's
values, elements are n-th residues h_s^α of the documented form, and the tables
are built once per process, key and base. Also the threaded batch decryption."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

pytest.importorskip("phe")
gmpy2 = pytest.importorskip("gmpy2")

from secagg import paillier as P  # noqa: E402

KEY_BITS = 512  # insecure, fast
EXP_BITS = P.djn_exponent_bits(KEY_BITS)


@pytest.fixture(scope="module")
def keypair():
    return P.generate_keypair(KEY_BITS)


@pytest.fixture(scope="module")
def lam(keypair):
    _, sk = keypair
    return math.lcm(sk.p - 1, sk.q - 1)


def _fill_with(pool, exponents):
    """Fill ``pool`` with the obfuscators of the given exponents (in order)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "_draw_exponents", lambda count, bits: list(exponents)[:count])
        pool.fill(len(exponents))
    return [pool.take() for _ in range(len(exponents))][::-1]  # take() pops from the end


# full-length exponents (every comb row used) as well as Hypothesis' small and edge values
full_length = st.binary(min_size=EXP_BITS // 8, max_size=EXP_BITS // 8).map(lambda b: int.from_bytes(b, "little"))
exponents = st.lists(st.integers(0, 2**EXP_BITS - 1) | full_length, min_size=1, max_size=6)
EDGES = [0, 1, 255, 256, 2 ** (EXP_BITS - 1), 2**EXP_BITS - 1]


def test_djn_is_the_default_and_the_exponent_is_half_the_modulus():
    assert P.DEFAULT_POOL_METHOD == "djn" and P.POOL_METHODS[0] == "djn"
    assert [P.djn_exponent_bits(k) for k in (2048, 3072, 1023)] == [1024, 1536, 512]
    drawn = P._draw_exponents(2000, 1024)
    assert max(a.bit_length() for a in drawn) == 1024  # top bit set in some draw (1 - 2^-2000)
    assert len(set(drawn)) == len(drawn)


@pytest.mark.parametrize("with_secret", [True, False])
def test_pools_use_djn_by_default(keypair, with_secret):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk if with_secret else None)
    assert pool.method == "djn"


@settings(max_examples=30, deadline=None)
@given(messages=st.lists(st.integers(0, 2**KEY_BITS), min_size=1, max_size=8), with_secret=st.booleans())
def test_decrypt_of_djn_encryption_is_the_message(keypair, messages, with_secret):
    pk, sk = keypair
    messages = [m % pk.n for m in messages]
    pool = P.NoisePool(pk, sk if with_secret else None)
    pool.fill(len(messages))
    cts = [P.encrypt_raw(pk, m, pool.take()) for m in messages]
    assert [P.decrypt_raw(sk, c) for c in cts] == messages
    assert P.decrypt_many(sk, cts) == messages


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 2**KEY_BITS), copies=st.integers(2, 12), with_secret=st.booleans())
def test_no_two_encryptions_of_one_message_are_equal(keypair, m, copies, with_secret):
    pk, sk = keypair
    m %= pk.n
    pool = P.NoisePool(pk, sk if with_secret else None)
    pool.fill(copies)
    cts = [P.encrypt_raw(pk, m, pool.take()) for _ in range(copies)]
    assert len(set(cts)) == copies, "two encryptions of one message are equal: reused or constant randomness"
    assert all(c % pk.n != 1 for c in cts), "the obfuscator is 1: the ciphertext opens without the key"
    assert {P.decrypt_raw(sk, c) for c in cts} == {m}


@settings(max_examples=15, deadline=None)
@given(alphas=exponents, with_secret=st.booleans())
@example(alphas=EDGES, with_secret=True)
@example(alphas=EDGES, with_secret=False)
def test_cached_tables_give_plain_powmod_for_the_same_exponents(keypair, alphas, with_secret):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk if with_secret else None)
    h = P.djn_base(pk.n)
    h_s = gmpy2.powmod(h, pk.n, pk.nsquare)
    got = _fill_with(pool, alphas)
    assert got == [int(gmpy2.powmod(h_s, a, pk.nsquare)) for a in alphas]
    # the same exponents again (second fill, tables now cached) and an uncached build agree
    assert _fill_with(pool, alphas) == got
    p, q = (sk.p, sk.q) if with_secret else (0, 0)
    P._djn_tables.cache_clear()
    assert P._djn_obfuscators(pk.n, p, q, h, alphas) == got


@settings(max_examples=10, deadline=None)
@given(alphas=exponents, m=st.integers(0, 2**KEY_BITS))
@example(alphas=EDGES, m=7)
def test_pool_elements_are_n_th_powers_of_h_to_alpha(keypair, lam, alphas, m):
    phe = pytest.importorskip("phe")
    pk, sk = keypair
    m %= pk.n
    h = P.djn_base(pk.n)
    assert math.gcd(h, pk.n) == 1 and gmpy2.jacobi(-h % pk.n, pk.n) == 1  # h = -x^2: -h is a square
    for rn, alpha in zip(_fill_with(P.NoisePool(pk, sk), alphas), alphas):
        r = pow(h, alpha, pk.n)
        assert rn == P.obfuscator(pk, r)  # (h^α)^n mod n^2
        assert pow(rn, lam, pk.nsquare) == 1  # an n-th residue mod n^2
        assert P.encrypt_raw(pk, m, rn) == phe.PaillierPublicKey(pk.n).raw_encrypt(m, r_value=r)


def test_tables_are_built_once_per_key_and_base_across_fills_and_rounds(keypair):
    pk, sk = keypair
    P._djn_tables.cache_clear()
    for _ in range(3):  # three rounds: a fresh pool each, two fills each
        pool = P.NoisePool(pk, sk)
        pool.fill(3)
        pool.fill(2)
    info = P._djn_tables.cache_info()
    assert info.misses == 1 and info.hits == 5
    P.NoisePool(pk).fill(1)  # without the factors: tables mod n^2, built once more
    assert P._djn_tables.cache_info().misses == 2


def test_pool_base_is_fixed_per_key_and_differs_across_keys(keypair):
    pk, _ = keypair
    other, _ = P.generate_keypair(KEY_BITS)
    assert P.NoisePool(pk)._h == P.NoisePool(pk)._h == P.djn_base(pk.n)
    assert P.djn_base(other.n) != P.djn_base(pk.n)


def test_djn_fill_across_two_worker_processes(keypair, lam):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk)
    count = 2 * P.PARALLEL_MIN_ITEMS  # enough for two processes
    pool.fill(count, workers=2)
    pool.fill(count, workers=2)  # the workers reuse the tables they built
    items = [pool.take() for _ in range(2 * count)]
    assert len(set(items)) == len(items)
    assert all(pow(rn, lam, pk.nsquare) == 1 for rn in items)
    assert P.decrypt_raw(sk, P.encrypt_raw(pk, 42, items[0])) == 42


@settings(max_examples=10, deadline=None)
@given(
    messages=st.lists(st.integers(0, 2**20), min_size=P.PARALLEL_MIN_ITEMS, max_size=3 * P.PARALLEL_MIN_ITEMS),
    workers=st.integers(2, 4),
)
def test_threaded_batch_decryption_equals_decrypt_raw(keypair, messages, workers):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk)
    pool.fill(len(messages))
    cts = [P.encrypt_raw(pk, m, pool.take()) for m in messages]
    assert P.decrypt_many(sk, cts, workers=workers) == messages == [P.decrypt_raw(sk, c) for c in cts]


def test_usable_cores_is_the_affinity_set():
    import os

    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert P.usable_cores() == expected >= 1
