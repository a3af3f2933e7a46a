"""The Flower adapter says that secure aggregation is on: the server logs each
round's protocol and parameters, then its survivors and dropouts; the client mod
logs that it masked its update. Rounds run in process (InProcessGrid)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, RecordDict  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import ndarrays_to_parameters  # noqa: E402
from flwr.server import LegacyContext, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402

from fl.flower import LOGGER_NAME, InProcessGrid, SecAggFitWorkflow, secagg_mod  # noqa: E402
from protocols import Stage  # noqa: E402
from secagg import kex  # noqa: E402

N = 6
SHAPES = [(5, 2), (3,)]
DIM = 13


class Client(NumPyClient):
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):  # noqa: ANN001, ANN201
        return [p + 0.01 * self.node_id for p in parameters], 3, {}


def run_round(workflow: SecAggFitWorkflow, drop=None, node_configs=None) -> None:  # noqa: ANN001
    app = ClientApp(client_fn=lambda ctx: Client(ctx.node_id).to_client(), mods=[secagg_mod])
    strategy = FedAvg(fraction_fit=1.0, min_fit_clients=N, min_available_clients=N, fraction_evaluate=0.0,
                      initial_parameters=ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES]))
    context = LegacyContext(Context(1, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=1), strategy=strategy)
    grid = InProcessGrid(app, range(1, N + 1), drop=drop, node_configs=node_configs)
    DefaultWorkflow(fit_workflow=workflow)(grid, context)


def drop_from(stages: dict[int, str]):  # noqa: ANN201
    order = [s.value for s in Stage]

    def drop(node_id: int, stage: str | None) -> str | None:
        stop = stages.get(node_id)
        return "absent" if stop and stage and order.index(stage) >= order.index(stop) else None

    return drop


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture):  # noqa: ANN201
    """INFO records of the adapter's logger (Flower's own lines left out)."""
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        yield lambda: [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME and r.levelno == logging.INFO]


def test_server_logs_protocol_parameters_survivors_and_dropouts(records) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(neighbors=4, threshold=3, min_survivors=4, max_corrupt=1)
    run_round(workflow, drop_from({2: "share_keys", 5: "unmask"}))
    assert workflow.outcomes[0].ok
    lines = records()
    params = [m for m in lines if "protocol" in m]
    assert len(params) == 1
    for field in ("protocol SecAgg+", "n=6", "threshold t=3", "neighbours k=4", "min_survivors=4", "max_corrupt=1",
                  "semi-honest", f"dim {DIM}"):
        assert field in params[0], (field, params[0])
    done = [m for m in lines if "survivors" in m and "done" in m]
    assert len(done) == 1
    assert "5 of 6 survivors ['1', '3', '4', '5', '6']" in done[0]
    assert "'share_keys': ['2']" in done[0] and "'unmask': ['5']" in done[0]
    masked = sorted(m for m in lines if "masked its update" in m)
    assert [m.split()[2] for m in masked] == ["1", "3", "4", "5", "6"]  # node 2 dropped before masking
    assert all(f"({DIM} values and its weight) for round 1" in m for m in masked)


def test_an_aborted_round_logs_the_stage_and_who_dropped(records) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=4, min_survivors=5)
    run_round(workflow, drop_from({1: "masked_input", 4: "masked_input"}))
    assert not workflow.outcomes[0].ok
    (aborted,) = [m for m in records() if "aborted" in m]
    assert "round 1 aborted at masked_input (needed 5, got 4)" in aborted
    assert "'masked_input': ['1', '4']" in aborted
    (params,) = [m for m in records() if "protocol" in m]
    assert "protocol SecAgg (complete graph)" in params and "neighbours k=5" in params


def test_an_active_round_logs_its_mode_and_roster_names(records, tmp_path: Path) -> None:  # noqa: ANN001
    keys = {i: kex.generate_identity() for i in range(1, N + 1)}
    roster = {f"hospital-{i}": k.public_bytes for i, k in keys.items()}
    roster_path = tmp_path / "roster.json"
    roster_path.write_text(json.dumps({name: key.hex() for name, key in roster.items()}))
    configs = {}
    for i, key in keys.items():
        (tmp_path / f"id{i}.key").write_bytes(key.private_bytes)
        configs[i] = {"secagg-roster": str(roster_path), "secagg-identity": str(tmp_path / f"id{i}.key")}
    workflow = SecAggFitWorkflow(threshold=5, min_survivors=N, roster=roster, active_security=True, max_corrupt=1)
    run_round(workflow, node_configs=configs)
    assert workflow.outcomes[0].ok
    (params,) = [m for m in records() if "protocol" in m]
    assert "active (malicious server)" in params and "max_corrupt=1" in params
    (done,) = [m for m in records() if "done" in m]
    assert "hospital-3 (3)" in done
