"""Threshold Paillier partial decryption against its exponentiation limit.

Per party, per 1M parameters (n = 10 clients, 16-bit values, the packing plan
of ``bench/he.py``), at 2048-bit keys, all measured in one run:

* ``limit``: one ``c^{2Δ s_i} mod n²`` per ciphertext (gmpy2 ``powmod``, the
  same exponent as the party's), CPU time of one process; divided by the
  number of workers for the W-worker limit;
* ``partial_decrypt``: :func:`secagg.paillier_threshold.partial_decrypt` (values
  plus the batched proof) at 1 and 2 workers, with the process pool started
  before timing; goal within 1.2x of the limit;
* ``proof_overhead``: the batched proof alone (composite multi-exponentiation
  and three powmods), as a fraction of the limit; goal at most 20%;
* ``exponentiations``: the values alone (the same powmods, chunked and run in
  the same pool as ``partial_decrypt``), to show what this machine gives the
  workers apart from the proof;
* ``verify``: :func:`verify_partial` of one party's partials, at 1 and 2 workers;
* ``per_ciphertext_proof_reference``: one Chaum–Pedersen proof per ciphertext
  (what the batched proof replaces), measured on a few ciphertexts.

Scaling: each figure is measured on 1 ciphertext (its fixed cost) and on a
sample of N ciphertexts; per 1M parameters = fixed + slope × ciphertexts per 1M.
The proof and verification rows use a longer vector (the sample repeated, with
its own valid proof), since their per-ciphertext cost is small.
One-worker figures are CPU time (``time.process_time``), the least disturbed
by other load on a shared machine; worker figures are wall time, with their
CPU time (all threads) as the work done. Repeats are interleaved: each repeat
times the limit, then every row once. Times are the best of the repeats;
ratios are the median of each repeat's ratio to that repeat's limit. The key uses random primes, not safe primes,
unless ``--safe-primes FILE`` holds a cached pair: the exponent sizes (and so
every timing) are the same, and generating 1024-bit safe primes takes minutes.

Run ``python bench/he_threshold.py [--quick | --smoke] [--json out.json] [--safe-primes FILE]``.
Prints one JSON document, then a table. Timings are not asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from timing import best_of, emit  # noqa: E402  (bench/ is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gmpy2  # noqa: E402

from secagg import paillier as P  # noqa: E402
from secagg import paillier_threshold as T  # noqa: E402

PER = 1_000_000
N_CLIENTS = 10
VALUE_BITS = 16
THRESHOLD = 6
WORKERS = (1, 2)
GOAL_RATIO = 1.2
GOAL_PROOF_OVERHEAD = 0.20


def _clock(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall time, CPU time of this process and all its threads) of one call."""
    cpu: list[float] = []

    def timed() -> None:
        t0 = time.process_time()
        fn()
        cpu.append(time.process_time() - t0)

    return best_of(timed, 1), cpu[0]


def _key(bits: int, safe_primes: str | None) -> tuple[T.ThresholdPublicKey, list[T.KeyShare], str]:
    if safe_primes:
        store = T.SafePrimeStore(safe_primes)
        if store.available(bits // 2) >= 2:
            pub, shares = T.deal(THRESHOLD, N_CLIENTS, bits=bits, primes=store.take_pair(bits // 2))
            return pub, shares, "safe primes from the store"

    def prime() -> int:  # top two bits set, so that n has exactly ``bits`` bits
        return int(gmpy2.next_prime(secrets.randbits(bits // 2) | (3 << (bits // 2 - 2))))

    p, q = prime(), prime()
    n, m = p * q, ((p - 1) // 2) * ((q - 1) // 2)
    coeffs = [secrets.randbelow(n * m) for _ in range(THRESHOLD - 1)]
    # the dealer's deterministic core, with random (not safe) primes: same sizes, seconds instead of minutes
    pub, shares = T._deal_with(p, q, N_CLIENTS, coeffs, secrets.randbelow(n - 2) + 2)
    return pub, shares, "random primes (not safe): timing only"


def _per_million(t_one: float, t_sample: float, sample: int, cts_per_m: int) -> float:
    """Fixed cost (1 ciphertext) plus the per-ciphertext slope, for ``cts_per_m`` ciphertexts."""
    slope = max(t_sample - t_one, 0.0) / (sample - 1)
    return t_one + slope * (cts_per_m - 1)


def _reference_proofs(
    pub: T.ThresholdPublicKey, share: T.KeyShare, cts: list[int], values: tuple[int, ...]
) -> list[tuple[int, int, int, int]]:
    """One Chaum–Pedersen proof per ciphertext: (a_j, b_j, e_j, z_j) for log_{c_j⁴} c_ij² = log_v v_i."""
    n2, secret = pub.nsquare, pub.delta * share.share
    out = []
    for c, ci in zip(cts, values):
        r = secrets.randbits(3 * pub.n.bit_length() + T.CHALLENGE_BITS + T.SLACK_BITS)
        base = pow(c, 4, n2)
        a, b = int(gmpy2.powmod(base, r, n2)), int(gmpy2.powmod(pub.v, r, n2))
        e = int.from_bytes(hashlib.sha256(b"".join(x.to_bytes(512, "big") for x in (base, ci, a, b))).digest(), "big")
        out.append((a, b, e, r + e * secret))
    return out


def _reference_verify(
    pub: T.ThresholdPublicKey, index: int, cts: list[int], values: tuple[int, ...], proofs: list[Any]
) -> bool:
    n2, vk = pub.nsquare, pub.verification_keys[index - 1]
    ok = True
    for c, ci, (a, b, e, z) in zip(cts, values, proofs):
        base, small = pow(c, 4, n2), ci * ci % n2
        ok &= gmpy2.powmod(base, z, n2) == a * gmpy2.powmod(small, e, n2) % n2
        ok &= gmpy2.powmod(pub.v, z, n2) == b * gmpy2.powmod(vk, e, n2) % n2
    return bool(ok)


def run(
    bits: int, sample: int, long_sample: int, ref_sample: int, repeats: int, safe_primes: str | None
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    pub, shares, primes = _key(bits, safe_primes)
    share = shares[0]
    plan = P.PackingPlan.for_bits(N_CLIENTS, VALUE_BITS, pub.n.bit_length())
    cts_per_m = plan.n_ciphertexts(PER)
    pool = P.NoisePool(pub.paillier)
    pool.fill(sample)
    plaintexts = [secrets.randbelow(pub.n) for _ in range(sample)]
    cts = [P.encrypt_raw(pub.paillier, m, pool.take()) for m in plaintexts]
    one = cts[:1]
    n2, exp = pub.nsquare, 2 * pub.delta * share.share
    for w in WORKERS:
        P.warm_up(w)  # start the pool before anything is timed

    def powmods(batch: list[int]) -> list[int]:
        return [int(gmpy2.powmod(c, exp, n2)) for c in batch]

    values = T._partial_values(pub, share, cts, 1)
    r = secrets.randbits(3 * pub.n.bit_length() + T.CHALLENGE_BITS + T.SLACK_BITS)
    # a long vector for the proof and verification rows: the sample repeated, with a valid proof
    long_cts = (cts * -(-long_sample // sample))[:long_sample]
    long_values = (values * -(-long_sample // sample))[:long_sample]
    long_part = T._prove(pub, share, long_cts, long_values, r, 1)
    part_one = T._prove(pub, share, one, values[:1], r, 1)
    # Interleaved repeats: each repeat times the limit and then every row once, so that a
    # row and the limit it is divided by see the same load. Per 1M: fixed + slope model.
    limits: list[float] = []
    rows: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(repeats):
        limits.append(_clock(lambda: powmods(cts))[1] / sample * cts_per_m)
        for w in WORKERS:
            jobs = {
                "exponentiations": (lambda: powmods(one), lambda: T._partial_values(pub, share, cts, w)),
                "partial_decrypt": (
                    lambda: T.partial_decrypt(pub, share, one, workers=w),
                    lambda: T.partial_decrypt(pub, share, cts, workers=w),
                ),
                # the proof alone: the private prover core, on values already computed, over the
                # long vector (its per-ciphertext cost is small: a short sample would time noise)
                "proof": (
                    lambda: T._prove(pub, share, one, values[:1], r, w),
                    lambda: T._prove(pub, share, long_cts, long_values, r, w),
                ),
                "verify": (
                    lambda: T.verify_partial(pub, one, part_one, workers=w),
                    lambda: T.verify_partial(pub, long_cts, long_part, workers=w),
                ),
            }
            for name, (fn_one, fn_n) in jobs.items():
                (w1, c1), (wn, cn) = _clock(fn_one), _clock(fn_n)
                k = len(long_cts) if name in ("proof", "verify") else sample
                rows.setdefault((name, w), []).append(
                    (_per_million(w1, wn, k, cts_per_m), _per_million(c1, cn, k, cts_per_m))
                )

    def figure(name: str, w: int) -> tuple[float, float, float]:
        """(best time, its median ratio to the W-worker limit, best CPU time); W = 1: CPU clock."""
        runs = rows[(name, w)]
        clock = [c if w == 1 else wall for wall, c in runs]
        ratios = [t / (lim / w) for t, lim in zip(clock, limits)]
        return min(clock), statistics.median(ratios), min(c for _, c in runs)

    limit = min(limits)
    out: dict[str, Any] = {
        "limit": {
            "exponent_bits": exp.bit_length(),
            "powmod_ms": limit / cts_per_m * 1e3,
            "per_party_s": {str(w): limit / w for w in WORKERS},
            "spread_over_repeats": max(limits) / limit,
        },
        "exponentiations": {},
        "partial_decrypt": {},
        "proof_overhead": {},
        "verify": {},
    }
    for w in WORKERS:
        exps, exps_ratio, _ = figure("exponentiations", w)
        total, total_ratio, total_cpu = figure("partial_decrypt", w)
        proof, proof_ratio, _ = figure("proof", w)
        out["exponentiations"][str(w)] = {"per_party_s": exps, "ratio_to_limit": exps_ratio}
        out["partial_decrypt"][str(w)] = {
            "per_party_s": total,
            "ratio_to_limit": total_ratio,
            "ratio_to_exponentiations": total_ratio / exps_ratio,
            "cpu_s": total_cpu,
            "cpu_over_one_core_limit": total_cpu / limit,
            "clock": "cpu" if w == 1 else "wall",
        }
        out["proof_overhead"][str(w)] = {"per_party_s": proof, "fraction_of_limit": proof_ratio}
        verify, verify_ratio, _ = figure("verify", w)
        out["verify"][str(w)] = {"per_party_s": verify, "fraction_of_limit": verify_ratio}
    ref_cts, ref_vals = cts[:ref_sample], values[:ref_sample]
    t_ref = best_of(lambda: _reference_proofs(pub, share, ref_cts, ref_vals), repeats, time.process_time)
    proofs = _reference_proofs(pub, share, ref_cts, ref_vals)
    t_ref_v = best_of(
        lambda: _reference_verify(pub, share.index, ref_cts, ref_vals, proofs), repeats, time.process_time
    )
    out["per_ciphertext_proof_reference"] = {
        "prove_per_party_s": t_ref / ref_sample * cts_per_m,
        "prove_fraction_of_limit": t_ref / ref_sample * cts_per_m / limit,
        "verify_per_party_s": t_ref_v / ref_sample * cts_per_m,
        "verifies": _reference_verify(pub, share.index, ref_cts, ref_vals, proofs),
        "sample_ciphertexts": ref_sample,
    }
    parts = [T.partial_decrypt(pub, s, cts) for s in shares[:THRESHOLD]]
    out["combine_correct"] = T.combine(pub, cts, parts) == plaintexts
    out["key"] = {"bits": pub.n.bit_length(), "primes": primes, "t": pub.threshold, "parties": pub.parties}
    out["scaling"] = {
        "params": PER,
        "values_per_ciphertext": plan.slots,
        "ciphertexts_per_1M": cts_per_m,
        "sample_ciphertexts": sample,
        "proof_and_verify_sample_ciphertexts": long_sample,
        "model": "measured on 1 and on a sample of ciphertexts; fixed + slope x ciphertexts_per_1M",
    }
    out["machine"] = {
        "python": platform.python_version(),
        "usable_cores": P.usable_cores(),
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": os.getloadavg()[0],
    }
    out["goal"] = {"ratio_to_limit_max": GOAL_RATIO, "proof_overhead_max": GOAL_PROOF_OVERHEAD}
    out["goal_met"] = {
        str(w): out["partial_decrypt"][str(w)]["ratio_to_limit"] <= GOAL_RATIO
        and out["proof_overhead"][str(w)]["fraction_of_limit"] <= GOAL_PROOF_OVERHEAD
        for w in WORKERS
    }
    return out


def _table(res: dict[str, Any]) -> str:
    k, sc, lim = res["key"], res["scaling"], res["limit"]
    lines = [
        f"threshold Paillier {k['t']}-of-{k['parties']}, {k['bits']}-bit n ({k['primes']}); per party per 1M params "
        f"= {sc['ciphertexts_per_1M']} ciphertexts (from {sc['sample_ciphertexts']}); "
        f"powmod {lim['powmod_ms']:.1f} ms ({lim['exponent_bits']}-bit exponent)",
        f"{'workers':>8s} {'limit s':>9s} {'partial+proof s':>16s} {'x limit':>8s} {'CPU/limit':>10s} "
        f"{'proof s':>8s} {'/limit':>8s}",
    ]
    for w, row in res["partial_decrypt"].items():
        pr = res["proof_overhead"][w]
        lines.append(
            f"{w:>8s} {lim['per_party_s'][w]:9.1f} {row['per_party_s']:16.1f} {row['ratio_to_limit']:8.2f} "
            f"{row['cpu_over_one_core_limit']:10.2f} "
            f"{pr['per_party_s']:8.2f} {pr['fraction_of_limit']:8.2%}"
        )
    for w, row in res["exponentiations"].items():
        lines.append(
            f"{w} worker(s): the exponentiations alone {row['per_party_s']:.1f} s "
            f"({row['ratio_to_limit']:.2f}x limit); "
            f"partial+proof / exponentiations = {res['partial_decrypt'][w]['ratio_to_exponentiations']:.2f}"
        )
    for w, v in res["verify"].items():
        lines.append(f"verify, {w} worker(s): {v['per_party_s']:.2f} s ({v['fraction_of_limit']:.2%} of the limit)")
    ref = res["per_ciphertext_proof_reference"]
    lines.append(
        f"reference, one proof per ciphertext: prove {ref['prove_per_party_s']:.0f} s "
        f"({ref['prove_fraction_of_limit']:.0%} of the limit), verify {ref['verify_per_party_s']:.0f} s"
    )
    lines.append(
        f"goal (<= {res['goal']['ratio_to_limit_max']}x limit, proof <= "
        f"{res['goal']['proof_overhead_max']:.0%}) met: {res['goal_met']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2048 bits, a small sample, one repeat")
    parser.add_argument("--smoke", action="store_true", help="512-bit key and a tiny sample (tests)")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    parser.add_argument("--safe-primes", help="SafePrimeStore file with cached safe primes of half the key size")
    args = parser.parse_args(argv)
    if args.smoke:
        bits, sample, long_sample, ref_sample, repeats = 512, 8, 16, 2, 1
    elif args.quick:
        bits, sample, long_sample, ref_sample, repeats = 2048, 32, 1024, 2, 1
    else:
        bits, sample, long_sample, ref_sample, repeats = 2048, 192, 2048, 6, 3
    result = {
        "benchmark": "he_threshold",
        "quick": args.quick,
        "smoke": args.smoke,
        **run(bits, sample, long_sample, ref_sample, repeats, args.safe_primes),
    }
    emit(result, "\n" + _table(result), args.json)
    return result


if __name__ == "__main__":
    main()
