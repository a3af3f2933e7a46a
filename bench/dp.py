"""DP benchmark: exact vectorised noise samplers vs a pure-Python exact loop, and the DP layer's cost.

Measured in one run, so ratios survive the noise of a shared machine:

* ``samplers``: :func:`secagg.dp.discrete_gaussian` (exact, ChaCha20 CSPRNG)
  and :func:`secagg.dp.skellam` producing 10^6 values (10^5 with
  ``--quick``) at several scales, against the reference: CKS20's exact
  algorithm as a pure-Python per-sample loop with ``fractions.Fraction`` and
  ``secrets.randbelow`` (as in the authors' ``exact_sampler`` and IBM's
  ``discretegauss.py``), timed on a small sample and extrapolated linearly.
  Also numpy's ``Generator.poisson`` (not a CSPRNG) for Skellam, for scale.
  Goal: 10^6 discrete-Gaussian values in under 2 s.
* ``round``: one in-process SecAgg+ round (``protocols.sim``, N = 10
  clients, 1 dropout) at d = 10^5 and 10^6 with the DP layer
  (:func:`protocols.dp.run_dp`) against the same round with the fixed-point
  encoder: the DP layer's overhead on a real round.
* ``encoder``: :class:`secagg.dp.DistributedDPEncoder` encode (rotation,
  clip, scale, conditional rounding, noise, modular reduction) and decode at
  d = 10^5 and 10^6, against :class:`secagg.encoding.FixedPointEncoder`'s
  encode of the same vector (the per-client overhead the DP layer adds to a
  SecAgg+ round; the masking cost is the protocol's and unchanged).

Run ``python bench/dp.py [--quick | --smoke] [--json out.json]``. Prints one JSON
document, then a table. Timings are not asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import secrets
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from timing import best_of, emit  # noqa: E402  (bench/ is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols import sim  # noqa: E402
from protocols.dp import DistributedDP, run_dp  # noqa: E402
from secagg.dp import DistributedDPEncoder, discrete_gaussian, skellam  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402

GOAL_SECONDS_PER_MILLION = 2.0


_best = best_of


# -- the pure-Python exact reference (CKS20 Algs. 1-3, one sample at a time) ---------
def _bern(p: Fraction) -> bool:
    return secrets.randbelow(p.denominator) < p.numerator


def _bern_exp(gamma: Fraction) -> bool:
    while gamma > 1:
        if not _bern_exp(Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while _bern(gamma / k):
        k += 1
    return k % 2 == 1


def _dlap(t: int) -> int:
    while True:
        u = secrets.randbelow(t)
        if not _bern_exp(Fraction(u, t)):
            continue
        v = 0
        while _bern_exp(Fraction(1)):
            v += 1
        x = u + t * v
        negative = secrets.randbelow(2) == 1
        if negative and x == 0:
            continue
        return -x if negative else x


def reference_discrete_gaussian(sigma: float) -> int:
    s2 = Fraction(sigma) ** 2
    t = math.floor(sigma) + 1
    while True:
        y = _dlap(t)
        if _bern_exp((abs(y) - s2 / t) ** 2 / (2 * s2)):
            return y


def bench_samplers(quick: bool) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    ref_n = 200 if quick else 2000
    repeats = 1 if quick else 3
    rows = []
    for sigma in (1.0, 10.0, 476.9):  # 476.9: config A's scaled share at 12 bits
        ours = _best(lambda: discrete_gaussian(sigma, n), repeats)
        t0 = time.perf_counter()
        for _ in range(ref_n):
            reference_discrete_gaussian(sigma)
        ref_per = (time.perf_counter() - t0) / ref_n
        rows.append(
            {
                "sampler": "discrete_gaussian",
                "sigma": sigma,
                "n": n,
                "ours_s": ours,
                "ours_s_per_million": ours * 1e6 / n,
                "reference": "pure-Python exact CKS20 loop",
                "reference_us_per_sample": ref_per * 1e6,
                "reference_s_per_million_extrapolated": ref_per * 1e6,
                "speedup": ref_per * n / ours,
                "goal_met": ours * 1e6 / n <= GOAL_SECONDS_PER_MILLION,
            }
        )
    for variance in (4.0, 1e4, 2.3e5):
        ours = _best(lambda: skellam(variance, n), repeats)
        gen = np.random.default_rng()
        ref = _best(lambda: gen.poisson(variance / 2, n) - gen.poisson(variance / 2, n), repeats)
        rows.append(
            {
                "sampler": "skellam",
                "variance": variance,
                "n": n,
                "ours_s": ours,
                "ours_s_per_million": ours * 1e6 / n,
                "reference": "numpy Generator.poisson (PCG64, not a CSPRNG)",
                "reference_s": ref,
                "ratio_to_reference": ours / ref,
            }
        )
    return rows


def bench_encoder(quick: bool) -> list[dict[str, Any]]:
    dims = (10_000,) if quick else (100_000, 1_000_000)
    repeats = 1 if quick else 3
    rows = []
    for d in dims:
        x = np.random.default_rng(0).normal(size=d).astype(np.float32) * 1e-3
        for mech in ("ddgauss", "skellam"):
            enc = DistributedDPEncoder.create(
                dim=d,
                n_clients=100,
                min_survivors=80,
                l2_clip=1.0,
                noise_multiplier=1.0,
                bits=20,
                rotation_seed=os.urandom(16),
                mechanism=mech,
            )
            t_enc = _best(lambda: enc.encode(x), repeats)
            y = enc.encode(x)
            t_dec = _best(lambda: enc.decode_sum(y), repeats)
            fixed = FixedPointEncoder(1.0, 20, 100, norm="l2")
            t_fixed = _best(lambda: fixed.encode(x), repeats)
            rows.append(
                {
                    "dim": d,
                    "padded_dim": enc.padded_dim,
                    "mechanism": mech,
                    "bits": 20,
                    "dp_encode_s": t_enc,
                    "dp_decode_s": t_dec,
                    "fixed_point_encode_s": t_fixed,
                    "encode_overhead_ratio": t_enc / t_fixed,
                }
            )
    return rows


def bench_round(quick: bool) -> list[dict[str, Any]]:
    dims = (10_000,) if quick else (100_000, 1_000_000)
    n = 10
    rows = []
    for d in dims:
        rng = np.random.default_rng(1)
        updates = [rng.normal(size=d) * 1e-3 for _ in range(n)]
        dropouts = {3: "masked_input"}
        t0 = time.perf_counter()
        sim.run("secagg+", updates, dropouts=dropouts, neighbors=6)
        plain = time.perf_counter() - t0
        dp = DistributedDP(
            dim=d, n_clients=n, min_survivors=8, l2_clip=1.0, noise_multiplier=1.0, bits=20, sampling_rate=0.1
        )
        t0 = time.perf_counter()
        result = run_dp("secagg+", updates, dp, dropouts=dropouts, neighbors=6)
        with_dp = time.perf_counter() - t0
        assert result.dp is not None  # run_dp always reports
        rows.append(
            {
                "dim": d,
                "padded_dim": dp.padded_dim,
                "n_clients": n,
                "dropouts": 1,
                "bits": 20,
                "secagg_plus_round_s": plain,
                "secagg_plus_dp_round_s": with_dp,
                "overhead_ratio": with_dp / plain,
                "epsilon_round": result.dp.epsilon_round,
            }
        )
    return rows


def _table(result: dict[str, Any]) -> str:
    lines = ["sampler            scale        ours s/1e6   reference            speedup/ratio"]
    for r in result["samplers"]:
        if r["sampler"] == "discrete_gaussian":
            lines.append(
                f"discrete_gaussian  sigma={r['sigma']:<7g} {r['ours_s_per_million']:9.3f}   "
                f"{r['reference_s_per_million_extrapolated']:9.1f} s/1e6 (py)  x{r['speedup']:.0f}"
            )
        else:
            lines.append(
                f"skellam            var={r['variance']:<9g} {r['ours_s_per_million']:9.3f}   "
                f"numpy {r['reference_s']:.3f} s       {r['ratio_to_reference']:.1f}x slower"
            )
    lines.append("")
    lines.append("encoder  dim        mech     dp encode s  decode s  fixed-point s  overhead")
    for r in result["encoder"]:
        lines.append(
            f"         {r['dim']:<10d} {r['mechanism']:<8s} {r['dp_encode_s']:10.3f}  {r['dp_decode_s']:8.3f}"
            f"  {r['fixed_point_encode_s']:12.4f}  x{r['encode_overhead_ratio']:.1f}"
        )
    lines.append("")
    lines.append("secagg+ round  dim        plain s   with DP s  overhead")
    for r in result["round"]:
        lines.append(
            f"               {r['dim']:<10d} {r['secagg_plus_round_s']:7.2f}  {r['secagg_plus_dp_round_s']:9.2f}"
            f"  x{r['overhead_ratio']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--smoke", action="store_true", help="the --quick sizes, flagged as a smoke run (tests)")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke  # --quick already runs in a few seconds
    result = {
        "benchmark": "dp",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "numpy": np.__version__},
        "quick": args.quick,
        "smoke": args.smoke,
        "samplers": bench_samplers(args.quick),
        "encoder": bench_encoder(args.quick),
        "round": bench_round(args.quick),
    }
    emit(result, _table(result), args.json)
    return result


if __name__ == "__main__":
    main()
