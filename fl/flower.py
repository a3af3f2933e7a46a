"""Our SecAgg / SecAgg+ on Flower's message API (flwr 1.41–1.42).

Two pieces, so that a Flower app switches from Flower's SecAgg+ to ours by
changing one line on each side::

    # client: mods=[secaggplus_mod]                  ->  mods=[secagg_mod]
    app = ClientApp(client_fn=client_fn, mods=[secagg_mod])
    # server: fit_workflow=SecAggPlusWorkflow(9, 5)  ->  fit_workflow=SecAggFitWorkflow(neighbors=8)
    workflow = DefaultWorkflow(fit_workflow=SecAggFitWorkflow(neighbors=8, threshold=5))

* :func:`secagg_mod` is a client mod. At the first stage it runs local training
  (``call_next``), then drives our :class:`protocols.SecAggClient` with the
  update and ``num_examples`` as the weight; the weight is masked with the
  update and never leaves the node in the clear (the server learns only Σ n_k).
* :class:`SecAggFitWorkflow` is a fit workflow for ``DefaultWorkflow`` (``LegacyContext``, as
  Flower's ``SecAggPlusWorkflow``); :func:`run_secure_round` is the round on a bare ``Grid``.

The record format and round config live in :mod:`fl.flower_wire`, what a node
pins (roster, identity, policy) in :mod:`fl.flower_trust`, and the in-process
grid in :mod:`fl.flower_grid`; their public names are re-exported here.

Transport: our messages cross Flower as bytes (``to_bytes`` / ``protocols.messages.decode``)
in the ConfigRecord :data:`RECORD_KEY`, one ``grid.send_and_receive`` per stage with that
stage's timeout (and message TTL): a SuperNode that does not answer in time, or answers with an
error, is a dropout at that stage. A client's :class:`secagg.errors.SecAggError` becomes a
Flower error reply (code :data:`ERROR_CODE`, reason ``"<ErrorType>: <message> (fields)"``). An
aborted round leaves the global model unchanged and records our ``AbortReason``.

Hostile input: each side checks a record's field types and sizes before copying or
parsing them. A payload that is not ``bytes`` or is longer than :func:`payload_limit`
(from the round's ``dim``, ``n`` and ``bits``), a config over :data:`MAX_CONFIG_BYTES`,
or a stage label that names no stage is a :class:`~secagg.errors.DecodeError`: an
error reply on the client, a dropout with a recorded reason on the server.

Security: by default the server is trusted to be semi-honest. The round
config (clients, threshold, graph seed, encoder) comes from the server in JSON
and is validated by :class:`protocols.SecAggConfig` (a threshold at or below
half the neighbourhood is refused); each SuperNode also checks it against its
own policy (node config ``secagg-active``, ``secagg-max-corrupt``,
``secagg-min-survivors``, ``secagg-security-bits``; :mod:`fl.flower_trust`) and
refuses a weaker round with a typed error reply.

Active security (a malicious server): every SuperNode pins a roster of
Ed25519 public keys and its own identity key in files named by its node
config (``secagg-roster``, ``secagg-identity``; formats in
:mod:`fl.flower_trust`); the server holds the same roster
(``SecAggFitWorkflow(roster=..., active_security=True, max_corrupt=c)``).
Before each round the server has every sampled node prove its roster name
(:func:`identify_nodes`: a signature over a fresh nonce and the node id). The
round record then names each client's roster entry, never a key: each node
looks the keys up in its own roster, refuses a name it does not pin or a name
given twice, and refuses to play another party's identity. Clients sign their
key adverts and the survivor set (Bonawitz et al. 2017, §6) with their own
key and check their peers' signatures against their roster.

The client session lives in the node-local ``Context`` between messages,
pickled (identity key included), as Flower's own mod keeps its secret keys
there: that state never leaves the SuperNode host, and only bytes this mod
wrote are unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from protocols import ABORTED, DONE, AggregateResult, SecAggClient, SecAggConfig, SecAggServer, Stage, as_stage
from protocols.config import DEFAULT_SECURITY_BITS, choose_params, default_threshold
from protocols.session import AbortReason
from secagg import kex
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError, DecodeError, IntegrityError, SecAggError, require_bytes, require_extra

from .flower_grid import InProcessGrid, Traffic
from .flower_trust import (
    IDENTITY_KEY,
    NONCE_BYTES,
    ROSTER_KEY,
    ClientPolicy,
    check_identify_signature,
    identify_transcript,
    load_identity,
    load_roster,
    parse_roster,
    roster_name,
)
from .flower_wire import (
    ERROR_CODE,
    IDENTIFY_LABEL,
    MAX_CONFIG_BYTES,
    RECORD_KEY,
    STATE_KEY,
    STATUS_KEY,
    decode_round_config,
    encode_round_config,
    error_reason,
    message_stage,
    payload_limit,
    record_stage,
    require_field,
)

require_extra("flwr", "flower")

import flwr.compat.common.recorddict_compat as compat  # noqa: E402
from flwr.app import ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.app.error import Error  # noqa: E402
from flwr.app.message_type import MessageType  # noqa: E402
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server.compat.legacy_context import LegacyContext  # noqa: E402
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD  # noqa: E402
from flwr.server.workflow.constant import Key as WorkflowKey  # noqa: E402
from flwr.serverapp.grid import Grid  # noqa: E402

__all__ = [
    "LOGGER_NAME",
    "RECORD_KEY",
    "STATE_KEY",
    "STATUS_KEY",
    "ERROR_CODE",
    "DEFAULT_TIMEOUTS",
    "secagg_mod",
    "make_secagg_mod",
    "SecAggFitWorkflow",
    "RoundOutcome",
    "run_secure_round",
    "encode_round_config",
    "decode_round_config",
    "error_reason",
    "payload_limit",
    "MAX_CONFIG_BYTES",
    "identify_nodes",
    "IDENTIFY_LABEL",
    "InProcessGrid",
    "Traffic",
    "message_stage",
]

#: Every line this adapter logs goes to this child of Flower's logger, so ``flwr run --stream``
#: and a SuperNode's console show it with Flower's own lines. At INFO the server logs each
#: round's protocol and parameters, then its survivors and dropouts; the client mod logs that
#: it masked its update.
LOGGER_NAME = "flwr.secagg"
log = logging.getLogger(LOGGER_NAME)

# Finite by default: a SuperNode that never answers is a dropout, not a hang.
# ADVERTISE_KEYS includes local training, so it gets the long deadline.
DEFAULT_TIMEOUTS: dict[Stage, float] = {stage: 120.0 for stage in Stage} | {Stage.ADVERTISE_KEYS: 600.0}


# ------------------------------------------------------------------ client mod


def _reply(msg: Message, stage: Stage, payload: bytes | None) -> Message:
    record = ConfigRecord({"stage": stage.value, "payload": payload if payload is not None else b""})
    return Message(RecordDict({RECORD_KEY: record}), reply_to=msg)


def _train(msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]) -> tuple[list[NDArray], int]:
    """Local training on the FitIns in ``msg``; any failure is a :class:`ConfigError`.

    The FitIns comes from the server, so a malformed one must end in our error
    reply, not in whatever the ClientApp raises on it.
    """
    try:
        out = call_next(msg, ctxt)
        if out.has_error():
            raise ConfigError("local training failed", reason=out.error.reason)
        fitres = compat.recorddict_to_fitres(out.content, keep_input=False)
        return parameters_to_ndarrays(fitres.parameters), int(fitres.num_examples)
    except SecAggError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported in the error reply, with its type
        log.warning("local training failed", exc_info=True)
        raise ConfigError("local training failed", reason=error_reason(exc)) from None


def _flatten(arrays: Sequence[NDArray], shapes: Sequence[tuple[int, ...]]) -> NDArray[np.float64]:
    got = [tuple(np.shape(a)) for a in arrays]
    if got != [tuple(s) for s in shapes]:
        raise ConfigError("local model does not match the global model's shapes", got=got, expected=list(shapes))
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays] or [np.zeros(0)])


def make_secagg_mod(
    *,
    min_survivors: int = 1,
    max_dim: int | None = None,
    max_corrupt: int | None = None,
    security_bits: int = 1,
    active: bool = False,
) -> Callable[..., Message]:
    """A :func:`secagg_mod` with a client-side policy (:class:`fl.flower_trust.ClientPolicy`)
    on top of the node config's: refuse (typed error reply) any round that
    lets the server unmask fewer than ``min_survivors`` inputs, whose update is
    longer than ``max_dim``, that claims fewer than ``security_bits``, that is
    semi-honest when ``active``, or whose threshold and degree do not resist
    ``max_corrupt`` colluders. The stricter of this and the node config wins.
    """
    policy = ClientPolicy(
        active=active,
        max_corrupt=max_corrupt,
        min_survivors=min_survivors,
        security_bits=security_bits,
        max_dim=max_dim,
    )

    def mod(msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        return _run_mod(msg, ctxt, call_next, policy)

    return mod


def secagg_mod(msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """Client mod running our SecAgg / SecAgg+ client (drop-in for ``secaggplus_mod``).

    Messages without :data:`RECORD_KEY` pass through untouched (evaluate, other
    apps). At ADVERTISE_KEYS the mod checks the round against this node's
    policy (node config ``secagg-*``, :mod:`fl.flower_trust`), trains
    (``call_next`` on the FitIns in the same message) and builds a fresh
    session, signing with the node's identity key when the round names roster
    identities; later stages resume it from ``ctxt.state``. Any
    :class:`SecAggError` (a bad config, a round weaker than the policy, a
    weight above ``max_weight``, a misbehaving server) is returned as a Flower
    error reply with code :data:`ERROR_CODE`; the session is then discarded.
    So is a malformed record (a field of the wrong type or size:
    :class:`DecodeError`) and a failure of local training (:class:`ConfigError`).
    """
    return _run_mod(msg, ctxt, call_next, ClientPolicy())


def _node_trust(ctxt: Context) -> tuple[dict[str, bytes] | None, kex.IdentityKey | None]:
    """This node's pinned roster and identity key (node config), or ``None`` each when unset."""
    cfg = ctxt.node_config
    roster = load_roster(cfg[ROSTER_KEY]) if ROSTER_KEY in cfg else None
    identity = load_identity(cfg[IDENTITY_KEY]) if IDENTITY_KEY in cfg else None
    return roster, identity


def _identify(msg: Message, ctxt: Context, record: ConfigRecord) -> Message:
    """Answer the server's identify request: our roster name, signed with the server's nonce and our node id."""
    nonce = require_bytes(require_field(record, "payload"), "nonce", max_size=NONCE_BYTES, error=DecodeError)
    if len(nonce) != NONCE_BYTES:
        raise DecodeError("identify nonce must be 32 bytes", got=len(nonce))
    roster, identity = _node_trust(ctxt)
    if roster is None or identity is None:
        raise ConfigError(
            f"the server asks for this node's identity, but node config names no {ROSTER_KEY} / {IDENTITY_KEY}"
        )
    name = roster_name(roster, identity)
    signature = identity.sign(identify_transcript(nonce, msg.metadata.dst_node_id, name))
    record = ConfigRecord({"stage": IDENTIFY_LABEL, "name": name, "signature": signature})
    return Message(RecordDict({RECORD_KEY: record}), reply_to=msg)


def _start_session(
    msg: Message,
    ctxt: Context,
    call_next: Callable[[Message, Context], Message],
    raw: Any,
    record: ConfigRecord,
    policy: ClientPolicy,
) -> tuple[SecAggClient, bytes]:
    """ADVERTISE_KEYS: decode and check the round against our policy, train, open a session."""
    policy = policy.stricter(ClientPolicy.from_node_config(ctxt.node_config))
    roster, identity = _node_trust(ctxt)
    if policy.active and (roster is None or identity is None):
        raise ConfigError(f"this node requires active security but names no {ROSTER_KEY} / {IDENTITY_KEY}")
    config, node_ids, shapes = decode_round_config(require_field(record, "config"), roster)
    payload = require_bytes(raw, "payload", max_size=payload_limit(config), error=DecodeError)
    policy.check(config)
    if msg.metadata.dst_node_id not in node_ids:
        raise ConfigError("this node is not in the round's client list", node_id=msg.metadata.dst_node_id)
    if config.identities is not None and identity is None:
        raise ConfigError(f"the round is signed but node config names no {IDENTITY_KEY}")
    index = node_ids.index(msg.metadata.dst_node_id)
    if config.identities is not None and identity is not None and config.identities[index] != identity.public_bytes:
        raise IntegrityError("the round assigns this node another party's identity", node_id=msg.metadata.dst_node_id)
    del msg.content.config_records[RECORD_KEY]  # the rest is Flower's FitIns
    arrays, num_examples = _train(msg, ctxt, call_next)
    session = SecAggClient(
        config,
        index,
        _flatten(arrays, shapes),
        weight=num_examples,
        identity=identity if config.identities is not None else None,
    )
    return session, payload


def _run_mod(
    msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message], policy: ClientPolicy
) -> Message:
    if msg.metadata.message_type != MessageType.TRAIN or RECORD_KEY not in msg.content.config_records:
        return call_next(msg, ctxt)
    record = msg.content.config_records[RECORD_KEY]
    try:
        # Types and sizes are checked before anything is copied: bytes(2 * 10**8) from
        # an int payload would allocate 200 MB, and bytes(1.5) raises TypeError.
        if require_field(record, "stage") == IDENTIFY_LABEL:
            return _identify(msg, ctxt, record)
        stage = record_stage(record)
        raw = require_field(record, "payload")
        if stage is Stage.ADVERTISE_KEYS:
            session, payload = _start_session(msg, ctxt, call_next, raw, record, policy)
        else:
            if STATE_KEY not in ctxt.state.config_records:
                raise ConfigError("no session in progress on this node (it restarted?)", stage=stage.value)
            # Node-local state this mod wrote itself (module docstring): trusted bytes.
            session = pickle.loads(bytes(ctxt.state.config_records[STATE_KEY]["session"]))  # type: ignore[arg-type]
            payload = require_bytes(raw, "payload", max_size=payload_limit(session.config), error=DecodeError)
        reply = session.handle(payload)
    except SecAggError as exc:
        ctxt.state.config_records.pop(STATE_KEY, None)
        return Message(Error(code=ERROR_CODE, reason=error_reason(exc)), reply_to=msg)
    ctxt.state.config_records[STATE_KEY] = ConfigRecord({"session": pickle.dumps(session)})
    if stage is Stage.MASKED_INPUT and reply is not None:
        config = session.config
        log.info(
            "secagg: node %d masked its update (%d values and its weight) for round %d: %s, threshold %d of %d "
            "neighbours; only the masked vector leaves this node",
            msg.metadata.dst_node_id,
            config.dim,
            config.round,
            _protocol_name(config),
            config.threshold,
            config.degree,
        )
    return _reply(msg, stage, reply.to_bytes() if reply is not None else None)


def _protocol_name(config: SecAggConfig) -> str:
    return "SecAgg (complete graph)" if config.complete else "SecAgg+"


# ------------------------------------------------------------------ server side


@dataclass
class RoundOutcome:
    """What one secure round over a Grid produced.

    ``result`` is the :class:`AggregateResult` (``None`` when aborted);
    ``aggregate`` the weighted mean reshaped to the model's arrays;
    ``abort_reason`` our reason when aborted; ``errors`` the readable reasons
    of client error replies and rejected messages, by node id; ``bytes_up`` /
    ``bytes_down`` the bytes of our protocol messages per node id (``errors[-1]``
    holds a server-side integrity failure, when the shares did not agree).
    """

    result: AggregateResult | None
    aggregate: list[NDArray] | None
    abort_reason: AbortReason | None
    node_ids: list[int]
    survivors: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    dropped_at: dict[str, list[int]] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    bytes_down: dict[int, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result is not None

    def reason(self) -> str:
        """Readable abort reason with Flower node ids (empty when the round succeeded)."""
        r = self.abort_reason
        if r is None:
            return ""
        return (
            f"AbortError: round aborted at {r.stage.value}: needed {r.needed}, got {r.got}"
            + (f"; {r.detail}" if r.detail else "")
            + f"; dropped (node ids) {self.dropped_at}"
        )


# Seconds per round, or per stage keyed by Stage or stage name (Mapping is invariant in its key).
StageTimeouts = float | Mapping[Stage, float] | Mapping[str, float] | Mapping[Stage | str, float] | None


def _timeouts(value: StageTimeouts) -> dict[Stage, float]:
    out = dict(DEFAULT_TIMEOUTS)
    if isinstance(value, (int, float)):
        out = {s: float(value) for s in Stage}
    elif value is not None:
        out.update({as_stage(k): float(v) for k, v in value.items()})
    if any(not (t > 0 and np.isfinite(t)) for t in out.values()):
        raise ConfigError("stage timeouts must be positive and finite", timeouts={s.value: t for s, t in out.items()})
    return out


def identify_nodes(
    grid: Grid,
    node_ids: Sequence[int],
    roster: Mapping[str, bytes],
    *,
    timeout: float,
    group_id: str = "0",
) -> tuple[dict[int, str], dict[int, str]]:
    """Ask each node for its roster name, proven by a signature over a fresh nonce.

    Returns ``(names, errors)``: the roster name of each node that proved one
    (a name claimed by two nodes goes to neither), and a readable reason for
    each node left out. Never raises on node behaviour.
    """
    nonce = os.urandom(NONCE_BYTES)
    wanted = {int(n) for n in node_ids}
    messages = [
        Message(
            RecordDict({RECORD_KEY: ConfigRecord({"stage": IDENTIFY_LABEL, "payload": nonce})}),
            nid,
            MessageType.TRAIN,
            group_id=group_id,
            ttl=timeout,
        )
        for nid in sorted(wanted)
    ]
    claims: dict[int, str] = {}
    errors: dict[int, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        nid = reply.metadata.src_node_id
        if nid not in wanted or nid in claims:
            continue
        if reply.has_error():
            errors[nid] = f"[{IDENTIFY_LABEL}] code {reply.error.code}: {reply.error.reason}"
            continue
        rec = reply.content.config_records.get(RECORD_KEY)
        try:
            if rec is None:
                raise DecodeError("reply without our record")
            claims[nid] = check_identify_signature(
                roster, require_field(rec, "name"), require_field(rec, "signature"), nonce, nid
            )
        except SecAggError as exc:
            errors[nid] = f"[{IDENTIFY_LABEL}] rejected: {error_reason(exc)}"
    for nid in wanted - set(claims) - set(errors):
        errors[nid] = f"[{IDENTIFY_LABEL}] no reply"
    taken: dict[str, list[int]] = {}
    for nid, name in claims.items():
        taken.setdefault(name, []).append(nid)
    for name, nids in taken.items():
        if len(nids) > 1:  # only one can hold the key: a replayed claim; keep neither rather than guess
            for nid in nids:
                errors[nid] = f"[{IDENTIFY_LABEL}] roster name {name!r} claimed by nodes {sorted(nids)}"
                del claims[nid]
    return claims, errors


def run_secure_round(
    grid: Grid,
    node_ids: Sequence[int],
    arrays: Sequence[NDArray],
    *,
    fit_content: Mapping[int, RecordDict] | RecordDict | None = None,
    threshold: int | None = None,
    neighbors: int | None = None,
    min_survivors: int | None = None,
    clip: float = 8.0,
    bits: int = 32,
    max_weight: int = 1000,
    round_number: int = 0,
    group_id: str = "0",
    timeouts: StageTimeouts = None,
    roster: Mapping[str, bytes] | None = None,
    active_security: bool = False,
    max_corrupt: int | None = None,
    security_bits: int = DEFAULT_SECURITY_BITS,
) -> RoundOutcome:
    """Run one SecAgg (``neighbors=None``) or SecAgg+ round over ``grid``.

    ``arrays`` gives the model shapes (the global model); ``fit_content`` is the
    FitIns RecordDict sent with the first stage (one for all, or per node).
    ``threshold`` defaults to :func:`protocols.config.default_threshold` (a
    majority of the k + 1 holders, raised to resist ``max_corrupt``). The
    encoder clips to ``clip`` (L-inf) in ``bits`` bits, sized so that n
    clients of weight up to ``max_weight`` cannot wrap
    (:class:`OverflowRiskError` otherwise).

    ``roster`` (name -> Ed25519 public key, the server's pinned copy) makes
    the round signed: each node first proves its roster name
    (:func:`identify_nodes`, with the SHARE_KEYS timeout) and nodes that do not
    are left out; ``active_security`` (needs ``roster`` and ``max_corrupt``)
    adds the consistency check against a malicious server. Raises
    :class:`ConfigError` for a config the identified nodes cannot meet. Never
    raises on client behaviour: dropouts, error replies and rejected messages
    are recorded, and an abort is returned as ``RoundOutcome(result=None, abort_reason=...)``.
    """
    if active_security and roster is None:
        raise ConfigError("active_security over Flower needs the roster of identity keys (roster=)")
    deadline = _timeouts(timeouts)
    node_ids = sorted(int(nid) for nid in node_ids)
    names: dict[int, str] | None = None
    refused: dict[int, str] = {}
    if roster is not None:
        names, refused = identify_nodes(grid, node_ids, roster, timeout=deadline[Stage.SHARE_KEYS], group_id=group_id)
        node_ids = sorted(names)
    n, index = len(node_ids), {nid: i for i, nid in enumerate(node_ids)}
    shapes = [tuple(np.shape(a)) for a in arrays]
    dim = int(sum(int(np.prod(s)) for s in shapes))
    if n < 2:
        raise ConfigError("fewer than 2 nodes proved a roster identity", n=n, errors=refused)
    encoder = FixedPointEncoder(clip, bits, n, max_weight=max_weight)
    if threshold is None:  # a majority of the k + 1 share holders, raised to resist max_corrupt
        threshold = default_threshold(
            n, neighbors, max_corrupt=max_corrupt, active=active_security, security_bits=security_bits
        )
    config = SecAggConfig(
        tuple(range(n)),
        threshold,
        dim,
        encoder,
        neighbors=neighbors if neighbors is not None and neighbors < n - 1 else None,
        min_survivors=min_survivors,
        round=round_number,
        weighted=True,
        active_security=active_security,
        identities=None
        if names is None or roster is None
        else {i: roster[names[nid]] for i, nid in enumerate(node_ids)},
        max_corrupt=max_corrupt,
        security_bits=security_bits,
    )
    config_bytes = encode_round_config(
        config, node_ids, shapes, None if names is None else [names[nid] for nid in node_ids]
    )
    limit = payload_limit(config)
    log.info(
        "secagg: round %d, protocol %s: n=%d, threshold t=%d, neighbours k=%d, min_survivors=%d, max_corrupt=%s, "
        "%s, %d-bit ring, dim %d",
        round_number,
        _protocol_name(config),
        n,
        config.threshold,
        config.degree,
        config.min_survivors if config.min_survivors is not None else config.threshold,
        "unset" if config.max_corrupt is None else config.max_corrupt,
        "active (malicious server)" if config.active_security else "semi-honest",
        config.bits,
        dim,
    )
    if refused:
        log.info("secagg: round %d, nodes left out at identification: %s", round_number, sorted(refused))
    server = SecAggServer(config)
    outcome = RoundOutcome(None, None, None, node_ids)
    outcome.errors.update(refused)
    up: dict[int, int] = {i: 0 for i in node_ids}
    down: dict[int, int] = {i: 0 for i in node_ids}
    outbox = server.start()
    while server.state not in (DONE, ABORTED):
        stage = server.state
        assert isinstance(stage, Stage)
        start = time.perf_counter()
        messages = []
        for cid, ours in outbox.items():
            nid = node_ids[cid]
            data = ours.to_bytes()
            down[nid] += len(data)
            record = {"stage": stage.value, "payload": data}
            content = RecordDict()
            if stage is Stage.ADVERTISE_KEYS:  # the round config and FitIns travel once, with the first stage
                record["config"] = config_bytes
                content = _fit_content(fit_content, nid)
            content.config_records[RECORD_KEY] = ConfigRecord(record)  # type: ignore[arg-type]
            messages.append(Message(content, nid, MessageType.TRAIN, group_id=group_id, ttl=deadline[stage]))
        for reply in grid.send_and_receive(messages, timeout=deadline[stage]):
            nid = reply.metadata.src_node_id
            if nid not in down:
                continue
            if reply.has_error():
                outcome.errors[nid] = f"[{stage.value}] code {reply.error.code}: {reply.error.reason}"
                continue
            rec = reply.content.config_records.get(RECORD_KEY)
            if rec is None:
                outcome.errors[nid] = f"[{stage.value}] reply without our record"
                continue
            try:
                # Type and size first: an int payload must not become bytes(int) (an allocation).
                payload = require_bytes(require_field(rec, "payload"), "payload", max_size=limit, error=DecodeError)
                up[nid] += len(payload)
                server.receive(index[nid], payload)
            except SecAggError as exc:  # a rejected message counts as a dropout at this stage
                outcome.errors[nid] = f"[{stage.value}] rejected: {error_reason(exc)}"
        try:
            outbox = server.close_stage()
        except SecAggError as exc:  # inconsistent shares: the server session aborted itself
            if server.state is not ABORTED:
                raise
            outcome.errors[-1] = f"[{stage.value}] {error_reason(exc)}"
        outcome.stage_seconds[stage.value] = time.perf_counter() - start
    outcome.bytes_up, outcome.bytes_down = up, down
    if server.state is ABORTED:
        reason = outcome.abort_reason = server.abort_reason
        assert reason is not None
        outcome.dropped_at = {s: [node_ids[c] for c in ids] for s, ids in reason.dropped.items()}
        log.info(
            "secagg: round %d aborted at %s (needed %d, got %d); dropouts by stage: %s",
            round_number,
            reason.stage.value,
            reason.needed,
            reason.got,
            _named(outcome.dropped_at, names),
        )
        return outcome
    result = server.result()
    outcome.result = result
    outcome.survivors = [node_ids[c] for c in result.survivors]
    outcome.dropped_at = {s: [node_ids[c] for c in ids] for s, ids in result.extras.get("dropped_at", {}).items()}
    outcome.aggregate = _unflatten(result.aggregate, arrays)
    log.info(
        "secagg: round %d done: %d of %d survivors %s; dropouts by stage: %s",
        round_number,
        len(outcome.survivors),
        n,
        _labels(outcome.survivors, names),
        _named(outcome.dropped_at, names),
    )
    return outcome


def _labels(node_ids: Sequence[int], names: Mapping[int, str] | None) -> list[str]:
    """Node ids as ``"<node id>"``, or ``"<roster name> (<node id>)"`` when the round is signed."""
    return [str(nid) if names is None else f"{names.get(nid, '?')} ({nid})" for nid in node_ids]


def _named(by_stage: Mapping[str, Sequence[int]], names: Mapping[int, str] | None) -> dict[str, list[str]]:
    return {stage: _labels(nids, names) for stage, nids in by_stage.items() if nids}


def _fit_content(fit_content: Mapping[int, RecordDict] | RecordDict | None, nid: int) -> RecordDict:
    if fit_content is None:
        return RecordDict()
    base = fit_content if isinstance(fit_content, RecordDict) else fit_content[nid]
    return RecordDict(dict(base.items()))  # a shallow copy per message: we add our own record


def _unflatten(vector: NDArray[np.float64], like: Sequence[NDArray]) -> list[NDArray]:
    sizes = np.cumsum([0] + [int(np.prod(np.shape(a))) for a in like])
    return [
        vector[lo:hi]
        .reshape(np.shape(a))
        .astype(a.dtype if np.issubdtype(np.asarray(a).dtype, np.floating) else np.float64)
        for a, lo, hi in zip(like, sizes[:-1], sizes[1:])
    ]


class SecAggFitWorkflow:
    """Fit workflow for ``DefaultWorkflow`` running our SecAgg / SecAgg+
    (drop-in for Flower's ``SecAggPlusWorkflow``).

    ``neighbors=None`` is SecAgg (complete graph); an int k is SecAgg+ with a
    k-regular Harary graph. ``dropout_rate``/``corrupt_rate`` instead pick k,
    t and ``min_survivors`` with :func:`protocols.config.choose_params` for the
    sampled n. ``timeouts`` (seconds, one value or per stage) bound each
    stage; the first includes local training. An aborted round keeps the
    previous global model; the outcome is stored in ``context.state`` under
    :data:`STATUS_KEY` and kept in ``self.outcomes``.

    ``roster`` (name -> Ed25519 public key, a mapping or a roster file path,
    :mod:`fl.flower_trust`) signs every round; ``active_security=True``
    (needs ``roster`` and ``max_corrupt``, or ``dropout_rate``) runs the
    malicious-server variant with the consistency check. ``max_corrupt``
    raises the default threshold to resist that many colluders.
    """

    def __init__(
        self,
        *,
        neighbors: int | None = None,
        threshold: int | None = None,
        min_survivors: int | None = None,
        dropout_rate: float | None = None,
        corrupt_rate: float = 0.05,
        clip: float = 8.0,
        bits: int = 32,
        max_weight: int = 1000,
        timeouts: StageTimeouts = None,
        roster: Mapping[str, bytes] | str | None = None,
        active_security: bool = False,
        max_corrupt: int | None = None,
        security_bits: int = DEFAULT_SECURITY_BITS,
    ) -> None:
        self.neighbors, self.threshold, self.min_survivors = neighbors, threshold, min_survivors
        self.dropout_rate, self.corrupt_rate = dropout_rate, corrupt_rate
        self.clip, self.bits, self.max_weight = clip, bits, max_weight
        self.timeouts = _timeouts(timeouts)
        if isinstance(roster, (str, os.PathLike)):
            roster = load_roster(roster)
        elif roster is not None:
            roster = parse_roster(json.dumps({k: bytes(v).hex() for k, v in dict(roster).items()}).encode())
        if active_security and (roster is None or (max_corrupt is None and dropout_rate is None)):
            raise ConfigError("active_security over Flower needs roster= and max_corrupt= (or dropout_rate=)")
        self.roster: dict[str, bytes] | None = roster
        self.active_security, self.max_corrupt, self.security_bits = active_security, max_corrupt, security_bits
        self.outcomes: list[RoundOutcome] = []

    def __call__(self, grid: Grid, context: Context) -> None:
        if not isinstance(context, LegacyContext):
            raise TypeError(f"expected a LegacyContext, got {type(context).__name__}")
        cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
        current_round = int(cfg[WorkflowKey.CURRENT_ROUND])  # type: ignore[arg-type]
        parameters = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        sampled = context.strategy.configure_fit(current_round, parameters, context.client_manager)
        if not sampled:
            log.info("configure_fit: no clients selected, round %d skipped", current_round)
            return
        proxies = {proxy.node_id: proxy for proxy, _ in sampled}
        fit_content = {proxy.node_id: compat.fitins_to_recorddict(fitins, True) for proxy, fitins in sampled}
        neighbors, threshold, min_survivors = self.neighbors, self.threshold, self.min_survivors
        max_corrupt = self.max_corrupt
        if self.dropout_rate is not None:
            params = choose_params(
                len(sampled),
                dropout_rate=self.dropout_rate,
                corrupt_rate=self.corrupt_rate,
                security_bits=self.security_bits,
                active=self.active_security,
            )
            neighbors, threshold = params.neighbors, params.threshold
            min_survivors = min_survivors or params.min_survivors
            max_corrupt = params.max_corrupt if max_corrupt is None else max_corrupt
        try:
            outcome = run_secure_round(
                grid,
                list(proxies),
                parameters_to_ndarrays(parameters),
                fit_content=fit_content,
                threshold=threshold,
                neighbors=neighbors,
                min_survivors=min_survivors,
                clip=self.clip,
                bits=self.bits,
                max_weight=self.max_weight,
                round_number=current_round,
                group_id=str(current_round),
                timeouts=self.timeouts,
                roster=self.roster,
                active_security=self.active_security,
                max_corrupt=max_corrupt,
                security_bits=self.security_bits,
            )
        except SecAggError as exc:  # a config the sampled set cannot meet: keep the model
            self._record(context, current_round, "refused", error_reason(exc))
            log.error("secure round %d refused: %s", current_round, error_reason(exc))
            return
        self.outcomes.append(outcome)
        if not outcome.ok:
            reason = outcome.reason()
            self._record(context, current_round, "aborted", reason)
            log.error("secure round %d aborted, previous model kept: %s", current_round, reason)
            return
        assert outcome.aggregate is not None and outcome.result is not None
        aggregated = ndarrays_to_parameters(outcome.aggregate)
        # The strategy sees the aggregate once per survivor (as with Flower's
        # workflow) with weight 1: no client's num_examples reaches the server.
        results = [
            (proxies[nid], FitRes(Status(Code.OK, "secure aggregate"), aggregated, 1, {})) for nid in outcome.survivors
        ]
        failures = [ConnectionError(reason) for reason in outcome.errors.values()]
        new_parameters, metrics = context.strategy.aggregate_fit(current_round, results, failures)  # type: ignore[arg-type]
        if new_parameters is not None:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(new_parameters, True)
            context.history.add_metrics_distributed_fit(server_round=current_round, metrics=metrics)
        self._record(context, current_round, "done", f"{len(outcome.survivors)} survivors")

    @staticmethod
    def _record(context: Context, current_round: int, status: str, reason: str) -> None:
        context.state.config_records[STATUS_KEY] = ConfigRecord(
            {"round": current_round, "status": status, "reason": reason}
        )
