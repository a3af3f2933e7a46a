"""Batched partial-decryption proofs of secagg.paillier_threshold: combine equals
single-key decryption, any wrong value fails its party's proof (cancelling pairs
included), combine names the party and the index, and honest parties are never
blamed. Keys are small (insecure) except in the slow 2048-bit test."""

from __future__ import annotations

import dataclasses
import inspect
import math
import secrets

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from secagg.errors import IntegrityError

pytest.importorskip("gmpy2")

from secagg import paillier as P  # noqa: E402
from secagg import paillier_threshold as T  # noqa: E402

PRIME_BITS = 128  # 256-bit n: insecure, fast
T_OF_L = (3, 6)


def _key(p: int, q: int, threshold: int, parties: int):
    """A dealt key whose factors the test keeps, for single-key decryption."""
    n, m = p * q, ((p - 1) // 2) * ((q - 1) // 2)
    coeffs = [secrets.randbelow(n * m) for _ in range(threshold - 1)]
    pub, shares = T._deal_with(p, q, parties, coeffs, secrets.randbelow(n - 2) + 2)
    return pub, shares, P.PaillierSecretKey(pub.paillier, p, q)


@pytest.fixture(scope="module")
def keyed():
    p = T.generate_safe_prime(PRIME_BITS)
    q = T.generate_safe_prime(PRIME_BITS)
    while q == p:
        q = T.generate_safe_prime(PRIME_BITS)
    return (p, q, *_key(p, q, *T_OF_L))


def _encrypt(pub, plaintexts):
    return [
        P.encrypt_raw(pub.paillier, m, P.obfuscator(pub.paillier, secrets.randbelow(pub.n - 1) + 1)) for m in plaintexts
    ]


def _unit(pub, draw_int):
    """A uniform unit of Z*_{n²} from a drawn integer."""
    x = draw_int % pub.nsquare
    return x if math.gcd(x, pub.n) == 1 else 2


def _reprove(pub, share, cts, values):
    """A malicious party's proof for ``values`` of its choice, built exactly as
    the honest prover builds it (same composites, nonce size and challenge)."""
    import gmpy2

    n2 = pub.nsquare
    big, small = T._composites(pub, share.index, cts, values)
    r = secrets.randbits(3 * pub.n.bit_length() + T.CHALLENGE_BITS + T.SLACK_BITS)
    a, b = int(gmpy2.powmod(big, r, n2)), int(gmpy2.powmod(pub.v, r, n2))
    e = T._challenge(pub, share.index, big, small, a, b)
    return T.PartialDecryption(share.index, tuple(values), e, r + e * pub.delta * share.share, a, b)


def _order_two_elements(p: int, q: int) -> list[int]:
    """The three square roots of 1 mod n² other than 1 (CRT over p², q²)."""
    p2, q2 = p * p, q * q
    n2 = p2 * q2
    inv = pow(p2, -1, q2)

    def crt(a: int, b: int) -> int:
        return (a + p2 * ((b - a) * inv % q2)) % n2

    return [crt(p2 - 1, 1), crt(1, q2 - 1), n2 - 1]


# A strategy for the corrupt party: which entries of its vector it changes, and how.
TAMPERS = st.sampled_from(["one", "cancelling_pair", "one_reproved", "cancelling_pair_reproved"])


def _tamper(pub, share, cts, honest, kind, j1, j2, delta):
    """``honest`` with value j1 multiplied by δ and, for a pair, value j2 by δ⁻¹
    (so the plain product Π c_ij — a check without random coefficients — is
    unchanged); ``_reproved`` kinds come with a fresh proof for the new values."""
    n2 = pub.nsquare
    vals = list(honest.values)
    vals[j1] = vals[j1] * delta % n2
    if kind.startswith("cancelling_pair"):
        vals[j2] = vals[j2] * pow(delta, -1, n2) % n2
    if kind.endswith("reproved"):
        return _reprove(pub, share, cts, vals)
    return dataclasses.replace(honest, values=tuple(vals))


@settings(max_examples=10)
@given(data=st.data(), length=st.integers(1, 6))
def test_threshold_combine_equals_single_key_decryption(keyed, data, length):
    p, q, pub, shares, sk = keyed
    plaintexts = data.draw(st.lists(st.integers(0, pub.n - 1), min_size=length, max_size=length))
    cts = _encrypt(pub, plaintexts)
    # any unit of Z*_{n²} is a ciphertext of something: the two decryptions agree on it too
    cts.append(_unit(pub, data.draw(st.integers(2, 2**600))))
    who = data.draw(st.permutations(range(pub.parties)))[: pub.threshold]
    partials = [T.partial_decrypt(pub, shares[i], cts) for i in who]
    assert T.combine(pub, cts, partials) == [P.decrypt_raw(sk, c) for c in cts]
    assert T.combine(pub, cts, partials)[:length] == plaintexts


@settings(max_examples=12)
@given(data=st.data(), length=st.integers(2, 6), kind=TAMPERS)
def test_batched_proof_rejects_any_wrong_value_even_a_cancelling_pair(keyed, data, length, kind):
    p, q, pub, shares, sk = keyed
    cts = _encrypt(pub, data.draw(st.lists(st.integers(0, 2**64), min_size=length, max_size=length)))
    victim = shares[data.draw(st.integers(0, pub.parties - 1))]
    j1, j2 = data.draw(st.permutations(range(length)))[:2]
    delta = _unit(pub, data.draw(st.integers(2, 2**600)))
    assume(delta * delta % pub.nsquare != 1)
    honest = T.partial_decrypt(pub, victim, cts)
    bad = _tamper(pub, victim, cts, honest, kind, j1, j2, delta)
    if kind.startswith("cancelling_pair"):  # a check without random coefficients would pass it
        assert math.prod(bad.values) % pub.nsquare == math.prod(honest.values) % pub.nsquare
    with pytest.raises(IntegrityError) as err:
        T.verify_partial(pub, cts, bad)
    assert err.value.party == victim.index


@settings(max_examples=12)
@given(data=st.data(), length=st.integers(2, 6), kind=TAMPERS)
def test_combine_names_the_party_and_index_of_a_tampered_value(keyed, data, length, kind):
    p, q, pub, shares, sk = keyed
    cts = _encrypt(pub, [secrets.randbelow(pub.n) for _ in range(length)])
    honest = [T.partial_decrypt(pub, s, cts) for s in shares]
    # the parties handed to combine, with the victim among the t that it uses
    given_idx = sorted(data.draw(st.sets(st.integers(1, pub.parties), min_size=pub.threshold)))
    victim = data.draw(st.sampled_from(given_idx[: pub.threshold]))
    j1, j2 = data.draw(st.permutations(range(length)))[:2]
    delta = _unit(pub, data.draw(st.integers(2, 2**600)))
    assume(delta * delta % pub.nsquare != 1)
    bad = _tamper(pub, shares[victim - 1], cts, honest[victim - 1], kind, j1, j2, delta)
    partials = [bad if i == victim else honest[i - 1] for i in given_idx]
    with pytest.raises(IntegrityError) as err:
        T.combine(pub, cts, data.draw(st.permutations(partials)))
    assert err.value.party == victim
    if len(given_idx) > pub.threshold:  # t others verify: the wrong entries are named
        expected = sorted({j1, j2}) if kind.startswith("cancelling_pair") else [j1]
        assert list(err.value.indices) == expected and err.value.index == expected[0]
        assert err.value.count == len(expected)
    else:
        assert "index" not in err.value.fields


@settings(max_examples=12)
@given(data=st.data(), length=st.integers(1, 5))
def test_an_honest_party_is_never_blamed(keyed, data, length):
    """Any set of corrupt parties, each changing values (with or without a fresh
    proof) or its proof fields: combine either decrypts correctly or blames a
    corrupt party, naming only entries that party changed."""
    p, q, pub, shares, sk = keyed
    plaintexts = [secrets.randbelow(pub.n) for _ in range(length)]
    cts = _encrypt(pub, plaintexts)
    corrupt = data.draw(st.sets(st.integers(1, pub.parties), min_size=1, max_size=pub.parties - 1))
    partials, changed = [], {}
    for s in shares:
        part = T.partial_decrypt(pub, s, cts)
        if s.index in corrupt:
            how = data.draw(st.sampled_from(["values", "values_reproved", "response", "commitment_b"]))
            if how.startswith("values"):
                js = data.draw(st.sets(st.integers(0, length - 1), min_size=1))
                vals = list(part.values)
                for j in js:
                    vals[j] = vals[j] * _unit(pub, data.draw(st.integers(2, 2**600))) % pub.nsquare
                part = (
                    _reprove(pub, s, cts, vals)
                    if how == "values_reproved"
                    else dataclasses.replace(part, values=tuple(vals))
                )
                changed[s.index] = js
            else:
                part = dataclasses.replace(part, **{how: getattr(part, how) + 1})
                changed[s.index] = set()
        partials.append(part)
    for part in partials:
        if part.index not in corrupt:
            T.verify_partial(pub, cts, part)
    try:
        got = T.combine(pub, cts, data.draw(st.permutations(partials)))
    except IntegrityError as exc:
        assert exc.party in corrupt
        assert set(exc.fields.get("indices", ())) <= changed[exc.party]
    else:
        assert got == plaintexts


def test_order_two_changes_pass_the_proof_and_cannot_change_a_plaintext(keyed):
    """A party can multiply values by elements of order 2 and still prove them
    (the proof squares every value), but combine raises every value to an even
    power, so the change is harmless."""
    p, q, pub, shares, sk = keyed
    plaintexts = [secrets.randbelow(pub.n) for _ in range(4)]
    cts = _encrypt(pub, plaintexts)
    partials = [T.partial_decrypt(pub, s, cts) for s in shares]
    roots = _order_two_elements(p, q)
    assert all(x != 1 and x * x % pub.nsquare == 1 for x in roots)
    vals = [v * roots[j % 3] % pub.nsquare for j, v in enumerate(partials[0].values)]
    changed = _reprove(pub, shares[0], cts, vals)
    T.verify_partial(pub, cts, changed)
    assert T.combine(pub, cts, [changed, *partials[1:]]) == plaintexts
    assert T.bad_value_indices(pub, cts, changed, partials[1:]) == []


def test_bad_value_indices_finds_exactly_the_changed_entries(keyed):
    p, q, pub, shares, sk = keyed
    cts = _encrypt(pub, range(9))
    partials = [T.partial_decrypt(pub, s, cts) for s in shares]
    vals = list(partials[4].values)
    for j in (0, 5, 8):
        vals[j] = vals[j] * 4 % pub.nsquare
    suspect = dataclasses.replace(partials[4], values=tuple(vals))
    for reference in (partials[:3], partials[1:4], [partials[5], partials[0], partials[2]]):
        assert T.bad_value_indices(pub, cts, suspect, reference) == [0, 5, 8]
        assert T.bad_value_indices(pub, cts, partials[4], reference) == []


@settings(max_examples=25)
@given(
    data=st.data(),
    count=st.sampled_from([0, 1, 2, 3, 17, 70]),
    bits=st.sampled_from([1, 7, 64, 128, 200]),
)
def test_multi_exponentiation_equals_a_product_of_powmods(keyed, data, count, bits):
    p, q, pub, shares, sk = keyed
    n2 = pub.nsquare
    bases = [data.draw(st.integers(0, n2 - 1)) for _ in range(count)]
    exps = [data.draw(st.integers(0, 2**bits - 1)) for _ in range(count)]
    want = 1
    for b, e in zip(bases, exps):
        want = want * pow(b, e, n2) % n2
    assert T._multi_pow(bases, exps, n2) == want


def test_workers_split_values_and_composites_without_changing_the_proof(keyed, monkeypatch):
    p, q, pub, shares, sk = keyed
    monkeypatch.setattr(T, "_MULTI_PARALLEL_MIN_ITEMS", 8)  # composites split too
    plaintexts = [secrets.randbelow(pub.n) for _ in range(P.PARALLEL_MIN_ITEMS + 3)]
    cts = _encrypt(pub, plaintexts)
    r = secrets.randbits(3 * pub.n.bit_length() + T.CHALLENGE_BITS + T.SLACK_BITS)
    one = T._partial_decrypt_with(pub, shares[1], cts, r, workers=1)
    two = T._partial_decrypt_with(pub, shares[1], cts, r, workers=2)
    assert one == two
    T.verify_partial(pub, cts, two, workers=2)
    others = [T.partial_decrypt(pub, s, cts, workers=2) for s in shares[2:4]]
    assert T.combine(pub, cts, [two, *others], workers=2) == plaintexts


def test_workers_default_to_the_usable_cores(monkeypatch):
    monkeypatch.setattr(T, "usable_cores", lambda: 3)  # secagg.paillier's affinity-mask count
    assert T._workers(None) == 3 and T._workers(1) == 1
    for fn in (T.partial_decrypt, T.verify_partial, T.combine):
        assert inspect.signature(fn).parameters["workers"].default is None


@pytest.mark.slow
def test_2048_bit_partials_combine_and_attribute():
    """2048-bit n from random (not safe) primes: the arithmetic of partial
    decryption, proof, combination and attribution at full size."""
    import gmpy2

    def prime() -> int:
        while True:
            x = int(gmpy2.next_prime(secrets.randbits(1024) | (1 << 1023)))
            if x.bit_length() == 1024:
                return x

    p, q = prime(), prime()
    pub, shares, sk = _key(p, q, 3, 5)
    assert pub.n.bit_length() in (2047, 2048)
    plaintexts = [secrets.randbelow(pub.n) for _ in range(4)]
    cts = _encrypt(pub, plaintexts)
    partials = [T.partial_decrypt(pub, s, cts) for s in shares]
    assert T.combine(pub, cts, partials[1:4]) == plaintexts == [P.decrypt_raw(sk, c) for c in cts]
    bad = _tamper(pub, shares[0], cts, partials[0], "cancelling_pair_reproved", 1, 3, 5)
    with pytest.raises(IntegrityError) as err:
        T.combine(pub, cts, [bad, *partials[1:]])
    assert err.value.party == 1 and list(err.value.indices) == [1, 3]
