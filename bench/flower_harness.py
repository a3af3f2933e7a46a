"""Run Flower's own SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``) in one
process, through a synchronous in-process ``Grid`` (no Ray, no network).

``run_flower(updates, num_shares=..., reconstruction_threshold=..., dropouts=...)``
runs one round of Flower's legacy ``DefaultWorkflow`` with Flower's SecAgg+ as
the fit workflow and returns a :class:`FlowerRound`: wall time of the round
and of each Flower stage, each client's time inside
``secaggplus_mod._collect_masked_vectors`` (quantise + masks, measured by
wrapping it), protobuf bytes per stage each way (every message and reply is
serialised with Flower's own ``recorddict_to_proto``), and whether the round
produced an aggregate, with its error against the plaintext weighted mean of
the clients that delivered a masked vector.

Clients are 0-based indices (Flower node id = index + 1). A dropout maps a
client to the Flower stage from which its SuperNode stops answering
(``setup``, ``share_keys``, ``collect_masked_vectors``, ``unmask``, or our
``protocols.Stage`` names, mapped: advertise_keys -> setup, masked_input ->
collect_masked_vectors, consistency -> unmask). Its reply becomes the error
reply a SuperLink returns for an unavailable node (``dropout_reply="error"``)
or no reply at all (``"absent"``, a timeout); Flower's workflow treats both
alike.

Run ``python bench/flower_harness.py [--quick | --smoke]`` for the self-check against the
project's research note on Flower's SecAgg+: N=10, d=10k round
correct; a dropout at setup or share_keys halts the round with no aggregate;
dropouts at collect_masked_vectors are recovered.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flwr.compat.common.recorddict_compat as compat  # noqa: E402
from flwr.app import Context, RecordDict  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.client.mod import secaggplus_mod  # noqa: E402
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server import LegacyContext, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow  # noqa: E402

from fl.flower import InProcessGrid  # noqa: E402

# The package re-exports the function under the module's name: fetch the module itself.
mod_module = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")

__all__ = ["FLOWER_STAGES", "FlowerRound", "run_flower", "flower_stage", "quiet_flower", "selfcheck"]

FLOWER_STAGES = ("setup", "share_keys", "collect_masked_vectors", "unmask")
_FROM_OURS = {
    "advertise_keys": "setup",
    "share_keys": "share_keys",
    "masked_input": "collect_masked_vectors",
    "consistency": "unmask",
    "unmask": "unmask",
}
# Flower's defaults (SecAggPlusWorkflow): 2^22 quantisation levels in a 2^32 ring.
FLOWER_QUANTIZATION_RANGE = 2**22
FLOWER_MODULUS_RANGE = 2**32


def flower_stage(stage: Any) -> str:
    """Flower's stage name for a Flower name, a ``protocols.Stage`` or its name."""
    name = str(getattr(stage, "value", stage)).lower()
    if name in FLOWER_STAGES:
        return name
    if name in _FROM_OURS:
        return _FROM_OURS[name]
    raise ValueError(f"unknown stage {stage!r}; expected one of {FLOWER_STAGES} or a protocols.Stage")


@dataclass
class FlowerRound:
    """One round of Flower's SecAgg+ (see the module docstring).

    ``halted_at`` is the Flower stage whose check failed (``None`` if the round
    completed); ``aggregate`` is the new global model (flattened) when it did.
    ``upload_bytes_per_param`` is the masked-vector replies' protobuf bytes per
    delivering client per parameter; ``upload_total_per_param`` counts every
    stage's replies, per sampled client.
    """

    n: int
    d: int
    num_shares: int
    threshold: int
    wall_seconds: float
    stage_seconds: dict[str, float]
    masking_seconds: list[float]
    upload_bytes: dict[str, int]
    download_bytes: dict[str, int]
    upload_bytes_per_param: float
    upload_total_per_param: float
    produced_aggregate: bool
    halted_at: str | None
    survivors: list[int]
    max_abs_error: float | None
    aggregate: NDArray[np.float64] | None = field(default=None, repr=False)
    expected: NDArray[np.float64] | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (without the vectors)."""
        out = asdict(self)
        out.pop("aggregate")
        out.pop("expected")
        out["masking_seconds_mean"] = float(np.mean(self.masking_seconds)) if self.masking_seconds else None
        out.pop("masking_seconds")
        return out


@contextmanager
def quiet_flower(level: int = logging.CRITICAL) -> Iterator[None]:
    """Silence Flower's logger (it logs every stage at INFO, and halts at ERROR)."""
    logger = logging.getLogger("flwr")
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


class _FixedClient(NumPyClient):
    """Returns a fixed update and weight from ``fit`` (no training)."""

    def __init__(self, update: NDArray[np.float32], weight: int) -> None:
        self.update, self.weight = update, weight

    def fit(self, parameters: Any, config: Any) -> tuple[list[NDArray], int, dict]:
        return [self.update], self.weight, {}


@contextmanager
def _timed_masking(sink: list[float]) -> Iterator[None]:
    original = mod_module._collect_masked_vectors

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - start)

    setattr(mod_module, "_collect_masked_vectors", timed)  # a module found at run time: no static attribute
    try:
        yield
    finally:
        setattr(mod_module, "_collect_masked_vectors", original)


def run_flower(
    updates: Sequence[NDArray[np.floating]],
    *,
    num_shares: int | float,
    reconstruction_threshold: int | float,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, Any] | None = None,
    dropout_reply: str = "error",
    clipping_range: float | None = None,
    max_weight: float | None = None,
    quantization_range: int = FLOWER_QUANTIZATION_RANGE,
    modulus_range: int = FLOWER_MODULUS_RANGE,
) -> FlowerRound:
    """One round of Flower's SecAgg+ on ``updates`` (client i is node i+1).

    ``num_shares`` counts the client itself (neighbours + 1; ``1.0`` is the
    complete graph), as in ``SecAggPlusWorkflow``. ``clipping_range`` defaults
    to the largest |value| (no clipping, like our simulator's default encoder)
    and ``max_weight`` to the largest weight (the best precision Flower allows).
    """
    n = len(updates)
    vectors = [np.asarray(u, dtype=np.float32).ravel() for u in updates]
    d = vectors[0].size
    weights = [1] * n if weights is None else [int(w) for w in weights]
    drop_at = {int(i) + 1: FLOWER_STAGES.index(flower_stage(s)) for i, s in (dropouts or {}).items()}
    if dropout_reply not in ("error", "absent"):
        raise ValueError("dropout_reply must be 'error' or 'absent'")
    clip = clipping_range if clipping_range is not None else max(float(np.max(np.abs(v))) for v in vectors) or 1.0
    max_w = float(max_weight if max_weight is not None else max(weights))

    def drop(node_id: int, stage: str | None) -> str | None:
        stop = drop_at.get(node_id)
        if stop is None or stage is None or FLOWER_STAGES.index(stage) < stop:
            return None
        return dropout_reply

    client_app = ClientApp(
        client_fn=lambda ctx: _FixedClient(vectors[ctx.node_id - 1], weights[ctx.node_id - 1]).to_client(),
        mods=[secaggplus_mod],
    )
    grid = InProcessGrid(client_app, range(1, n + 1), drop=drop)
    workflow = SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=reconstruction_threshold,
        max_weight=max_w,
        clipping_range=clip,
        quantization_range=quantization_range,
        modulus_range=modulus_range,
    )
    stage_seconds: dict[str, float] = {}
    outcome: dict[str, Any] = {"halted_at": None, "survivors": []}
    for name in FLOWER_STAGES:
        method = getattr(workflow, name + "_stage")

        def timed_stage(grid_: Any, context: Any, state: Any, _method: Any = method, _name: str = name) -> bool:
            start = time.perf_counter()
            ok = _method(grid_, context, state)
            stage_seconds[_name] = time.perf_counter() - start
            if _name == "collect_masked_vectors":
                outcome["survivors"] = sorted(i - 1 for i in state.active_node_ids)
                outcome["shares"], outcome["threshold"] = state.num_shares, state.threshold
            if not ok and outcome["halted_at"] is None:
                outcome["halted_at"] = _name
            return ok

        setattr(workflow, name + "_stage", timed_stage)

    round_seconds: list[float] = []

    def fit_workflow(grid_: Any, context: Any) -> None:
        start = time.perf_counter()
        workflow(grid_, context)
        round_seconds.append(time.perf_counter() - start)

    initial = ndarrays_to_parameters([np.zeros(d, np.float32)])
    strategy = FedAvg(
        fraction_fit=1.0,
        min_fit_clients=n,
        min_available_clients=n,
        fraction_evaluate=0.0,
        initial_parameters=initial,
    )
    context = LegacyContext(Context(1, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=1), strategy=strategy)
    masking: list[float] = []
    with quiet_flower(), _timed_masking(masking):
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, context)
    produced = outcome["halted_at"] is None and "unmask" in stage_seconds
    aggregate = None
    if produced:
        params = compat.arrayrecord_to_parameters(context.state.array_records["parameters"], keep_input=True)
        aggregate = parameters_to_ndarrays(params)[0].astype(np.float64)
    survivors = outcome["survivors"]
    expected = None
    if survivors:
        w = np.asarray([weights[i] for i in survivors], dtype=np.float64)
        expected = np.sum([w_i * vectors[i].astype(np.float64) for w_i, i in zip(w, survivors)], axis=0) / w.sum()
    up = {s: 0 for s in FLOWER_STAGES}
    down = {s: 0 for s in FLOWER_STAGES}
    delivered_masked = 0
    for t in grid.traffic:
        if t.stage in up:
            up[t.stage] += t.up
            down[t.stage] += t.down
            delivered_masked += t.stage == "collect_masked_vectors" and t.delivered and t.up > 0
    return FlowerRound(
        n=n,
        d=d,
        num_shares=int(outcome.get("shares", 0)),
        threshold=int(outcome.get("threshold", 0)),
        wall_seconds=round_seconds[0] if round_seconds else float("nan"),
        stage_seconds=stage_seconds,
        masking_seconds=masking,
        upload_bytes=up,
        download_bytes=down,
        upload_bytes_per_param=up["collect_masked_vectors"] / max(1, delivered_masked) / d,
        upload_total_per_param=sum(up.values()) / n / d,
        produced_aggregate=produced,
        halted_at=outcome["halted_at"],
        survivors=survivors,
        max_abs_error=float(np.max(np.abs(aggregate - expected))) if produced and expected is not None else None,
        aggregate=aggregate,
        expected=expected,
    )


def selfcheck(quick: bool = False) -> dict[str, Any]:
    """Reproduce the research note's observations; returns JSON-ready results."""
    rng = np.random.default_rng(0)
    d = 2_000 if quick else 10_000
    updates = [rng.uniform(-1, 1, d).astype(np.float32) for _ in range(10)]
    cases = {
        "no_dropout": {},
        "2_drop_collect_masked_vectors": {1: "collect_masked_vectors", 6: "collect_masked_vectors"},
        "2_drop_unmask": {1: "unmask", 6: "unmask"},
        "2_drop_setup": {1: "setup", 6: "setup"},
        "2_drop_share_keys": {1: "share_keys", 6: "share_keys"},
    }
    out = {}
    for name, dropouts in cases.items():
        r = run_flower(updates, num_shares=5, reconstruction_threshold=3, dropouts=dropouts)
        out[name] = {
            "produced_aggregate": r.produced_aggregate,
            "halted_at": r.halted_at,
            "max_abs_error": r.max_abs_error,
            "wall_seconds": round(r.wall_seconds, 4),
            "upload_bytes_per_param": round(r.upload_bytes_per_param, 3),
        }
    return {"n": 10, "d": d, "num_shares": 5, "threshold": 3, "cases": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller d")
    parser.add_argument("--smoke", action="store_true", help="the --quick size, flagged as a smoke run (tests)")
    args = parser.parse_args(argv)
    result = selfcheck(args.quick or args.smoke)  # --quick already runs in a few seconds
    result["smoke"] = args.smoke
    print(json.dumps(result, indent=2))
    print(f"\n{'case':32} {'aggregate':>9} {'halted_at':>14} {'max_err':>10} {'round s':>8}")
    for name, row in result["cases"].items():
        err = "-" if row["max_abs_error"] is None else f"{row['max_abs_error']:.1e}"
        print(
            f"{name:32} {str(row['produced_aggregate']):>9} {str(row['halted_at']):>14} "
            f"{err:>10} {row['wall_seconds']:>8.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
