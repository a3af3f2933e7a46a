"""Threshold Paillier with a trusted dealer (Damgård–Jurik 2001, s = 1; Shoup 2000).

t-of-l decryption: any ``t`` of the ``l`` key-share holders decrypt together;
``t − 1`` learn nothing about the plaintext. Steps (DJ01 §4 with s = 1):

* **Key generation** (dealer): safe primes ``p = 2p'+1``, ``q = 2q'+1``;
  ``n = pq``, ``m = p'q'``; ``d ≡ 0 (mod m)``, ``d ≡ 1 (mod n)``. The dealer
  shares ``d`` with a random polynomial ``f`` of degree ``t − 1`` over
  ``Z_{n·m}``: ``s_i = f(i) mod n·m``. Verification keys: ``v`` a random square
  mod n², ``v_i = v^{Δ·s_i}`` with ``Δ = l!``. The dealer then erases
  ``p, q, d, f``: it is trusted **during set-up only**.
* **Partial decryption** by party i: ``c_ij = c_j^{2Δ·s_i} mod n²`` for each
  ciphertext c_j, with one zero-knowledge proof for the whole vector.
* **Combination** for a set S of t parties:
  ``c' = Π c_i^{2λ_i} = c^{4Δ²·d}`` with ``λ_i = Δ·Π_{j∈S∖i} j/(j − i)`` (an
  integer because Δ = l!), so ``m = L(c')·(4Δ²)⁻¹ mod n``.

**Batched proof.** Party i shows ``c_ij² = (c_j⁴)^{Δ s_i}`` for every j at once,
by one Chaum–Pedersen proof of equal discrete logs about a random linear
combination of the k equations (the composite technique of RFC 9497 §2.2.1):
``C = Π (c_j⁴)^{ρ_j}``, ``C_i = Π (c_ij²)^{ρ_j}``, ``log_C C_i = log_v v_i``.
The coefficients ``ρ_j`` (``RHO_BITS`` = 128 bits) are Fiat–Shamir outputs: the
first 16 bytes of ``SHA-256(seed || j as 8 bytes BE)`` with
``seed = SHA-256(RHO_DOMAIN || n || i || k || c_1..c_k || c_i1..c_ik)``, each
integer as a 4-byte big-endian length then its big-endian bytes. Both
composites are multi-exponentiations with 128-bit exponents (bucket method),
under 1% of one ``c^{2Δ s_i}`` per ciphertext; the prover gets
``C_i = C^{Δ s_i}`` with one exponentiation. The prover picks ``r`` of
``3·|n| + 256 + 128`` bits (DJ01: (s+2)k + t, plus statistical slack), sends
``a = C^r``, ``b = v^r`` and ``z = r + e·Δ·s_i`` where ``e`` = SHA-256 of::

    DLEQ_DOMAIN || for x in (n, i, v, v_i, C, C_i, a, b): len(x) (4 bytes BE) || x (BE)

The verifier recomputes ``C`` and ``C_i`` and checks ``C^z = a·C_i^e`` and
``v^z = b·v_i^e`` mod n².

**Soundness.**

1. *Batching* (Bellare–Garay–Rabin 1998, small-exponents test). Write
   ``δ_j = c_ij²·c_j^{−4Δ s_i}``; the composite equation holds exactly when
   ``Π δ_j^{ρ_j} = 1``. Every δ_j lies in QR_{n²}, cyclic of order
   ``n·p'·q'``, so every δ_j ≠ 1 has order ≥ min(p', q') > 2^128 (keys of 260
   bits and more). Fix all coefficients but the ρ_j of one δ_j ≠ 1: at most one
   ρ_j in [0, 2^128) makes the product 1. A vector with any number of wrong
   entries, including pairs chosen to cancel (δ and δ⁻¹ pass a plain product
   check), passes with probability ≤ 2⁻¹²⁸ per hash evaluation; a prover who
   re-hashes needs about 2¹²⁸ hash and multi-exponentiation evaluations, above
   the ~112-bit strength of a 2048-bit n.
2. *Small-order elements.* Z*_{n²} has four square roots of 1 (±1 and two
   more), and a verifier without the factors cannot test membership in QR_{n²}.
   Hence the equations are checked on squares: a party can multiply any c_ij by
   an element of order 2 undetected, and :func:`combine` raises every c_ij to
   the even power 2λ_i, so such a change never changes a plaintext. With safe
   primes every other element has a square of order ≥ min(p', q'), caught as
   in 1. The factor 2 in ``c^{2Δ s_i}`` makes honest values squares; Δ makes
   the Lagrange coefficients integers.
3. *Equality of discrete logs in a group of unknown order* (Shoup 2000;
   DJ01, threshold decryption). A passing ``a = C^z·C_i^{−e}`` is a square; two accepting answers
   to challenges e ≠ e' give ``C^{z−z'} = C_i^{e−e'}`` and ``v^{z−z'} =
   v_i^{e−e'}``, and |e − e'| < 2²⁵⁶ is invertible modulo the order of QR_{n²}
   (no prime factor below 2^{|n|/2 − 1}), so ``log_C C_i = log_v v_i = Δ s_i``
   when v generates QR_{n²} (a random square does, except with probability
   about 2^{3−|n|/2}).

The test keys (256 bits) are below these sizes; the checks still bite there.

**Attribution.** One proof covers a party's whole vector: a failing proof
raises :class:`IntegrityError` naming ``party``; it carries no per-ciphertext
evidence. :func:`combine` then finds the wrong entries when t other partials
verify: interpolation in the exponent gives ``c_ij^{2Δ} = Π_{k∈S} c_kj^{2λ^S_k(i)}``
with ``λ^S_k(i) = Δ·Π_{j∈S∖k} (i − j)/(k − j)`` (integers), about t short
exponentiations per ciphertext (:func:`bad_value_indices`). It names exactly
the indices whose change would alter a plaintext, and only a party whose own
proof failed.

**Parallelism.** ``workers`` (default: the usable cores) threads compute the
values in shared-nothing batches (gmpy2's list powmod releases the GIL). The
composites, Python-level multiplications, run from ``_MULTI_PARALLEL_MIN_ITEMS``
ciphertexts on in the process pool that :mod:`secagg.paillier` keeps for the
life of the process; :func:`secagg.paillier.warm_up` starts it ahead.

Ciphertexts are ordinary Paillier ciphertexts for ``n`` with g = n + 1, so
:mod:`secagg.paillier` encrypts and packs for this key (without the factors:
obfuscators cost a full ``rⁿ mod n²`` each).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from secagg.errors import ConfigError, IntegrityError, ThresholdError, require_extra
from secagg.paillier import (
    MIN_KEY_BITS,
    PARALLEL_MIN_ITEMS,
    PaillierPublicKey,
    check_units,
    check_workers,
    map_chunks,
    usable_cores,
)

__all__ = [
    "ThresholdPublicKey",
    "KeyShare",
    "PartialDecryption",
    "generate_safe_prime",
    "SafePrimeStore",
    "deal",
    "partial_decrypt",
    "verify_partial",
    "bad_value_indices",
    "combine",
]

DLEQ_DOMAIN = b"secagg/paillier-threshold/v1/dleq"
RHO_DOMAIN = b"secagg/paillier-threshold/v1/rho"
#: Fiat–Shamir challenge length (SHA-256 output).
CHALLENGE_BITS = 256
#: Batch coefficients ρ_j: a wrong vector passes the composite with prob ≤ 2^-128
#: per hash evaluation (module docstring, soundness 1).
RHO_BITS = 128
#: Extra bits in the prover's nonce so z = r + e·Δ·s_i hides Δ·s_i statistically.
SLACK_BITS = 128
#: Value batches per worker thread: smaller batches even out the load on a shared machine.
_CHUNKS_PER_WORKER = 4
#: A composite over fewer bases (~0.2 ms each) runs in-process: a pool would cost more.
_MULTI_PARALLEL_MIN_ITEMS = 1024
#: Wrong indices listed in an error (all are counted).
_MAX_NAMED_INDICES = 16


def _gmpy2():
    return require_extra("gmpy2", "he")


@dataclass(frozen=True)
class ThresholdPublicKey:
    """Public data of a dealt key: ``n``, ``threshold`` t, ``parties`` l,
    verification base ``v`` and keys ``verification_keys[i-1] = v^{Δ s_i}``."""

    n: int
    threshold: int
    parties: int
    v: int
    verification_keys: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.parties:
            raise ThresholdError("need 1 <= t <= l", needed=self.threshold, got=self.parties)
        if len(self.verification_keys) != self.parties:
            raise ConfigError("one verification key per party is required")

    @property
    def paillier(self) -> PaillierPublicKey:
        return PaillierPublicKey(self.n)

    @property
    def delta(self) -> int:
        return math.factorial(self.parties)

    @property
    def nsquare(self) -> int:
        return self.n * self.n


@dataclass(frozen=True)
class KeyShare:
    """Party ``index`` (1..l)'s secret share ``s_i`` of d, modulo n·m."""

    index: int
    share: int

    def __repr__(self) -> str:
        return f"KeyShare(index={self.index})"


@dataclass(frozen=True)
class PartialDecryption:
    """Party ``index``'s ``c_i`` for each ciphertext, with one batched proof."""

    index: int
    values: tuple[int, ...]
    challenge: int
    response: int
    commitment_a: int
    commitment_b: int


def generate_safe_prime(bits: int, *, progress: Callable[[int], None] | None = None) -> int:
    """A random safe prime ``p = 2p' + 1`` of exactly ``bits`` bits.

    Slow for 1024 bits (often minutes in Python): run it as a separate,
    offline step. ``progress(candidates_tried)`` is called every 10,000 tries.
    """
    if bits < 16:
        raise ConfigError("safe primes need at least 16 bits", bits=bits)
    gmpy2 = _gmpy2()
    small = 1
    for prime in range(3, 2000, 2):  # primorial of odd primes < 2000, for a gcd sieve
        if gmpy2.is_prime(prime):
            small *= prime
    tries = 0
    while True:
        tries += 1
        if progress is not None and tries % 10_000 == 0:
            progress(tries)
        # p' ≡ 2 (mod 3) keeps both p' and 2p'+1 clear of 3; top bit set for exact size
        pp = secrets.randbits(bits - 1) | (1 << (bits - 2)) | 1
        p = 2 * pp + 1
        if pp % 3 != 2 or math.gcd(pp * p, small) != 1:
            continue
        if gmpy2.is_prime(pp, 2) and gmpy2.is_prime(p, 2) and gmpy2.is_prime(pp, 30) and gmpy2.is_prime(p, 30):
            return int(p)


class SafePrimeStore:
    """Offline cache of safe primes, so that dealing a 2048-bit key takes seconds.

    ``fill(bits, count)`` generates primes (minutes each at 1024 bits; progress
    goes to ``progress``) and appends them to a JSON file created with mode
    0600; ``take_pair(bits)`` removes two primes and rewrites the file, so a
    prime is used for one key only. The stored primes *are* future secret keys:
    keep the file on the dealer's machine only; taking erases them from it
    (the file system may keep old blocks: use an encrypted disk).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, list[int]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): [int(x) for x in v] for k, v in data.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError("safe-prime store is not valid JSON", path=str(self.path)) from exc

    def _save(self, data: dict[str, list[int]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.path)

    def available(self, bits: int) -> int:
        return len(self._load().get(str(bits), []))

    def fill(self, bits: int, count: int, *, progress: Callable[[int], None] | None = None) -> None:
        for _ in range(count):
            prime = generate_safe_prime(bits, progress=progress)
            data = self._load()
            data.setdefault(str(bits), []).append(prime)
            self._save(data)

    def take_pair(self, bits: int) -> tuple[int, int]:
        data = self._load()
        pool = data.get(str(bits), [])
        if len(pool) < 2:
            raise ConfigError("not enough cached safe primes; run fill() first", bits=bits, needed=2, got=len(pool))
        p, q = pool.pop(), pool.pop()
        self._save(data)
        return p, q


def deal(
    threshold: int,
    parties: int,
    *,
    bits: int = 2048,
    primes: tuple[int, int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    """Dealer: a fresh key and ``parties`` shares, any ``threshold`` of which decrypt.

    ``primes`` lets a caller pass safe primes generated offline (each pair must
    be used for one key only). The dealer's secrets are local variables and
    are dropped on return; the caller must not keep ``primes``.
    Raises ``ThresholdError`` unless 1 ≤ t ≤ l, ``ConfigError`` on bad primes.
    """
    if not isinstance(threshold, int) or not isinstance(parties, int) or not 1 <= threshold <= parties:
        raise ThresholdError("need 1 <= threshold <= parties", needed=threshold, got=parties)
    if bits < MIN_KEY_BITS:
        raise ConfigError(f"bits must be >= {MIN_KEY_BITS}", bits=bits)
    gmpy2 = _gmpy2()
    if primes is None:
        p = generate_safe_prime(bits // 2, progress=progress)
        q = generate_safe_prime(bits // 2, progress=progress)
        # n must have exactly `bits` bits, so packing plans sized for `bits` fit below n
        while q == p or (p * q).bit_length() != bits:
            q = generate_safe_prime(bits // 2, progress=progress)
    else:
        p, q = primes
        for x in (p, q):
            if not (gmpy2.is_prime(x, 30) and gmpy2.is_prime((x - 1) // 2, 30)):
                raise ConfigError("primes must be safe primes")
        if p == q:
            raise ConfigError("primes must differ")
    n, m = p * q, ((p - 1) // 2) * ((q - 1) // 2)
    if math.gcd(n, m) != 1:
        raise ConfigError("gcd(n, m) must be 1")
    coeffs = [secrets.randbelow(n * m) for _ in range(threshold - 1)]
    while True:
        r = secrets.randbelow(n * n)
        if math.gcd(r, n) == 1:
            break
    return _deal_with(p, q, parties, coeffs, r)


def _deal_with(
    p: int, q: int, parties: int, coeffs: Sequence[int], r: int
) -> tuple[ThresholdPublicKey, list[KeyShare]]:
    """Deterministic core of :func:`deal` (known-answer tests): ``coeffs`` are
    f's coefficients of degree 1..t−1, ``v = r² mod n²``."""
    gmpy2 = _gmpy2()
    n, m = p * q, ((p - 1) // 2) * ((q - 1) // 2)
    nm, n2 = n * m, n * n
    d = m * int(gmpy2.invert(m, n))  # d ≡ 0 mod m, d ≡ 1 mod n
    coeffs = [d, *coeffs]
    threshold = len(coeffs)
    shares = []
    for i in range(1, parties + 1):
        acc = 0
        for a in reversed(coeffs):  # Horner
            acc = (acc * i + a) % nm
        shares.append(KeyShare(i, acc))
    delta = math.factorial(parties)
    v = r * r % n2
    vks = tuple(int(gmpy2.powmod(v, delta * s.share, n2)) for s in shares)
    return ThresholdPublicKey(n, threshold, parties, v, vks), shares


def _int_bytes(x: int) -> bytes:
    raw = x.to_bytes((x.bit_length() + 7) // 8 or 1, "big")
    return len(raw).to_bytes(4, "big") + raw


def _rhos(pub: ThresholdPublicKey, index: int, cts: Sequence[int], values: Sequence[int]) -> list[int]:
    h = hashlib.sha256(RHO_DOMAIN)
    for x in (pub.n, index, len(cts), *cts, *values):
        h.update(_int_bytes(x))
    seed = h.digest()
    return [
        int.from_bytes(hashlib.sha256(seed + j.to_bytes(8, "big")).digest()[: RHO_BITS // 8], "big")
        for j in range(len(cts))
    ]


def _bucket_window(count: int, bits: int) -> int:
    """The window w minimising the bucket method's ⌈bits/w⌉·(count + 2^{w+1}) multiplications."""
    return min(range(1, 17), key=lambda w: -(-bits // w) * (count + (2 << w)))


def _multi_pow(bases: Sequence[int], exps: Sequence[int], mod: int) -> int:
    """Π bases[j]^exps[j] mod ``mod`` by the bucket method (Pippenger 1980): per
    window of w exponent bits, one multiplication per base into the bucket of
    its digit, then 2·2^w to fold the buckets. For 128-bit exponents and
    thousands of bases that is ~16 multiplications per base, against ~160 for a
    powmod each."""
    gmpy2 = _gmpy2()
    m = gmpy2.mpz(mod)
    bits = max((e.bit_length() for e in exps), default=0)
    if not bits:
        return 1 % mod
    w = _bucket_window(len(bases), bits)
    mask = (1 << w) - 1
    mbases = [gmpy2.mpz(b) for b in bases]
    acc = gmpy2.mpz(1)
    for shift in reversed(range(0, bits, w)):
        for _ in range(w):
            acc = acc * acc % m
        buckets: list = [None] * (mask + 1)
        for b, e in zip(mbases, exps):
            digit = (e >> shift) & mask
            if digit:
                cur = buckets[digit]
                buckets[digit] = b if cur is None else cur * b % m
        running = total = None  # Σ digit·bucket as a running product, top digit first
        for digit in range(mask, 0, -1):
            if buckets[digit] is not None:
                running = buckets[digit] if running is None else running * buckets[digit] % m
            if running is not None:
                total = running if total is None else total * running % m
        if total is not None:
            acc = acc * total % m
    return int(acc)


def _composite(bases: Sequence[int], rhos: Sequence[int], mod: int, workers: int) -> int:
    """Π bases[j]^ρ_j mod ``mod``, split over ``workers`` processes for long vectors."""
    if workers <= 1 or len(bases) < _MULTI_PARALLEL_MIN_ITEMS:
        return _multi_pow(bases, rhos, mod)
    step = -(-len(bases) // workers)
    jobs = [(list(bases[i : i + step]), list(rhos[i : i + step]), mod) for i in range(0, len(bases), step)]
    acc = 1
    for part in map_chunks(_multi_pow, jobs, workers):
        acc = acc * part % mod
    return acc


def _composites(
    pub: ThresholdPublicKey, index: int, cts: Sequence[int], values: Sequence[int], workers: int = 1
) -> tuple[int, int]:
    """The verifier's C = Π c_j^{4ρ_j} and C_i = Π c_ij^{2ρ_j} mod n² (module docstring)."""
    rhos = _rhos(pub, index, cts, values)
    n2 = pub.nsquare
    big = pow(_composite(cts, rhos, n2, workers), 4, n2)
    return big, pow(_composite(values, rhos, n2, workers), 2, n2)


def _challenge(pub: ThresholdPublicKey, index: int, *elems: int) -> int:
    h = hashlib.sha256(DLEQ_DOMAIN)
    for x in (pub.n, index, pub.v, pub.verification_keys[index - 1], *elems):
        h.update(_int_bytes(x))
    return int.from_bytes(h.digest(), "big")


def _check_cts(pub: ThresholdPublicKey, cts: Sequence[int]) -> None:
    """``ConfigError`` outside [1, n²); ``IntegrityError(index=j)`` for a
    non-unit, which no partial decryption could prove (no party is blamed)."""
    n2 = pub.nsquare
    if not cts or any(not isinstance(c, int) or not 0 < c < n2 for c in cts):
        raise ConfigError("ciphertexts must be ints in [1, n²)")
    check_units(pub.paillier, cts)


def _workers(workers: int | None) -> int:
    return usable_cores() if workers is None else check_workers(workers)


def partial_decrypt(
    pub: ThresholdPublicKey, share: KeyShare, cts: Sequence[int], *, workers: int | None = None
) -> PartialDecryption:
    """Party ``share.index``'s partial decryptions ``c^{2Δ s_i}`` with one batched proof.

    The exponentiations run in ``workers`` threads (default: the usable cores;
    one below ``PARALLEL_MIN_ITEMS`` ciphertexts), the proof's composite in as
    many processes for long vectors. ``ConfigError`` for
    ciphertexts outside [1, n²) or a share index out of range;
    ``IntegrityError(index=j)`` for a non-unit ciphertext.
    """
    return _partial_decrypt_with(
        pub, share, cts, secrets.randbits(3 * pub.n.bit_length() + CHALLENGE_BITS + SLACK_BITS), workers=workers
    )


def _partial_values(pub: ThresholdPublicKey, share: KeyShare, cts: Sequence[int], workers: int) -> tuple[int, ...]:
    """``c^{2Δ s_i} mod n²`` for each ciphertext, in shared-nothing batches over
    ``workers`` threads (gmpy2's list powmod releases the GIL)."""
    gmpy2 = _gmpy2()
    n2, exp = gmpy2.mpz(pub.nsquare), gmpy2.mpz(2 * pub.delta * share.share)
    cts = list(cts)
    if workers <= 1 or len(cts) < PARALLEL_MIN_ITEMS:
        return tuple(int(x) for x in gmpy2.powmod_base_list(cts, exp, n2))
    step = -(-len(cts) // (workers * _CHUNKS_PER_WORKER))
    batches = [cts[i : i + step] for i in range(0, len(cts), step)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paillier-partial") as ex:
        done = ex.map(lambda batch: gmpy2.powmod_base_list(batch, exp, n2), batches)
        return tuple(int(x) for batch in done for x in batch)


def _prove(
    pub: ThresholdPublicKey, share: KeyShare, cts: Sequence[int], values: tuple[int, ...], r: int, workers: int
) -> PartialDecryption:
    """The batched proof for honest ``values`` with prover nonce ``r``."""
    gmpy2 = _gmpy2()
    n2 = pub.nsquare
    secret = pub.delta * share.share
    rhos = _rhos(pub, share.index, cts, values)
    big = pow(_composite(cts, rhos, n2, workers), 4, n2)
    small = int(gmpy2.powmod(big, secret, n2))  # = Π c_ij^{2ρ_j}, since c_ij² = c_j^{4Δ s_i}
    a, b = int(gmpy2.powmod(big, r, n2)), int(gmpy2.powmod(pub.v, r, n2))
    e = _challenge(pub, share.index, big, small, a, b)
    return PartialDecryption(share.index, values, e, r + e * secret, a, b)


def _partial_decrypt_with(
    pub: ThresholdPublicKey, share: KeyShare, cts: Sequence[int], r: int, *, workers: int | None = 1
) -> PartialDecryption:
    """Deterministic core of :func:`partial_decrypt` with prover nonce ``r``."""
    _check_cts(pub, cts)
    if not 1 <= share.index <= pub.parties:
        raise ConfigError("share index out of range", index=share.index)
    w = _workers(workers)
    return _prove(pub, share, cts, _partial_values(pub, share, cts, w), r, w)


def _response_limit(pub: ThresholdPublicKey) -> int:
    """Upper bound on an honest z = r + e·Δ·s_i (also caps the verifier's work)."""
    k = pub.n.bit_length()
    return 1 << (max(3 * k + CHALLENGE_BITS + SLACK_BITS, CHALLENGE_BITS + pub.delta.bit_length() + 2 * k) + 1)


def verify_partial(
    pub: ThresholdPublicKey, cts: Sequence[int], partial: PartialDecryption, *, workers: int | None = None
) -> None:
    """Check a partial decryption's batched proof; ``IntegrityError(party=i)`` if it fails.

    The composites run in ``workers`` processes (default: the usable cores)
    from ``_MULTI_PARALLEL_MIN_ITEMS`` ciphertexts on. A failure names the party
    only: :func:`combine` or :func:`bad_value_indices` find the wrong entries.
    """
    _check_cts(pub, cts)
    i = partial.index
    if not isinstance(i, int) or not 1 <= i <= pub.parties:
        raise IntegrityError("partial decryption from an unknown party", party=i)
    n2 = pub.nsquare
    if (
        len(partial.values) != len(cts)
        or any(not 0 < x < n2 for x in partial.values)
        or not 0 < partial.commitment_a < n2
        or not 0 < partial.commitment_b < n2
        or not 0 <= partial.response < _response_limit(pub)
    ):
        raise IntegrityError("malformed partial decryption", party=i)
    gmpy2 = _gmpy2()
    big, small = _composites(pub, i, cts, partial.values, _workers(workers))
    a, b, e, z = partial.commitment_a, partial.commitment_b, partial.challenge, partial.response
    if e != _challenge(pub, i, big, small, a, b):
        raise IntegrityError("partial decryption proof: challenge mismatch", party=i)
    vk = pub.verification_keys[i - 1]
    ok1 = gmpy2.powmod(big, z, n2) == a * gmpy2.powmod(small, e, n2) % n2
    ok2 = gmpy2.powmod(pub.v, z, n2) == b * gmpy2.powmod(vk, e, n2) % n2
    if not (ok1 and ok2):
        raise IntegrityError("partial decryption proof does not verify", party=i)


def _lagrange(delta: int, parties: Sequence[int], at: int) -> list[int]:
    """Integer coefficients Δ·Π_{j≠k} (at − j)/(k − j) for each k in ``parties``
    (integers for any ``at`` in 0..l, since Π |k − j| divides (k−1)!(l−k)!)."""
    out = []
    for k in parties:
        num, den = delta, 1
        for j in parties:
            if j != k:
                num *= at - j
                den *= k - j
        if num % den:
            raise ConfigError("Lagrange coefficient is not an integer")  # cannot happen: Δ = l!
        out.append(num // den)
    return out


def bad_value_indices(
    pub: ThresholdPublicKey, cts: Sequence[int], suspect: PartialDecryption, verified: Sequence[PartialDecryption]
) -> list[int]:
    """Indices j where ``suspect.values[j]`` is wrong, judged against t ``verified`` partials.

    Interpolation in the exponent: an honest ``c_ij`` has
    ``c_ij^{2Δ} = Π_{k∈S} c_kj^{2λ^S_k(i)}``. A change by an element of order 2
    is not reported (it cannot change a plaintext). The caller must have
    verified the proofs of ``verified``. ``ThresholdError`` with fewer than t
    parties other than the suspect; ``ConfigError`` if the lengths differ.
    """
    refs = {p.index: p for p in verified if p.index != suspect.index}
    if len(refs) < pub.threshold:
        raise ThresholdError("need t verified partials from other parties", needed=pub.threshold, got=len(refs))
    chosen = [refs[k] for k in sorted(refs)[: pub.threshold]]
    if any(len(p.values) != len(cts) for p in (suspect, *chosen)):
        raise ConfigError("partial decryptions and ciphertexts differ in length")
    gmpy2 = _gmpy2()
    n2 = gmpy2.mpz(pub.nsquare)
    lambdas = _lagrange(pub.delta, [p.index for p in chosen], suspect.index)
    two_delta = 2 * pub.delta
    bad = []
    for j, value in enumerate(suspect.values):
        # negative λ moved to the suspect's side: no inverses needed
        want, got = gmpy2.powmod(value, two_delta, n2), gmpy2.mpz(1)
        for part, lam in zip(chosen, lambdas):
            if lam > 0:
                got = got * gmpy2.powmod(part.values[j], 2 * lam, n2) % n2
            elif lam < 0:
                want = want * gmpy2.powmod(part.values[j], -2 * lam, n2) % n2
        if want != got:
            bad.append(j)
    return bad


def _attribute(
    pub: ThresholdPublicKey,
    cts: Sequence[int],
    suspect: PartialDecryption,
    others: Sequence[PartialDecryption],
    failure: IntegrityError,
    workers: int,
) -> IntegrityError:
    """``failure`` for ``suspect``, naming its wrong indices when t ``others`` verify."""
    verified: list[PartialDecryption] = []
    for part in others:
        if len(verified) == pub.threshold:
            break
        try:
            verify_partial(pub, cts, part, workers=workers)
        except IntegrityError:
            continue
        verified.append(part)
    if len(verified) < pub.threshold or len(suspect.values) != len(cts):
        return failure
    bad = bad_value_indices(pub, cts, suspect, verified)
    if not bad:
        return IntegrityError(
            f"{failure.message}; its values agree with {pub.threshold} verified partials: the proof itself is bad",
            party=suspect.index,
        )
    return IntegrityError(
        f"{failure.message}; {len(bad)} of its values disagree with {pub.threshold} verified partials",
        party=suspect.index,
        index=bad[0],
        indices=tuple(bad[:_MAX_NAMED_INDICES]),
        count=len(bad),
    )


def combine(
    pub: ThresholdPublicKey,
    cts: Sequence[int],
    partials: Sequence[PartialDecryption],
    *,
    verify: bool = True,
    workers: int | None = None,
) -> list[int]:
    """Plaintexts of ``cts`` from at least t partial decryptions.

    Uses the first t distinct parties. Raises ``ThresholdError`` with fewer
    than t distinct parties and ``IntegrityError(party=i)`` for a bad proof
    (when ``verify``; pass False only for partials already verified). When
    t other given partials verify, that error also names the wrong values:
    ``index`` (the first), ``indices`` (up to 16) and ``count``.
    """
    by_index: dict[int, PartialDecryption] = {}
    for part in partials:
        by_index.setdefault(part.index, part)
    if len(by_index) < pub.threshold:
        raise ThresholdError("fewer than t partial decryptions", needed=pub.threshold, got=len(by_index))
    chosen = [by_index[i] for i in sorted(by_index)[: pub.threshold]]
    if verify:
        w = _workers(workers)
        for part in chosen:
            try:
                verify_partial(pub, cts, part, workers=w)
            except IntegrityError as exc:
                if exc.fields.get("party") is None:  # the ciphertexts are bad, not the party
                    raise
                others = [p for i, p in sorted(by_index.items()) if i != part.index]
                raise _attribute(pub, cts, part, others, exc, w) from None
    gmpy2 = _gmpy2()
    n, n2, delta = pub.n, pub.nsquare, pub.delta
    lambdas = _lagrange(delta, [p.index for p in chosen], 0)
    inv = int(gmpy2.invert(4 * delta * delta, n))
    out = []
    for k in range(len(cts)):
        acc = gmpy2.mpz(1)
        for part, lam in zip(chosen, lambdas):
            acc = acc * gmpy2.powmod(part.values[k], 2 * lam, n2) % n2
        out.append(int((acc - 1) // n * inv % n))
    return out
