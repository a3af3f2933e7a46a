"""The one door between training and the protocols: every round's deltas go
through ``protocols.sim`` (secure or plaintext) with the same fixed-point
encoding, so that secure and plaintext training can be compared bit for bit.

:class:`ProtocolAggregator` binds a protocol name, the encoder and the
threat-model parameters; calling it runs one aggregation round in process and
returns an :class:`~protocols.session.AggregateResult` whose ``aggregate`` is
the weighted mean Σ n_k Δ_k / Σ n_k over the survivors, with client ids
mapped back to the trainer's centre ids. The weight n_k travels inside the
protected payload, masked or encrypted with the update: the server sees only Σ n_k.

Encoding of the deltas (our choice, reported in the README): L∞ ``clip = 1.0``
per coordinate (the largest |Δ| seen on Fed-Heart-Disease with every default
strategy is 0.05, so 20x headroom; clipped coordinates are counted per round) and step
``precision = 2**-20`` (~1e-6). With 4 centres and n_k ≤ 199 that plans a
31-bit ring, so masked vectors are uint32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from protocols import sim
from protocols.he import HeConfig
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError

__all__ = [
    "relabel",
    "SECURE_PROTOCOLS",
    "HE_PROTOCOLS",
    "PROTOCOLS",
    "DELTA_CLIP",
    "DELTA_PRECISION",
    "ProtocolAggregator",
    "make_encoder",
    "security_options",
]

SECURE_PROTOCOLS = ("secagg", "secagg+")
#: Homomorphic-encryption sessions (protocols.he) behind the same driver; the
#: weight n_k is an encrypted slot, so the server sees only Σ n_k.
HE_PROTOCOLS = ("paillier", "paillier-threshold", "ckks")
PROTOCOLS = ("plaintext",) + SECURE_PROTOCOLS + HE_PROTOCOLS

DELTA_CLIP = 1.0  # L∞ bound per delta coordinate (largest observed |Δ| = 0.05 on heart-disease)
DELTA_PRECISION = 2.0**-20  # fixed-point step; unbiased rounding error below 1e-6 per coordinate


def security_options(
    protocol: str,
    n: int,
    dim: int,
    encoder: Any,
    *,
    threshold: int | None = None,
    active_security: bool = False,
    max_corrupt: int | None = None,
) -> dict[str, Any]:
    """The ``protocols.sim.run`` keywords that set a round's security, checked before any crypto.

    SecAgg / SecAgg+: ``active_security`` and ``max_corrupt`` as given (the
    config refuses a threshold that many colluders defeat). HE: always
    ``active_security=True``, so that the simulator gives every client an
    Ed25519 identity (OS CSPRNG) and the key ceremony is signed: a server
    that substitutes the HE key is caught. With ``max_corrupt`` the HE config
    is built here with it (shared-key schemes are refused, threshold Paillier
    needs t > max_corrupt; default t = max(n//2 + 1, max_corrupt + 1)), and
    the threshold it settles on is passed on. Raises :class:`ConfigError` /
    ``ThresholdError`` for a threat model the protocol cannot meet.
    """
    if protocol not in HE_PROTOCOLS:
        return {"threshold": threshold, "active_security": active_security, "max_corrupt": max_corrupt}
    if max_corrupt is None:
        return {"threshold": threshold, "active_security": True}

    config = HeConfig(tuple(range(n)), dim, encoder, protocol, threshold=threshold, max_corrupt=max_corrupt)
    return {"threshold": config.threshold, "active_security": True, "max_corrupt": max_corrupt}


def make_encoder(
    *, clip: float = DELTA_CLIP, precision: float = DELTA_PRECISION, max_clients: int, max_weight: int = 1
) -> Any:
    """A :class:`secagg.encoding.FixedPointEncoder` for model deltas (smallest safe ring).

    Raises OverflowRiskError/ConfigError from the encoder for impossible settings.
    """
    return FixedPointEncoder.for_precision(clip, precision, max_clients, max_weight=max_weight)


def relabel(result: Any, ids: Sequence[int]) -> Any:
    """The simulator numbers clients 0..n-1; map survivors, dropouts and byte
    counts back to centre ids (``ids[i]`` is client i's centre)."""
    return dataclasses.replace(
        result,
        survivors=[ids[i] for i in result.survivors],
        dropped=[ids[i] for i in result.dropped],
        bytes_up={ids[i]: b for i, b in result.bytes_up.items()},
        bytes_down={ids[i]: b for i, b in result.bytes_down.items()},
    )


@dataclass
class ProtocolAggregator:
    """Runs one round of ``protocol`` over the clients' deltas.

    ``protocol``: ``"plaintext"`` (the insecure baseline), ``"secagg"``
    (complete graph), ``"secagg+"`` (sparse graph of degree ``neighbors``),
    or an HE session: ``"paillier"``, ``"paillier-threshold"``, ``"ckks"``.
    ``plaintext=True`` runs this protocol's plaintext twin
    (``protocols.sim.run_plaintext``: same encoder, same stochastic rounding
    for the same seed, same dropout semantics). ``driver`` replaces the
    ``protocols.sim`` module (tests only). ``max_corrupt``: clients that may
    collude with the server; HE rounds always sign their key ceremony
    (:func:`security_options`).
    """

    protocol: str
    encoder: Any = None
    threshold: int | None = None
    neighbors: int | None = None
    active_security: bool = False
    driver: Any = None
    plaintext: bool = False
    max_corrupt: int | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {PROTOCOLS}", protocol=self.protocol)

    def _sim(self) -> Any:
        return sim if self.driver is None else self.driver

    def __call__(
        self,
        updates: Mapping[int, NDArray[np.float32]],
        weights: Mapping[int, int],
        *,
        dropouts: Mapping[int, str] | None = None,
        seed: int | None = None,
    ) -> Any:
        """Aggregate ``{centre id: delta}`` with weights ``{centre id: n_k}``.

        ``dropouts`` maps a centre id to the stage from which it sends nothing.
        Returns the AggregateResult with centre ids; raises AbortError when too
        few clients survive.
        """
        ids = sorted(updates)
        if sorted(weights) != ids:
            raise ConfigError("one weight per update", updates=ids, weights=sorted(weights))
        position = {cid: i for i, cid in enumerate(ids)}
        vectors = [np.asarray(updates[c]) for c in ids]
        sim = self._sim()
        plain = self.protocol == "plaintext" or self.plaintext
        encoder = self.encoder
        if encoder is None and not plain and self.protocol in HE_PROTOCOLS and self.max_corrupt is not None:
            encoder = sim.default_encoder(vectors, max_weight=max(1, *(int(w) for w in weights.values())))
        kwargs: dict[str, Any] = dict(
            weights=[int(weights[c]) for c in ids],
            dropouts={position[c]: s for c, s in (dropouts or {}).items() if c in position} or None,
            neighbors=self.neighbors,
            seed=seed,
            encoder=encoder,
        )
        # (small SecAgg+ cohorts run the complete graph inside protocols.sim)
        if plain:
            result = sim.run_plaintext(
                vectors, threshold=self.threshold, active_security=self.active_security, **kwargs
            )
        else:
            dim = int(vectors[0].size) if vectors else 0
            options = security_options(
                self.protocol,
                len(ids),
                dim,
                encoder,
                threshold=self.threshold,
                active_security=self.active_security,
                max_corrupt=self.max_corrupt,
            )
            result = sim.run(self.protocol, vectors, **kwargs, **options)
        return relabel(result, ids)

    def plaintext_twin(self) -> "ProtocolAggregator":
        """The plaintext baseline of this protocol: same encoder, parameters and dropout semantics."""
        return dataclasses.replace(self, plaintext=True)
