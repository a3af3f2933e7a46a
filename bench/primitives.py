"""Primitives benchmark: ChaCha20 ``expand`` vs raw ``cryptography``, and Shamir vs Flower.

Measured in one run, so ratios survive the noise of a shared machine:

* ``prg``: :func:`secagg.prg.expand` (32- and 64-bit values) against the raw
  ``cryptography`` ChaCha20 keystream of the same number of words
  (``encryptor.update`` on a preallocated zero buffer, viewed as uint32).
  Goal: ``expand`` within 1.1x of raw.
* ``shamir``: :mod:`secagg.shamir` split, combine from exactly t shares,
  combine from all n shares (with the consistency check), and the server's
  unmask step in a complete graph with 10% dropouts (up to 100 survivors'
  seeds, each from the other survivors' shares: one x-set per secret), at
  n in {10, 100, 1000}, t = n // 2 + 1, for a 32-byte secret; the same without
  gmpy2 (pure Python ints); and Flower's ``create_shares``/``combine_shares``
  (pycryptodome ``Shamir`` over GF(2^128) in 16-byte chunks) when importable.
  Goal: split + combine at n = 100 under 5 ms. Flower at n = 1000 takes
  minutes, so it runs only with ``--flower-1000``.
* ``encoding``: :meth:`FixedPointEncoder.encode` and ``decode_sum`` of a float32
  vector, as a ratio to ``expand`` of the same length (the mask the client adds
  to it), so the encoding's share of a round can be read off.

Run ``python bench/primitives.py [--quick | --smoke] [--json out.json] [--flower-1000]``.
Prints one JSON document, then a table. Timings are not asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from timing import best_of, emit  # noqa: E402  (bench/ is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # noqa: E402

from secagg import prg, shamir  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402

PRG_GOAL_RATIO = 1.1
SHAMIR_GOAL_MS = 5.0  # split + combine, n = 100, t = 51


_best = best_of


def bench_prg(quick: bool) -> list[dict[str, Any]]:
    seed = b"\x5a" * 32
    key, nonce16 = prg.derive_key(seed), bytes(4) + prg.PRG_NONCE
    repeats = 3 if quick else 9
    rows = []
    for words in [10**6] if quick else [10**6, 10**7]:
        zeros = bytes(4 * words)  # preallocated: the reference pays only for the cipher

        def raw() -> np.ndarray:
            encryptor = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor()
            return np.frombuffer(encryptor.update(zeros), dtype="<u4")

        assert np.array_equal(raw(), prg.expand(seed, words))  # same stream, bit for bit
        for bits, length in ((32, words), (64, words // 2)):
            # Interleave ours and the reference so both see the same machine load.
            t_raw = t_ours = float("inf")
            for _ in range(repeats):
                t_raw = min(t_raw, _best(raw, 1))
                t_ours = min(t_ours, _best(lambda: prg.expand(seed, length, bits), 1))
            rows.append(
                {
                    "words": words,
                    "bits": bits,
                    "raw_ms": 1e3 * t_raw,
                    "expand_ms": 1e3 * t_ours,
                    "raw_ns_per_word": 1e9 * t_raw / words,
                    "expand_ns_per_word": 1e9 * t_ours / words,
                    "ratio": t_ours / t_raw,
                    "goal_ratio": PRG_GOAL_RATIO,
                    "meets_goal": t_ours / t_raw <= PRG_GOAL_RATIO,
                }
            )
    return rows


def _pure_python_shamir() -> ModuleType:
    """Load secagg.shamir with gmpy2 hidden, to time the no-extras fallback."""
    saved = sys.modules.get("gmpy2")
    sys.modules["gmpy2"] = None  # type: ignore[assignment]
    try:
        spec = importlib.util.spec_from_file_location("secagg._shamir_pure", shamir.__file__)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.__package__ = "secagg"
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["gmpy2"]
        else:
            sys.modules["gmpy2"] = saved
    assert module._mpz is int
    return module


def _flower() -> tuple[Callable[..., list[bytes]], Callable[[list[bytes]], bytes]] | None:
    try:
        from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
    except ImportError:
        try:  # Flower's approach without Flower: pycryptodome Shamir on 16-byte chunks
            from Crypto.Protocol.SecretSharing import Shamir
            from Crypto.Util.Padding import pad, unpad
        except ImportError:
            return None

        def create_shares(secret: bytes, threshold: int, num: int) -> list[bytes]:
            padded = pad(secret, 16)
            out = [bytearray(i.to_bytes(4, "little")) for i in range(1, num + 1)]
            for c in range(0, len(padded), 16):
                for idx, share in Shamir.split(threshold, num, padded[c : c + 16], ssss=False):
                    out[idx - 1] += share
            return [bytes(s) for s in out]

        def combine_shares(share_list: list[bytes]) -> bytes:
            chunks = (len(share_list[0]) - 4) // 16
            secret = b""
            for c in range(chunks):
                pairs = [(int.from_bytes(s[:4], "little"), s[4 + 16 * c : 20 + 16 * c]) for s in share_list]
                secret += Shamir.combine(pairs, ssss=False)
            return unpad(secret, 16)

    return create_shares, combine_shares


def bench_shamir(quick: bool, flower_1000: bool) -> list[dict[str, Any]]:
    secret = os.urandom(32)
    pure = _pure_python_shamir()
    flower = _flower()
    rows = []
    for n in [10, 100] if quick else [10, 100, 1000]:
        t = n // 2 + 1
        repeats = 1 if n >= 1000 else (3 if quick else 7)
        row: dict[str, Any] = {"n": n, "t": t, "secret_bytes": len(secret)}
        for label, module in (("ours", shamir), ("ours_no_gmpy2", pure)):
            shares = module.split(secret, n, t)
            assert module.combine(shares[:t], t) == secret
            row[f"{label}_split_ms"] = 1e3 * _best(lambda: module.split(secret, n, t), repeats)
            row[f"{label}_combine_t_ms"] = 1e3 * _best(lambda: module.combine(shares[:t], t), repeats)
            row[f"{label}_total_ms"] = row[f"{label}_split_ms"] + row[f"{label}_combine_t_ms"]
        shares = shamir.split(secret, n, t)
        row["ours_combine_all_checked_ms"] = 1e3 * _best(lambda: shamir.combine(shares, t), repeats)
        # combine_many: 100 secrets at one x-set reuse one plan (the server's unmask step).
        many = shamir.split_many([os.urandom(32) for _ in range(100)], n, t)
        survivors = [lst[:t] for lst in many]
        row["ours_combine_many_per_secret_ms"] = (
            1e3 * _best(lambda: shamir.combine_many(survivors, t), 1) / len(survivors)
        )
        # Server unmask in a complete graph with 10% dropouts: survivor u's seed is
        # rebuilt from the shares the other survivors hold, a different x-set per u.
        alive = list(range(1, n + 1 - n // 10))
        by_x = {s.x: s for s in shares}
        views = [[by_x[x] for x in alive if x != u] for u in alive[: min(100, len(alive))]]
        row["ours_complete_graph_per_secret_ms"] = 1e3 * _best(lambda: shamir.combine_many(views, t), 1) / len(views)
        if n == 100:
            row["goal_ms"] = SHAMIR_GOAL_MS
            row["meets_goal"] = row["ours_total_ms"] < SHAMIR_GOAL_MS
        if flower is not None and (n <= 100 or flower_1000):
            create, combine = flower
            flower_shares = create(secret, t, n)
            assert combine(flower_shares[:t]) == secret
            row["flower_split_ms"] = 1e3 * _best(lambda: create(secret, t, n), 1)
            row["flower_combine_t_ms"] = 1e3 * _best(lambda: combine(flower_shares[:t]), 1)
            row["flower_total_ms"] = row["flower_split_ms"] + row["flower_combine_t_ms"]
            row["speedup_vs_flower"] = row["flower_total_ms"] / row["ours_total_ms"]
        rows.append(row)
    return rows


def bench_encoding(quick: bool) -> list[dict[str, Any]]:
    rows = []
    repeats = 3 if quick else 7
    x = np.random.default_rng(0).standard_normal(10**6).astype(np.float32)
    seed = b"\x11" * 32
    for bits, norm in [(32, "linf")] if quick else [(32, "linf"), (32, "l2"), (64, "linf")]:
        enc = FixedPointEncoder(1.0, bits, 1000, max_weight=100, norm=norm)
        y = enc.encode(x, weight=50)
        t_mask = _best(lambda: prg.expand(seed, x.size + 1, bits), repeats)
        t_enc = _best(lambda: enc.encode(x, weight=50), repeats)
        t_dec = _best(lambda: enc.decode_sum(y), repeats)
        rows.append(
            {
                "d": x.size,
                "bits": bits,
                "norm": norm,
                "encode_ms": 1e3 * t_enc,
                "decode_sum_ms": 1e3 * t_dec,
                "expand_ms": 1e3 * t_mask,
                "encode_over_expand": t_enc / t_mask,
            }
        )
    return rows


def _table(result: dict[str, Any]) -> str:
    lines = ["expand vs raw cryptography ChaCha20 (best of repeats)"]
    lines.append(f"{'words':>10} {'bits':>4} {'raw ms':>8} {'ours ms':>8} {'ns/word':>8} {'ratio':>6}")
    for r in result["prg"]:
        lines.append(
            f"{r['words']:>10} {r['bits']:>4} {r['raw_ms']:>8.2f} {r['expand_ms']:>8.2f} "
            f"{r['expand_ns_per_word']:>8.3f} {r['ratio']:>6.2f}"
        )
    lines.append("")
    lines.append("Shamir, 32-byte secret, t = n//2 + 1 (ms)")
    lines.append(
        f"{'n':>5} {'split':>8} {'comb t':>8} {'total':>8} {'no-gmpy2':>9} {'comb all':>9} "
        f"{'many/sec':>9} {'graph/sec':>9} {'Flower':>9} {'speedup':>8}"
    )
    for r in result["shamir"]:
        flower = f"{r['flower_total_ms']:>9.1f}" if "flower_total_ms" in r else f"{'-':>9}"
        speed = f"{r['speedup_vs_flower']:>7.0f}x" if "speedup_vs_flower" in r else f"{'-':>8}"
        lines.append(
            f"{r['n']:>5} {r['ours_split_ms']:>8.2f} {r['ours_combine_t_ms']:>8.2f} {r['ours_total_ms']:>8.2f} "
            f"{r['ours_no_gmpy2_total_ms']:>9.2f} {r['ours_combine_all_checked_ms']:>9.2f} "
            f"{r['ours_combine_many_per_secret_ms']:>9.3f} {r['ours_complete_graph_per_secret_ms']:>9.3f} "
            f"{flower} {speed}"
        )
    lines.append("")
    lines.append("FixedPointEncoder, d = 1M float32 (ms)")
    lines.append(f"{'bits':>5} {'norm':>5} {'encode':>8} {'decode':>8} {'expand':>8} {'enc/exp':>8}")
    for r in result["encoding"]:
        lines.append(
            f"{r['bits']:>5} {r['norm']:>5} {r['encode_ms']:>8.2f} {r['decode_sum_ms']:>8.2f} "
            f"{r['expand_ms']:>8.2f} {r['encode_over_expand']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--smoke", action="store_true", help="the --quick sizes, flagged as a smoke run (tests)")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    parser.add_argument("--flower-1000", action="store_true", help="also time Flower at n = 1000 (minutes)")
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke  # --quick already runs in a few seconds
    result = {
        "benchmark": "primitives",
        "quick": args.quick,
        "smoke": args.smoke,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "prg": bench_prg(args.quick),
        "shamir": bench_shamir(args.quick, args.flower_1000),
        "encoding": bench_encoding(args.quick),
    }
    emit(result, "\n" + _table(result), args.json)
    return result


if __name__ == "__main__":
    main()
