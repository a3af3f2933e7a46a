"""The session interface that every aggregation protocol implements.

A protocol is a pair of sans-I/O state machines (the h11 model): a
:class:`ServerSession` and one :class:`ClientSession` per client. They consume
messages and return messages to send; they never open sockets, sleep, spawn
threads or read a clock. A driver (``protocols.sim``, the Flower adapter, an
integrator's transport) moves the messages::

    server = make_server(config)
    outbox = server.start()                       # {client_id: Message}
    while server.state not in (DONE, ABORTED):
        for cid, msg in outbox.items():
            reply = clients[cid].handle(msg)      # Message | None
            if reply is not None:
                server.receive(cid, reply)        # typed errors on bad input
        outbox = server.close_stage()             # at the stage deadline
    result = server.result()                      # AggregateResult, or AbortError

Client ids are non-negative ints. Messages are :class:`protocols.messages`
values (anything with ``to_bytes()``); drivers may round-trip them through
bytes to count traffic.

Writing a protocol on the core
------------------------------
A protocol subclasses :class:`ServerCore` and :class:`ClientCore` and declares
its stages once, as a table ``{stage: StageSpec(expects, handler, next)}``;
the core dispatches through that table and does what every session needs:
parsing (``bytes``, ``bytearray``, ``memoryview`` or a ``Message``) under
:class:`~protocols.messages.DecodeLimits` sized from the config, header
checks (protocol, session, round, stage, sender, receiver, kind) *before* the
body is decoded, duplicate detection, dropouts, aborts and ``result()``::

    class EchoServer(ServerCore):
        def __init__(self, config):
            super().__init__(
                Binding.of("plaintext", config.session_id, config.round),
                config.client_ids,
                {Stage.MASKED_INPUT: StageSpec(PlainInput, self._accept, DONE, close=self._sum)},
                opening=lambda: {u: InputRequest(self.header(Stage.MASKED_INPUT, u))
                                 for u in config.client_ids},
                min_survivors=config.min_survivors,
                limits=DecodeLimits.for_round(clients=len(config.client_ids), dim=config.dim),
            )

        def _accept(self, client_id, msg):      # validate; raise a SecAggError to refuse
            return msg.encoded                  # kept in self.accepted(stage)[client_id]

        def _sum(self, accepted):               # at close_stage(): next outbox, or the
            return AggregateResult(...)         # result when the next stage is DONE

    class EchoClient(ClientCore):
        def __init__(self, config, client_id, update, **_):
            super().__init__(
                Binding.of("plaintext", config.session_id, config.round), client_id,
                {Stage.MASKED_INPUT: StageSpec(InputRequest, self._send, DONE)},
                limits=DecodeLimits.for_round(clients=len(config.client_ids), dim=0),
            )

        def _send(self, msg):                   # the reply, or None to stay silent
            return PlainInput(self.header(Stage.MASKED_INPUT), ...)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from secagg.errors import AbortError, ConfigError, DecodeError, ProtocolError, SecAggError

from .messages import PROTOCOL_IDS, SERVER_ID, DecodeLimits, Header, Message, Stage, decode, decode_header

if TYPE_CHECKING:  # pragma: no cover
    from .dp import DPRoundReport

__all__ = [
    "Stage",
    "DONE",
    "ABORTED",
    "SessionState",
    "as_stage",
    "AbortReason",
    "AggregateResult",
    "ServerSession",
    "ClientSession",
    "Binding",
    "StageSpec",
    "BadInputPolicy",
    "SessionCore",
    "ServerCore",
    "ClientCore",
]


class SessionState(enum.Enum):
    """Terminal states of a server session."""

    DONE = "done"
    ABORTED = "aborted"


DONE = SessionState.DONE
ABORTED = SessionState.ABORTED


def as_stage(value: "Stage | str") -> Stage:
    """Accept a :class:`Stage` or its lowercase name (``"share_keys"``)."""
    if isinstance(value, Stage):
        return value
    if isinstance(value, str):
        try:
            return Stage(value.lower())
        except ValueError:
            pass
        try:
            return Stage[value.upper()]
        except KeyError:
            pass
    raise ConfigError(f"unknown stage {value!r}; expected one of {[s.value for s in Stage]}", stage=value)


@dataclass(frozen=True)
class AbortReason:
    """Why a round aborted: at which stage, how many were needed and present,
    and who dropped where (stage name -> sorted client ids)."""

    stage: Stage
    needed: int
    got: int
    dropped: Mapping[str, tuple[int, ...]]
    detail: str = ""

    def to_error(self) -> AbortError:
        return AbortError(
            f"round aborted at {self.stage.value}: needed {self.needed}, got {self.got}"
            + (f"; {self.detail}" if self.detail else ""),
            stage=self.stage,
            needed=self.needed,
            got=self.got,
            dropped=dict(self.dropped),
        )


@dataclass
class AggregateResult:
    """What a finished round produces.

    ``aggregate`` is the decoded sum of the survivors' inputs, or their
    weighted mean when weights were given (``weighted=True``); ``weight_sum``
    is Σ n_k over survivors (never one client's n_k). ``survivors`` and
    ``dropped`` are sorted client ids. ``bytes_up``/``bytes_down`` are per
    client id. ``stage_bytes[stage]`` holds the totals ``"up"`` and ``"down"``
    and, per client id, the bytes that client sent in that stage;
    ``stage_seconds[stage]`` holds the time of each party (``"server"`` or a
    client id). ``raw_sum`` holds the modular integer sum before decoding, when the
    protocol has one (used to compare protocols bit for bit). ``dp`` is the
    round's privacy report (ε of the round and so far, δ, the shares summed)
    when the round ran under distributed DP (:func:`protocols.dp.run_dp`),
    else ``None``; ``extras["dp"]`` holds the same object, for older callers.
    """

    aggregate: NDArray[np.float64]
    survivors: list[int]
    dropped: list[int]
    weight_sum: float = 0.0
    weighted: bool = False
    raw_sum: NDArray[np.unsignedinteger] | None = None
    bytes_up: dict[int, int] = field(default_factory=dict)
    bytes_down: dict[int, int] = field(default_factory=dict)
    stage_bytes: dict[str, dict[Any, int]] = field(default_factory=dict)
    stage_seconds: dict[str, dict[Any, float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    dp: "DPRoundReport | None" = None


@runtime_checkable
class ServerSession(Protocol):
    """Server side of a protocol. Construct with ``(config)``."""

    state: "Stage | SessionState"
    abort_reason: AbortReason | None

    def start(self) -> dict[int, Any]:
        """Begin the round; return the first messages, keyed by client id."""
        ...

    def receive(self, client_id: int, msg: Any) -> None:
        """Consume one client's reply for the current stage.

        Raises ProtocolError (wrong stage, duplicate, unknown sender),
        DecodeError or IntegrityError; the session state is unchanged then.
        """
        ...

    def close_stage(self) -> dict[int, Any]:
        """End the current stage (its deadline passed): missing replies are
        dropouts. Returns the next stage's messages; empty when DONE/ABORTED."""
        ...

    def result(self) -> AggregateResult:
        """The finished round's result; raises AbortError if it aborted."""
        ...


@runtime_checkable
class ClientSession(Protocol):
    """Client side. Construct with ``(config, client_id, update, *, weight=1,
    identity=None, rng=None)``."""

    def handle(self, msg: Any) -> Any | None:
        """Consume a server message, return the reply (or None to stay silent)."""
        ...


# ====================================================================== the core

Outbox = dict[int, Message]


@dataclass(frozen=True)
class Binding:
    """What every header of one round carries besides stage, sender and receiver."""

    protocol: int
    session_id: bytes
    round: int

    @classmethod
    def of(cls, protocol: str, session_id: bytes, round: int) -> "Binding":
        """Bind by protocol name (a key of ``messages.PROTOCOL_IDS``); ConfigError otherwise."""
        if protocol not in PROTOCOL_IDS:
            raise ConfigError(f"unknown protocol {protocol!r}", protocol=protocol)
        return cls(PROTOCOL_IDS[protocol], bytes(session_id), int(round))

    def header(self, stage: Stage, sender: int, receiver: int) -> Header:
        return Header(self.protocol, self.session_id, self.round, stage, sender, receiver)


@dataclass(frozen=True)
class StageSpec:
    """One row of a protocol's stage table.

    ``expects``: the only message class accepted at this stage. ``handler``:
    on a server ``(client_id, msg) -> kept`` validates one reply and returns
    what :meth:`ServerCore.accepted` keeps for it; on a client ``(msg) ->
    reply | None``. Either raises a :class:`SecAggError` to refuse. ``next``:
    the stage that follows, or ``DONE``.

    Server only: ``close(accepted)`` runs at ``close_stage()`` and returns the
    next stage's outbox (the recipients are who may reply next), or the
    :class:`AggregateResult` when ``next`` is ``DONE``; ``needed`` is the
    fewest replies the stage can close with (default: ``min_survivors``).
    Client only: ``skippable`` lets a message of the next stage arrive
    instead (a client the server has no use for at this stage).
    ``limits`` overrides the session's decode limits for this stage.
    """

    expects: type[Message]
    handler: Callable[..., Any]
    next: "Stage | SessionState"
    close: Callable[[Mapping[int, Any]], "Mapping[int, Message] | AggregateResult"] | None = None
    needed: int | None = None
    limits: DecodeLimits | None = None
    skippable: bool = False


class BadInputPolicy(enum.Enum):
    """What the server does with a reply whose header fits but whose body fails
    (decode limits, decoding, or the stage handler).

    ``DROP``: the sender is dropped for the round (its error is kept in
    ``errors``); a faulty client cannot stall the stage. ``REJECT``: the state
    is unchanged and the sender may retry (for transports that corrupt).
    """

    DROP = "drop"
    REJECT = "reject"


class SessionCore:
    """What server and client sessions share: the round's binding, decode
    limits, the stage table, and parsing with header checks before bodies.

    Protocols inherit the core (``ServerCore`` / ``ClientCore``) rather than
    hold one: every session exposes the same driver interface (``state``,
    ``start``/``receive``/``close_stage``/``result`` or ``handle``), so
    inheriting it leaves a protocol with only its table and handlers.
    Protocol code reads the core through its public names only.
    """

    def __init__(self, binding: Binding, stages: Mapping[Stage, StageSpec], *, limits: DecodeLimits) -> None:
        if not stages:
            raise ConfigError("a session needs at least one stage", local=True)
        for stage, spec in stages.items():
            if spec.next is ABORTED or (spec.next is not DONE and spec.next not in stages):
                raise ConfigError("a stage's next must be DONE or a stage of the table", stage=stage)
        self.binding = binding
        self.stages: dict[Stage, StageSpec] = dict(stages)
        self.limits = limits
        self.state: Stage | SessionState = next(iter(self.stages))

    def _limits(self, stage: Stage) -> DecodeLimits:
        return self.stages[stage].limits or self.limits

    def _peek(self, msg: Any) -> tuple[int, Header]:
        """(kind, header) of a message or its bytes, without decoding the body."""
        if isinstance(msg, (bytes, bytearray, memoryview)):
            return decode_header(msg)
        if isinstance(msg, Message):
            return type(msg).KIND, msg.header
        raise ProtocolError("expected a message or its bytes", local=True, type=type(msg).__name__)

    def _check_header(
        self, kind: int, header: Header, *, stage: Stage, sender: int, receiver: int, peer: int | None
    ) -> None:
        """ProtocolError unless the header is the one this stage expects."""
        b = self.binding
        if (header.protocol, header.session_id, header.round) != (b.protocol, b.session_id, b.round):
            raise ProtocolError(
                "message from another protocol, session or round (replay?)",
                client_id=peer,
                stage=stage,
                protocol=header.protocol,
                round=header.round,
            )
        if header.sender != sender or header.receiver != receiver:
            raise ProtocolError(
                "message sender/receiver does not match",
                client_id=peer,
                stage=stage,
                header_sender=header.sender,
                header_receiver=header.receiver,
            )
        expects = self.stages[stage].expects
        if header.stage is not stage or kind != expects.KIND:
            raise ProtocolError(
                f"expected {expects.__name__} at {stage.value}, got kind {kind} at {header.stage.value}",
                client_id=peer,
                stage=stage,
            )

    def _body(self, msg: Any, stage: Stage) -> Message:
        """The decoded message, under this stage's limits (a Message passes through)."""
        if isinstance(msg, Message):
            return msg
        return decode(msg, limits=self._limits(stage))


class ServerCore(SessionCore):
    """Server side of the core: one inbox per stage, dropouts, aborts, result.

    ``receive`` checks, in order: an open stage, a configured sender, the
    header (fixed 36 bytes, the body untouched), a duplicate, a sender still
    expected at this stage. Failing any of these raises a ProtocolError or
    DecodeError and leaves the state unchanged. Then the body is decoded under
    the stage's limits and the handler runs: a failure there is the sender's,
    and ``on_bad_input`` (:class:`BadInputPolicy`) decides. A dropped sender's
    error names it (``client_id``, ``stage``, ``sender_dropped=True``); if fewer than
    ``needed`` senders can still reply, the round ABORTS at once, so the
    server never waits on a stage that cannot close.
    """

    def __init__(
        self,
        binding: Binding,
        client_ids: Iterable[int],
        stages: Mapping[Stage, StageSpec],
        *,
        opening: Callable[[], Mapping[int, Message]],
        min_survivors: int,
        limits: DecodeLimits,
        on_bad_input: BadInputPolicy = BadInputPolicy.DROP,
    ) -> None:
        super().__init__(binding, stages, limits=limits)
        if any(spec.close is None for spec in self.stages.values()):
            raise ConfigError("every server stage needs a close()", local=True)
        self.client_ids = tuple(client_ids)
        self.min_survivors = min_survivors
        self.on_bad_input = on_bad_input
        self.abort_reason: AbortReason | None = None
        self.errors: dict[int, SecAggError] = {}  # senders dropped for bad input
        self.dropped: dict[str, tuple[int, ...]] = {}  # stage name -> who vanished there
        self.expected: frozenset[int] = frozenset()  # who may still reply at this stage
        self._opening = opening
        self._started = False
        self._inbox: dict[Stage, dict[int, Any]] = {stage: {} for stage in self.stages}
        self._refused: set[int] = set()  # dropped for bad input at the current stage
        self._result: AggregateResult | None = None

    # -- driver interface
    def start(self) -> Outbox:
        """Open the first stage; return its messages, keyed by client id."""
        if self._started:
            raise ProtocolError("start() called twice", local=True)
        self._started = True
        outbox = dict(self._opening())
        self.expected = frozenset(outbox)
        return outbox

    def receive(self, client_id: int, msg: Any) -> None:
        """Consume one reply for the current stage (see the class docstring)."""
        stage = self.state
        if not self._started or not isinstance(stage, Stage):
            raise ProtocolError("no stage is open", local=True, state=stage.value)
        if client_id not in self.client_ids:
            raise ProtocolError("message from an unknown sender", client_id=client_id)
        try:
            kind, header = self._peek(msg)
        except DecodeError as exc:  # name the sender; the state is unchanged
            raise DecodeError(exc.message, **{**exc.fields, "client_id": client_id, "stage": stage}) from None
        self._check_header(kind, header, stage=stage, sender=client_id, receiver=SERVER_ID, peer=client_id)
        if client_id in self._inbox[stage]:
            raise ProtocolError("duplicate message", client_id=client_id, stage=stage)
        if client_id not in self.expected:
            raise ProtocolError("client is not part of this stage (dropped earlier)", client_id=client_id, stage=stage)
        spec = self.stages[stage]
        try:
            kept = spec.handler(client_id, self._body(msg, stage))
        except SecAggError as exc:
            raise self._refuse(client_id, stage, exc) from exc
        self._inbox[stage][client_id] = kept

    def close_stage(self) -> Outbox:
        """End the current stage (its deadline passed): missing replies are
        dropouts. Returns the next stage's messages; ``{}`` once DONE/ABORTED.
        A SecAggError from the stage's ``close`` aborts the round and is raised."""
        stage = self.state
        if not isinstance(stage, Stage):
            return {}
        if not self._started:
            raise ProtocolError("close_stage() before start()", local=True)
        spec = self.stages[stage]
        accepted = self._inbox[stage]
        vanished = (self.expected - set(accepted)) | self._refused
        if vanished:
            self.dropped[stage.value] = tuple(sorted(vanished))
        needed = self._needed(stage)
        if len(accepted) < needed:
            return self.abort(needed, len(accepted))
        assert spec.close is not None
        try:
            out = spec.close(accepted)
        except SecAggError as exc:
            if self.state is stage:
                self.abort(needed, len(accepted), f"{type(exc).__name__}: {exc}")
            raise
        if self.state is not stage:  # close() aborted
            return {}
        return self._advance(stage, spec, out)

    def result(self) -> AggregateResult:
        """The finished round's result; AbortError if it aborted."""
        if self.state is ABORTED:
            assert self.abort_reason is not None
            raise self.abort_reason.to_error()
        if self._result is None:
            raise ProtocolError("round not finished", local=True, state=self.state.value)
        return self._result

    # -- for protocol code
    def header(self, stage: Stage, receiver: int) -> Header:
        """Header of a server message to ``receiver`` at ``stage``."""
        return self.binding.header(stage, SERVER_ID, receiver)

    def accepted(self, stage: Stage) -> Mapping[int, Any]:
        """What the handler kept for each sender accepted at ``stage``."""
        return self._inbox[stage]

    def abort(self, needed: int, got: int, detail: str = "") -> Outbox:
        """End the round ABORTED at the current stage; returns ``{}`` (an empty outbox)."""
        stage = self.state if isinstance(self.state, Stage) else next(iter(self.stages))
        self.state = ABORTED
        self.abort_reason = AbortReason(stage, needed, got, dict(self.dropped), detail)
        return {}

    def snapshot(self) -> tuple[Any, ...]:
        """A comparable summary of the round's progress (for tests): state,
        who was accepted per stage, who is expected, who was dropped."""
        return (
            self.state,
            tuple((s, tuple(sorted(i))) for s, i in self._inbox.items()),
            tuple(sorted(self.expected)),
            tuple(sorted(self.errors)),
        )

    # -- internals
    def _needed(self, stage: Stage) -> int:
        needed = self.stages[stage].needed
        return self.min_survivors if needed is None else needed

    def _advance(self, stage: Stage, spec: StageSpec, out: Any) -> Outbox:
        if spec.next is DONE:
            if not isinstance(out, AggregateResult):
                raise ProtocolError("the last stage's close() must return the result", local=True, stage=stage)
            self._result, self.state = out, DONE
            return {}
        if isinstance(out, AggregateResult):
            raise ProtocolError("only the last stage's close() returns a result", local=True, stage=stage)
        outbox = dict(out)
        self.state, self.expected, self._refused = spec.next, frozenset(outbox), set()
        needed = self._needed(spec.next)  # type: ignore[arg-type]
        if len(outbox) < needed:  # nobody left who could close the next stage
            return self.abort(needed, len(outbox), "too few recipients for the next stage")
        return outbox

    def _refuse(self, client_id: int, stage: Stage, exc: SecAggError) -> SecAggError:
        """The error to raise for a bad body from ``client_id``, after applying the policy."""
        fields = {**exc.fields, "client_id": client_id, "stage": stage}
        if exc.fields.get("client_id") not in (None, client_id):
            fields["peer"] = exc.fields["client_id"]  # the third party the sender's message named
        if self.on_bad_input is BadInputPolicy.REJECT:
            return type(exc)(f"client {client_id}: {exc.message}", **fields)
        self.expected = self.expected - {client_id}
        self._refused.add(client_id)
        fields["sender_dropped"] = True
        error = type(exc)(f"client {client_id} dropped: {exc.message}", **fields)
        self.errors[client_id] = error
        needed = self._needed(stage)
        if len(self.expected) < needed:
            self.dropped[stage.value] = tuple(sorted(self._refused))
            self.abort(needed, len(self.expected), f"client {client_id} dropped for bad input")
        return error


class ClientCore(SessionCore):
    """Client side of the core: ``handle(msg) -> reply | None``.

    A message for another session, party, stage or kind, or one that fails
    to decode its header, raises and leaves the state unchanged (a replay or
    a stray message). A body that fails to decode, or any SecAggError from the
    stage's handler, moves the client to ABORTED for good (``error`` keeps
    it): an honest client never "tries its best".
    """

    def __init__(
        self, binding: Binding, client_id: int, stages: Mapping[Stage, StageSpec], *, limits: DecodeLimits
    ) -> None:
        super().__init__(binding, stages, limits=limits)
        self.client_id = int(client_id)
        self.error: SecAggError | None = None

    def handle(self, msg: Any) -> Message | None:
        """Consume one server message; return the reply, or None to stay silent."""
        if not isinstance(self.state, Stage):
            raise ProtocolError("session is over", state=self.state.value)
        kind, header = self._peek(msg)
        stage = self._reachable(header.stage)
        self._check_header(kind, header, stage=stage, sender=SERVER_ID, receiver=self.client_id, peer=None)
        spec = self.stages[stage]
        try:
            self.state = stage
            reply = spec.handler(self._body(msg, stage))
        except SecAggError as exc:
            self.state, self.error = ABORTED, exc
            raise
        self.state = spec.next
        return reply

    def header(self, stage: Stage) -> Header:
        """Header of this client's reply at ``stage``."""
        return self.binding.header(stage, self.client_id, SERVER_ID)

    def _reachable(self, wanted: Stage) -> Stage:
        """``wanted`` if the client may handle it now (skipping skippable
        stages), else the current stage, so the header check names it."""
        stage = self.state
        assert isinstance(stage, Stage)
        current = stage
        while stage is not wanted and self.stages[stage].skippable:
            following = self.stages[stage].next
            if not isinstance(following, Stage):
                break
            stage = following
        return stage if stage is wanted else current
