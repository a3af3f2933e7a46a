"""Paillier randomness and packing headroom: every ciphertext is obfuscated by a
fresh, single-use r^n (probabilistic encryption), and a slot holds the sum of
n_clients values at the bound without carrying."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError

pytest.importorskip("phe")
gmpy2 = pytest.importorskip("gmpy2")

from secagg import paillier as P  # noqa: E402

KEY_BITS = 256  # insecure, fast


@pytest.fixture(scope="module")
def keypair():
    return P.generate_keypair(KEY_BITS)


def _encrypt(keypair, plan, values):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk)
    pool.fill(plan.n_ciphertexts(values.size))
    return P.encrypt_packed(pk, plan, values, pool)


def test_encrypting_the_same_vector_twice_gives_distinct_ciphertexts(keypair):
    plan = P.PackingPlan.for_bits(3, 8, KEY_BITS)
    values = np.zeros(4 * plan.slots, dtype=np.int64)  # four identical plaintext blocks
    first, second = _encrypt(keypair, plan, values), _encrypt(keypair, plan, values)
    assert len(first) == 4
    assert len(set(first) | set(second)) == 8, "equal plaintexts gave equal ciphertexts (deterministic encryption)"


def test_a_ciphertext_is_not_the_bare_plaintext_encoding(keypair):
    # With r = 1, c = 1 + m n: anyone recovers m = (c - 1) / n. A fresh r makes c mod n = r^n mod n,
    # which is 1 only with negligible probability.
    pk, sk = keypair
    plan = P.PackingPlan.for_bits(3, 8, KEY_BITS)
    values = np.arange(-(plan.slots // 2), plan.slots - plan.slots // 2, dtype=np.int64) % 100
    for c in _encrypt(keypair, plan, values):
        assert c % pk.n != 1, "the ciphertext opens without the secret key"
    assert np.array_equal(P.decrypt_packed(sk, plan, _encrypt(keypair, plan, values), values.size, 1), values)


def test_each_ciphertext_takes_one_fresh_pool_element(keypair):
    pk, sk = keypair
    pool = P.NoisePool(pk, sk)
    pool.fill(6)
    plan = P.PackingPlan.for_bits(2, 8, KEY_BITS)
    values = np.zeros(3 * plan.slots, dtype=np.int64)
    cts = P.encrypt_packed(pk, plan, values, pool)
    assert len(pool) == 3, "encrypt_packed did not consume one pool element per ciphertext"
    rest = [pool.take() for _ in range(3)]
    assert len(pool) == 0 and len(set(rest)) == 3
    # no element obfuscates two ciphertexts: c / (1 + m n) = r^n must differ across them
    obfuscators = {int(c * gmpy2.invert(1 + m * pk.n, pk.nsquare) % pk.nsquare)
                   for c, m in zip(cts, plan.pack(values))}
    assert len(obfuscators) == 3 and not obfuscators & set(rest)
    with pytest.raises(ConfigError):
        pool.take()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 50), bound=st.integers(1, 2**20), sign=st.sampled_from([1, -1]))
def test_a_slot_holds_the_sum_of_n_clients_at_the_bound(n, bound, sign):
    plan = P.PackingPlan(n_clients=n, bound=bound, key_bits=KEY_BITS)
    assert 2 * bound * n < 2**plan.slot_bits, "a slot cannot hold 2 * bound * n_clients"
    length = 2 * plan.slots + 1
    values = np.full(length, sign * bound, dtype=np.int64)
    values[1::3] = -sign * bound  # neighbouring slots at the other extreme
    # Paillier adds plaintexts as integers below n: sum the packed integers directly.
    total = [sum(col) for col in zip(*[plan.pack(values) for _ in range(n)])]
    assert all(m < 2**(KEY_BITS - 1) for m in total)
    assert np.array_equal(plan.unpack(total, length, n), n * values)


def test_encrypted_extreme_sum_decrypts_exactly(keypair):
    pk, sk = keypair
    n = 5
    plan = P.PackingPlan.for_bits(n, 12, KEY_BITS, max_weight=3)
    values = np.full(plan.slots + 2, plan.bound, dtype=np.int64)
    total = P.sum_ciphertexts(pk, [_encrypt(keypair, plan, values) for _ in range(n)])
    assert np.array_equal(P.decrypt_packed(sk, plan, total, values.size, n), n * values)
