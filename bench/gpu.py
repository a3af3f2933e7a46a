"""Large-update benchmark: torch ChaCha20 keystream, streaming masking, peak memory.

The JSON says where it ran: ``"device": "cpu"`` and ``"cuda": false`` when no
CUDA device exists, and then every figure is a CPU figure, not a GPU one.

* ``keystream``: GB/s of :func:`secagg.prg_torch.keystream_torch` (eager; and
  torch.compile on CUDA or with ``--compile``; and the Triton kernel of
  :mod:`secagg.prg_triton` on CUDA, the default there) on the device, against
  ``cryptography``'s ChaCha20 on one CPU core, in the same run. Goal on one
  H100: >= 300 GB/s.
* ``client_masking``: a float32 update, fixed-point encoded to uint32
  (clip to [-1, 1], scale 2**20, offset 2**31: a stand-in for secagg.encoding,
  same cost class), masked with a self mask and 8 neighbours by
  :func:`secagg.masking.apply_masks`, ending in the uint32 wire bytes. The
  numpy row masks the encoding in place, as ``SecAggClient`` does. Reference:
  the PRG floor (9 raw ``cryptography`` streams of d words). CPU: numpy at
  d = 10**7, torch (eager, ~10x slower) at 10**6. CUDA: the goal row, a 10**9
  float32 tensor on the device to host wire bytes, < 1 s end to end; the numpy
  reference at 10**8. Two more rows use the real
  :class:`secagg.encoding.FixedPointEncoder` (``max_clients=1000``): its numpy
  path and its torch path (encoded on the device by :mod:`secagg.encoding_torch`).
* ``server_unmasking``: 100 clients on a ring graph with 8 neighbours, 5
  dropped after sharing keys: :func:`secagg.masking.unmask_sum` (sum of the
  survivors' masked inputs, minus their self masks and the dropped clients'
  pairwise masks, one pass), checked against the plain sum. CPU: d = 10**6,
  numpy backend, the older two-pass numpy path (``masked_sum`` +
  ``remove_masks``) and the torch backend on the CPU. CUDA: d = 10**8 with the
  torch backend on the device (inputs arrive as host uint32 words, as from the
  wire, so host-to-device copies are counted). Reference: the PRG floor of the
  same expansions on one core.
* ``cpu_streaming_rss``: each variant in a fresh interpreter (numpy and
  cryptography only; torch is never imported): a 10**8-parameter float32
  update, encoded, masked with a self mask and 8 neighbours. Counted: the
  process's high-water RSS (``VmHWM``: like ``getrusage``'s ru_maxrss but
  reset at exec), *including* the interpreter's own baseline (~45 MB, about
  0.1x); ``peak_minus_baseline_over_update`` leaves the baseline out. The
  high-water mark is also read after each phase (update made, encoded,
  masked), to show where the peak comes from. Not counted: serialising the
  wire message (``protocols.messages.encode`` makes its own byte copies).
  Goal: peak <= 3x the update's size. Variants: the stand-in encoder to a
  copy, then masking to a new array (the old client path) or in place (the
  client path now); the stand-in encoding into the float buffer itself; and the
  real ``FixedPointEncoder.encode`` + in-place masking, which is exactly the
  numpy work ``SecAggClient`` does.

Run ``python bench/gpu.py [--quick | --smoke] [--compile] [--json out.json]``. ``--quick``
scales every size down 10x (RSS: 10**7). Timings are not asserted.
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

from protocols import messages as m  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.masking import apply_masks, masked_sum, remove_masks, unmask_sum  # noqa: E402
from secagg.prg_torch import keystream_torch  # noqa: E402
from secagg.prg_triton import triton_available  # noqa: E402
from timing import best_of, emit  # noqa: E402  (bench/ is on sys.path)

NEIGHBORS = 8
CLIP, SCALE_BITS, BITS = 1.0, 20, 32  # stand-in encoding: |x| <= 1 -> +-2**20 around 2**31
RSS_GOAL = 3.0
KEYSTREAM_GOAL_GBPS_H100 = 300.0  # CUDA only
CLIENT_GOAL_SECONDS_H100 = 1.0  # 10**9 params, 8 neighbours, float tensor -> wire bytes
ENCODER_MAX_CLIENTS = 1000  # real encoder rows: scale ~2**21 for clip 1 at 32 bits
SIM_SEED = 9  # simulation data only; mask seeds come from os.urandom
CUDA_CHUNK = 1 << 26  # values per step on the GPU: 256 MiB of int32 words
RSS_VARIANTS = (
    "standin-copy-newout",
    "standin-copy-inplace",
    "standin-inplace-inplace",
    "fixedpoint-inplace",
    "fixedpoint-inplace-wire",
)

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


def _device_label(torch: Any, device: Any) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} torch threads)"


def _pairs() -> tuple[bytes, list[tuple[bytes, int]]]:
    return os.urandom(16), [(os.urandom(16), 1 if i % 2 else -1) for i in range(NEIGHBORS)]


# ---------------------------------------------------------------------------
# Keystream
# ---------------------------------------------------------------------------


def bench_keystream(quick: bool, compile_too: bool, torch: Any, device: Any) -> list[dict[str, Any]]:
    n_words = (1 << 28 if device.type == "cuda" else 1 << 22) // (8 if quick else 1)
    key, nonce = os.urandom(32), os.urandom(12)
    raw_words = min(n_words, 1 << 24)  # the CPU reference needs no GiB of keystream
    raw = _raw_chacha_seconds(raw_words)
    raw_gbps = 4 * raw_words / raw / 1e9
    rows: list[dict[str, Any]] = [
        {
            "what": "cryptography ChaCha20",
            "device": "cpu (1 core)",
            "n_words": raw_words,
            "seconds": raw,
            "GB_per_s": raw_gbps,
        }
    ]
    variants = [("eager", "int32"), ("eager", "int64")]
    if compile_too or device.type == "cuda":
        variants.append(("compiled", "int32"))
    if device.type == "cuda" and triton_available():
        variants.append(("triton", "int32"))
    for kernel, arith in variants:

        def run() -> None:
            keystream_torch(key, nonce, 0, n_words, device=device, dtype=torch.int32, arith=arith, kernel=kernel)
            _sync(torch, device)

        t0 = time.perf_counter()
        run()  # warm-up (and compilation)
        first = time.perf_counter() - t0
        seconds = _best(run, 3)
        gbps = 4 * n_words / seconds / 1e9
        row = {
            "what": f"ours torch {kernel} ({arith})",
            "device": _device_label(torch, device),
            "n_words": n_words,
            "seconds": seconds,
            "first_call_seconds": first,
            "GB_per_s": gbps,
            "speed_vs_cryptography": gbps / raw_gbps,
        }
        if device.type == "cuda":
            row["goal_GB_per_s"] = KEYSTREAM_GOAL_GBPS_H100
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------


def bench_client(quick: bool, torch: Any, device: Any) -> list[dict[str, Any]]:
    cuda = device.type == "cuda"
    d_np = (10**8 if cuda else 10**7) // (10 if quick else 1)
    d_torch = (10**9 if cuda else 10**6) // (10 if quick else 1)  # eager torch on the CPU is ~10x slower
    update = np.empty(max(d_np, d_torch) if cuda else d_np, dtype=np.float32)
    rng = np.random.default_rng(SIM_SEED)
    for start in range(0, update.shape[0], 1 << 22):
        part = update[start : start + (1 << 22)]
        rng.standard_normal(out=part, dtype=np.float32)
        part *= np.float32(0.1)
    self_seed, pairs = _pairs()
    floor_per_value = _raw_chacha_seconds(min(d_np, 10**7), NEIGHBORS + 1) / min(d_np, 10**7)
    rows = [_apply_masks_vs_floor(self_seed, pairs)]

    host = update[:d_np]

    def numpy_client() -> np.ndarray:
        encoded = encode(host)
        return apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, out=encoded).view(np.uint8)

    seconds = _best(numpy_client, 1 if quick or cuda else 2)
    rows.append(
        {
            "what": "client encode+mask (numpy, in place -> wire bytes)",
            "device": "cpu",
            "d": d_np,
            "neighbors": NEIGHBORS,
            "seconds": seconds,
            "ns_per_value": 1e9 * seconds / d_np,
            "prg_floor_seconds": floor_per_value * d_np,
            "ratio_to_prg_floor": seconds / (floor_per_value * d_np),
        }
    )
    reference = numpy_client()

    tensor = torch.from_numpy(update[:d_torch]).to(device)
    chunk = CUDA_CHUNK if cuda else 1 << 20

    def torch_client() -> np.ndarray:
        scaled = torch.clamp(tensor, -CLIP, CLIP).mul_(2**SCALE_BITS).round_()
        encoded = scaled.to(torch.int64).add_(2**31)
        del scaled
        masked = apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, chunk=chunk)
        return masked.view(np.uint8)  # a host array: every device-to-host copy has completed

    t0 = time.perf_counter()
    got = torch_client()  # first call: includes torch.compile on CUDA
    first = time.perf_counter() - t0
    seconds = _best(torch_client, 2) if cuda else first
    common = min(d_np, d_torch)
    row = {
        "what": "client encode+mask (torch backend, float tensor -> host wire bytes)",
        "device": _device_label(torch, device),
        "d": d_torch,
        "neighbors": NEIGHBORS,
        "seconds": seconds,
        "first_call_seconds": first,
        "ns_per_value": 1e9 * seconds / d_torch,
        "ratio_to_prg_floor": seconds / (floor_per_value * d_torch),
        "bit_identical_to_numpy": bool(np.array_equal(got[: 4 * common], reference[: 4 * common])),
        "compared_values": common,
    }
    if cuda:
        row["goal_seconds"] = CLIENT_GOAL_SECONDS_H100
    rows.append(row)
    del got, reference
    rows.extend(_real_encoder_rows(update, tensor, d_np, pairs, self_seed, floor_per_value, chunk, torch, device))
    return rows


def _real_encoder_rows(
    update: np.ndarray,
    tensor: Any,
    d_np: int,
    pairs: list[tuple[bytes, int]],
    self_seed: bytes,
    floor_per_value: float,
    chunk: int,
    torch: Any,
    device: Any,
) -> list[dict[str, Any]]:
    """secagg.encoding.FixedPointEncoder end to end: the numpy path (encode + in-place
    apply_masks, what SecAggClient runs) and the torch path (float tensor encoded on
    its device by secagg.encoding_torch, masked there) -> uint32 wire bytes."""
    encoder = FixedPointEncoder(CLIP, BITS, ENCODER_MAX_CLIENTS)
    d_real = min(d_np, int(tensor.shape[0])) if device.type == "cpu" else d_np
    host = update[:d_real]

    def numpy_path() -> np.ndarray:
        encoded = encoder.encode(host)
        return apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, out=encoded).view(np.uint8)

    def torch_path() -> np.ndarray:
        encoded = encoder.encode(tensor)  # int64 on tensor.device, d + 1 values
        masked = apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, chunk=chunk, backend="torch")
        return masked.view(np.uint8)

    repeats = 1 if device.type == "cuda" else 2
    numpy_seconds = _best(numpy_path, repeats)
    torch_seconds = _best(torch_path, repeats)
    d_torch = int(tensor.shape[0])
    wire = torch_path()
    return [
        {
            "what": "client encode+mask (FixedPointEncoder numpy, in place -> wire bytes)",
            "device": "cpu",
            "d": d_real,
            "neighbors": NEIGHBORS,
            "seconds": numpy_seconds,
            "ns_per_value": 1e9 * numpy_seconds / d_real,
            "ratio_to_prg_floor": numpy_seconds / (floor_per_value * d_real),
        },
        {
            "what": "client encode+mask (FixedPointEncoder torch, float tensor on device -> wire bytes)",
            "device": _device_label(torch, device),
            "d": d_torch,
            "neighbors": NEIGHBORS,
            "seconds": torch_seconds,
            "ns_per_value": 1e9 * torch_seconds / d_torch,
            "ratio_to_prg_floor": torch_seconds / (floor_per_value * d_torch),
            "per_value_ratio_to_numpy_path": (torch_seconds / d_torch) / (numpy_seconds / d_real),
            "wire_bytes": int(wire.size),
            "wire_bytes_expected": 4 * (d_torch + 1),
        },
    ]


def _apply_masks_vs_floor(self_seed: bytes, pairs: list[tuple[bytes, int]], d: int = 10**6) -> dict[str, Any]:
    """apply_masks alone (numpy, already encoded) against k+1 raw ChaCha20 streams; goal <= 1.5x."""
    encoded = np.random.default_rng(SIM_SEED).integers(0, 2**BITS, d, dtype=np.uint32)
    seconds = _best(lambda: apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs), 5)
    floor = _raw_chacha_seconds(d, len(pairs) + 1)
    return {
        "what": "apply_masks only (numpy backend)",
        "device": "cpu",
        "d": d,
        "neighbors": len(pairs),
        "seconds": seconds,
        "prg_floor_seconds": floor,
        "ratio_to_prg_floor": seconds / floor,
        "goal": 1.5,
    }


# ---------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------


class _Ring:
    """Seeds of a simulated round: n clients on a ring with NEIGHBORS neighbours, some dropped."""

    def __init__(self, n: int, dropped: int) -> None:
        half = NEIGHBORS // 2
        self.self_seeds = [os.urandom(16) for _ in range(n)]
        self.edges = {
            (min(u, (u + j) % n), max(u, (u + j) % n)): os.urandom(16) for u in range(n) for j in range(1, half + 1)
        }
        self.gone = set(range(0, n, n // dropped))
        self.survivors = [u for u in range(n) if u not in self.gone]
        # The dropped clients' pairwise masks that survivors added, with the survivor's sign.
        self.leftover = [
            (seed, 1 if u == a else -1)
            for (a, b), seed in self.edges.items()
            for u, v in ((a, b), (b, a))
            if u not in self.gone and v in self.gone
        ]

    def pairs_of(self, u: int) -> list[tuple[bytes, int]]:
        return [(seed, 1 if u == a else -1) for (a, b), seed in self.edges.items() if u in (a, b)]

    def unmask_kwargs(self) -> dict[str, Any]:
        return {"bits": BITS, "self_seeds": [self.self_seeds[u] for u in self.survivors], "pair_seeds": self.leftover}


def bench_server(quick: bool, torch: Any, device: Any) -> list[dict[str, Any]]:
    if device.type == "cuda":
        return _bench_server_cuda(quick, torch, device)
    n, dropped = (20, 2) if quick else (100, 5)
    d = 10**6 // (10 if quick else 1)
    ring = _Ring(n, dropped)
    rng = np.random.default_rng(SIM_SEED + 1)
    inputs = {u: rng.integers(0, 2**BITS, d, dtype=np.uint32) for u in ring.survivors}
    masked = [
        apply_masks(inputs[u], bits=BITS, self_seed=ring.self_seeds[u], pair_seeds=ring.pairs_of(u))
        for u in ring.survivors
    ]
    for y in masked:
        y.flags.writeable = False  # as decoded from the wire
    want = masked_sum(inputs.values(), bits=BITS)
    expansions = len(ring.survivors) + len(ring.leftover)
    floor = _raw_chacha_seconds(d, 1) * expansions
    kwargs = ring.unmask_kwargs()
    base = {
        "device": "cpu",
        "clients": n,
        "dropped": len(ring.gone),
        "d": d,
        "expansions": expansions,
        "prg_floor_seconds": floor,
    }
    variants = [
        ("server unmask (unmask_sum, numpy backend)", "cpu", lambda: unmask_sum(masked, **kwargs)),
        (
            "server unmask (masked_sum + remove_masks, numpy, two passes)",
            "cpu",
            lambda: remove_masks(masked_sum(masked, bits=BITS), **kwargs),
        ),
        (
            "server unmask (unmask_sum, torch backend on the CPU)",
            _device_label(torch, device),
            lambda: unmask_sum(masked, backend="torch", device="cpu", **kwargs),
        ),
    ]
    rows: list[dict[str, Any]] = []
    for what, label, run in variants:
        result = run()  # warm-up, and the exactness check
        seconds = _best(run, 1 if "torch" in what or quick else 2)
        rows.append(
            {
                **base,
                "what": what,
                "device": label,
                "seconds": seconds,
                "ratio_to_prg_floor": seconds / floor,
                "exact": bool(np.array_equal(result, want)),
            }
        )
    numpy_seconds = rows[0]["seconds"]
    for row in rows[1:]:
        row["ratio_to_numpy_backend"] = row["seconds"] / numpy_seconds
    return rows


def _bench_server_cuda(quick: bool, torch: Any, device: Any) -> list[dict[str, Any]]:
    """100 clients x 10**8 on CUDA. Masked inputs are made on the device (the numpy
    path would need ~1 core-hour) and kept on the host as uint32 words, as they
    arrive from the wire; unmask_sum moves each chunk of each to the device."""
    n, dropped = (20, 2) if quick else (100, 5)
    d = 10**8 // (10 if quick else 1)
    ring = _Ring(n, dropped)
    generator = torch.Generator(device=device)
    generator.manual_seed(SIM_SEED + 1)
    want = torch.zeros(d, dtype=torch.int64, device=device)
    masked = []
    for u in ring.survivors:
        x = torch.randint(0, 2**BITS, (d,), generator=generator, dtype=torch.int64, device=device)
        want.add_(x)
        masked.append(
            apply_masks(x, bits=BITS, self_seed=ring.self_seeds[u], pair_seeds=ring.pairs_of(u), chunk=CUDA_CHUNK)
        )
        del x
    want.bitwise_and_(0xFFFFFFFF)
    want_host = (want - ((want & 0x80000000) << 1)).to(torch.int32).cpu().numpy().view(np.uint32)  # same bits
    del want
    expansions = len(ring.survivors) + len(ring.leftover)
    floor = _raw_chacha_seconds(10**7, 1) * (d / 10**7) * expansions
    kwargs = ring.unmask_kwargs()

    def run() -> np.ndarray:
        return unmask_sum(masked, backend="torch", device=device, chunk=CUDA_CHUNK, **kwargs)

    t0 = time.perf_counter()
    result = run()
    first = time.perf_counter() - t0
    seconds = _best(run, 1 if quick else 2)
    return [
        {
            "what": "server unmask (unmask_sum, torch backend, host uint32 inputs)",
            "device": _device_label(torch, device),
            "clients": n,
            "dropped": len(ring.gone),
            "d": d,
            "expansions": expansions,
            "seconds": seconds,
            "first_call_seconds": first,
            "prg_floor_seconds": floor,
            "prg_floor_note": "one CPU core, from a 10**7-word measurement",
            "ratio_to_prg_floor": seconds / floor,
            "exact": bool(np.array_equal(result, want_host)),
        }
    ]


# ---------------------------------------------------------------------------
# CPU streaming: peak RSS
# ---------------------------------------------------------------------------


def _peak_rss_bytes() -> int:
    """High-water RSS of this process (VmHWM). Unlike getrusage's ru_maxrss it is
    reset by exec, so it does not inherit the parent's (torch-sized) peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover (non-Linux)


_RSS_WHAT = {
    "standin-copy-newout": "stand-in encode to a copy, mask to a new array (old client path)",
    "standin-copy-inplace": "stand-in encode to a copy, mask in place (client path now)",
    "standin-inplace-inplace": "stand-in encode into the float buffer, mask in place",
    "fixedpoint-inplace": "FixedPointEncoder.encode + mask in place (SecAggClient's numpy work)",
    "fixedpoint-inplace-wire": "the same, then serialised to the MaskedInput wire bytes",
}


def rss_child(d: int, variant: str) -> dict[str, Any]:
    """Runs in a fresh interpreter: numpy + cryptography only."""
    baseline = _peak_rss_bytes()
    rng = np.random.default_rng(SIM_SEED)
    update = np.empty(d, dtype=np.float32)
    for start in range(0, d, 1 << 20):  # filled in pieces: no float64 temporary of size d
        part = update[start : start + (1 << 20)]
        rng.standard_normal(out=part, dtype=np.float32)
        part *= np.float32(0.1)
    after_update = _peak_rss_bytes()
    t0 = time.perf_counter()
    if variant.startswith("fixedpoint-inplace"):
        encoded = FixedPointEncoder(CLIP, BITS, ENCODER_MAX_CLIENTS).encode(update)  # d + 1 words
    else:
        encoded = encode(update, out=update.view(np.uint32) if variant == "standin-inplace-inplace" else None)
    encode_seconds = time.perf_counter() - t0
    after_encode = _peak_rss_bytes()
    self_seed, pairs = _pairs()
    out = None if variant == "standin-copy-newout" else encoded
    tracemalloc.start()
    t0 = time.perf_counter()
    masked = apply_masks(encoded, bits=BITS, self_seed=self_seed, pair_seeds=pairs, out=out)
    mask_seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    wire_bytes = 0
    if variant == "fixedpoint-inplace-wire":
        header = m.Header(1, bytes(16), 0, m.Stage.MASKED_INPUT, 1, m.SERVER_ID)
        wire_bytes = len(m.encode(m.MaskedInput(header, masked)))
    peak = _peak_rss_bytes()
    update_bytes = 4 * d
    return {
        "what": _RSS_WHAT[variant],
        "variant": variant,
        "device": "cpu",
        "d": d,
        "update_bytes": update_bytes,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "peak_rss_over_update": peak / update_bytes,
        "goal": RSS_GOAL,
        "peak_minus_baseline_over_update": (peak - baseline) / update_bytes,
        "hwm_over_update_after": {
            "update": after_update / update_bytes,
            "encode": after_encode / update_bytes,
            "mask": peak / update_bytes,
        },
        "encode_seconds": encode_seconds,
        "apply_masks_seconds": mask_seconds,
        "apply_masks_transient_bytes": traced_peak - (0 if out is not None else masked.nbytes),
        "wire_bytes": wire_bytes,
        "checksum": int(masked[:1000].sum()),
    }


def bench_rss(quick: bool) -> list[dict[str, Any]]:
    d = 10**7 if quick else 10**8
    rows = []
    for variant in RSS_VARIANTS:
        proc = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(d), "--variant", variant],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(proc.stdout))
    return rows


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _table(results: dict[str, Any]) -> str:
    lines = [f"{'benchmark':66} {'device':32} figure"]
    for row in results["keystream"]:
        extra = f" ({row['speed_vs_cryptography']:.2f}x crypto)" if "speed_vs_cryptography" in row else ""
        lines.append(f"{'keystream ' + row['what']:66} {row['device']:32} {row['GB_per_s']:>9.3f} GB/s{extra}")
    for row in results["client_masking"] + results["server_unmasking"]:
        lines.append(
            f"{row['what'][:66]:66} {row['device'][:32]:32} "
            f"{row['seconds']:>7.3f} s d={row['d']:.0e} ({row['ratio_to_prg_floor']:.2f}x floor)"
        )
    for row in results["cpu_streaming_rss"]:
        lines.append(
            f"{'RSS: ' + row['what'][:61]:66} {row['device']:32} "
            f"{row['peak_rss_over_update']:>6.2f}x update (goal <= {RSS_GOAL})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    parser.add_argument("--smoke", action="store_true", help="the --quick sizes, flagged as a smoke run (tests)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU (~2-5 min build)")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=RSS_VARIANTS, default=RSS_VARIANTS[1], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke  # --quick already runs in a few seconds
    if args.rss_child:
        print(json.dumps(rss_child(args.rss_child, args.variant)))
        return 0

    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        # Eager torch with 2 threads on 2 shared cores measured 5-50x slower than 1 thread.
        torch.set_num_threads(1)
    results: dict[str, Any] = {
        "benchmark": "gpu",
        "device": device.type,
        "cuda": cuda,
        "device_name": _device_label(torch, device),
        "note": "CUDA run: GPU figures are marked with the device"
        if cuda
        else "no CUDA device: every figure below is a CPU figure, none is a GPU figure",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "quick": args.quick,
        "smoke": args.smoke,
    }
    results["keystream"] = bench_keystream(args.quick, args.compile, torch, device)
    results["client_masking"] = bench_client(args.quick, torch, device)
    results["server_unmasking"] = bench_server(args.quick, torch, device)
    results["cpu_streaming_rss"] = bench_rss(args.quick)
    emit(results, _table(results), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
