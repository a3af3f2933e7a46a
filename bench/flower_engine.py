"""Flower's SecAgg+ against our workflow, both as Flower apps on Flower's in-process path.

Both sides run as a Flower ``ServerApp`` workflow (legacy ``DefaultWorkflow``
with the fit workflow swapped: Flower's ``SecAggPlusWorkflow`` +
``secaggplus_mod`` vs our ``fl.flower.SecAggFitWorkflow`` + ``secagg_mod``)
over the same synchronous in-process ``Grid`` (``fl.flower.InProcessGrid``:
every message and reply goes through Flower's protobuf, no Ray, no network),
with the same ``NumPyClient``. Issue #7's benchmark:

* N=10 and 50, d=10k and 100k, no dropouts: round time (the fit workflow) and
  protobuf bytes each way, as Flower / ours;
* N=10, d=10k with 2 SuperNodes that stop answering at the first stage
  (``setup`` / ``advertise_keys``) or the second (``share_keys``): Flower
  halts with no aggregate; ours completes from the survivors.

SecAgg+ with k neighbours on both sides (Flower ``num_shares = k + 1``),
threshold ⌊(k+1)/2⌋ + 1 (both count the client's own share). Each aggregate is checked against the plaintext FedAvg of
the survivors. ``--quick``: d=2k and 10k, N=10 and 20. Prints JSON, then a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flwr.compat.common.recorddict_compat as compat  # noqa: E402
from flwr.app import Context, RecordDict  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server import LegacyContext, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402

from fl.flower import InProcessGrid, SecAggFitWorkflow, secagg_mod  # noqa: E402
from flower_harness import quiet_flower, run_flower  # noqa: E402
from protocols import Stage  # noqa: E402
from protocols.config import default_threshold, effective_degree  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402

STAGES = [s.value for s in Stage]
CLIP = 1.0  # updates are uniform in [-1, 1]: no clipping on either side
MAX_WEIGHT = 100


class _FixedClient(NumPyClient):
    def __init__(self, update: np.ndarray, weight: int) -> None:
        self.update, self.weight = update, weight

    def fit(self, parameters: Any, config: Any) -> tuple[list[np.ndarray], int, dict]:
        return [self.update], self.weight, {}


def run_ours(
    updates: Sequence[np.ndarray], weights: Sequence[int], *, neighbors: int, threshold: int, dropouts: dict[int, str]
) -> dict[str, Any]:
    """One round of our workflow over InProcessGrid (client i is node i+1)."""
    n, d = len(updates), updates[0].size
    drop_at = {i + 1: STAGES.index(s) for i, s in dropouts.items()}

    def drop(node_id: int, stage: str | None) -> str | None:
        stop = drop_at.get(node_id)
        return "error" if stop is not None and stage in STAGES and STAGES.index(stage) >= stop else None

    app = ClientApp(
        client_fn=lambda ctx: _FixedClient(
            updates[ctx.node_id - 1].astype(np.float32), weights[ctx.node_id - 1]
        ).to_client(),
        mods=[secagg_mod],
    )
    grid = InProcessGrid(app, range(1, n + 1), drop=drop)
    workflow = SecAggFitWorkflow(neighbors=neighbors, threshold=threshold, clip=CLIP, max_weight=MAX_WEIGHT)
    seconds: list[float] = []

    def fit(grid_: Any, context: Any) -> None:
        start = time.perf_counter()
        workflow(grid_, context)
        seconds.append(time.perf_counter() - start)

    strategy = FedAvg(
        fraction_fit=1.0,
        min_fit_clients=n,
        min_available_clients=n,
        fraction_evaluate=0.0,
        initial_parameters=ndarrays_to_parameters([np.zeros(d, np.float32)]),
    )
    context = LegacyContext(Context(1, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=1), strategy=strategy)
    with quiet_flower():
        DefaultWorkflow(fit_workflow=fit)(grid, context)
    outcome = workflow.outcomes[0]
    out: dict[str, Any] = {
        "wall_seconds": seconds[0],
        "produced_aggregate": outcome.ok,
        "reason": outcome.reason(),
        "bytes_up": sum(t.up for t in grid.traffic if t.stage),
        "bytes_down": sum(t.down for t in grid.traffic if t.stage),
        "survivors": len(outcome.survivors),
    }
    if outcome.ok:
        surv = [nid - 1 for nid in outcome.survivors]
        params = compat.arrayrecord_to_parameters(context.state.array_records["parameters"], keep_input=True)
        model = parameters_to_ndarrays(params)[0].astype(np.float64)
        w = np.array([weights[i] for i in surv], dtype=np.float64)
        expected = (
            np.tensordot(w, np.stack([updates[i].astype(np.float32) for i in surv]).astype(np.float64), 1) / w.sum()
        )
        out["max_abs_error"] = float(np.max(np.abs(model - expected)))
        out["quantisation_step"] = FixedPointEncoder(CLIP, 32, n, max_weight=MAX_WEIGHT).precision
    return out


def run_theirs(
    updates: Sequence[np.ndarray], weights: Sequence[int], *, neighbors: int, threshold: int, dropouts: dict[int, str]
) -> dict[str, Any]:
    r = run_flower(
        updates,
        num_shares=neighbors + 1,
        reconstruction_threshold=threshold,
        weights=weights,
        dropouts=dropouts,
        clipping_range=CLIP,
        max_weight=MAX_WEIGHT,
    )
    return {
        "wall_seconds": r.wall_seconds,
        "produced_aggregate": r.produced_aggregate,
        "halted_at": r.halted_at,
        "bytes_up": sum(r.upload_bytes.values()),
        "bytes_down": sum(r.download_bytes.values()),
        "survivors": len(r.survivors),
        "max_abs_error": r.max_abs_error,
    }


def case(n: int, d: int, k: int, rng: np.random.Generator, dropouts: dict[int, str] | None = None) -> dict[str, Any]:
    updates = [rng.uniform(-1, 1, d) for _ in range(n)]
    weights = [int(w) for w in rng.integers(1, MAX_WEIGHT + 1, n)]
    k = effective_degree(n, k)  # the degree both sides really use (Flower: num_shares = k + 1)
    t = default_threshold(n, k)  # a majority of the k + 1 share holders, on both sides
    flower = run_theirs(updates, weights, neighbors=k, threshold=t, dropouts=dropouts or {})
    ours = run_ours(updates, weights, neighbors=k, threshold=t, dropouts=dropouts or {})
    row = {"n": n, "d": d, "neighbors": k, "threshold": t, "dropouts": dropouts or {}, "flower": flower, "ours": ours}
    if flower["produced_aggregate"] and ours["produced_aggregate"]:
        row["time_ratio"] = flower["wall_seconds"] / ours["wall_seconds"]
        row["bytes_up_ratio"] = flower["bytes_up"] / ours["bytes_up"]
        row["bytes_down_ratio"] = flower["bytes_down"] / ours["bytes_down"]
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(7)
    ns, ds = ((10, 20), (2_000, 10_000)) if args.quick else ((10, 50), (10_000, 100_000))
    rows = [case(n, d, 4 if n <= 10 else 8, rng) for n in ns for d in ds]
    drop_rows = [case(10, ds[0], 6, rng, dropouts={2: stage, 7: stage}) for stage in ("advertise_keys", "share_keys")]
    out = {"quick": args.quick, "sizes": rows, "dropouts": drop_rows}
    print(json.dumps(out, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"\n{'N':>4} {'d':>7} {'k':>3} {'Flower s':>9} {'ours s':>8} {'time F/O':>9} {'up F/O':>7} {'down F/O':>8}")
    for r in rows:
        f, o = r["flower"], r["ours"]
        if "time_ratio" in r:
            print(
                f"{r['n']:>4} {r['d']:>7} {r['neighbors']:>3} {f['wall_seconds']:>9.3f} {o['wall_seconds']:>8.3f} "
                f"{r['time_ratio']:>8.1f}x {r['bytes_up_ratio']:>6.2f}x {r['bytes_down_ratio']:>7.2f}x"
            )
        else:
            print(
                f"{r['n']:>4} {r['d']:>7} {r['neighbors']:>3} "
                f"Flower ok={f['produced_aggregate']} ours ok={o['produced_aggregate']}"
            )
    print(f"\n{'2 dropouts at':16} {'Flower':>24} {'ours':>30}")
    for r in drop_rows:
        stage = next(iter(r["dropouts"].values()))
        f, o = r["flower"], r["ours"]
        fs = "aggregate" if f["produced_aggregate"] else f"halted at {f['halted_at']}"
        os_ = f"aggregate, {o['survivors']} survivors" if o["produced_aggregate"] else f"aborted: {o['reason'][:40]}"
        print(f"{stage:16} {fs:>24} {os_:>30}")
    return out


if __name__ == "__main__":
    main()
