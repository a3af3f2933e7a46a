"""Active security over Flower, and clients that enforce their own threat model.

Every SuperNode pins a roster and its identity key (node config files); the
server names roster entries, never keys. Clients refuse rounds weaker than
their node config, with typed error replies.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.app.message_type import MessageType  # noqa: E402
from flwr.client import ClientApp, NumPyClient  # noqa: E402
from flwr.common import ndarrays_to_parameters  # noqa: E402
from flwr.server import LegacyContext, ServerConfig  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402

from fl.flower import (  # noqa: E402
    ERROR_CODE,
    IDENTIFY_LABEL,
    RECORD_KEY,
    InProcessGrid,
    SecAggFitWorkflow,
    decode_round_config,
    encode_round_config,
    identify_nodes,
    make_secagg_mod,
    run_secure_round,
    secagg_mod,
)
from fl.flower_trust import (  # noqa: E402
    ClientPolicy,
    check_identify_signature,
    identify_transcript,
    parse_identity,
    parse_roster,
)
from protocols import SecAggConfig, Stage  # noqa: E402
from secagg import kex  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.errors import ConfigError, IntegrityError, SecAggError  # noqa: E402

N = 6
SHAPES = [(10, 3), (4,)]
CLIP = 4.0
MAX_WEIGHT = 50


def local_update(node_id: int) -> list[np.ndarray]:
    rng = np.random.default_rng(node_id)
    return [rng.uniform(-1, 1, s).astype(np.float32) for s in SHAPES]


class Client(NumPyClient):
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):  # noqa: ANN001, ANN201
        return [p + u for p, u in zip(parameters, local_update(self.node_id))], 2 + self.node_id, {}


def app(mod=secagg_mod) -> ClientApp:  # noqa: ANN001
    return ClientApp(client_fn=lambda ctx: Client(ctx.node_id).to_client(), mods=[mod])


def initial() -> list[np.ndarray]:
    return [np.zeros(s, np.float32) for s in SHAPES]


def fedavg(nodes: list[int]) -> list[np.ndarray]:
    w = np.array([2 + i for i in nodes], dtype=np.float64)
    return [np.tensordot(w, np.stack([local_update(i)[layer] for i in nodes]).astype(np.float64), 1) / w.sum()
            for layer in range(len(SHAPES))]


@pytest.fixture(autouse=True)
def _quiet_flower():
    logger = logging.getLogger("flwr")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)


@pytest.fixture
def pki(tmp_path: Path):  # noqa: ANN201
    """Identity keys (OS CSPRNG) for nodes 1..N, their files and a shared roster file."""
    keys = {i: kex.generate_identity() for i in range(1, N + 1)}
    roster = {f"node-{i}": k.public_bytes for i, k in keys.items()}
    roster_path = tmp_path / "roster.json"
    roster_path.write_text(json.dumps({name: key.hex() for name, key in roster.items()}))
    configs = {}
    for i, key in keys.items():
        path = tmp_path / f"id{i}.key"
        path.write_bytes(key.private_bytes)
        configs[i] = {"secagg-roster": str(roster_path), "secagg-identity": str(path)}
    return {"keys": keys, "roster": roster, "roster_path": roster_path, "configs": configs}


def run(workflow: SecAggFitWorkflow, node_configs: dict, mod=secagg_mod):  # noqa: ANN001, ANN201
    strategy = FedAvg(fraction_fit=1.0, min_fit_clients=N, min_available_clients=N, fraction_evaluate=0.0,
                      initial_parameters=ndarrays_to_parameters(initial()))
    context = LegacyContext(Context(1, 0, {}, RecordDict(), {}), config=ServerConfig(num_rounds=1), strategy=strategy)
    grid = InProcessGrid(app(mod), range(1, N + 1), node_configs=node_configs)
    DefaultWorkflow(fit_workflow=workflow)(grid, context)
    return workflow.outcomes[0] if workflow.outcomes else None, grid


def with_policy(configs: dict, **policy: object) -> dict:
    return {i: dict(c, **{f"secagg-{k.replace('_', '-')}": v for k, v in policy.items()}) for i, c in configs.items()}


# ------------------------------------------------------------------ active rounds


@pytest.mark.parametrize("neighbors, threshold", [(None, 5), (4, 5)])
def test_active_round_over_flower_matches_fedavg(pki, neighbors, threshold) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(neighbors=neighbors, threshold=threshold, min_survivors=N, clip=CLIP,
                                 max_weight=MAX_WEIGHT, roster=str(pki["roster_path"]), active_security=True,
                                 max_corrupt=1)
    outcome, grid = run(workflow, with_policy(pki["configs"], active=True, max_corrupt=1))
    assert outcome is not None and outcome.ok, (outcome.reason(), outcome.errors)
    assert outcome.survivors == list(range(1, N + 1))
    stages = {t.stage for t in grid.traffic}
    assert {IDENTIFY_LABEL, Stage.CONSISTENCY.value} <= stages
    step = FixedPointEncoder(CLIP, 32, N, max_weight=MAX_WEIGHT).precision
    for got, want in zip(outcome.aggregate, fedavg(list(range(1, N + 1)))):
        assert np.max(np.abs(got - want)) <= step + 1e-6


def test_default_threshold_resists_max_corrupt(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(min_survivors=N, clip=CLIP, max_weight=MAX_WEIGHT, roster=pki["roster"],
                                 active_security=True, max_corrupt=2)
    outcome, _ = run(workflow, with_policy(pki["configs"], active=True, max_corrupt=2))
    assert outcome is not None and outcome.ok, outcome.errors  # t = 5: 2t - n = 4 > 2


def test_a_node_outside_the_roster_is_left_out(pki, tmp_path: Path) -> None:  # noqa: ANN001
    configs = dict(pki["configs"])
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(kex.generate_identity().private_bytes)
    configs[3] = dict(configs[3], **{"secagg-identity": str(stranger)})
    workflow = SecAggFitWorkflow(threshold=4, clip=CLIP, max_weight=MAX_WEIGHT, roster=pki["roster"],
                                 active_security=True, max_corrupt=1)
    outcome, _ = run(workflow, configs)
    assert outcome is not None and outcome.ok, outcome.errors
    assert outcome.survivors == [1, 2, 4, 5, 6] and "not in its roster" in outcome.errors[3]


def test_workflow_needs_a_roster_and_max_corrupt_for_active_security(pki) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError):
        SecAggFitWorkflow(active_security=True, max_corrupt=1)
    with pytest.raises(ConfigError):
        SecAggFitWorkflow(active_security=True, roster=pki["roster"])
    grid = InProcessGrid(app(), range(1, N + 1))
    with pytest.raises(ConfigError):
        run_secure_round(grid, range(1, N + 1), initial(), active_security=True, max_corrupt=1)


# ------------------------------------------------------------------ identify step


def _identify_reply(grid: InProcessGrid, nid: int, nonce: bytes) -> Message:
    msg = Message(RecordDict({RECORD_KEY: ConfigRecord({"stage": IDENTIFY_LABEL, "payload": nonce})}), nid,
                  MessageType.TRAIN, group_id="0")
    (reply,) = grid.send_and_receive([msg])
    return reply


def test_identify_signature_binds_nonce_node_and_name(pki) -> None:  # noqa: ANN001
    grid = InProcessGrid(app(), range(1, N + 1), node_configs=pki["configs"])
    nonce = bytes(range(32))
    reply = _identify_reply(grid, 2, nonce)
    rec = reply.content.config_records[RECORD_KEY]
    assert check_identify_signature(pki["roster"], rec["name"], rec["signature"], nonce, 2) == "node-2"
    for args in ((rec["name"], rec["signature"], bytes(32), 2),  # another nonce (replay)
                 (rec["name"], rec["signature"], nonce, 3),  # another node id
                 ("node-3", rec["signature"], nonce, 2),  # another name
                 ("nobody", rec["signature"], nonce, 2), (7, rec["signature"], nonce, 2),
                 (rec["name"], b"x" * 63, nonce, 2), (rec["name"], "sig", nonce, 2)):
        with pytest.raises(IntegrityError):
            check_identify_signature(pki["roster"], *args)


@pytest.mark.parametrize("nonce", [b"", b"x" * 31, b"x" * 33, 5, "n" * 32, 1.5])
def test_garbage_identify_nonce_is_an_error_reply(pki, nonce) -> None:  # noqa: ANN001
    grid = InProcessGrid(app(), range(1, N + 1), node_configs=pki["configs"])
    reply = _identify_reply(grid, 1, nonce)
    assert reply.has_error() and reply.error.code == ERROR_CODE and "DecodeError" in reply.error.reason


def test_identify_without_roster_is_a_config_error_reply() -> None:
    grid = InProcessGrid(app(), range(1, N + 1))
    reply = _identify_reply(grid, 1, bytes(32))
    assert reply.has_error() and "ConfigError" in reply.error.reason


def test_a_replayed_name_claim_excludes_both_nodes(pki) -> None:  # noqa: ANN001
    configs = dict(pki["configs"])
    configs[5] = dict(configs[4])  # node 5 holds node 4's key: both claim "node-4"
    grid = InProcessGrid(app(), range(1, N + 1), node_configs=configs)
    names, errors = identify_nodes(grid, range(1, N + 1), pki["roster"], timeout=5.0)
    assert sorted(names) == [1, 2, 3, 6] and "claimed by nodes [4, 5]" in errors[4]


@settings(max_examples=40, deadline=None)
@given(name=st.one_of(st.text(max_size=80), st.integers(), st.binary(max_size=80), st.none()),
       signature=st.one_of(st.binary(max_size=100), st.text(max_size=10), st.integers(), st.floats()))
def test_garbage_identify_replies_are_recorded_not_raised(name, signature) -> None:  # noqa: ANN001
    roster = {"a": kex.generate_identity().public_bytes, "b": kex.generate_identity().public_bytes}

    def liar(msg: Message, ctxt: Context) -> Message:
        fields = {"stage": IDENTIFY_LABEL, "signature": signature}
        if name is not None:
            fields["name"] = name
        return Message(RecordDict({RECORD_KEY: ConfigRecord(fields)}), reply_to=msg)

    names, errors = identify_nodes(InProcessGrid(liar, [1, 2]), [1, 2], roster, timeout=1.0)
    assert names == {} and set(errors) == {1, 2}


# ------------------------------------------------------------------ client policy refusals


def _refusals(outcome) -> list[str]:  # noqa: ANN001
    assert outcome is not None and not outcome.ok
    return list(outcome.errors.values())


def test_client_requiring_active_refuses_a_passive_round(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=4, clip=CLIP, max_weight=MAX_WEIGHT)
    outcome, _ = run(workflow, with_policy(pki["configs"], active=True))
    errors = _refusals(outcome)
    assert len(errors) == N and all("ConfigError" in e and "requires active security" in e for e in errors)


def test_client_refuses_lower_security_bits(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=4, clip=CLIP, max_weight=MAX_WEIGHT, security_bits=40)
    outcome, _ = run(workflow, with_policy(pki["configs"], security_bits=64))
    assert all("security_bits is below" in e for e in _refusals(outcome))


def test_client_refuses_lower_min_survivors(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=4, min_survivors=4, clip=CLIP, max_weight=MAX_WEIGHT)
    outcome, _ = run(workflow, with_policy(pki["configs"], min_survivors=5))
    assert all("min_survivors is below" in e for e in _refusals(outcome))


def test_client_refuses_a_max_corrupt_below_its_own(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=5, min_survivors=N, clip=CLIP, max_weight=MAX_WEIGHT,
                                 roster=pki["roster"], active_security=True, max_corrupt=1)
    outcome, _ = run(workflow, with_policy(pki["configs"], active=True, max_corrupt=2))
    assert all("fewer colluders than this client" in e for e in _refusals(outcome))


@pytest.mark.parametrize("neighbors, threshold, own", [(None, 4, 4), (4, 4, 4)])
def test_client_refuses_a_threshold_its_own_max_corrupt_defeats(pki, neighbors, threshold, own) -> None:  # noqa: ANN001
    """The round states no max_corrupt; the client rebuilds the config with its own and the check refuses."""
    workflow = SecAggFitWorkflow(neighbors=neighbors, threshold=threshold, min_survivors=N, clip=CLIP,
                                 max_weight=MAX_WEIGHT)
    outcome, _ = run(workflow, with_policy(pki["configs"], max_corrupt=own))
    assert all("ConfigError" in e and "too low for max_corrupt" in e for e in _refusals(outcome))


def test_make_secagg_mod_policy_and_node_config_combine_to_the_stricter(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=4, min_survivors=5, clip=CLIP, max_weight=MAX_WEIGHT)
    outcome, _ = run(workflow, with_policy(pki["configs"], min_survivors=2), mod=make_secagg_mod(min_survivors=6))
    assert all("min_survivors is below" in e for e in _refusals(outcome))


def test_accepting_policy_lets_the_round_through(pki) -> None:  # noqa: ANN001
    workflow = SecAggFitWorkflow(threshold=5, min_survivors=N, clip=CLIP, max_weight=MAX_WEIGHT, max_corrupt=3,
                                 security_bits=64)
    outcome, _ = run(workflow, with_policy(pki["configs"], max_corrupt=3, min_survivors=N, security_bits=64))
    assert outcome is not None and outcome.ok, outcome.errors


@pytest.mark.parametrize("key, value", [("active", "maybe"), ("active", 7), ("max-corrupt", -1),
                                        ("max-corrupt", "x"), ("min-survivors", 0), ("security-bits", 500),
                                        ("security-bits", 2.5), ("min-survivors", True)])
def test_garbage_node_config_refuses_every_round(pki, key, value) -> None:  # noqa: ANN001
    configs = {i: dict(c, **{f"secagg-{key}": value}) for i, c in pki["configs"].items()}
    outcome, _ = run(SecAggFitWorkflow(threshold=4, clip=CLIP, max_weight=MAX_WEIGHT), configs)
    assert all("ConfigError" in e and f"secagg-{key}" in e for e in _refusals(outcome))


def test_policy_check_unit() -> None:
    enc = FixedPointEncoder(CLIP, 32, 5)
    config = SecAggConfig(tuple(range(5)), 4, 3, enc, min_survivors=4)
    assert ClientPolicy(max_corrupt=2, min_survivors=4).check(config) is config
    with pytest.raises(ConfigError):
        ClientPolicy(max_corrupt=4).check(config)  # t = 4 does not resist 4 colluders
    with pytest.raises(ConfigError):
        ClientPolicy(max_dim=2).check(config)
    with pytest.raises(ConfigError):
        ClientPolicy(min_survivors=0)
    strict = ClientPolicy(max_corrupt=1, max_dim=9).stricter(ClientPolicy(active=True, max_corrupt=3))
    assert (strict.active, strict.max_corrupt, strict.max_dim) == (True, 3, 9)


# ------------------------------------------------------------------ the record names, the roster keys


def _signed_config(roster: dict[str, bytes], names: list[str]) -> SecAggConfig:
    return SecAggConfig(tuple(range(len(names))), 3, 3, FixedPointEncoder(CLIP, 32, len(names)), min_survivors=3,
                        active_security=True, identities={i: roster[x] for i, x in enumerate(names)}, max_corrupt=1)


def test_round_record_carries_names_and_keys_come_from_the_node_roster(pki) -> None:  # noqa: ANN001
    names = ["node-1", "node-2", "node-3"]
    data = encode_round_config(_signed_config(pki["roster"], names), [1, 2, 3], [(3,)], names)
    for key in pki["roster"].values():
        assert key.hex().encode() not in data
    config, _, _ = decode_round_config(data, pki["roster"])
    assert config.identities == {i: pki["roster"][x] for i, x in enumerate(names)}
    with pytest.raises(ConfigError):
        decode_round_config(data)  # no roster on this node
    with pytest.raises(IntegrityError):
        decode_round_config(data.replace(b'"node-3"', b'"node-9"'), pki["roster"])  # not pinned here
    with pytest.raises(IntegrityError):
        decode_round_config(data.replace(b'"node-3"', b'"node-2"'), pki["roster"])  # one party twice
    with pytest.raises(SecAggError):
        decode_round_config(data.replace(b'"names":[', b'"names":[7,'), pki["roster"])
    with pytest.raises(ConfigError):
        encode_round_config(_signed_config(pki["roster"], names), [1, 2, 3], [(3,)])  # names missing


def test_client_refuses_to_play_another_partys_identity(pki) -> None:  # noqa: ANN001
    """A malicious server swaps the names of nodes 1 and 2: both refuse with IntegrityError."""
    names = ["node-2", "node-1", "node-3"]
    data = encode_round_config(_signed_config(pki["roster"], names), [1, 2, 3], [(3,)], names)
    grid = InProcessGrid(app(), [1, 2, 3], node_configs=pki["configs"])
    for nid in (1, 2):
        record = ConfigRecord({"stage": Stage.ADVERTISE_KEYS.value, "payload": b"", "config": data})
        msg = Message(RecordDict({RECORD_KEY: record}), nid, MessageType.TRAIN, group_id="0")
        (reply,) = grid.send_and_receive([msg])
        assert reply.has_error() and "IntegrityError" in reply.error.reason and "another party" in reply.error.reason


# ------------------------------------------------------------------ roster and identity files


def test_roster_formats(pki) -> None:  # noqa: ANN001
    text = "# roster\n" + "".join(f"{n} {k.hex()}  # comment\n\n" for n, k in pki["roster"].items())
    assert parse_roster(text.encode()) == pki["roster"]
    assert parse_roster(pki["roster_path"].read_bytes()) == pki["roster"]


def test_identity_formats() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = kex.generate_identity()
    assert parse_identity(key.private_bytes).public_bytes == key.public_bytes
    assert parse_identity(key.private_bytes.hex().encode() + b"\n").public_bytes == key.public_bytes
    pem = Ed25519PrivateKey.from_private_bytes(key.private_bytes).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    assert parse_identity(pem).public_bytes == key.public_bytes


KEY_HEX = "11" * 32


@pytest.mark.parametrize("data", [
    b"", b"\xff\xfe", b"{", b"[]", b'{"a": 5}', b'{"a": "zz"}', b'{"a": "' + b"1" * 63 + b'"}',
    b'{"a b": "' + KEY_HEX.encode() + b'"}', b'{"": "' + KEY_HEX.encode() + b'"}',
    b'{"a": "' + KEY_HEX.encode() + b'", "b": "' + KEY_HEX.encode() + b'"}',  # one key, two names
    b"a " + KEY_HEX.encode() + b"\na " + "22".encode() * 32,  # one name twice
    b"a", b"a b c", b"[" * 10_000, b"{}", b"# only a comment\n",
])
def test_garbage_rosters_are_config_errors(data: bytes) -> None:
    with pytest.raises(ConfigError):
        parse_roster(data)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_roster_parsing_is_total(data: bytes) -> None:
    try:
        parse_roster(data)
    except ConfigError:
        pass


@pytest.mark.parametrize("data", [b"", b"x" * 31, b"x" * 33, b"zz" * 32, b"-----BEGIN PRIVATE KEY-----\nAAAA\n",
                                  b"y" * 5000, "text", 5])
def test_garbage_identity_files_are_config_errors(data) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError):
        parse_identity(data)


def test_unreadable_files_are_config_error_replies(pki, tmp_path: Path) -> None:  # noqa: ANN001
    configs = {i: dict(c, **{"secagg-roster": str(tmp_path / "missing.json")}) for i, c in pki["configs"].items()}
    workflow = SecAggFitWorkflow(threshold=5, min_survivors=N, clip=CLIP, max_weight=MAX_WEIGHT,
                                 roster=pki["roster"], active_security=True, max_corrupt=1)
    outcome, _ = run(workflow, configs)
    assert outcome is None  # nobody proved an identity: the round is refused before it starts
    assert identify_transcript(bytes(32), 1, "a") != identify_transcript(bytes(32), 1, "b")
