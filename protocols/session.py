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
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from secagg.errors import AbortError, ConfigError

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
]


class Stage(enum.Enum):
    """Protocol stages, named as in Bonawitz et al. 2017 (rounds 0–4).

    HE protocols reuse the names that fit (ADVERTISE_KEYS for the key
    ceremony, MASKED_INPUT for ciphertext upload, UNMASK for decryption).
    """

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"

    @property
    def index(self) -> int:
        return _STAGE_ORDER.index(self)


_STAGE_ORDER = list(Stage)


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
    raise ConfigError(
        f"unknown stage {value!r}; expected one of {[s.value for s in Stage]}", stage=value
    )


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
    protocol has one (used to compare protocols bit for bit).
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
