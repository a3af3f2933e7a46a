"""Large-update benchmark: torch ChaCha20 keystream, streaming masking, peak memory.

Every figure carries the device it ran on. Without CUDA everything runs on the
CPU and the JSON says ``"device": "cpu"``; those are CPU figures, not GPU ones.

* ``keystream``: GB/s of :func:`secagg.prg_torch.keystream_torch` (eager; and
  torch.compile with ``--compile``) on the device, against ``cryptography``'s
  ChaCha20 on one CPU core, in the same run.
* ``client_masking``: a float32 update, fixed-point encoded to uint32
  (clip to [-1, 1], scale 2**20, offset 2**31: a stand-in for secagg.encoding,
  same cost class), masked with a self mask and 8 neighbours by
  :func:`secagg.masking.apply_masks`, ending in the uint32 wire bytes. Timed
  end to end, with the PRG floor (9 raw ``cryptography`` streams of d words)
  as the reference. d = 10**7 on the CPU (10**9 on CUDA); numpy and torch backends.
  Two more rows use the real :class:`secagg.encoding.FixedPointEncoder`
  (``max_clients=1000``): its numpy path, and its torch path (a float tensor
  encoded on its device by :mod:`secagg.encoding_torch`, masked by the torch
  backend, only the masked uint32 words copied to the host), on the torch row's d.
* ``server_unmasking``: 100 clients (CPU: d = 10**6; CUDA: 10**8) on a ring
  graph with 8 neighbours, 5 dropped: ``masked_sum`` then ``remove_masks``
  (survivors' self masks and the dropped clients' pairwise masks), checked
  against the plain sum; reference: the PRG floor of the same expansions.
* ``cpu_streaming_rss``: in a fresh subprocess (numpy only, torch not
  imported): a 10**8-parameter float32 update, encoded, masked with 8
  neighbours; peak RSS (``VmHWM``, as ``getrusage`` but reset at exec) over the update's size, goal <= 3x.
  Two variants: ``copy`` (float update + encoded copy + masked output) and
  ``inplace`` (the encoding reuses the float buffer). ``tracemalloc`` gives
  the transient memory of ``apply_masks`` itself (beyond its output).

Run ``python bench/gpu.py [--quick] [--compile] [--json out.json]``. ``--quick``
scales every size down 10x (RSS test: 10**7). Timings are not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # noqa: E402

from secagg import prg  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.masking import apply_masks, masked_sum, remove_masks  # noqa: E402
from timing import best_of  # noqa: E402  (bench/ is on sys.path)

NEIGHBORS = 8
CLIP, SCALE_BITS, BITS = 1.0, 20, 32  # stand-in encoding: |x| <= 1 -> +-2**20 around 2**31
RSS_GOAL = 3.0
KEYSTREAM_GOAL_GBPS_H100 = 300.0  # issue #9, CUDA only
ENCODER_MAX_CLIENTS = 1000  # real encoder rows: scale ~2**21 for clip 1 at 32 bits
SIM_SEED = 9  # simulation data only; mask seeds come from os.urandom


_best = best_of


def _raw_chacha_seconds(n_words: int, streams: int = 1) -> float:
    """One CPU core, raw ``cryptography`` ChaCha20: ``streams`` keystreams of n_words."""
    zeros = bytes(4 * min(n_words, 1 << 22))
    keys = [os.urandom(32) for _ in range(streams)]

    def run() -> None:
        for key in keys:
            enc = Cipher(algorithms.ChaCha20(key, bytes(16)), None).encryptor()
            left = 4 * n_words
            while left:
                step = min(left, len(zeros))
                enc.update(zeros[:step] if step < len(zeros) else zeros)
                left -= step

    return _best(run, 3)


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def encode(update: np.ndarray, out: np.ndarray | None = None, piece: int = 1 << 20) -> np.ndarray:
    """Fixed-point stand-in encoder, streamed: float32 -> uint32 in [0, 2**32)."""
    out = np.empty(update.shape[0], dtype=np.uint32) if out is None else out
    tmp = np.empty(min(piece, update.shape[0]), dtype=np.float32)
    for start in range(0, update.shape[0], piece):
        part = update[start : start + piece]
        t = tmp[: part.shape[0]]
        np.clip(part, -CLIP, CLIP, out=t)
        t *= np.float32(2**SCALE_BITS)
        np.rint(t, out=t)
        # |t| <= 2**20 converts to int32 exactly; adding 2**31 wraps into [0, 2**32).
        np.add(t.astype(np.int32).view(np.uint32), np.uint32(2**31), out=out[start : start + piece])
    return out


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def bench_keystream(quick: bool, compile_too: bool, torch: Any, device: Any) -> list[dict[str, Any]]:
    from secagg.prg_torch import keystream_torch

    n_words = (1 << 26 if device.type == "cuda" else 1 << 22) // (8 if quick else 1)
    key, nonce = os.urandom(32), os.urandom(12)
    raw = _raw_chacha_seconds(n_words)
    rows = [{"what": "cryptography ChaCha20", "device": "cpu (1 core)", "n_words": n_words,
             "seconds": raw, "GB_per_s": 4 * n_words / raw / 1e9}]
    variants = [("eager", False, "int32"), ("eager", False, "int64")]
    if compile_too or device.type == "cuda":
        variants.append(("compiled", True, "int32"))
    for label, compile_, arith in variants:
        def run() -> None:
            keystream_torch(key, nonce, 0, n_words, device=device, dtype=torch.int32, arith=arith, compile=compile_)
            _sync(torch, device)

        t0 = time.perf_counter()
        run()  # warm-up (and compilation)
        first = time.perf_counter() - t0
        seconds = _best(run, 3)
        rows.append({"what": f"ours torch {label} ({arith})", "device": _device_label(torch, device),
                     "n_words": n_words, "seconds": seconds, "first_call_seconds": first,
                     "GB_per_s": 4 * n_words / seconds / 1e9, "speed_vs_cryptography": raw / seconds})
    return rows


def _device_label(torch: Any, device: Any) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} torch threads)"


def bench_client(quick: bool, torch: Any, device: Any) -> list[dict[str, Any]]:
    d = (10**9 if device.type == "cuda" else 10**7) // (10 if quick else 1)
    rng = np.random.default_rng(SIM_SEED)
    update = rng.standard_normal(d, dtype=np.float32) * np.float32(0.1)
    self_seed = os.urandom(16)
    pairs = [(os.urandom(16), 1 if i % 2 else -1) for i in range(NEIGHBORS)]
    floor = _raw_chacha_seconds(d, NEIGHBORS + 1)
    rows = [_apply_masks_vs_floor(self_seed, pairs)]

    def numpy_client() -> np.ndarray:
        masked = apply_masks(encode(update), bits=BITS, self_seed=self_seed, pair_seeds=pairs)
        return masked.view(np.uint8)  # the wire bytes, zero-copy

    seconds = _best(numpy_client, 1 if quick else 2)
    rows.append({"what": "client mask (numpy backend)", "device": "cpu", "d": d, "neighbors": NEIGHBORS,
                 "seconds": seconds, "prg_floor_seconds": floor, "ratio_to_prg_floor": seconds / floor})
    reference = numpy_client()

    tensor = torch.from_numpy(update).to(device)
    chunk = 1 << 26 if device.type == "cuda" else 1 << 20

    def torch_client() -> np.ndarray:
        scaled = torch.clamp(tensor, -CLIP, CLIP).mul_(2**SCALE_BITS).round_()
        encoded = scaled.to(torch.int64).add_(2**31)
        del scaled
        masked = apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, chunk=chunk)
        return masked.view(np.uint8)

    d_torch = d if device.type == "cuda" else d // 10  # eager torch on the CPU is ~10x slower
    if d_torch != d:
        tensor = tensor[:d_torch]
        reference = reference[: 4 * d_torch]
    t0 = time.perf_counter()
    got = torch_client()
    seconds = time.perf_counter() - t0
    rows.append({"what": "client mask (torch backend, float tensor -> wire bytes)",
                 "device": _device_label(torch, device), "d": d_torch, "neighbors": NEIGHBORS,
                 "seconds": seconds, "ratio_to_prg_floor": seconds / (floor * d_torch / d),
                 "bit_identical_to_numpy": bool(np.array_equal(got, reference))})
    rows.extend(_real_encoder_rows(tensor, pairs, self_seed, floor * d_torch / d, chunk, torch, device))
    return rows


def _real_encoder_rows(
    tensor: Any, pairs: list[tuple[bytes, int]], self_seed: bytes, floor: float, chunk: int, torch: Any, device: Any
) -> list[dict[str, Any]]:
    """secagg.encoding.FixedPointEncoder end to end: float tensor on the device (encoded
    there by secagg.encoding_torch, masked by the torch backend) -> uint32 wire bytes,
    against the numpy path (encode + apply_masks) on the same update, same run."""
    encoder = FixedPointEncoder(CLIP, BITS, ENCODER_MAX_CLIENTS)
    host = tensor.cpu().numpy()
    d = int(tensor.shape[0])

    def numpy_path() -> np.ndarray:
        encoded = encoder.encode(host)
        return apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs).view(np.uint8)

    def torch_path() -> np.ndarray:
        encoded = encoder.encode(tensor)  # int64 on tensor.device, d + 1 values
        _sync(torch, device)
        masked = apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, chunk=chunk, backend="torch")
        return masked.view(np.uint8)

    repeats = 1 if device.type == "cuda" else 2
    numpy_seconds = _best(numpy_path, repeats)
    torch_seconds = _best(torch_path, repeats)
    wire = torch_path()
    return [
        {"what": "client encode+mask (FixedPointEncoder numpy -> wire bytes)", "device": "cpu", "d": d,
         "neighbors": NEIGHBORS, "seconds": numpy_seconds, "ratio_to_prg_floor": numpy_seconds / floor},
        {"what": "client encode+mask (FixedPointEncoder torch, float tensor on device -> wire bytes)",
         "device": _device_label(torch, device), "d": d, "neighbors": NEIGHBORS, "seconds": torch_seconds,
         "ratio_to_prg_floor": torch_seconds / floor, "ratio_to_numpy_path": torch_seconds / numpy_seconds,
         "wire_bytes": int(wire.size), "wire_bytes_expected": 4 * (d + 1)},
    ]


def _apply_masks_vs_floor(self_seed: bytes, pairs: list[tuple[bytes, int]], d: int = 10**6) -> dict[str, Any]:
    """apply_masks alone (numpy, already encoded) against k+1 raw ChaCha20 streams; goal <= 1.5x."""
    encoded = np.random.default_rng(SIM_SEED).integers(0, 2**BITS, d, dtype=np.uint32)
    seconds = _best(lambda: apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs), 5)
    floor = _raw_chacha_seconds(d, len(pairs) + 1)
    return {"what": "apply_masks only (numpy backend)", "device": "cpu", "d": d, "neighbors": len(pairs),
            "seconds": seconds, "prg_floor_seconds": floor, "ratio_to_prg_floor": seconds / floor, "goal": 1.5}


def bench_server(quick: bool, device_type: str) -> dict[str, Any]:
    n, dropped = (20, 2) if quick else (100, 5)
    d = (10**8 if device_type == "cuda" else 10**6) // (10 if quick else 1)
    rng = np.random.default_rng(SIM_SEED + 1)
    self_seeds = [os.urandom(16) for _ in range(n)]
    half = NEIGHBORS // 2
    edges = {(min(u, (u + j) % n), max(u, (u + j) % n)): os.urandom(16) for u in range(n) for j in range(1, half + 1)}

    def pairs_of(u: int) -> list[tuple[bytes, int]]:
        return [(seed, 1 if u == a else -1) for (a, b), seed in edges.items() if u in (a, b)]

    gone = set(range(0, n, n // dropped))
    survivors = [u for u in range(n) if u not in gone]
    inputs = {u: rng.integers(0, 2**BITS, d, dtype=np.uint32) for u in survivors}
    masked = [apply_masks(inputs[u], bits=BITS, self_seed=self_seeds[u], pair_seeds=pairs_of(u)) for u in survivors]
    leftover = [(seed, 1 if u == a else -1) for (a, b), seed in edges.items()
                for u, v in ((a, b), (b, a)) if u in inputs and v in gone]

    def server() -> np.ndarray:
        total = masked_sum(masked, bits=BITS)
        return remove_masks(total, bits=BITS, self_seeds=[self_seeds[u] for u in survivors], pair_seeds=leftover)

    t0 = time.perf_counter()
    result = server()
    seconds = time.perf_counter() - t0
    sum_seconds = _best(lambda: masked_sum(masked, bits=BITS), 1)
    expansions = len(survivors) + len(leftover)
    floor = _raw_chacha_seconds(d, 1) * expansions
    return {"what": "server unmask (masked_sum + remove_masks, numpy)", "device": "cpu", "clients": n,
            "dropped": len(gone), "d": d, "expansions": expansions, "seconds": seconds,
            "masked_sum_seconds": sum_seconds, "remove_masks_seconds": seconds - sum_seconds,
            "prg_floor_seconds": floor, "ratio_to_prg_floor": seconds / floor,
            "exact": bool(np.array_equal(result, masked_sum(inputs.values(), bits=BITS)))}


def _peak_rss_bytes() -> int:
    """High-water RSS of this process (VmHWM). Unlike getrusage's ru_maxrss it is
    reset by exec, so it does not inherit the parent's (torch-sized) peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover (non-Linux)


def rss_child(d: int, inplace: bool) -> dict[str, Any]:
    """Runs in a fresh interpreter: numpy + cryptography only."""
    baseline = _peak_rss_bytes()
    rng = np.random.default_rng(SIM_SEED)
    update = np.empty(d, dtype=np.float32)
    for start in range(0, d, 1 << 20):  # filled in pieces: no float64 temporary of size d
        rng.standard_normal(out=update[start : start + (1 << 20)], dtype=np.float32)
    encoded = encode(update, out=update.view(np.uint32) if inplace else None)
    pairs = [(os.urandom(16), 1 if i % 2 else -1) for i in range(NEIGHBORS)]
    tracemalloc.start()
    t0 = time.perf_counter()
    masked = apply_masks(encoded, bits=BITS, self_seed=os.urandom(16), pair_seeds=pairs)
    seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _peak_rss_bytes()
    update_bytes = 4 * d
    return {"what": f"cpu streaming mask, encode {'in place' if inplace else 'to a copy'}", "device": "cpu",
            "d": d, "update_bytes": update_bytes, "baseline_rss_bytes": baseline, "peak_rss_bytes": peak,
            "peak_rss_over_update": peak / update_bytes, "goal": RSS_GOAL,
            "peak_minus_baseline_over_update": (peak - baseline) / update_bytes,
            "apply_masks_seconds": seconds, "apply_masks_transient_bytes": traced_peak - masked.nbytes,
            "checksum": int(masked[:1000].sum())}


def bench_rss(quick: bool) -> list[dict[str, Any]]:
    d = 10**7 if quick else 10**8
    rows = []
    for inplace in (False, True):
        proc = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(d)] + (["--inplace"] if inplace else []),
            capture_output=True, text=True, check=True,
        )
        rows.append(json.loads(proc.stdout))
    return rows


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _table(results: dict[str, Any]) -> str:
    lines = [f"{'benchmark':58} {'device':32} {'figure':>28}"]
    for row in results["keystream"]:
        extra = f" ({row['speed_vs_cryptography']:.2f}x crypto)" if "speed_vs_cryptography" in row else ""
        lines.append(f"{'keystream ' + row['what']:58} {row['device']:32} {row['GB_per_s']:>9.3f} GB/s{extra}")
    for row in results["client_masking"]:
        lines.append(f"{row['what'][:58]:58} {row['device']:32} "
                     f"{row['seconds']:>7.3f} s d={row['d']:.0e} ({row['ratio_to_prg_floor']:.2f}x floor)")
    row = results["server_unmasking"]
    lines.append(f"{'server unmask n=' + str(row['clients']):58} {row['device']:32} "
                 f"{row['seconds']:>7.3f} s d={row['d']:.0e} ({row['ratio_to_prg_floor']:.2f}x floor)")
    for row in results["cpu_streaming_rss"]:
        lines.append(f"{row['what']:58} {row['device']:32} "
                     f"{row['peak_rss_over_update']:>6.2f}x update (goal <= {RSS_GOAL})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke sizes (10x smaller)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU (~2-5 min build)")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inplace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, args.inplace)))
        return 0

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        # Eager torch with 2 threads on 2 shared cores measured 5-50x slower than 1 thread.
        torch.set_num_threads(1)
    results: dict[str, Any] = {
        "benchmark": "gpu",
        "device": _device_label(torch, device),
        "gpu_available": device.type == "cuda",
        "note": None if device.type == "cuda" else "no CUDA device: every figure below is a CPU figure",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "quick": args.quick,
    }
    results["keystream"] = bench_keystream(args.quick, args.compile, torch, device)
    results["client_masking"] = bench_client(args.quick, torch, device)
    results["server_unmasking"] = bench_server(args.quick, device.type)
    results["cpu_streaming_rss"] = bench_rss(args.quick)
    text = json.dumps(results, indent=2)
    print(text)
    print(_table(results))
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
