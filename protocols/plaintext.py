"""The insecure baseline: clients send their encoded update in the clear.

Same session interface and the same fixed-point encoding as SecAgg, so that
``protocols.sim.run_plaintext`` can be compared with the secure protocols bit
for bit. It protects nothing; it exists for comparisons and tests. One stage,
MASKED_INPUT, on the shared core (:mod:`protocols.session`): the server asks,
each client answers once with its encoded update, the server sums.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError, DecodeError

from . import messages as m
from .session import DONE, AggregateResult, Binding, ClientCore, ServerCore, Stage, StageSpec

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


@m.wire_message(64)
class InputRequest(m.Message):
    """Server -> client: send your encoded update."""

    header: m.Header
    BODY = ()


@m.wire_message(65)
class PlainInput(m.Message):
    """Client -> server: the encoded update, unmasked."""

    header: m.Header
    encoded: np.ndarray
    BODY = (("encoded", m.FieldKind.ARRAY),)


def _binding(config: PlaintextConfig) -> Binding:
    return Binding.of("plaintext", config.session_id, config.round)


def _server_limits(config: PlaintextConfig) -> m.DecodeLimits:
    """Exactly one PlainInput of dim + 1 words: nothing larger is decoded."""
    word_bytes = np.dtype(config.encoder.dtype).itemsize
    return m.DecodeLimits.for_round(
        clients=len(config.client_ids), dim=config.dim, word_bytes=word_bytes, maps=0, slack=0
    )


# An InputRequest is a bare header.
_CLIENT_LIMITS = m.DecodeLimits(max_bytes=m.HEADER_BYTES, max_entries=0, max_entry_bytes=0, max_words=0)


class PlaintextClient(ClientCore):
    """Encodes its update and sends it in the clear."""

    def __init__(
        self,
        config: PlaintextConfig,
        client_id: int,
        update: NDArray[np.floating],
        *,
        weight: int = 1,
        identity: Any = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if client_id not in config.client_ids:
            raise ConfigError("unknown client id", client_id=client_id)
        self.config, self.id = config, client_id
        super().__init__(
            _binding(config),
            client_id,
            {Stage.MASKED_INPUT: StageSpec(InputRequest, self._send_input, DONE)},
            limits=_CLIENT_LIMITS,
        )
        self._encoded = config.encoder.encode(np.asarray(update), weight=weight, rng=rng)

    def _send_input(self, msg: InputRequest) -> PlainInput:
        return PlainInput(self.header(Stage.MASKED_INPUT), self._encoded)


class PlaintextServer(ServerCore):
    """Sums the encoded updates it receives and decodes the sum."""

    def __init__(self, config: PlaintextConfig) -> None:
        self.config = config
        super().__init__(
            _binding(config),
            config.client_ids,
            {Stage.MASKED_INPUT: StageSpec(PlainInput, self._accept_input, DONE, close=self._sum_inputs)},
            opening=self._request_inputs,
            min_survivors=config.min_survivors,
            limits=_server_limits(config),
        )

    def _request_inputs(self) -> dict[int, m.Message]:
        return {u: InputRequest(self.header(Stage.MASKED_INPUT, u)) for u in self.config.client_ids}

    def _accept_input(self, client_id: int, msg: PlainInput) -> NDArray[np.unsignedinteger]:
        c, y = self.config, msg.encoded
        if y.shape != (c.dim + 1,) or y.dtype != c.encoder.dtype:
            raise DecodeError(
                "encoded vector has the wrong shape or word size",
                client_id=client_id,
                shape=y.shape,
                dtype=str(y.dtype),
            )
        if c.encoder.bits not in (32, 64) and int(y.max(initial=0)) >> c.encoder.bits:
            raise DecodeError("encoded vector has values outside Z_{2^bits}", client_id=client_id)
        return y

    def _sum_inputs(self, accepted: Mapping[int, NDArray[np.unsignedinteger]]) -> AggregateResult:
        c = self.config
        survivors = sorted(accepted)
        dropped = sorted(set(c.client_ids) - set(survivors))
        total = np.zeros(c.dim + 1, dtype=c.encoder.dtype)
        for u in survivors:
            total += accepted[u]
        if c.encoder.bits not in (32, 64):
            total &= total.dtype.type((1 << c.encoder.bits) - 1)
        vector_sum, weight_sum = c.encoder.decode_sum(total)
        aggregate = vector_sum / weight_sum if c.weighted and weight_sum else vector_sum
        return AggregateResult(
            np.asarray(aggregate, dtype=np.float64),
            survivors,
            dropped,
            weight_sum=float(weight_sum),
            weighted=c.weighted,
            raw_sum=total,
        )
