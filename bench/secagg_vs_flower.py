"""Our SecAgg / SecAgg+ against Flower's own SecAgg+, in the same process and run.

Flower runs through ``bench/flower_harness.py`` (``SecAggPlusWorkflow`` +
``secaggplus_mod`` over a synchronous in-process ``Grid``, no Ray, no
network); ours through ``protocols.sim.run``. Same N, d, neighbours, threshold
and dropouts on both sides; every message on both sides is serialised
(Flower's protobuf, our wire format), so byte counts are what a transport
would carry. Cases:

* N=50, d=10k, 8 neighbours (Flower ``num_shares=9``), t=5, 5 dropouts at
  masked input; N=50, d=10k, complete graph (t=26), 5 dropouts;
  N=10, d=1M, 4 neighbours, t=3, 2 dropouts: round time, as Flower / ours;
* upload bytes per parameter (masked-input replies, per client per parameter);
* client masking at d=1M with 8 neighbours against (k+1) raw ChaCha20
  expansions (``cryptography``) measured here;
* the PRG floor ratio: our round time / (ChaCha20 expansions in the round ×
  measured ns per word), expansions counted by wrapping the masking calls;
* scale: ours only, N=100, 300, 1000 at d=100k with
  ``choose_params(n, dropout_rate=0.1, corrupt_rate=0.05)`` (k, t, min
  survivors reported), no dropouts, against the floor N·(k+1)·d × ns/word.

The N=50 k=8 and N=10 d=1M cases alternate Flower and ours ``--repeats``
times (default 3) and keep the best of each; the complete graph runs once.
Both sides' aggregates are checked against the plaintext weighted mean of
their survivors (error ≤ one quantisation step). ``--quick`` runs small sizes;
``--smoke`` tiny ones (every case and code path, a few seconds, for the tests).
Prints JSON, then a table of ratios. Timings come from a shared 2-core
machine: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms  # noqa: E402

import protocols.secagg_client as client_module  # noqa: E402
import protocols.secagg_server as server_module  # noqa: E402
from flower_harness import run_flower  # noqa: E402
from protocols import Stage, choose_params, sim  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.errors import AbortError  # noqa: E402

# ---------------------------------------------------------------- references


def chacha_ns_per_word(n_words: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` ns per uint32 word of raw ChaCha20 (``cryptography``)."""
    zeros = bytes(4 * n_words)
    out = bytearray(4 * n_words + 64)
    best = float("inf")
    for _ in range(repeats):
        enc = Cipher(algorithms.ChaCha20(os.urandom(32), os.urandom(16)), None).encryptor()
        start = time.perf_counter()
        enc.update_into(zeros, out)
        best = min(best, time.perf_counter() - start)
    return best / n_words * 1e9


def raw_expansions_seconds(count: int, n_words: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` time of ``count`` raw ChaCha20 expansions of ``n_words``
    uint32 words each, each into a fresh array (what a client's masking must do)."""
    zeros = bytes(4 * n_words)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            enc = Cipher(algorithms.ChaCha20(os.urandom(32), os.urandom(16)), None).encryptor()
            np.frombuffer(enc.update(zeros), dtype=np.uint32)
        best = min(best, time.perf_counter() - start)
    return best


@contextmanager
def count_expansions() -> Iterator[dict[str, int]]:
    """Count PRG streams (and words) that SecAgg expands, client and server.

    Wraps the names the SecAgg sessions imported from ``secagg.masking``
    (``apply_masks`` in ``protocols.secagg_client``, ``unmask_sum`` in
    ``protocols.secagg_server``); fails loudly if either is renamed, rather
    than counting nothing.
    """
    counts = {"streams": 0, "words": 0}
    apply_orig, unmask_orig = client_module.apply_masks, server_module.unmask_sum

    def words_per_value(bits: int) -> int:
        return 1 if bits <= 32 else 2

    def apply(encoded: Any, *, bits: int, self_seed: Any, pair_seeds: Sequence[Any], **kw: Any) -> Any:
        streams = len(pair_seeds) + (self_seed is not None)
        counts["streams"] += streams
        counts["words"] += streams * int(encoded.shape[0]) * words_per_value(bits)
        return apply_orig(encoded, bits=bits, self_seed=self_seed, pair_seeds=pair_seeds, **kw)

    def unmask(
        masked: Sequence[Any], *, bits: int, self_seeds: Sequence[Any], pair_seeds: Sequence[Any], **kw: Any
    ) -> Any:
        streams = len(self_seeds) + len(pair_seeds)
        counts["streams"] += streams
        counts["words"] += streams * int(masked[0].shape[0]) * words_per_value(bits)
        return unmask_orig(masked, bits=bits, self_seeds=self_seeds, pair_seeds=pair_seeds, **kw)

    client_module.apply_masks, server_module.unmask_sum = apply, unmask
    try:
        yield counts
    finally:
        client_module.apply_masks, server_module.unmask_sum = apply_orig, unmask_orig


# ---------------------------------------------------------------- our side

MAX_GRAPH_SEEDS = 20  # public graph seeds tried before reporting an abort


def run_ours(
    protocol: str,
    updates: Sequence[np.ndarray],
    *,
    dropouts: dict[int, Any],
    threshold: int | None,
    neighbors: int | None,
    encoder: Any = None,
    min_survivors: int | None = None,
    weighted: bool = True,
    seed: int = 1,
) -> dict[str, Any]:
    """One ``sim.run`` round: wall time, masking per client, bytes, correctness."""
    n, d = len(updates), updates[0].size
    weights = [1] * n if weighted else None
    # Our clients hold no share of their own secrets (Flower's do), so at equal
    # k and t a dropout pattern can abort ours where Flower survives: try the
    # next public graph seed then, and report how many were tried.
    aborts = []
    for attempt in range(MAX_GRAPH_SEEDS):
        with count_expansions() as counts:
            start = time.perf_counter()
            try:
                res = sim.run(
                    protocol,
                    updates,
                    weights=weights,
                    dropouts=dropouts,
                    threshold=threshold,
                    neighbors=neighbors,
                    seed=seed + attempt,
                    encoder=encoder,
                    min_survivors=min_survivors,
                )
            except AbortError as exc:
                aborts.append(str(exc))
                continue
            wall = time.perf_counter() - start
        break
    else:
        return {
            "produced_aggregate": False,
            "abort": aborts[-1],
            "graph_seeds_tried": len(aborts),
            "wall_seconds": float("nan"),
        }
    surv = res.survivors
    expected = np.mean([updates[i] for i in surv], axis=0) if weighted else np.sum([updates[i] for i in surv], axis=0)
    masking = [s for cid, s in res.stage_seconds.get("masked_input", {}).items() if cid != "server"]
    masked_up = res.stage_bytes.get("masked_input", {}).get("up", 0)
    enc = encoder if encoder is not None else sim.default_encoder(updates, max_weight=1)
    return {
        "produced_aggregate": True,
        "wall_seconds": wall,
        "stage_seconds": {s: round(sum(v.values()), 4) for s, v in res.stage_seconds.items()},
        "masking_seconds_mean": float(np.mean(masking)) if masking else None,
        "upload_bytes_per_param": masked_up / max(1, len(surv)) / d,
        "upload_total_per_param": sum(res.bytes_up.values()) / n / d,
        "survivors": len(surv),
        "max_abs_error": float(np.max(np.abs(res.aggregate - expected))),
        "quantisation_step": float(enc.precision),
        "graph_seeds_tried": attempt + 1,
        "prg_streams": counts["streams"],
        "prg_words": counts["words"],
    }


def run_flower_side(
    updates: Sequence[np.ndarray],
    *,
    num_shares: int | float,
    threshold: int,
    dropouts: dict[int, Any],
    retry: bool = True,
) -> dict[str, Any]:
    # Flower shuffles its graph with Python's random on every round, so a
    # dropout pattern can halt one round and not the next: retry as for ours.
    halts = []
    for _ in range(MAX_GRAPH_SEEDS):
        r = run_flower(updates, num_shares=num_shares, reconstruction_threshold=threshold, dropouts=dropouts)
        if r.produced_aggregate or not dropouts or not retry:
            break
        halts.append(r.wall_seconds)
    out = r.summary()
    out["rounds_tried"] = len(halts) + 1
    out["halted_round_seconds"] = halts
    clip = max(float(np.max(np.abs(u))) for u in updates)
    out["quantisation_step"] = 2 * clip / (2**22)  # Flower's defaults: 2^22 levels over [-clip, clip]
    out["survivors"] = len(r.survivors)
    return out


def _ok(side: dict[str, Any]) -> bool:
    """Aggregate produced and within one quantisation step (stochastic rounding) of the plaintext mean."""
    return bool(side.get("produced_aggregate")) and side["max_abs_error"] <= side["quantisation_step"]


# ---------------------------------------------------------------- cases


def updates_for(n: int, d: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.uniform(-1.0, 1.0, d) for _ in range(n)]


def spread(n: int, count: int) -> list[int]:
    """``count`` client indices spread evenly over ``n``."""
    return [int(i * n / count) + n // (2 * count) for i in range(count)]


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least wall time (other load only ever adds time), with every run's wall time."""
    done = [r for r in runs if r.get("produced_aggregate")] or runs
    top = dict(min(done, key=lambda r: r["wall_seconds"]))
    top["all_wall_seconds"] = [r["wall_seconds"] for r in runs]
    return top


def compare(
    name: str,
    n: int,
    d: int,
    *,
    neighbors: int | None,
    threshold: int,
    drops: int,
    rng: np.random.Generator,
    repeats: int = 1,
) -> dict[str, Any]:
    """Flower's round and ours on the same updates, alternating, ``repeats`` times each: best of each."""
    updates = updates_for(n, d, rng)
    dropouts = {i: Stage.MASKED_INPUT for i in spread(n, drops)} if drops else {}
    flowers, ourses = [], []
    for _ in range(repeats):
        flowers.append(
            run_flower_side(
                updates, num_shares=1.0 if neighbors is None else neighbors + 1, threshold=threshold, dropouts=dropouts
            )
        )
        ourses.append(
            run_ours(
                "secagg" if neighbors is None else "secagg+",
                updates,
                dropouts=dropouts,
                threshold=threshold,
                neighbors=neighbors,
            )
        )
    flower, ours = _best(flowers), _best(ourses)
    row = {
        "case": name,
        "n": n,
        "d": d,
        "neighbors": neighbors if neighbors is not None else n - 1,
        "threshold": threshold,
        "dropouts_at_masked_input": drops,
        "repeats": repeats,
        "flower": flower,
        "ours": ours,
        "flower_correct": all(_ok(f) for f in flowers),
        "ours_correct": all(_ok(o) for o in ourses),
    }
    if ours.get("produced_aggregate") and flower.get("wall_seconds"):
        row["speedup"] = flower["wall_seconds"] / ours["wall_seconds"]
    return row


def masking_case(n: int, d: int, neighbors: int, rng: np.random.Generator) -> dict[str, Any]:
    """Client masking at dimension d with ``neighbors`` neighbours vs (k+1) raw expansions."""
    updates = updates_for(n, d, rng)
    flower = run_flower_side(updates, num_shares=neighbors + 1, threshold=neighbors // 2 + 1, dropouts={})
    ours = run_ours("secagg+", updates, dropouts={}, threshold=neighbors // 2 + 1, neighbors=neighbors)
    raw = raw_expansions_seconds(neighbors + 1, d + 1)
    enc = sim.default_encoder(updates, max_weight=1)
    start = time.perf_counter()
    enc.encode(updates[0], weight=1)
    encode_s = time.perf_counter() - start
    return {
        "n": n,
        "d": d,
        "neighbors": neighbors,
        "raw_chacha20_k_plus_1_seconds": raw,
        "ours_masking_seconds": ours["masking_seconds_mean"],
        "ours_encode_seconds": encode_s,
        "flower_masking_seconds": flower["masking_seconds_mean"],
        "ours_over_raw": ours["masking_seconds_mean"] / raw,
        "ours_with_encode_over_raw": (ours["masking_seconds_mean"] + encode_s) / raw,
        "flower_over_ours": flower["masking_seconds_mean"] / ours["masking_seconds_mean"],
        "ours_correct": _ok(ours),
        "flower_correct": _ok(flower),
    }


def scale_case(n: int, d: int, rng: np.random.Generator, ns_per_word: float) -> dict[str, Any]:
    params = choose_params(n, dropout_rate=0.1, corrupt_rate=0.05)
    bases = updates_for(8, d, rng)  # 8 distinct vectors shared round-robin: memory stays O(d), not O(n d)
    updates = [bases[i % len(bases)] for i in range(n)]
    encoder = FixedPointEncoder.for_precision(1.0, 1e-4, n)
    ours = run_ours(
        "secagg+",
        updates,
        dropouts={},
        threshold=params.threshold,
        neighbors=params.neighbors,
        encoder=encoder,
        min_survivors=params.min_survivors,
    )
    floor = n * (params.neighbors + 1) * d * ns_per_word * 1e-9
    return {
        "n": n,
        "d": d,
        "k": params.neighbors,
        "t": params.threshold,
        "bits": params.bits,
        "min_survivors": params.min_survivors,
        "wall_seconds": ours.get("wall_seconds"),
        "prg_floor_seconds": floor,
        "over_floor": ours["wall_seconds"] / floor if ours.get("produced_aggregate") else None,
        "stage_seconds": ours.get("stage_seconds"),
        "correct": _ok(ours),
        "max_abs_error": ours.get("max_abs_error"),
        "upload_bytes_per_param": ours.get("upload_bytes_per_param"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, every case, a few seconds (tests)")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    parser.add_argument("--skip-scale", action="store_true", help="skip the N=100..1000 runs")
    parser.add_argument(
        "--repeats",
        type=int,
        help="rounds per side in the k-neighbour cases, best kept "
        "(default 3; 1 with --quick/--smoke; the complete graph always runs once)",
    )
    args = parser.parse_args(argv)
    q, smoke = args.quick, args.smoke
    rng = np.random.default_rng(2026)
    big_d = 10_000 if smoke else 100_000 if q else 1_000_000
    ns_word = chacha_ns_per_word(big_d)
    out: dict[str, Any] = {"quick": q, "smoke": smoke, "chacha20_ns_per_word": ns_word, "cases": []}
    n50, d10k = (12, 500) if smoke else (20, 2_000) if q else (50, 10_000)
    drops = 2 if smoke else 5
    reps = args.repeats or (1 if smoke or q else 3)
    out["repeats"] = reps
    out["cases"].append(
        compare(
            f"N={n50}, d={d10k}, 8 neighbours, {drops} drops",
            n50,
            d10k,
            neighbors=8,
            threshold=5,
            drops=drops,
            rng=rng,
            repeats=reps,
        )
    )
    t_full = n50 // 2 + 1
    # Flower's complete graph takes about a minute per round at N=50: one round each.
    out["cases"].append(
        compare(
            f"N={n50}, d={d10k}, complete graph, {drops} drops",
            n50,
            d10k,
            neighbors=None,
            threshold=t_full,
            drops=drops,
            rng=rng,
        )
    )
    big = compare(
        f"N=10, d={big_d}, 4 neighbours, 2 drops", 10, big_d, neighbors=4, threshold=3, drops=2, rng=rng, repeats=reps
    )
    out["cases"].append(big)
    if big["ours"].get("produced_aggregate"):
        words = big["ours"]["prg_words"]
        big["ours"]["prg_floor_seconds"] = words * ns_word * 1e-9
        big["ours"]["over_prg_floor"] = big["ours"]["wall_seconds"] / big["ours"]["prg_floor_seconds"]
    out["upload_bytes_per_param"] = {
        "flower": big["flower"]["upload_bytes_per_param"],
        "ours": big["ours"].get("upload_bytes_per_param"),
        "flower_all_stages": big["flower"]["upload_total_per_param"],
        "ours_all_stages": big["ours"].get("upload_total_per_param"),
    }
    if big["ours"].get("produced_aggregate"):
        out["upload_bytes_per_param"]["flower_over_ours"] = (
            big["flower"]["upload_bytes_per_param"] / big["ours"]["upload_bytes_per_param"]
        )
    out["masking"] = masking_case(10, big_d, 8, rng)
    if not args.skip_scale:
        sizes, d_scale = ((100,), 200) if smoke else ((100, 150), 2_000) if q else ((100, 300, 1000), 100_000)
        out["scale"] = [scale_case(n, d_scale, rng, ns_word) for n in sizes]
    print(json.dumps(out, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    _table(out)
    return out


def _table(out: dict[str, Any]) -> None:
    print(f"\nChaCha20 (cryptography): {out['chacha20_ns_per_word']:.2f} ns/word")
    print(f"\n{'case':44} {'Flower s':>9} {'ours s':>8} {'Flower/ours':>12} {'correct F/O':>12}")
    for c in out["cases"]:
        f, o = c["flower"], c["ours"]
        fs = f"{f['wall_seconds']:.3f}" + ("" if f["produced_aggregate"] else "*")
        sp = f"{c['speedup']:.1f}x" if "speedup" in c else "-"
        print(
            f"{c['case']:44} {fs:>9} {o['wall_seconds']:>8.3f} {sp:>12} "
            f"{str(c['flower_correct'])[0]}/{str(c['ours_correct'])[0]:>10}"
        )
    u = out["upload_bytes_per_param"]
    ratio = f", Flower/ours {u['flower_over_ours']:.1f}x" if "flower_over_ours" in u else ""
    print(
        f"\nupload bytes/param (masked input): Flower {u['flower']:.3f}, ours {u['ours']:.3f}{ratio} "
        f"(all stages: {u['flower_all_stages']:.3f} vs {u['ours_all_stages']:.3f})"
    )
    m = out["masking"]
    print(
        f"client masking d={m['d']}, k={m['neighbors']}: ours {m['ours_masking_seconds'] * 1e3:.1f} ms "
        f"(+encode {m['ours_encode_seconds'] * 1e3:.1f} ms), Flower {m['flower_masking_seconds'] * 1e3:.1f} ms, "
        f"{m['neighbors'] + 1} raw ChaCha20 {m['raw_chacha20_k_plus_1_seconds'] * 1e3:.1f} ms -> ours/raw "
        f"{m['ours_over_raw']:.2f}x (+encode {m['ours_with_encode_over_raw']:.2f}x), "
        f"Flower/ours {m['flower_over_ours']:.1f}x"
    )
    big = out["cases"][2]["ours"]
    if "over_prg_floor" in big:
        print(
            f"PRG floor ({out['cases'][2]['case']}): {big['prg_streams']} expansions, floor "
            f"{big['prg_floor_seconds']:.3f} s, round {big['wall_seconds']:.3f} s -> {big['over_prg_floor']:.2f}x floor"
        )
    for s in out.get("scale", []):
        print(
            f"scale N={s['n']:5} d={s['d']}: k={s['k']} t={s['t']} min_survivors={s['min_survivors']} "
            f"round {s['wall_seconds']:.1f} s, floor {s['prg_floor_seconds']:.1f} s -> {s['over_floor']:.2f}x, "
            f"correct={s['correct']}"
        )
    print(
        f"(* = Flower halted with no aggregate; k-neighbour cases best of {out.get('repeats', 1)} rounds per side, "
        "complete graph one)"
    )


if __name__ == "__main__":
    main()
