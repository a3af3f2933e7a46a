"""The Flower adapter against hostile or careless records: any payload, config or
stage label, from either side, is a typed error reply or a dropout, never an
uncaught exception or an allocation proportional to a claimed size."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")

import flwr.compat.common.recorddict_compat as compat  # noqa: E402
from flwr.app import ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.app.message_type import MessageType  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import FitIns, ndarrays_to_parameters  # noqa: E402

from fl.flower import (  # noqa: E402
    ERROR_CODE,
    MAX_CONFIG_BYTES,
    RECORD_KEY,
    InProcessGrid,
    decode_round_config,
    encode_round_config,
    payload_limit,
    run_secure_round,
    secagg_mod,
)
from protocols import SecAggConfig, Stage  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.errors import DecodeError  # noqa: E402

N = 5
SHAPES = [(6, 3), (4,)]
CLIP, MAX_WEIGHT = 4.0, 100
# Far below the 200 MB that bytes(2 * 10**8) built from an int payload used to take.
ALLOCATION_BOUND = 8 << 20
HUGE_INT = 2 * 10**8


class Client(NumPyClient):
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):  # noqa: ANN001, ANN201
        rng = np.random.default_rng(self.node_id)
        return [p + rng.uniform(-1, 1, p.shape).astype(np.float32) for p in parameters], 10, {}


APP = ClientApp(client_fn=lambda ctx: Client(ctx.node_id).to_client(), mods=[secagg_mod])


def model() -> list[np.ndarray]:
    return [np.zeros(s, np.float32) for s in SHAPES]


def fit_content() -> RecordDict:
    return compat.fitins_to_recorddict(FitIns(ndarrays_to_parameters(model()), {}), True)


def config(n: int = N) -> SecAggConfig:
    enc = FixedPointEncoder(CLIP, 32, n, max_weight=MAX_WEIGHT)
    return SecAggConfig(tuple(range(n)), n // 2 + 1, sum(int(np.prod(s)) for s in SHAPES), enc)


@pytest.fixture(autouse=True)
def _quiet_flower():
    loggers = [logging.getLogger(name) for name in ("flwr", "fl.flower")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    yield
    for lg, level in zip(loggers, levels):
        lg.setLevel(level)


class Tampering(InProcessGrid):
    """Replaces one field of our record, on the way down (``"down"``: a hostile
    server) or up (``"up"``: a hostile client), for one node at one stage."""

    def __init__(self, node: int, stage: Stage, field: str, value: object, direction: str) -> None:
        super().__init__(APP, range(1, N + 1))
        self.node, self.stage, self.field, self.value, self.direction = node, stage, field, value, direction

    def _tamper(self, msg: Message, nid: int) -> None:
        record = msg.content.config_records.get(RECORD_KEY)
        if nid == self.node and record is not None and record.get("stage") == self.stage.value:
            record[self.field] = self.value

    def push_messages(self, messages):  # noqa: ANN001, ANN201
        messages = list(messages)
        if self.direction == "down":
            for msg in messages:
                self._tamper(msg, msg.metadata.dst_node_id)
        return super().push_messages(messages)

    def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
        replies = super().pull_messages(message_ids)
        if self.direction == "up":
            for reply in replies:
                if not reply.has_error():
                    self._tamper(reply, reply.metadata.src_node_id)
        return replies


def _round(grid: InProcessGrid):  # noqa: ANN202
    return run_secure_round(grid, list(range(1, N + 1)), model(), fit_content=fit_content(), clip=CLIP,
                            max_weight=MAX_WEIGHT, min_survivors=N - 1)


def _peak_bytes(fn):  # noqa: ANN001, ANN202
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


HOSTILE = [1.5, "payload", HUGE_INT, -1, True, [1, 2, 3], ["a"], [b"x"]]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_hostile_client_payload_is_a_recorded_dropout(value: object) -> None:
    grid = Tampering(3, Stage.MASKED_INPUT, "payload", value, "up")
    outcome, peak = _peak_bytes(lambda: _round(grid))
    assert outcome.ok and 3 not in outcome.survivors
    assert outcome.dropped_at == {"masked_input": [3]}
    assert "rejected: DecodeError" in outcome.errors[3]
    assert peak < ALLOCATION_BOUND


def test_an_oversized_client_payload_is_refused_before_parsing() -> None:
    limit = payload_limit(config())
    grid = Tampering(2, Stage.SHARE_KEYS, "payload", b"\x00" * (limit + 1), "up")
    outcome = _round(grid)
    assert outcome.ok and outcome.dropped_at == {"share_keys": [2]}
    assert "larger than" in outcome.errors[2] and "DecodeError" in outcome.errors[2]


@pytest.mark.parametrize("stage", [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK])
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_hostile_server_payload_is_an_error_reply(stage: Stage, value: object) -> None:
    grid = Tampering(4, stage, "payload", value, "down")
    outcome, peak = _peak_bytes(lambda: _round(grid))
    assert outcome.ok and outcome.dropped_at == {stage.value: [4]}
    assert (4 in outcome.survivors) == (stage is Stage.UNMASK)  # its masked input is in the sum by then
    assert outcome.errors[4].startswith(f"[{stage.value}] code {ERROR_CODE}: DecodeError"), outcome.errors[4]
    assert peak < ALLOCATION_BOUND


@pytest.mark.parametrize("value", [1.5, "{}", HUGE_INT, b"\x00" * (MAX_CONFIG_BYTES + 1), [1]], ids=lambda v: repr(v)[:20])
def test_a_hostile_round_config_is_an_error_reply(value: object) -> None:
    grid = Tampering(1, Stage.ADVERTISE_KEYS, "config", value, "down")
    outcome = _round(grid)
    assert outcome.ok and outcome.dropped_at == {"advertise_keys": [1]}
    assert f"code {ERROR_CODE}: DecodeError" in outcome.errors[1]


@pytest.mark.parametrize("value", [7, 1.0, "no_such_stage", "x" * 10_000, ["share_keys"]], ids=lambda v: repr(v)[:20])
def test_a_hostile_stage_label_is_an_error_reply(value: object) -> None:
    ctx = Context(1, 5, {}, RecordDict(), {})
    InProcessGrid(APP, [5])  # stamps the process's flwr task identity, which Message() needs
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": value, "payload": b""})}), 5, MessageType.TRAIN)
    reply = secagg_mod(msg, ctx, lambda m, c: pytest.fail("must not train"))
    assert reply.has_error() and reply.error.code == ERROR_CODE
    assert reply.error.reason.startswith("DecodeError")


def test_missing_fields_are_decode_errors() -> None:
    InProcessGrid(APP, [5])
    for fields in ({"stage": "share_keys"}, {"payload": b""}, {"stage": "advertise_keys", "payload": b""}):
        msg = Message(RecordDict({RECORD_KEY: ConfigRecord(fields)}), 5, MessageType.TRAIN)
        reply = secagg_mod(msg, Context(1, 5, {}, RecordDict(), {}), lambda m, c: pytest.fail("must not train"))
        assert reply.has_error() and reply.error.reason.startswith("DecodeError: message lacks field")


def test_a_failing_local_training_is_an_error_reply() -> None:
    def broken(msg, ctx):  # noqa: ANN001, ANN202
        raise RuntimeError("disk full")

    InProcessGrid(APP, [5])
    data = encode_round_config(config(), [5, 6, 7, 8, 9], SHAPES)
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": "advertise_keys", "payload": b"", "config": data})}),
                  5, MessageType.TRAIN)
    reply = secagg_mod(msg, Context(1, 5, {}, RecordDict(), {}), broken)
    assert reply.has_error() and reply.error.code == ERROR_CODE
    assert "local training failed" in reply.error.reason and "RuntimeError: disk full" in reply.error.reason


def test_honest_messages_fit_the_payload_limit() -> None:
    sizes: list[tuple[str, int]] = []

    class Measuring(InProcessGrid):
        def push_messages(self, messages):  # noqa: ANN001, ANN201
            messages = list(messages)
            sizes.extend(("down", len(m.content.config_records[RECORD_KEY]["payload"])) for m in messages)
            return super().push_messages(messages)

        def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
            replies = super().pull_messages(message_ids)
            sizes.extend(("up", len(r.content.config_records[RECORD_KEY]["payload"])) for r in replies)
            return replies

    outcome = _round(Measuring(APP, range(1, N + 1)))
    assert outcome.ok and len(sizes) == 8 * N
    largest = max(size for _, size in sizes)
    assert largest <= payload_limit(config())
    # the limit is a bound, not a guess far above any message: within a few KiB per party
    assert payload_limit(config()) < largest + 8192 + 1024 * N


def test_config_decoding_refuses_non_bytes_and_oversized_input() -> None:
    for data in (HUGE_INT, 1.5, "{}", b" " * (MAX_CONFIG_BYTES + 1)):
        with pytest.raises(DecodeError):
            decode_round_config(data)  # type: ignore[arg-type]


def test_shapes_that_only_add_up_after_int64_wraparound_are_refused() -> None:
    data = encode_round_config(config(), [1, 2, 3, 4, 5], SHAPES)
    forged = data.replace(b'"shapes":[[6,3],[4]]', b'"shapes":[[4294967296,4294967296],[22]]')
    assert forged != data
    with pytest.raises(DecodeError):
        decode_round_config(forged)
    with pytest.raises(DecodeError):
        decode_round_config(data.replace(b'"shapes":[[6,3],[4]]', b'"shapes":[[-6,-3],[4]]'))


# -- fuzz ---------------------------------------------------------------------

_INT64 = st.integers(-(2**63), 2**63 - 1)
# Everything a ConfigRecord can carry: scalars and homogeneous lists of them.
RECORD_VALUES = st.one_of(
    _INT64, st.sampled_from([HUGE_INT, 10**12, -1, 0]), st.floats(), st.booleans(), st.text(max_size=40),
    st.binary(max_size=300), st.lists(_INT64, max_size=8), st.lists(st.floats(), max_size=8),
    st.lists(st.text(max_size=8), max_size=8), st.lists(st.binary(max_size=16), max_size=8),
)
STAGE_LABELS = st.sampled_from([s.value for s in Stage]) | RECORD_VALUES


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stage=STAGE_LABELS, payload=RECORD_VALUES, cfg=st.none() | RECORD_VALUES | st.just("valid"))
def test_fuzzed_records_to_the_mod_give_typed_error_replies(stage: object, payload: object, cfg: object) -> None:
    InProcessGrid(APP, [5])
    fields = {"stage": stage, "payload": payload}
    if cfg == "valid":
        fields["config"] = encode_round_config(config(), [5, 6, 7, 8, 9], SHAPES)
    elif cfg is not None:
        fields["config"] = cfg
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord(fields)}), 5, MessageType.TRAIN)

    def no_training(m, c):  # noqa: ANN001, ANN202
        raise RuntimeError("no training here")

    reply, peak = _peak_bytes(lambda: secagg_mod(msg, Context(1, 5, {}, RecordDict(), {}), no_training))
    assert reply.has_error() and reply.error.code == ERROR_CODE
    assert reply.error.reason.split(":")[0] in ("DecodeError", "ConfigError", "ProtocolError", "IntegrityError")
    assert peak < ALLOCATION_BOUND


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    node=st.integers(1, N), stage=st.sampled_from(list(Stage)), field=st.sampled_from(["payload", "stage", "config"]),
    value=RECORD_VALUES, direction=st.sampled_from(["up", "down"]),
)
def test_fuzzed_records_in_a_round_are_dropouts(node: int, stage: Stage, field: str, value: object,
                                                direction: str) -> None:
    grid = Tampering(node, stage, field, value, direction)
    outcome, peak = _peak_bytes(lambda: _round(grid))
    assert peak < ALLOCATION_BOUND
    others = [i for i in range(1, N + 1) if i != node]
    if outcome.ok:
        assert set(others) <= set(outcome.survivors)
    for nid, reason in outcome.errors.items():
        assert nid == node and ("DecodeError" in reason or f"code {ERROR_CODE}" in reason), reason
