"""Paillier encryption with BatchCrypt-style packing and precomputed noise pools.

Scheme (Paillier 1999, with g = n + 1 as in ``phe``):

* encrypt ``c = (1 + m·n) · rⁿ mod n²`` — since ``(n+1)^m ≡ 1 + m·n (mod n²)``
  the only expensive part is the obfuscator ``rⁿ mod n²``;
* decrypt with CRT: ``m_p = L_p(c^{p-1} mod p²)·h_p mod p`` (and the same mod q),
  then recombine; ``L_p(x) = (x − 1) / p``;
* add: ``c₁·c₂ mod n²``.

Ciphertexts here are bit-for-bit those of ``phe.PaillierPublicKey.raw_encrypt``
for the same ``r`` (tested), and decryption equals ``phe``'s ``raw_decrypt``.

**Noise pools.** :class:`NoisePool` precomputes obfuscators ``rⁿ mod n²`` for
fresh random ``r`` (never reused: each element is handed out once, and an empty
pool raises). The holder of the secret key (in the shared-key protocol, every
client) draws them ~5× faster with CRT: for ``y_p`` uniform in ``Z*_p``,
``y_p^p mod p²`` is uniform over the n-th residues mod p², and equals ``rⁿ mod p²``
for ``r ≡ y_p^{q⁻¹ mod (p−1)} (mod p)``; :func:`crt_obfuscator_from_roots` shows
the correspondence and the tests check it against ``powmod(r, n, n²)``.
The distribution is exactly that of textbook Paillier. Cost: about two
1024-bit-exponent exponentiations mod a 2048-bit modulus per element (~2–3 ms on
this machine) versus one 2048-bit exponent mod 4096 bits (~11–16 ms) without the
factors. Online encryption is then one multiplication mod n².

**DJN noise (the default).** ``NoisePool(..., method="djn")`` uses the fast
encryption of Damgård, Jurik and Nielsen (DJN 2010, "A generalization of
Paillier's public-key system with applications to electronic voting", Int. J.
Inf. Secur. 9(6), the encryption optimisation of their Section 4): with
``h = −x² mod n`` and ``h_s = hⁿ mod n²``, an obfuscator is ``h_s^α = (h^α)ⁿ``
for a fresh α drawn uniformly from [0, 2^⌈k/2⌉), k = |n|: **1024-bit α for a
2048-bit n** (:func:`djn_exponent_bits`; the same length as libdjn and
SecretFlow HEU, which implement that paper). It is still ``rⁿ`` for
``r = h^α mod n``, so the ciphertext is ``phe``'s for that r. Semantic security
rests on DCR plus DJN's assumption that h^α with α of ⌈k/2⌉ bits cannot be told
from a uniform element of ⟨h⟩; a generic (Pollard λ) attack on the short
exponent costs 2^(k/4) = 2^512 at k = 2048, far above the ~112-bit strength
of the modulus itself (NIST SP 800-57), so the exponent is not the weak link.
DJN publish h in the public key; here the *pool owner* (the encrypting client)
draws x from the OS CSPRNG once per process and key (:func:`djn_base`) and
never sends h, which can only help: no claim rests on h being secret. Our
keys come from ``phe`` and are not required to be Blum integers, so ⟨h⟩ is a
large cyclic subgroup of Z*_n rather than exactly DJN's Jacobi-symbol-1
group; the assumption is read for that subgroup. The fixed-base comb tables
for ``h_s`` (mod p² and q² with the factors, else mod n²; 8-bit windows, about
19 MB at 2048 bits) are built once per process, key and h and reused by every
``fill`` and round (worker processes keep their own copy), so an element costs
⌈k/2⌉/8 multiplications per modulus: 5–6× cheaper than the CRT standard
pool. ``method="standard"`` (r uniform in Z*_n, textbook Paillier) remains.

**Decryption** (:func:`decrypt_many`) splits the ciphertexts into
shared-nothing batches, each decrypted with gmpy2's list exponentiations, which
release the GIL: ``workers`` threads use ``workers`` cores with no process
start-up and no copying.

**Packing.** :class:`PackingPlan` packs many signed integers per plaintext. Each
slot holds ``value + bound`` (an offset, so slots are non-negative) and has
``bit_length(2·bound·n_clients)`` bits, i.e. the value bits plus ⌈log₂ n⌉ carry
bits, so the sum of ``n_clients`` packed plaintexts cannot carry into the next
slot. Slots fill at most ``key_bits − 1`` bits, so the packed integer is below n.
The plan is checked at construction (``ConfigError`` / ``OverflowRiskError``).

Security notes: keys come from ``phe.generate_paillier_keypair`` (OS CSPRNG);
randomness from :mod:`secrets`. Paillier is IND-CPA only: it gives no integrity,
so protocols authenticate ciphertexts in transit.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import secrets
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, DecodeError, IntegrityError, OverflowRiskError, require_extra

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "PaillierPublicKey",
    "PaillierSecretKey",
    "generate_keypair",
    "obfuscator",
    "crt_obfuscator_from_roots",
    "encrypt_raw",
    "decrypt_raw",
    "add",
    "NoisePool",
    "POOL_METHODS",
    "DEFAULT_POOL_METHOD",
    "djn_exponent_bits",
    "djn_base",
    "usable_cores",
    "warm_up",
    "PackingPlan",
    "encrypt_packed",
    "decrypt_many",
    "decrypt_packed",
    "sum_ciphertexts",
    "ciphertexts_to_bytes",
    "ciphertexts_from_bytes",
    "check_units",
    "PARALLEL_MIN_ITEMS",
    "check_workers",
    "map_chunks",
]

#: 2048-bit n: ~112-bit security (NIST SP 800-57), the size phe and FATE default to.
DEFAULT_KEY_BITS = 2048
#: Smallest n accepted anywhere; test keys only (insecure, fast).
MIN_KEY_BITS = 64
#: "djn": r = h^α with a short α (DJN 2010; module docstring), the default;
#: "standard": r uniform in Z*_n (textbook Paillier).
POOL_METHODS = ("djn", "standard")
DEFAULT_POOL_METHOD = "djn"
#: Fixed-base comb window for DJN pools: one byte of α per table row, 2^8 entries
#: per row (~19 MB of tables at 2048 bits, with or without the factors).
_DJN_WINDOW = 8
#: DJN tables kept per process (one entry per key, pool base and factors).
_DJN_TABLES_KEPT = 4
#: Decryption batches per worker thread: finer batches even out a busy core.
_BATCHES_PER_WORKER = 4
#: Below this many items a process pool costs more than it saves.
PARALLEL_MIN_ITEMS = 64


def _gmpy2() -> Any:
    return require_extra("gmpy2", "he")


@dataclass(frozen=True)
class PaillierPublicKey:
    """Public key ``n`` (g is fixed to n + 1)."""

    n: int

    def __post_init__(self) -> None:
        # Tiny moduli are accepted for hand-checked known-answer tests only;
        # generate_keypair and PackingPlan enforce MIN_KEY_BITS.
        if not isinstance(self.n, int) or self.n < 15 or self.n % 2 == 0:
            raise ConfigError("Paillier modulus must be an odd int >= 15")

    @property
    def nsquare(self) -> int:
        return self.n * self.n

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def ciphertext_bytes(self) -> int:
        """Fixed wire width of one ciphertext (an element of Z_{n²})."""
        return (self.nsquare.bit_length() + 7) // 8


@dataclass(frozen=True)
class PaillierSecretKey:
    """Secret factors ``p < q`` of ``n`` with the CRT constants of ``phe``."""

    public: PaillierPublicKey
    p: int
    q: int
    _crt: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        p, q = sorted((self.p, self.q))
        if p == q or p * q != self.public.n:
            raise ConfigError("p·q does not match the public key")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "q", q)
        gmpy2 = _gmpy2()
        hp = int(gmpy2.invert(_l_function(pow(self.public.n + 1, p - 1, p * p), p), p))
        hq = int(gmpy2.invert(_l_function(pow(self.public.n + 1, q - 1, q * q), q), q))
        mpz = gmpy2.mpz
        # (h_p, h_q, p^-1 mod q, p, q, p², q²) as gmpy2 integers for decrypt_raw
        object.__setattr__(self, "_crt", (mpz(hp), mpz(hq), gmpy2.invert(p, q), mpz(p), mpz(q), mpz(p * p), mpz(q * q)))

    def __repr__(self) -> str:  # never print the factors
        return f"PaillierSecretKey(bits={self.public.bits})"


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PaillierPublicKey, PaillierSecretKey]:
    """A fresh key pair from ``phe.generate_paillier_keypair`` (OS CSPRNG)."""
    if bits < MIN_KEY_BITS or bits % 8:
        raise ConfigError(f"key bits must be a multiple of 8 and >= {MIN_KEY_BITS}", bits=bits)
    phe = require_extra("phe", "he")
    pk, sk = phe.generate_paillier_keypair(n_length=bits)
    public = PaillierPublicKey(int(pk.n))
    return public, PaillierSecretKey(public, int(sk.p), int(sk.q))


def _l_function(x: int, p: int) -> int:
    return (x - 1) // p


def obfuscator(pk: PaillierPublicKey, r: int) -> int:
    """Reference obfuscator ``rⁿ mod n²`` for an explicit ``r`` in [1, n)."""
    if not 0 < r < pk.n:
        raise ConfigError("r must be in [1, n)")
    return int(_gmpy2().powmod(r, pk.n, pk.nsquare))


def crt_obfuscator_from_roots(sk: PaillierSecretKey, y_p: int, y_q: int) -> tuple[int, int]:
    """Fast obfuscator from ``y_p ∈ Z*_p``, ``y_q ∈ Z*_q``; returns ``(rⁿ mod n², r)``.

    ``r`` is the unique value mod n whose n-th power this is (returned so tests
    can compare with :func:`obfuscator`); pools call the cheap part only.
    """
    gmpy2 = _gmpy2()
    p, q = sk.p, sk.q
    rn = _crt_square(sk, int(gmpy2.powmod(y_p, p, p * p)), int(gmpy2.powmod(y_q, q, q * q)))
    r_p = int(gmpy2.powmod(y_p, gmpy2.invert(q, p - 1), p))
    r_q = int(gmpy2.powmod(y_q, gmpy2.invert(p, q - 1), q))
    r = r_p + p * ((r_q - r_p) * int(sk._crt[2]) % q)
    return rn, r


def _crt_square(sk: PaillierSecretKey, a: int, b: int) -> int:
    """The x mod n² with x ≡ a (mod p²) and x ≡ b (mod q²)."""
    p2, q2 = sk.p * sk.p, sk.q * sk.q
    inv = _inverse_p2_mod_q2(sk)
    return a + p2 * ((b - a) * inv % q2)


def _inverse_p2_mod_q2(sk: PaillierSecretKey) -> int:
    return int(_gmpy2().invert(sk.p * sk.p, sk.q * sk.q))


def encrypt_raw(pk: PaillierPublicKey, m: int, rn: int) -> int:
    """``(1 + m·n) · rn mod n²`` for a plaintext ``m`` in [0, n)."""
    if not 0 <= m < pk.n:
        raise OverflowRiskError("plaintext must be in [0, n)", bits=pk.bits)
    n, n2 = pk.n, pk.nsquare
    return int(_gmpy2().mpz(n * m + 1) * rn % n2)


def decrypt_raw(sk: PaillierSecretKey, c: int) -> int:
    """CRT decryption (as ``phe``'s ``raw_decrypt``); ``c`` must be in [1, n²)."""
    powmod = _gmpy2().powmod
    hp, hq, p_inv, p, q, p2, q2 = sk._crt
    m_p = (powmod(c, p - 1, p2) - 1) // p * hp % p
    m_q = (powmod(c, q - 1, q2) - 1) // q * hq % q
    return int(m_p + p * ((m_q - m_p) * p_inv % q))


def add(pk: PaillierPublicKey, c1: int, c2: int) -> int:
    """Homomorphic addition of plaintexts."""
    return c1 * c2 % pk.nsquare


# ---------------------------------------------------------------- noise pools
def _pool_chunk(n: int, p: int, q: int, count: int) -> list[int]:
    """``count`` fresh obfuscators; with factors (p, q > 0) via CRT."""
    gmpy2 = _gmpy2()
    out: list[int] = []
    if p:
        p2, q2 = p * p, q * q
        inv = int(gmpy2.invert(p2, q2))
        for _ in range(count):
            a = gmpy2.powmod(secrets.randbelow(p - 1) + 1, p, p2)
            b = gmpy2.powmod(secrets.randbelow(q - 1) + 1, q, q2)
            out.append(int(a + p2 * ((b - a) * inv % q2)))
    else:
        n2 = n * n
        for _ in range(count):
            out.append(int(gmpy2.powmod(secrets.randbelow(n - 1) + 1, n, n2)))
    return out


_EXECUTORS: dict[int, ProcessPoolExecutor] = {}


def _executor(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of the process (start-up costs ~1 s).

    spawn, not fork: callers may hold threads (torch, TenSEAL) in the parent.
    """
    ex = _EXECUTORS.get(workers)
    if ex is None:
        ex = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
        _EXECUTORS[workers] = ex
        atexit.register(ex.shutdown, wait=False, cancel_futures=True)
    return ex


def warm_up(workers: int) -> None:
    """Start the worker processes now, so that later timings exclude start-up."""
    if check_workers(workers) > 1:
        ex = _executor(workers)
        for f in [ex.submit(_pool_chunk, 15, 0, 0, 0) for _ in range(workers)]:
            f.result()


def usable_cores() -> int:
    """How many CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not every OS has CPU affinity
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------ DJN noise
def djn_exponent_bits(n_bits: int) -> int:
    """DJN 2010's exponent length for a ``n_bits``-bit n: ⌈n_bits / 2⌉ (1024 at 2048)."""
    return (n_bits + 1) // 2


@functools.lru_cache(maxsize=16)
def djn_base(n: int) -> int:
    """This process's DJN base ``h = −x² mod n`` for the key ``n``, drawn once.

    ``x`` comes from the OS CSPRNG and is a unit; ``h² ≠ 1`` rules out the
    order-≤2 bases that tiny test moduli could hit. The base is the pool
    owner's, cached so that its comb tables serve every later round; it is
    never sent (DJN publish it; secrecy only helps).
    """
    while True:
        x = secrets.randbelow(n - 2) + 2
        h = (-x * x) % n
        if math.gcd(x, n) == 1 and h * h % n != 1:
            return h


def _comb_table(base: Any, mod: Any, exp_bits: int) -> tuple[tuple[Any, ...], ...]:
    """rows[i][j] = base^(j·2^(w·i)) mod ``mod`` for a fixed-base comb (w = 8)."""
    gmpy2 = _gmpy2()
    rows, b = [], gmpy2.mpz(base) % mod
    for _ in range(-(-exp_bits // _DJN_WINDOW)):
        row, acc = [gmpy2.mpz(1)], gmpy2.mpz(1)
        for _ in range(1, 1 << _DJN_WINDOW):
            acc = acc * b % mod
            row.append(acc)
        rows.append(tuple(row))
        b = acc * b % mod
    return tuple(rows)


def _comb_pow(rows: Sequence[Sequence[Any]], exponent: int, mod: Any) -> Any:
    """base^exponent mod ``mod`` from a :func:`_comb_table`: one mulmod per non-zero byte."""
    acc = rows[0][0]
    for row, digit in zip(rows, exponent.to_bytes(len(rows), "little")):
        if digit:
            acc = acc * row[digit] % mod
    return acc


@functools.lru_cache(maxsize=_DJN_TABLES_KEPT)
def _djn_tables(n: int, p: int, q: int, h: int) -> tuple[Any, ...]:
    """Comb tables of ``h_s = hⁿ``: mod p² and q² when the factors are given
    (p, q > 0), else mod n². Built once per process and (n, p, q, h)."""
    gmpy2 = _gmpy2()
    bits = djn_exponent_bits(n.bit_length())
    if p:
        p2, q2 = gmpy2.mpz(p * p), gmpy2.mpz(q * q)
        return (_comb_table(gmpy2.powmod(h, n, p2), p2, bits), _comb_table(gmpy2.powmod(h, n, q2), q2, bits))
    n2 = gmpy2.mpz(n * n)
    return (_comb_table(gmpy2.powmod(h, n, n2), n2, bits),)


def _djn_obfuscators(n: int, p: int, q: int, h: int, exponents: Sequence[int]) -> list[int]:
    """``(hⁿ)^α mod n²`` for each α in ``exponents``, from the cached tables."""
    gmpy2 = _gmpy2()
    tables = _djn_tables(n, p, q, h)
    if not p:
        n2 = gmpy2.mpz(n * n)
        return [int(_comb_pow(tables[0], alpha, n2)) for alpha in exponents]
    p2, q2 = gmpy2.mpz(p * p), gmpy2.mpz(q * q)
    inv = gmpy2.invert(p2, q2)
    tp, tq = tables
    out = []
    for alpha in exponents:
        a, b = _comb_pow(tp, alpha, p2), _comb_pow(tq, alpha, q2)
        out.append(int(a + p2 * ((b - a) * inv % q2)))
    return out


def _draw_exponents(count: int, bits: int) -> list[int]:
    """``count`` fresh DJN exponents, uniform in [0, 2^bits), from the OS CSPRNG."""
    return [secrets.randbits(bits) for _ in range(count)]


def _djn_chunk(n: int, p: int, q: int, h: int, count: int) -> list[int]:
    """``count`` DJN obfuscators with fresh exponents (runs in worker processes too)."""
    return _djn_obfuscators(n, p, q, h, _draw_exponents(count, djn_exponent_bits(n.bit_length())))


def map_chunks(fn: Any, jobs: list[tuple[Any, ...]], workers: int) -> list[Any]:
    """Run ``fn(*job)`` for each job, in a process pool when ``workers > 1``."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    ex = _executor(workers)
    futures = [ex.submit(fn, *job) for job in jobs]
    return [f.result() for f in futures]


def check_workers(workers: int) -> int:
    """``workers`` if it is a positive int; ``ConfigError`` otherwise."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError("workers must be a positive int", workers=workers)
    return workers


class NoisePool:
    """Single-use precomputed obfuscators ``rⁿ mod n²``.

    ``NoisePool(pk, sk=None, *, method="djn")``; :meth:`fill` adds ``count``
    fresh elements (CRT-fast when ``sk`` is given, across ``workers``
    processes); :meth:`take` removes and returns one. An empty pool raises
    :class:`ConfigError`, never reuses. ``method="djn"`` (default) draws
    r = h^α with this process's base h for the key (:func:`djn_base`) and a
    fresh ⌈|n|/2⌉-bit α per element; ``"standard"`` draws r uniform in Z*_n.
    Elements are secret: anyone holding one can strip the noise from the
    ciphertext it was used for.
    """

    def __init__(
        self, pk: PaillierPublicKey, sk: PaillierSecretKey | None = None, *, method: str = DEFAULT_POOL_METHOD
    ) -> None:
        if sk is not None and sk.public != pk:
            raise ConfigError("secret key does not match public key")
        if method not in POOL_METHODS:
            raise ConfigError(f"method must be one of {POOL_METHODS}", method=method)
        self.public = pk
        self.method = method
        self._secret = sk
        self._items: list[int] = []
        self._h = djn_base(pk.n) if method == "djn" else 0

    def __len__(self) -> int:
        return len(self._items)

    def fill(self, count: int, *, workers: int = 1) -> None:
        """Add ``count`` fresh elements, on up to ``workers`` processes (each given >= 64)."""
        if not isinstance(count, int) or count < 0:
            raise ConfigError("count must be a non-negative int", count=count)
        check_workers(workers)
        p, q = (self._secret.p, self._secret.q) if self._secret else (0, 0)
        # at least PARALLEL_MIN_ITEMS per process: the pool spawns only the processes it is given work for
        n_parts = max(1, min(workers, count // PARALLEL_MIN_ITEMS))
        parts = [count // n_parts + (i < count % n_parts) for i in range(n_parts)]
        if self.method == "djn":
            jobs: list[tuple[int, ...]] = [(self.public.n, p, q, self._h, c) for c in parts if c]
            fn: Any = _djn_chunk
        else:
            jobs = [(self.public.n, p, q, c) for c in parts if c]
            fn = _pool_chunk
        for chunk in map_chunks(fn, jobs, workers):
            self._items.extend(chunk)

    def take(self) -> int:
        if not self._items:
            raise ConfigError("noise pool is empty; call fill() first", left=0)
        return self._items.pop()


# -------------------------------------------------------------------- packing
@dataclass(frozen=True)
class PackingPlan:
    """How signed integers in ``[-bound, bound]`` are packed per plaintext.

    ``slot_bits = bit_length(2·bound·n_clients)`` so a sum of ``n_clients``
    packed plaintexts never carries between slots; ``slots`` per plaintext fill
    at most ``key_bits − 1`` bits. Raises ``ConfigError`` for bad arguments
    and ``OverflowRiskError`` if not even one slot fits.
    """

    n_clients: int
    bound: int
    key_bits: int = DEFAULT_KEY_BITS
    slot_bits: int = field(init=False)
    slots: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("n_clients", "bound", "key_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive int", **{name: value})
        if self.key_bits < MIN_KEY_BITS:
            raise ConfigError(f"key_bits must be >= {MIN_KEY_BITS}", key_bits=self.key_bits)
        slot_bits = (2 * self.bound * self.n_clients).bit_length()
        slots = (self.key_bits - 1) // slot_bits
        if slots < 1 or slot_bits > 62:
            raise OverflowRiskError("a slot cannot hold the n-client sum", slot_bits=slot_bits, key_bits=self.key_bits)
        object.__setattr__(self, "slot_bits", slot_bits)
        object.__setattr__(self, "slots", slots)

    @classmethod
    def for_bits(
        cls, n_clients: int, value_bits: int, key_bits: int = DEFAULT_KEY_BITS, *, max_weight: int = 1
    ) -> "PackingPlan":
        """Plan for ``value_bits``-bit signed values (|v| ≤ 2^(b−1) − 1) times a
        weight up to ``max_weight`` (the weighted update n_k·x_k)."""
        if not isinstance(value_bits, int) or not 2 <= value_bits <= 48:
            raise ConfigError("value_bits must be in [2, 48]", value_bits=value_bits)
        if not isinstance(max_weight, int) or max_weight < 1:
            raise ConfigError("max_weight must be a positive int", max_weight=max_weight)
        return cls(n_clients, (2 ** (value_bits - 1) - 1) * max_weight, key_bits)

    def n_ciphertexts(self, length: int) -> int:
        return -(-length // self.slots)

    def pack(self, values: NDArray[np.integer]) -> list[int]:
        """Pack one client's values; raises ``OverflowRiskError`` outside ±bound."""
        v = np.asarray(values)
        if v.ndim != 1 or v.dtype.kind not in "iu":
            raise ConfigError("values must be a 1-D integer array")
        v = v.astype(np.int64)
        if v.size and (int(v.min()) < -self.bound or int(v.max()) > self.bound):
            raise OverflowRiskError("value outside the planned bound", bound=self.bound)
        k = self.n_ciphertexts(v.size)
        slots = np.zeros(k * self.slots, dtype=np.uint64)
        slots[: v.size] = (v + self.bound).astype(np.uint64)
        bits = _to_bits(slots, self.slot_bits).reshape(k, self.slots * self.slot_bits)
        width = self.slots * self.slot_bits
        pad = (-width) % 8
        if pad:
            bits = np.concatenate([bits, np.zeros((k, pad), dtype=np.uint8)], axis=1)
        raw = np.packbits(bits, axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in raw]

    def unpack(self, plaintexts: Sequence[int], length: int, n_contributors: int) -> NDArray[np.int64]:
        """Inverse of summing ``n_contributors`` packed vectors: the signed sums.

        Raises ``IntegrityError`` when a plaintext has bits above the slots or
        a slot exceeds what ``n_contributors`` values can sum to (a corrupted or
        foreign ciphertext, never silently wrong output)."""
        if not 1 <= n_contributors <= self.n_clients:
            raise ConfigError("n_contributors out of range", n_contributors=n_contributors)
        if len(plaintexts) != self.n_ciphertexts(length):
            raise ConfigError("wrong number of plaintexts for length", length=length)
        width = self.slots * self.slot_bits
        nbytes = (width + 7) // 8
        rows = []
        for m in plaintexts:
            if m < 0 or m >> width:
                raise IntegrityError("plaintext has bits outside the packing slots")
            rows.append(np.frombuffer(m.to_bytes(nbytes, "little"), dtype=np.uint8))
        if not rows:
            return np.zeros(0, dtype=np.int64)
        bits = np.unpackbits(np.stack(rows), axis=1, bitorder="little")[:, :width]
        slots = _from_bits(bits.reshape(-1, self.slot_bits)).astype(np.int64)[:length]
        offset = n_contributors * self.bound
        if slots.size and int(slots.max()) > 2 * offset:
            raise IntegrityError("slot sum exceeds what the contributors can produce")
        return slots - offset


def _to_bits(values: NDArray[np.uint64], width: int) -> NDArray[np.uint8]:
    """Little-endian bits of each value, ``width`` per value, flattened."""
    as_bytes = values.astype("<u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :width].reshape(-1)


def _from_bits(bits: NDArray[np.uint8]) -> NDArray[np.uint64]:
    width = bits.shape[1]
    padded = np.zeros((bits.shape[0], 64), dtype=np.uint8)
    padded[:, :width] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").reshape(-1)


def encrypt_packed(pk: PaillierPublicKey, plan: PackingPlan, values: NDArray[np.integer], pool: NoisePool) -> list[int]:
    """Pack and encrypt one client's vector, one pool element per ciphertext."""
    if plan.key_bits > pk.bits:
        raise ConfigError("plan needs a larger key", key_bits=plan.key_bits, bits=pk.bits)
    if pool.public != pk:
        raise ConfigError("noise pool belongs to another key")
    plaintexts = plan.pack(values)
    if len(pool) < len(plaintexts):
        raise ConfigError("noise pool too small", needed=len(plaintexts), left=len(pool))
    gmpy2 = _gmpy2()
    n, n2 = gmpy2.mpz(pk.n), gmpy2.mpz(pk.nsquare)
    return [int((n * m + 1) * pool.take() % n2) for m in plaintexts]


def _decrypt_batch(sk: PaillierSecretKey, cts: Sequence[int]) -> list[int]:
    """CRT decryption of one batch; gmpy2's list powmods release the GIL, so
    batches in different threads run on different cores."""
    gmpy2 = _gmpy2()
    hp, hq, p_inv, p, q, p2, q2 = sk._crt
    xs = gmpy2.powmod_base_list(cts, p - 1, p2)
    ys = gmpy2.powmod_base_list(cts, q - 1, q2)
    out = []
    for x, y in zip(xs, ys):
        m_p = (x - 1) // p * hp % p
        m_q = (y - 1) // q * hq % q
        out.append(int(m_p + p * ((m_q - m_p) * p_inv % q)))
    return out


def decrypt_many(sk: PaillierSecretKey, cts: Sequence[int], *, workers: int = 1) -> list[int]:
    """:func:`decrypt_raw` of each ciphertext, in shared-nothing batches over ``workers`` threads.

    Each batch reads only the key and its own ciphertexts and returns its own
    plaintexts, so ``workers`` cores give close to ``workers``× (no process
    start-up, nothing copied). Below :data:`PARALLEL_MIN_ITEMS` one thread runs.
    """
    check_workers(workers)
    cts = [int(c) for c in cts]
    if workers == 1 or len(cts) < PARALLEL_MIN_ITEMS:
        return _decrypt_batch(sk, cts)
    n_batches = min(len(cts), workers * _BATCHES_PER_WORKER)
    step = -(-len(cts) // n_batches)
    batches = [cts[i : i + step] for i in range(0, len(cts), step)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paillier-decrypt") as ex:
        return [m for batch in ex.map(functools.partial(_decrypt_batch, sk), batches) for m in batch]


def decrypt_packed(
    sk: PaillierSecretKey, plan: PackingPlan, cts: Sequence[int], length: int, n_contributors: int, *, workers: int = 1
) -> NDArray[np.int64]:
    """Decrypt (CRT, across ``workers`` threads: :func:`decrypt_many`) and unpack a summed vector."""
    return plan.unpack(decrypt_many(sk, cts, workers=workers), length, n_contributors)


def sum_ciphertexts(pk: PaillierPublicKey, vectors: Sequence[Sequence[int]]) -> list[int]:
    """Element-wise homomorphic sum of equally long ciphertext vectors."""
    if not vectors:
        raise ConfigError("nothing to sum")
    k = len(vectors[0])
    if any(len(v) != k for v in vectors):
        raise ConfigError("ciphertext vectors differ in length")
    gmpy2 = _gmpy2()
    n2 = gmpy2.mpz(pk.nsquare)
    acc = [gmpy2.mpz(c) for c in vectors[0]]
    for vec in vectors[1:]:
        acc = [a * c % n2 for a, c in zip(acc, vec)]
    return [int(a) for a in acc]


def ciphertexts_to_bytes(pk: PaillierPublicKey, cts: Sequence[int]) -> bytes:
    """Fixed-width little-endian encoding, ``pk.ciphertext_bytes`` per ciphertext."""
    w = pk.ciphertext_bytes
    return b"".join(int(c).to_bytes(w, "little") for c in cts)


def ciphertexts_from_bytes(pk: PaillierPublicKey, data: bytes, count: int | None = None) -> list[int]:
    """Inverse of :func:`ciphertexts_to_bytes`; ``DecodeError`` on a bad length
    or an element outside [1, n²)."""
    w = pk.ciphertext_bytes
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) % w:
        raise DecodeError("ciphertext bytes are not a multiple of the width", width=w)
    if count is not None and len(data) != count * w:
        raise DecodeError("wrong number of ciphertexts", expected=count, got=len(data) // w)
    n2 = pk.nsquare
    out = []
    mv = memoryview(data)
    for i in range(0, len(data), w):
        c = int.from_bytes(mv[i : i + w], "little")
        if not 0 < c < n2:
            raise DecodeError("ciphertext outside [1, n²)", index=i // w)
        out.append(c)
    check_units(pk, out)
    return out


def check_units(pk: PaillierPublicKey, cts: Sequence[int]) -> None:
    """Raise ``IntegrityError(index=i)`` unless every ciphertext is a unit of Z*_{n²}.

    A non-unit (gcd(c, n) ≠ 1, e.g. c = n) encrypts nothing. Added into a sum
    it makes the aggregate a non-unit, so every partial decryption of it fails
    its proof and the honest decryptors would be blamed: refuse it at receipt,
    where its sender is known. One gcd for the whole vector, since a prime
    factor of n divides ∏ c_i mod n exactly when it divides some c_i (about a
    third of the cost of one homomorphic add per ciphertext).
    """
    gmpy2 = _gmpy2()
    n = gmpy2.mpz(pk.n)
    acc = gmpy2.mpz(1)
    for c in cts:
        acc = acc * gmpy2.f_mod(gmpy2.mpz(c), n) % n
    if gmpy2.gcd(acc, n) == 1:
        return
    for i, c in enumerate(cts):
        if gmpy2.gcd(gmpy2.mpz(c), n) != 1:
            raise IntegrityError("ciphertext is not a unit mod n² (gcd(c, n) ≠ 1): it encrypts nothing", index=i)
