"""Compact CKKS (seeded symmetric ciphertexts, one small prime; SEAL via seal-python) vs TenSEAL.

All figures are per 1M parameters, extrapolated from a sample measured in this
run, with n = 10 clients, updates uniform in [-1, 1]. Rows:

* ``tenseal_real``: :mod:`secagg.ckks` real mode (N = 4096, one 60-bit prime,
  32 B/param), TenSEAL's best at error ≤ 1e-6;
* ``tenseal_packed``: :mod:`secagg.ckks` with two 16-bit quantised values per
  slot (16 B/param), TenSEAL's fewest bytes;
* ``compact_precise``: :mod:`secagg.ckks_compact` at error ≤ 1e-6;
* ``compact_same_error``: :mod:`secagg.ckks_compact` at the stated error bound
  of ``tenseal_packed``;
* ``compact_coarse``: :mod:`secagg.ckks_compact` at error ≤ 1e-2.

Times are CPU time of this process (``time.process_time``), best of 3 (1 with
``--quick``/``--smoke``): encrypt is one client's cost, add is the server's
cost per client (deserialize, check, add), decrypt includes decoding. Bytes
are measured from the chunks produced (untagged; the HMAC tag adds 32 B per
chunk to either path). A row whose package is not installed says so.

``candidates`` records the evaluation of each Python binding on this project's
Python (3.11) from the package registry, done once by hand in a throwaway
virtual environment; it is not rerun here.

Run ``python bench/ckks_compact.py [--quick | --smoke] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from secagg import ckks as C  # noqa: E402
from secagg import ckks_compact as K  # noqa: E402
from timing import emit  # noqa: E402

PER = 1_000_000
N_CLIENTS = 10
GOAL_BYTES_PER_PARAM = 8.0

#: Evaluated 2026-11-30 in a fresh ``python3.11 -m venv``, installing from the package registry.
CANDIDATES: list[dict[str, Any]] = [
    {
        "binding": "seal-python 4.4.0 (Microsoft SEAL 4.x)",
        "installs": True,
        "imports": True,
        "chosen": True,
        "note": "cp311 manylinux_2_28 x86-64 wheel, 2.5 MB installed, no dependencies; wheels also for "
        "cp312/cp313 and macOS arm64, none for aarch64 Linux. Exposes encrypt_symmetric and single-prime "
        "contexts, not the seeded serialization (contains_seed() is False), so the seed is applied here.",
    },
    {
        "binding": "openfhe 1.6.1.0.22.4 (OpenFHE)",
        "installs": True,
        "imports": False,
        "chosen": False,
        "note": "py3-none-any wheel (4.9 MB, 19 MB installed) that carries openfhe.cpython-310-x86_64-linux-gnu.so "
        "only: on Python 3.11 `import openfhe` fails with ModuleNotFoundError: No module named "
        "'openfhe.openfhe'. Every listed version is a per-Ubuntu build for CPython 3.8, 3.10 or 3.12 "
        "(checked 1.2.3.0.24.4: cpython-312; 1.4.1.0.20.4: cpython-38).",
    },
    {
        "binding": "Pyfhel 3.5.0 (SEAL)",
        "installs": False,
        "imports": False,
        "chosen": False,
        "note": "source distribution only (no wheel for any Python): a clean install compiles SEAL and the "
        "Cython bindings; its metadata step alone took 66 s here. Not a clean registry install, not built.",
    },
    {
        "binding": "tenseal 0.3.18 (SEAL)",
        "installs": True,
        "imports": True,
        "chosen": False,
        "note": "the reference: no seeded symmetric ciphertexts and a fixed serialization (64-bit words per "
        "coefficient, both polynomials), so 32 B per slot at N = 4096.",
    },
]

REPS = 3


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(REPS):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def _updates(length: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)  # benchmark data only
    return [rng.uniform(-1, 1, length) for _ in range(N_CLIENTS)]


def _time_round(
    encrypt: Callable[[np.ndarray], list[bytes]],
    new_accumulator: Callable[[], Any],
    decrypt_sum: Callable[[Any, Any], np.ndarray],
    length: int,
) -> dict[str, Any]:
    """One 10-client sum through any CKKS path: CPU times per 1M params, error, bytes.

    ``encrypt`` turns one update into its chunks, ``new_accumulator`` gives an
    empty server accumulator, ``decrypt_sum(accumulator, aggregate)`` the key
    holder's decoded sum.
    """
    ups = _updates(length)
    t_enc, blobs = float("inf"), list[list[bytes]]()
    for u in ups:
        dt, b = _cpu(lambda: encrypt(u))
        t_enc, blobs = min(t_enc, dt), blobs + [b]

    def add_all() -> Any:
        acc = new_accumulator()
        for b in blobs:
            acc.add(b)
        return acc

    t_add, acc = _cpu(add_all)
    agg = acc.result()
    t_dec, total = _cpu(lambda: decrypt_sum(acc, agg))
    s = PER / length
    return {
        "encrypt_s": t_enc * s,
        "server_add_per_client_s": t_add / N_CLIENTS * s,
        "decrypt_s": t_dec * s,
        "max_abs_error_10_sum": float(np.max(np.abs(total - np.sum(ups, axis=0)))),
        "bytes_per_param": sum(len(b) for b in blobs[0]) / length,
        "aggregate_bytes_per_param": sum(len(b) for b in agg) / length,
    }


def _tenseal_row(params: C.CkksParams, length: int) -> dict[str, Any]:
    if importlib.util.find_spec("tenseal") is None:
        return {"skipped": "tenseal not installed (pip install 'secagg[he]')"}
    holder = C.CkksKeyHolder(params)
    server = C.CkksServerContext(params, holder.server_context_bytes())
    timed = _time_round(
        lambda u: list(holder.encrypt(C.encode_update(params, u, 1))),
        lambda: C.Accumulator(server, length),
        lambda acc, agg: C.decode_sum(params, holder.decrypt(agg, acc.sizes), length, N_CLIENTS)[0],
        length,
    )
    del timed["aggregate_bytes_per_param"]
    return {
        "ring_degree": C.POLY_MODULUS_DEGREE,
        "modulus_bits": sum(C.COEFF_MOD_BIT_SIZES),
        "values_per_slot": params.values_per_slot or 1,
        **timed,
        "stated_error_bound": params.error_bound,
    }


def _compact_row(params: K.CompactParams, length: int) -> dict[str, Any]:
    if importlib.util.find_spec("seal") is None:
        return {"skipped": "seal-python not installed (pip install 'secagg[he-compact]')"}
    holder = K.CompactKeyHolder(params)
    server = K.CompactServer(params, holder.server_context_bytes())
    timed = _time_round(
        lambda u: list(holder.encrypt(K.encode_update(params, u, 1))),
        lambda: K.CompactAccumulator(server, length),
        lambda acc, agg: K.decode_sum(params, holder.decrypt(agg), length)[0],
        length,
    )
    return {
        "ring_degree": params.poly_degree,
        "modulus_bits": params.modulus_bits,
        "he_standard_max_modulus_bits": K.HE_STANDARD_MAX_LOG_Q[params.poly_degree],
        "scale_bits": params.scale_bits,
        **timed,
        "stated_error_bound": params.error_bound,
    }


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    return a[key] / b[key] if key in a and key in b and b[key] else None


def run(length: int) -> dict[str, Any]:
    real = C.choose_ckks_params(N_CLIENTS)
    packed = C.choose_ckks_params(N_CLIENTS, 2e-4, allow_coarse=True)
    rows = {
        "tenseal_real": _tenseal_row(real, length),
        "tenseal_packed": _tenseal_row(packed, length),
        "compact_precise": _compact_row(K.choose_compact_params(N_CLIENTS), length),
        "compact_same_error": _compact_row(
            K.choose_compact_params(N_CLIENTS, packed.error_bound, allow_coarse=True), length
        ),
        "compact_coarse": _compact_row(K.choose_compact_params(N_CLIENTS, 1e-2, allow_coarse=True), length),
    }
    ratios = {
        "bytes_tenseal_real_over_compact_precise": _ratio(
            rows["tenseal_real"], rows["compact_precise"], "bytes_per_param"
        ),
        "bytes_tenseal_packed_over_compact_same_error": _ratio(
            rows["tenseal_packed"], rows["compact_same_error"], "bytes_per_param"
        ),
        "encrypt_compact_precise_over_tenseal_real": _ratio(rows["compact_precise"], rows["tenseal_real"], "encrypt_s"),
        "decrypt_compact_precise_over_tenseal_real": _ratio(rows["compact_precise"], rows["tenseal_real"], "decrypt_s"),
        "add_compact_precise_over_tenseal_real": _ratio(
            rows["compact_precise"], rows["tenseal_real"], "server_add_per_client_s"
        ),
    }
    precise = rows["compact_precise"]
    return {
        "rows": rows,
        "ratios": ratios,
        "goal": {
            "bytes_per_param_at_most": GOAL_BYTES_PER_PARAM,
            "met_at_1e-6": bool(precise.get("bytes_per_param", float("inf")) <= GOAL_BYTES_PER_PARAM),
        },
    }


def _table(res: dict[str, Any]) -> str:
    lines = [
        f"per 1M params, n={N_CLIENTS} clients, CPU seconds (sample of {res['sample_params']} params)",
        f"{'row':20s} {'N':>5s} {'log q':>5s} {'enc s':>7s} {'add/cl s':>9s} {'dec s':>7s} "
        f"{'max err':>9s} {'bound':>9s} {'B/param':>8s}",
    ]
    for name, r in res["rows"].items():
        if "skipped" in r:
            lines.append(f"{name:20s} skipped: {r['skipped']}")
            continue
        lines.append(
            f"{name:20s} {r['ring_degree']:5d} {r['modulus_bits']:5d} {r['encrypt_s']:7.2f} "
            f"{r['server_add_per_client_s']:9.3f} {r['decrypt_s']:7.2f} {r['max_abs_error_10_sum']:9.1e} "
            f"{r['stated_error_bound']:9.1e} {r['bytes_per_param']:8.2f}"
        )
    rt = res["ratios"]
    shown = [(k, v) for k, v in rt.items() if v is not None]
    lines += [f"  {k}: {v:.2f}x" for k, v in shown]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 20,480-parameter sample, one repeat")
    ap.add_argument("--smoke", action="store_true", help="a 4,096-parameter sample, one repeat (tests)")
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    global REPS
    REPS = 1 if args.quick or args.smoke else REPS
    length = 4_096 if args.smoke else 20_480 if args.quick else 204_800
    res: dict[str, Any] = {
        "benchmark": "ckks_compact",
        "smoke": args.smoke,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "n_clients": N_CLIENTS,
        "sample_params": length,
        "candidates": CANDIDATES,
        **run(length),
    }
    emit(res, _table(res), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
