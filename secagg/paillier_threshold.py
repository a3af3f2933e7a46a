"""Threshold Paillier with a trusted dealer (Damgård–Jurik 2001, s = 1; Shoup 2000).

t-of-l decryption: any ``t`` of the ``l`` key-share holders decrypt together;
``t − 1`` learn nothing about the plaintext. Steps (DJ01 §4 with s = 1):

* **Key generation** (dealer): safe primes ``p = 2p'+1``, ``q = 2q'+1``;
  ``n = pq``, ``m = p'q'``; ``d ≡ 0 (mod m)``, ``d ≡ 1 (mod n)``. The dealer
  shares ``d`` with a random polynomial ``f`` of degree ``t − 1`` over
  ``Z_{n·m}``: ``s_i = f(i) mod n·m``. Verification keys: ``v`` a random square
  mod n², ``v_i = v^{Δ·s_i}`` with ``Δ = l!``. The dealer then erases
  ``p, q, d, f``: it is trusted **during set-up only**.
* **Partial decryption** by party i: ``c_i = c^{2Δ·s_i} mod n²``, with a
  zero-knowledge proof that ``log_{c⁴}(c_i²) = log_v(v_i)``.
* **Combination** for a set S of t parties:
  ``c' = Π c_i^{2λ_i} = c^{4Δ²·d}`` with ``λ_i = Δ·Π_{j∈S∖i} j/(j − i)`` (an
  integer because Δ = l!), so ``m = L(c')·(4Δ²)⁻¹ mod n``.

**Proof** (Chaum–Pedersen equality of discrete logs in QR_{n²}, made
non-interactive with Fiat–Shamir over SHA-256). For a vector of ciphertexts the
party proves one statement about composites ``C = Π (c_j⁴)^{ρ_j}``,
``C_i = Π (c_{ij}²)^{ρ_j}`` with 128-bit ``ρ_j`` derived from a hash of the whole
statement (the composite technique of RFC 9497 §2.2.1). Safe primes make every
prime factor of |QR_{n²}| = n·p'·q' large, so a single wrong ``c_{ij}`` passes
with probability about 2⁻¹²⁸. The prover picks ``r`` of ``3·|n| + 256 + 128``
bits (DJ01: (s+2)k + t, plus statistical slack), sends ``a = C^r``, ``b = v^r``,
and ``z = r + e·Δ·s_i`` where ``e`` = SHA-256 of the transcript::

    DLEQ_DOMAIN || for x in (n, i, v, v_i, C, C_i, a, b): len(x) (4 bytes BE) || x (BE)

The verifier checks ``C^z = a·C_i^e`` and ``v^z = b·v_i^e`` mod n².
``ρ_j`` is the first 16 bytes of ``SHA-256(seed || j as 8 bytes BE)`` with
``seed = SHA-256(RHO_DOMAIN || n || i || k || c_1..c_k || c_i1..c_ik)``, every
integer encoded as above (4-byte length, then big-endian bytes). A failing proof
raises :class:`IntegrityError` naming ``party``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from secagg.errors import ConfigError, IntegrityError, ThresholdError, require_extra
from secagg.paillier import MIN_KEY_BITS, PARALLEL_MIN_ITEMS, PaillierPublicKey, check_units, check_workers, map_chunks

__all__ = [
    "ThresholdPublicKey",
    "KeyShare",
    "PartialDecryption",
    "generate_safe_prime",
    "SafePrimeStore",
    "deal",
    "partial_decrypt",
    "verify_partial",
    "combine",
]

DLEQ_DOMAIN = b"secagg/paillier-threshold/v1/dleq"
RHO_DOMAIN = b"secagg/paillier-threshold/v1/rho"
#: Fiat–Shamir challenge length (SHA-256 output).
CHALLENGE_BITS = 256
#: Batch coefficients ρ_j: a wrong partial survives the composite with prob 2^-128.
RHO_BITS = 128
#: Extra bits in the prover's nonce so z = r + e·Δ·s_i hides Δ·s_i statistically.
SLACK_BITS = 128


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


#: Straus multi-exponentiation: 4-bit windows, bases processed in batches (bounded memory).
_MULTI_WINDOW = 4
_MULTI_BATCH = 512


def _multi_pow(bases: Sequence[int], exps: Sequence[int], mod: int) -> int:
    """Π bases[j]^exps[j] mod ``mod`` with shared squarings (Straus' method):
    ~3x fewer multiplications than one ``powmod`` per base for 130-bit exponents."""
    gmpy2 = _gmpy2()
    m = gmpy2.mpz(mod)
    mask, w = (1 << _MULTI_WINDOW) - 1, _MULTI_WINDOW
    result = gmpy2.mpz(1)
    for start in range(0, len(bases), _MULTI_BATCH):
        tables = []
        for b in bases[start : start + _MULTI_BATCH]:
            row = [gmpy2.mpz(1), gmpy2.mpz(b) % m]
            for _ in range(2, 1 << w):
                row.append(row[-1] * row[1] % m)
            tables.append(row)
        part = exps[start : start + _MULTI_BATCH]
        acc = gmpy2.mpz(1)
        for i in reversed(range(-(-max(e.bit_length() for e in part) // w))):
            for _ in range(w):
                acc = acc * acc % m
            shift = i * w
            for row, e in zip(tables, part):
                digit = (e >> shift) & mask
                if digit:
                    acc = acc * row[digit] % m
        result = result * acc % m
    return int(result)


def _composites(pub: ThresholdPublicKey, index: int, cts: Sequence[int], values: Sequence[int]) -> tuple[int, int]:
    """C = Π c_j^{4ρ_j} and C_i = Π c_ij^{2ρ_j} mod n² (module docstring)."""
    rhos = _rhos(pub, index, cts, values)
    n2 = pub.nsquare
    return (_multi_pow(cts, [4 * r for r in rhos], n2), _multi_pow(values, [2 * r for r in rhos], n2))


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


def partial_decrypt(
    pub: ThresholdPublicKey, share: KeyShare, cts: Sequence[int], *, workers: int = 1
) -> PartialDecryption:
    """Party ``share.index``'s partial decryptions ``c^{2Δ s_i}`` with a proof;
    the exponentiations run in ``workers`` processes."""
    return _partial_decrypt_with(
        pub, share, cts, secrets.randbits(3 * pub.n.bit_length() + CHALLENGE_BITS + SLACK_BITS), workers=workers
    )


def _powmod_chunk(exp: int, mod: int, cts: list[int]) -> list[int]:
    gmpy2 = _gmpy2()
    return [int(gmpy2.powmod(c, exp, mod)) for c in cts]


def _partial_decrypt_with(
    pub: ThresholdPublicKey, share: KeyShare, cts: Sequence[int], r: int, *, workers: int = 1
) -> PartialDecryption:
    """Deterministic core of :func:`partial_decrypt` with prover nonce ``r``."""
    _check_cts(pub, cts)
    if not 1 <= share.index <= pub.parties:
        raise ConfigError("share index out of range", index=share.index)
    gmpy2 = _gmpy2()
    n2 = pub.nsquare
    exp = 2 * pub.delta * share.share
    cts = list(cts)
    workers = check_workers(workers) if len(cts) >= PARALLEL_MIN_ITEMS else 1
    step = -(-len(cts) // workers)
    jobs = [(exp, n2, cts[i : i + step]) for i in range(0, len(cts), step)]
    values = tuple(v for chunk in map_chunks(_powmod_chunk, jobs, workers) for v in chunk)
    big, small = _composites(pub, share.index, cts, values)
    a, b = int(gmpy2.powmod(big, r, n2)), int(gmpy2.powmod(pub.v, r, n2))
    e = _challenge(pub, share.index, big, small, a, b)
    z = r + e * pub.delta * share.share
    return PartialDecryption(share.index, values, e, z, a, b)


def _response_limit(pub: ThresholdPublicKey) -> int:
    """Upper bound on an honest z = r + e·Δ·s_i (also caps the verifier's work)."""
    k = pub.n.bit_length()
    return 1 << (max(3 * k + CHALLENGE_BITS + SLACK_BITS, CHALLENGE_BITS + pub.delta.bit_length() + 2 * k) + 1)


def verify_partial(pub: ThresholdPublicKey, cts: Sequence[int], partial: PartialDecryption) -> None:
    """Check a partial decryption's proof; ``IntegrityError(party=i)`` if it fails."""
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
    big, small = _composites(pub, i, cts, partial.values)
    a, b, e, z = partial.commitment_a, partial.commitment_b, partial.challenge, partial.response
    if e != _challenge(pub, i, big, small, a, b):
        raise IntegrityError("partial decryption proof: challenge mismatch", party=i)
    vk = pub.verification_keys[i - 1]
    ok1 = gmpy2.powmod(big, z, n2) == a * gmpy2.powmod(small, e, n2) % n2
    ok2 = gmpy2.powmod(pub.v, z, n2) == b * gmpy2.powmod(vk, e, n2) % n2
    if not (ok1 and ok2):
        raise IntegrityError("partial decryption proof does not verify", party=i)


def combine(
    pub: ThresholdPublicKey, cts: Sequence[int], partials: Sequence[PartialDecryption], *, verify: bool = True
) -> list[int]:
    """Plaintexts of ``cts`` from at least t partial decryptions.

    Uses the first t distinct parties. Raises ``ThresholdError`` with fewer
    than t distinct parties and ``IntegrityError(party=i)`` for a bad proof
    (when ``verify``; pass False only for partials already verified).
    """
    by_index: dict[int, PartialDecryption] = {}
    for part in partials:
        by_index.setdefault(part.index, part)
    if len(by_index) < pub.threshold:
        raise ThresholdError("fewer than t partial decryptions", needed=pub.threshold, got=len(by_index))
    chosen = [by_index[i] for i in sorted(by_index)[: pub.threshold]]
    if verify:
        for part in chosen:
            verify_partial(pub, cts, part)
    gmpy2 = _gmpy2()
    n, n2, delta = pub.n, pub.nsquare, pub.delta
    idx = [p.index for p in chosen]
    lambdas = []
    for i in idx:
        num, den = delta, 1
        for j in idx:
            if j != i:
                num *= j
                den *= j - i
        if num % den:
            raise ConfigError("Lagrange coefficient is not an integer")  # cannot happen: Δ = l!
        lambdas.append(num // den)
    inv = int(gmpy2.invert(4 * delta * delta, n))
    out = []
    for k in range(len(cts)):
        acc = gmpy2.mpz(1)
        for part, lam in zip(chosen, lambdas):
            acc = acc * gmpy2.powmod(part.values[k], 2 * lam, n2) % n2
        out.append(int((acc - 1) // n * inv % n))
    return out
