"""Our SecAgg/SecAgg+ on Flower's message API, through an in-process Grid."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("flwr")

import flwr.compat.common.recorddict_compat as compat  # noqa: E402
from flwr.app import ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.app.message_type import MessageType  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.client.mod import secaggplus_mod  # noqa: E402
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server import LegacyContext, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow  # noqa: E402

from fl.flower import (  # noqa: E402
    ERROR_CODE,
    RECORD_KEY,
    STATUS_KEY,
    InProcessGrid,
    SecAggFitWorkflow,
    decode_round_config,
    encode_round_config,
    make_secagg_mod,
    run_secure_round,
    secagg_mod,
)
from protocols import SecAggConfig, Stage  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.errors import ConfigError, DecodeError, SecAggError  # noqa: E402

N = 10
SHAPES = [(40, 5), (7,)]
CLIP = 4.0
MAX_WEIGHT = 100


def local_update(node_id: int, round_number: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(1000 * round_number + node_id)
    return [rng.uniform(-2, 2, s).astype(np.float32) for s in SHAPES]


def weight_of(node_id: int) -> int:
    return 5 * node_id


class FixedClient(NumPyClient):
    """Adds a fixed per-node delta to the global model; weight 5 × node id."""

    def __init__(self, node_id: int, weight: int | None = None) -> None:
        self.node_id, self.weight = node_id, weight

    def fit(self, parameters, config):  # noqa: ANN001, ANN201
        r = int(config.get("round", 1))
        new = [p + u for p, u in zip(parameters, local_update(self.node_id, r))]
        return new, self.weight if self.weight is not None else weight_of(self.node_id), {}


def client_app(mod=secagg_mod, weights: dict[int, int] | None = None) -> ClientApp:  # noqa: ANN001
    weights = weights or {}
    return ClientApp(client_fn=lambda ctx: FixedClient(ctx.node_id, weights.get(ctx.node_id)).to_client(), mods=[mod])


def initial_model() -> list[np.ndarray]:
    return [np.full(s, 0.25, np.float32) for s in SHAPES]


def legacy_context(rounds: int = 1) -> LegacyContext:
    strategy = FedAvg(
        fraction_fit=1.0, min_fit_clients=N, min_available_clients=N, fraction_evaluate=0.0,
        initial_parameters=ndarrays_to_parameters(initial_model()),
        on_fit_config_fn=lambda r: {"round": r},
    )
    return LegacyContext(Context(1, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=rounds), strategy=strategy)


def global_model(context: LegacyContext) -> list[np.ndarray]:
    params = compat.arrayrecord_to_parameters(context.state.array_records["parameters"], keep_input=True)
    return parameters_to_ndarrays(params)


def fedavg(survivors: list[int], model: list[np.ndarray], round_number: int = 1) -> list[np.ndarray]:
    """Plaintext FedAvg of the survivors' local models (weights = num_examples)."""
    w = np.array([weight_of(i) for i in survivors], dtype=np.float64)
    out = []
    for layer in range(len(SHAPES)):
        local = [np.clip(model[layer] + local_update(i, round_number)[layer], -CLIP, CLIP) for i in survivors]
        out.append(np.tensordot(w, np.stack(local).astype(np.float64), axes=1) / w.sum())
    return out


def step(n: int = N, bits: int = 32) -> float:
    """One quantisation step of the workflow's encoder: the mean is within it."""
    return FixedPointEncoder(CLIP, bits, n, max_weight=MAX_WEIGHT).precision


def drop_at(stages: dict[int, str], mode: str = "absent"):  # noqa: ANN201
    order = [s.value for s in Stage]

    def drop(node_id: int, stage: str | None) -> str | None:
        stop = stages.get(node_id)
        return mode if stop is not None and stage is not None and order.index(stage) >= order.index(stop) else None

    return drop


@pytest.fixture(autouse=True)
def _quiet_flower():
    logger = logging.getLogger("flwr")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)


def run_workflow(workflow: SecAggFitWorkflow, drop=None, rounds: int = 1, app: ClientApp | None = None):  # noqa: ANN001, ANN201
    context = legacy_context(rounds)
    grid = InProcessGrid(app or client_app(), range(1, N + 1), drop=drop)
    DefaultWorkflow(fit_workflow=workflow)(grid, context)
    return context, grid


@pytest.mark.parametrize(
    "neighbors, dropouts",
    [
        (None, {}),
        (6, {3: "share_keys", 8: "masked_input"}),  # Flower halts on the share_keys dropout
        (6, {2: "advertise_keys", 9: "unmask"}),
    ],
)
def test_aggregate_equals_plaintext_fedavg_of_survivors(neighbors, dropouts) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(neighbors=neighbors, clip=CLIP, max_weight=MAX_WEIGHT)
    context, _ = run_workflow(workflow, drop_at(dropouts))
    outcome = workflow.outcomes[0]
    assert outcome.ok, outcome.reason()
    delivered = [i for i in range(1, N + 1) if dropouts.get(i) not in ("advertise_keys", "share_keys", "masked_input")]
    assert outcome.survivors == delivered
    expected = fedavg(delivered, initial_model())
    for got, want in zip(global_model(context), expected):
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= step() + 1e-6  # quantisation step + float32 storage
    assert dict(context.state.config_records[STATUS_KEY])["status"] == "done"


def test_no_client_weight_reaches_the_server() -> None:
    seen: list[Message] = []

    class Spy(InProcessGrid):
        def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
            replies = super().pull_messages(message_ids)
            seen.extend(replies)
            return replies

    context = legacy_context()
    DefaultWorkflow(fit_workflow=SecAggFitWorkflow(neighbors=4, clip=CLIP, max_weight=MAX_WEIGHT))(
        Spy(client_app(), range(1, N + 1)), context
    )
    assert seen
    for reply in seen:
        content = reply.content
        assert list(content.config_records) == [RECORD_KEY]
        assert not content.array_records and not content.metric_records


def test_two_rounds_reset_the_client_sessions() -> None:
    workflow = SecAggFitWorkflow(neighbors=4, clip=CLIP, max_weight=MAX_WEIGHT)
    context, _ = run_workflow(workflow, rounds=2)
    assert [o.ok for o in workflow.outcomes] == [True, True]
    after_one = fedavg(list(range(1, N + 1)), initial_model(), 1)
    expected = fedavg(list(range(1, N + 1)), [a.astype(np.float32) for a in after_one], 2)
    for got, want in zip(global_model(context), expected):
        assert np.max(np.abs(got - want)) <= 3 * step()


def test_abort_keeps_the_previous_model_and_names_the_reason() -> None:
    workflow = SecAggFitWorkflow(neighbors=4, threshold=3, clip=CLIP, max_weight=MAX_WEIGHT, min_survivors=8)
    dropouts = {1: "masked_input", 2: "masked_input", 3: "masked_input"}
    context, _ = run_workflow(workflow, drop_at(dropouts))
    status = dict(context.state.config_records[STATUS_KEY])
    assert status["status"] == "aborted"
    assert "masked_input" in status["reason"] and "needed 8, got 7" in status["reason"]
    assert workflow.outcomes[0].abort_reason.stage is Stage.MASKED_INPUT
    for got, want in zip(global_model(context), initial_model()):
        np.testing.assert_array_equal(got, want)


def test_typed_client_error_becomes_a_readable_error_reply_and_a_dropout() -> None:
    app = client_app(weights={4: MAX_WEIGHT + 1})  # above max_weight: ConfigError on that client
    workflow = SecAggFitWorkflow(neighbors=6, clip=CLIP, max_weight=MAX_WEIGHT)
    run_workflow(workflow, app=app)
    outcome = workflow.outcomes[0]
    assert outcome.ok
    assert 4 not in outcome.survivors and outcome.dropped_at == {"advertise_keys": [4]}
    assert f"code {ERROR_CODE}" in outcome.errors[4] and "ConfigError" in outcome.errors[4]


def test_error_reply_from_the_mod_itself() -> None:
    ctx = Context(1, 5, {}, RecordDict(), {})
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": "share_keys", "payload": b"junk"})}), 5,
                  MessageType.TRAIN)
    reply = secagg_mod(msg, ctx, lambda m, c: pytest.fail("must not train"))
    assert reply.has_error() and reply.error.code == ERROR_CODE
    assert reply.error.reason.startswith("ConfigError: no session in progress")


def test_other_messages_pass_through() -> None:
    InProcessGrid(client_app(), [5])  # stamps the process's flwr task identity, which Message() needs
    ctx = Context(1, 5, {}, RecordDict(), {})
    msg = Message(RecordDict(), 5, MessageType.EVALUATE)
    sentinel = Message(RecordDict(), reply_to=msg)
    assert secagg_mod(msg, ctx, lambda m, c: sentinel) is sentinel


def test_stage_timeouts_reach_the_grid_and_silent_nodes_are_dropouts() -> None:
    calls: list[float | None] = []

    class Recording(InProcessGrid):
        def send_and_receive(self, messages, *, timeout=None):  # noqa: ANN001, ANN201
            messages = list(messages)
            calls.append(timeout)
            assert all(m.metadata.ttl == timeout for m in messages)
            return super().send_and_receive(messages, timeout=timeout)

    grid = Recording(client_app(), range(1, N + 1), drop=drop_at({7: "share_keys"}))
    timeouts = {"advertise_keys": 30.0, "share_keys": 5.0, "masked_input": 6.0, "unmask": 7.0}
    fit = compat.fitins_to_recorddict(FitIns(ndarrays_to_parameters(initial_model()), {"round": 1}), True)
    outcome = run_secure_round(grid, list(range(1, N + 1)), initial_model(), fit_content=fit, neighbors=6,
                               clip=CLIP, max_weight=MAX_WEIGHT, timeouts=timeouts)
    assert calls == [30.0, 5.0, 6.0, 7.0]
    assert outcome.ok and outcome.dropped_at == {"share_keys": [7]}


def test_one_line_switch_from_flowers_secaggplus() -> None:
    """The same ClientApp and strategy under Flower's SecAgg+ and ours agree."""
    results = {}
    for name, mod, fit_workflow in (
        ("flower", secaggplus_mod, SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3, clipping_range=CLIP,
                                                      max_weight=float(MAX_WEIGHT))),
        ("ours", secagg_mod, SecAggFitWorkflow(neighbors=4, threshold=3, clip=CLIP, max_weight=MAX_WEIGHT)),
    ):
        context = legacy_context()
        DefaultWorkflow(fit_workflow=fit_workflow)(InProcessGrid(client_app(mod), range(1, N + 1)), context)
        results[name] = global_model(context)
    for f, o in zip(results["flower"], results["ours"]):
        assert np.max(np.abs(f - o)) < 1e-3


def _config(**kw) -> SecAggConfig:  # noqa: ANN003
    enc = FixedPointEncoder(CLIP, 32, 5, max_weight=MAX_WEIGHT)
    return SecAggConfig(tuple(range(5)), kw.pop("threshold", 3), 207, enc, **kw)


def test_round_config_round_trips() -> None:
    config = _config(neighbors=None, round=3, weighted=True)
    data = encode_round_config(config, [11, 22, 33, 44, 55], SHAPES)
    back, node_ids, shapes = decode_round_config(data)
    assert node_ids == [11, 22, 33, 44, 55] and shapes == SHAPES
    for name in ("client_ids", "threshold", "dim", "neighbors", "min_survivors", "session_id", "graph_seed",
                 "round", "weighted"):
        assert getattr(back, name) == getattr(config, name)
    assert repr(back.encoder) == repr(config.encoder)
    assert encode_round_config(back, node_ids, shapes) == data


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:-3],
        lambda s: b"\xff" + s,
        lambda s: s.replace(b'"v":1', b'"v":2'),
        lambda s: s.replace(b'"dim":207', b'"dim":208'),
        lambda s: b"[]",
    ],
)
def test_malformed_round_config_is_a_decode_error(mutate) -> None:  # noqa: ANN001
    data = encode_round_config(_config(), [1, 2, 3, 4, 5], SHAPES)
    with pytest.raises(DecodeError):
        decode_round_config(mutate(data))


def test_insecure_threshold_from_the_server_is_refused() -> None:
    data = encode_round_config(_config(), [1, 2, 3, 4, 5], SHAPES)
    with pytest.raises(ConfigError):
        decode_round_config(data.replace(b'"threshold":3', b'"threshold":2'))  # t <= k/2


def test_client_policy_refuses_a_too_small_cohort() -> None:
    strict = make_secagg_mod(min_survivors=9)
    workflow = SecAggFitWorkflow(neighbors=4, threshold=3, clip=CLIP, max_weight=MAX_WEIGHT)  # min_survivors = t = 3
    context, _ = run_workflow(workflow, app=client_app(strict))
    outcome = workflow.outcomes[0]
    assert not outcome.ok and outcome.abort_reason.stage is Stage.ADVERTISE_KEYS
    assert all("round min_survivors is below this client's" in e for e in outcome.errors.values()) and len(outcome.errors) == N
    assert dict(context.state.config_records[STATUS_KEY])["status"] == "aborted"
    with pytest.raises(ConfigError):
        make_secagg_mod(min_survivors=0)


@given(st.binary(max_size=600) | st.builds(lambda b: encode_round_config(_config(), [1, 2, 3, 4, 5], SHAPES)[: len(b)] + b,
                                           st.binary(max_size=40)))
def test_round_config_decoding_is_total(data: bytes) -> None:
    """Any bytes from the server give a config or a typed error, never another exception."""
    try:
        decode_round_config(data)
    except SecAggError:
        pass


def test_deeply_nested_config_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_round_config(b"[" * 100_000 + b"]" * 100_000)
