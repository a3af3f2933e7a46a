"""The insecure baseline: clients send their encoded update in the clear.

Same session interface and the same fixed-point encoding as SecAgg, so that
``protocols.sim.run_plaintext`` can be compared with the secure protocols bit
for bit. It protects nothing; it exists for comparisons and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, DecodeError, ProtocolError

from . import messages as m
from .session import ABORTED, DONE, AbortReason, AggregateResult, SessionState, Stage

__all__ = ["PlaintextConfig", "PlaintextServer", "PlaintextClient"]


@dataclass(frozen=True)
class PlaintextConfig:
    """Clients, update length, encoder and the fewest inputs to aggregate."""

    client_ids: tuple[int, ...]
    dim: int
    encoder: Any
    min_survivors: int = 1
    weighted: bool = False
    session_id: bytes = field(default_factory=lambda: os.urandom(16))
    round: int = 0
    protocol: str = "plaintext"

    def __post_init__(self) -> None:
        if len(set(self.client_ids)) != len(self.client_ids) or not self.client_ids:
            raise ConfigError("client_ids must be distinct and non-empty")
        if not 1 <= self.min_survivors <= len(self.client_ids):
            raise ConfigError("min_survivors must be in [1, n]", min_survivors=self.min_survivors)


@m.register(64)
@dataclass(frozen=True)
class InputRequest(m.Message):
    """Server -> client: send your encoded update."""

    header: m.Header
    BODY = ()


@m.register(65)
@dataclass(frozen=True)
class PlainInput(m.Message):
    """Client -> server: the encoded update, unmasked."""

    header: m.Header
    encoded: np.ndarray
    BODY = (("encoded", m.FieldKind.ARRAY),)


def _header(config: PlaintextConfig, sender: int, receiver: int) -> m.Header:
    return m.Header(m.PROTOCOL_IDS["plaintext"], config.session_id, config.round, Stage.MASKED_INPUT, sender, receiver)


class PlaintextClient:
    """Encodes its update and sends it in the clear."""

    def __init__(self, config: PlaintextConfig, client_id: int, update: NDArray[np.floating], *, weight: int = 1,
                 identity: Any = None, rng: np.random.Generator | None = None) -> None:
        if client_id not in config.client_ids:
            raise ConfigError("unknown client id", client_id=client_id)
        self.config, self.id = config, client_id
        self._encoded = config.encoder.encode(np.asarray(update), weight=weight, rng=rng)
        self.state: Stage | SessionState = Stage.MASKED_INPUT

    def handle(self, msg: Any) -> m.Message | None:
        if isinstance(msg, (bytes, bytearray)):
            msg = m.decode(bytes(msg))
        if self.state is DONE:
            raise ProtocolError("session is over")
        if not isinstance(msg, InputRequest) or msg.header != _header(self.config, m.SERVER_ID, self.id):
            raise ProtocolError("unexpected message", got=type(msg).__name__)
        self.state = DONE
        return PlainInput(_header(self.config, self.id, m.SERVER_ID), self._encoded)


class PlaintextServer:
    """Sums the encoded updates it receives and decodes the sum."""

    def __init__(self, config: PlaintextConfig) -> None:
        self.config = config
        self.state: Stage | SessionState = Stage.MASKED_INPUT
        self.abort_reason: AbortReason | None = None
        self._inbox: dict[int, NDArray] = {}
        self._result: AggregateResult | None = None

    def start(self) -> dict[int, m.Message]:
        return {u: InputRequest(_header(self.config, m.SERVER_ID, u)) for u in self.config.client_ids}

    def receive(self, client_id: int, msg: Any) -> None:
        if self.state is not Stage.MASKED_INPUT:
            raise ProtocolError("no stage is open", local=True)
        if client_id not in self.config.client_ids:
            raise ProtocolError("message from an unknown sender", client_id=client_id)
        if isinstance(msg, (bytes, bytearray)):
            msg = m.decode(bytes(msg))
        if not isinstance(msg, PlainInput) or msg.header != _header(self.config, client_id, m.SERVER_ID):
            raise ProtocolError("unexpected message", client_id=client_id)
        if client_id in self._inbox:
            raise ProtocolError("duplicate message", client_id=client_id)
        if msg.encoded.shape != (self.config.dim + 1,) or msg.encoded.dtype != self.config.encoder.dtype:
            raise DecodeError("encoded vector has the wrong shape or word size", client_id=client_id)
        self._inbox[client_id] = msg.encoded

    def close_stage(self) -> dict[int, m.Message]:
        c = self.config
        survivors = sorted(self._inbox)
        dropped = sorted(set(c.client_ids) - set(survivors))
        if len(survivors) < c.min_survivors:
            self.state = ABORTED
            self.abort_reason = AbortReason(Stage.MASKED_INPUT, c.min_survivors, len(survivors),
                                            {Stage.MASKED_INPUT.value: tuple(dropped)})
            return {}
        total = np.zeros(c.dim + 1, dtype=c.encoder.dtype)
        for u in survivors:
            total += self._inbox[u]
        if c.encoder.bits not in (32, 64):
            total &= total.dtype.type((1 << c.encoder.bits) - 1)
        vector_sum, weight_sum = c.encoder.decode_sum(total)
        aggregate = vector_sum / weight_sum if c.weighted and weight_sum else vector_sum
        self._result = AggregateResult(np.asarray(aggregate, dtype=np.float64), survivors, dropped,
                                       weight_sum=float(weight_sum), weighted=c.weighted, raw_sum=total)
        self.state = DONE
        return {}

    def result(self) -> AggregateResult:
        if self.state is ABORTED:
            raise self.abort_reason.to_error()  # type: ignore[union-attr]
        if self._result is None:
            raise ProtocolError("round not finished", local=True)
        return self._result
