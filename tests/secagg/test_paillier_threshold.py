"""Tests for secagg.paillier_threshold: t-of-l decryption, proofs that attribute
bad partial decryptions, and the dealer's checks."""

from __future__ import annotations

import dataclasses
import itertools
import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError, IntegrityError, ThresholdError

pytest.importorskip("gmpy2")
pytest.importorskip("phe")

from secagg import paillier as P  # noqa: E402
from secagg import paillier_threshold as T  # noqa: E402

TEST_KEY_BITS = 256  # insecure, generated once per session; 2048 bits in bench/ and slow tests only
T_OF_L = (3, 5)


@pytest.fixture(scope="session")
def dealt():
    return T.deal(*T_OF_L, bits=TEST_KEY_BITS)


def _encrypt(pub, plaintexts):
    pk = pub.paillier
    pool = P.NoisePool(pk)  # clients do not know the factors
    pool.fill(len(plaintexts))
    return [P.encrypt_raw(pk, m, pool.take()) for m in plaintexts]


def test_every_t_subset_decrypts(dealt):
    pub, shares = dealt
    ms = [0, 1, pub.n - 1, secrets.randbelow(pub.n)]
    cts = _encrypt(pub, ms)
    partials = [T.partial_decrypt(pub, s, cts) for s in shares]
    for subset in itertools.combinations(partials, pub.threshold):
        assert T.combine(pub, cts, subset) == ms
    # more than t also works (the first t distinct are used)
    assert T.combine(pub, cts, partials) == ms


def test_partial_decryption_with_two_workers(dealt):
    pub, shares = dealt
    ms = [secrets.randbelow(pub.n) for _ in range(P.PARALLEL_MIN_ITEMS)]
    cts = _encrypt(pub, ms)
    parts = [T.partial_decrypt(pub, s, cts, workers=2) for s in shares[: pub.threshold]]
    assert T.combine(pub, cts, parts) == ms


def test_t_minus_one_cannot_decrypt(dealt):
    pub, shares = dealt
    cts = _encrypt(pub, [42])
    partials = [T.partial_decrypt(pub, s, cts) for s in shares[: pub.threshold - 1]]
    with pytest.raises(ThresholdError) as err:
        T.combine(pub, cts, partials + partials)  # duplicates do not count twice
    assert err.value.needed == pub.threshold and err.value.got == pub.threshold - 1


@pytest.mark.parametrize("field", ["values", "response", "commitment_a", "challenge"])
def test_corrupted_partial_fails_its_proof_and_is_attributed(dealt, field):
    pub, shares = dealt
    cts = _encrypt(pub, [7, 8, 9])
    good = [T.partial_decrypt(pub, s, cts) for s in shares[: pub.threshold]]
    victim = good[1]
    if field == "values":
        vals = list(victim.values)
        vals[2] = vals[2] * 4 % pub.nsquare  # c_i multiplied by a square: still in range
        bad = dataclasses.replace(victim, values=tuple(vals))
    else:
        bad = dataclasses.replace(victim, **{field: getattr(victim, field) + 1})
    with pytest.raises(IntegrityError) as err:
        T.verify_partial(pub, cts, bad)
    assert err.value.party == victim.index
    with pytest.raises(IntegrityError) as err:
        T.combine(pub, cts, [good[0], bad, good[2]])
    assert err.value.party == victim.index


def test_partial_replayed_under_another_index_is_rejected(dealt):
    pub, shares = dealt
    cts = _encrypt(pub, [5])
    part = T.partial_decrypt(pub, shares[0], cts)
    with pytest.raises(IntegrityError) as err:
        T.verify_partial(pub, cts, dataclasses.replace(part, index=2))
    assert err.value.party == 2
    with pytest.raises(IntegrityError):  # proof bound to the ciphertexts too
        T.verify_partial(pub, _encrypt(pub, [5]), part)


@settings(max_examples=8)
@given(data=st.data(), n=st.integers(1, 6), bits=st.integers(2, 20), length=st.integers(1, 30))
def test_packed_threshold_sum_equals_plaintext_sum(dealt, data, n, bits, length):
    pub, shares = dealt
    plan = P.PackingPlan.for_bits(n, bits, pub.n.bit_length())
    vectors = [np.array(data.draw(st.lists(st.integers(-plan.bound, plan.bound),
                                           min_size=length, max_size=length)), dtype=np.int64)
               for _ in range(n)]
    vectors[0][:] = plan.bound  # worst case at the clip bound in every example
    pool = P.NoisePool(pub.paillier)
    pool.fill(n * plan.n_ciphertexts(length))
    total = P.sum_ciphertexts(pub.paillier, [P.encrypt_packed(pub.paillier, plan, v, pool)
                                             for v in vectors])
    who = data.draw(st.permutations(range(pub.parties)))[: pub.threshold]
    partials = [T.partial_decrypt(pub, shares[i], total) for i in who]
    got = plan.unpack(T.combine(pub, total, partials), length, n)
    assert np.array_equal(got, np.sum(vectors, axis=0))


def test_non_unit_aggregate_is_refused_without_blaming_a_party(dealt):
    """A ciphertext c = n has no valid partial decryption: it is refused
    before any share is used, and no party index is named."""
    pub, shares = dealt
    cts = [*_encrypt(pub, [1, 2]), pub.n]
    with pytest.raises(IntegrityError) as err:
        T.partial_decrypt(pub, shares[0], cts)
    assert err.value.index == 2 and "party" not in err.value.fields
    good = T.partial_decrypt(pub, shares[0], cts[:2])
    with pytest.raises(IntegrityError) as err:
        T.verify_partial(pub, [cts[0], pub.n], good)
    assert "party" not in err.value.fields


def test_dealer_rejects_bad_parameters():
    with pytest.raises(ThresholdError):
        T.deal(0, 3, bits=128)
    with pytest.raises(ThresholdError):
        T.deal(4, 3, bits=128)
    with pytest.raises(ConfigError):
        T.deal(2, 3, bits=128, primes=(1009 * 2 + 1, 23))  # 2019 is not prime


def test_safe_prime_generator_and_store(tmp_path):
    import gmpy2

    p = T.generate_safe_prime(64)
    assert p.bit_length() == 64 and gmpy2.is_prime(p) and gmpy2.is_prime((p - 1) // 2)
    store = T.SafePrimeStore(tmp_path / "primes.json")
    seen = []
    store.fill(64, 2, progress=seen.append)
    assert store.available(64) == 2
    assert (tmp_path / "primes.json").stat().st_mode & 0o077 == 0
    pair = store.take_pair(64)
    assert store.available(64) == 0
    pub, shares = T.deal(2, 3, bits=128, primes=pair)
    cts = _encrypt(pub, [11])
    assert T.combine(pub, cts, [T.partial_decrypt(pub, s, cts) for s in shares[1:]]) == [11]
    with pytest.raises(ConfigError):
        store.take_pair(64)


def test_known_answer_tiny_safe_primes():
    """Every intermediate, including the Fiat–Shamir transcript, matches an
    independent plain-Python reference (tests/vectors/paillier_threshold_kat.json)."""
    from tests.vectors import load

    kat = load("paillier_threshold_kat")
    pub, shares = T._deal_with(kat["p"], kat["q"], kat["parties"], kat["coefficients"], kat["r_v"])
    assert pub.n == kat["n"] and pub.v == kat["v"] and pub.threshold == kat["threshold"]
    assert [s.share for s in shares] == kat["shares"]
    assert list(pub.verification_keys) == kat["verification_keys"]
    c = P.encrypt_raw(pub.paillier, kat["plaintext"], P.obfuscator(pub.paillier, kat["r_enc"]))
    assert c == kat["ciphertext"]
    parts = []
    for ref in kat["partials"]:
        part = T._partial_decrypt_with(pub, shares[ref["index"] - 1], [c], ref["nonce"])
        assert (part.values[0], part.challenge, part.response, part.commitment_a, part.commitment_b) == (
            ref["value"], ref["challenge"], ref["response"], ref["commitment_a"], ref["commitment_b"])
        T.verify_partial(pub, [c], part)
        parts.append(part)
    assert T.combine(pub, [c], parts) == [kat["combined"]] == [kat["plaintext"]]


@pytest.mark.slow
def test_1024_bit_threshold_key_decrypts_packed_sum():
    pub, shares = T.deal(3, 5, bits=1024)
    assert pub.n.bit_length() == 1024
    plan = P.PackingPlan.for_bits(5, 16, 1024)
    pool = P.NoisePool(pub.paillier, method="djn")
    pool.fill(10)
    vectors = [np.full(2 * plan.slots, (-1) ** k * plan.bound, dtype=np.int64) for k in range(5)]
    total = P.sum_ciphertexts(pub.paillier, [P.encrypt_packed(pub.paillier, plan, v, pool) for v in vectors])
    parts = [T.partial_decrypt(pub, s, total) for s in shares[2:]]
    got = plan.unpack(T.combine(pub, total, parts), vectors[0].size, 5)
    assert np.array_equal(got, np.sum(vectors, axis=0))
