"""In-process simulation driver: N clients and a server, with dropouts at any
stage, byte counts per message and time per party.

Every message crosses a byte boundary (``to_bytes`` then decode), so what is
counted is what a real transport would carry, and the codec is exercised.
This is simulation code: ``seed`` (when given) drives the stochastic rounding
of each client's encoder and the public graph seed, so two runs with the same
seed encode identically. Keys, seeds and masks always come from the OS CSPRNG.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from secagg import kex
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError, SecAggError

from .config import SecAggConfig, default_threshold
from .plaintext import PlaintextClient, PlaintextConfig, PlaintextServer
from .secagg import SecAggClient, SecAggServer
from .session import ABORTED, DONE, AggregateResult, Stage, as_stage

__all__ = ["run", "run_plaintext", "ProtocolSpec", "register_protocol", "protocols", "default_encoder"]

# Protocols that live in optional modules register themselves on import.
_LAZY_MODULES = {"paillier": "protocols.he", "paillier-threshold": "protocols.he", "ckks": "protocols.he"}


@dataclass(frozen=True)
class ProtocolSpec:
    """How the driver builds one protocol's config, server and clients.

    ``build_config(client_ids, dim, *, encoder, weighted, threshold, neighbors,
    min_survivors, active_security, identities, graph_seed)`` returns the
    protocol's config; ``server(config)`` and ``client(config, client_id,
    update, *, weight, identity, rng)`` build the sessions.
    """

    name: str
    build_config: Callable[..., Any]
    server: Callable[[Any], Any]
    client: Callable[..., Any]
    needs_identities: bool = False


_PROTOCOLS: dict[str, ProtocolSpec] = {}


def register_protocol(spec: ProtocolSpec, *, replace: bool = False) -> None:
    """Make ``spec.name`` available to :func:`run`.

    Raises :class:`ConfigError` if the name is taken, unless ``replace=True``.
    """
    if spec.name in _PROTOCOLS and not replace:
        raise ConfigError(
            f"protocol {spec.name!r} is already registered; pass replace=True to replace it", protocol=spec.name
        )
    _PROTOCOLS[spec.name] = spec


def protocols() -> list[str]:
    """Names :func:`run` accepts (registered ones, plus lazily loaded HE)."""
    return sorted(set(_PROTOCOLS) | set(_LAZY_MODULES))


def _spec(name: str) -> ProtocolSpec:
    if name not in _PROTOCOLS and name in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[name])
    if name not in _PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {protocols()}", protocol=name)
    return _PROTOCOLS[name]


def default_degree(n: int) -> int:
    """SecAgg+ degree when none is given: max(4, 2⌈log2 n⌉) (Bell et al.: O(log n));
    at or above n - 1 the driver uses the complete graph.
    Not derived from a threat model; use ``config.choose_params`` for that."""
    return max(4, 2 * int(np.ceil(np.log2(n))))


def _secagg_config(protocol: str) -> Callable[..., SecAggConfig]:
    def build(
        client_ids,
        dim,
        *,
        encoder,
        weighted,
        threshold,
        neighbors,
        min_survivors,
        active_security,
        identities,
        graph_seed,
        max_corrupt=None,
        **_: Any,
    ) -> SecAggConfig:
        n = len(client_ids)
        if protocol == "secagg":
            if neighbors is not None and neighbors < n - 1:
                raise ConfigError("'secagg' uses the complete graph; use 'secagg+' for a neighbour degree")
            neighbors = None
        else:
            if neighbors is None:
                neighbors = default_degree(n)
                if neighbors >= n - 1:
                    neighbors = None  # small cohorts: the default degree is the complete graph
        if threshold is None:
            threshold = default_threshold(n, neighbors, max_corrupt=max_corrupt, active=active_security)
        kwargs = dict(graph_seed=graph_seed) if graph_seed is not None else {}
        return SecAggConfig(
            tuple(client_ids),
            threshold,
            dim,
            encoder,
            neighbors=neighbors,
            min_survivors=min_survivors,
            active_security=active_security,
            identities=identities,
            weighted=weighted,
            max_corrupt=max_corrupt,
            **kwargs,
        )

    return build


def _plaintext_config(client_ids, dim, *, encoder, weighted, min_survivors, **_: Any) -> PlaintextConfig:
    return PlaintextConfig(tuple(client_ids), dim, encoder, min_survivors=min_survivors or 1, weighted=weighted)


register_protocol(ProtocolSpec("secagg", _secagg_config("secagg"), SecAggServer, SecAggClient, True))
register_protocol(ProtocolSpec("secagg+", _secagg_config("secagg+"), SecAggServer, SecAggClient, True))
register_protocol(ProtocolSpec("plaintext", _plaintext_config, PlaintextServer, PlaintextClient))


def default_encoder(updates: Sequence[NDArray], max_weight: int = 1) -> FixedPointEncoder:
    """A 32-bit encoder whose clip is the largest |value| in ``updates``.

    The simulator sees every input, so it can size the clip; a deployment must
    fix clip and precision in advance (``FixedPointEncoder.for_precision``).
    """
    clip = max((float(np.max(np.abs(u))) for u in updates if u.size), default=1.0) or 1.0
    return FixedPointEncoder(clip, 32, len(updates), max_weight=max_weight)


def run(
    protocol: str,
    updates: Sequence[NDArray[np.number]] | NDArray[np.number],
    *,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, Stage | str] | None = None,
    threshold: int | None = None,
    neighbors: int | None = None,
    seed: int | None = None,
    active_security: bool = False,
    encoder: Any = None,
    min_survivors: int | None = None,
    max_corrupt: int | None = None,
) -> AggregateResult:
    """Run one aggregation round in process and return its result.

    ``updates[i]`` is client i's 1-D update; ``weights[i]`` its n_k (the result
    is then the weighted mean, else the sum). ``dropouts`` maps a client index
    to the stage from which it sends nothing. Raises :class:`AbortError` when
    the round aborts (the error carries stage, needed, got and who dropped).
    """
    spec = _spec(protocol)
    # Keep the caller's float dtype (float32 updates stay float32: no 2x copy).
    if not len(updates) or any(not np.ndim(u) for u in updates):
        raise ConfigError("updates must be a non-empty sequence of 1-D vectors")
    vectors = [np.asarray(u).ravel() for u in updates]
    n, dim = len(vectors), vectors[0].size
    if any(v.size != dim for v in vectors):
        raise ConfigError("all updates must have the same length")
    if weights is not None and len(weights) != n:
        raise ConfigError("one weight per client", weights=len(weights), n=n)
    drop_at = {int(i): as_stage(s) for i, s in (dropouts or {}).items()}
    if any(not 0 <= i < n for i in drop_at):
        raise ConfigError("dropout indices must name clients", dropouts=sorted(drop_at))
    max_weight = max(int(w) for w in weights) if weights is not None else 1
    if encoder is None:
        encoder = default_encoder(vectors, max_weight=max(max_weight, 1))
    identities = None
    identity_keys: dict[int, Any] = {}
    if active_security:
        identity_keys = {i: kex.generate_identity() for i in range(n)}
        identities = {i: key.public_bytes for i, key in identity_keys.items()}
    graph_seed = hashlib.sha256(b"secagg/sim/graph|%d" % seed).digest() if seed is not None else None
    config = spec.build_config(
        tuple(range(n)),
        dim,
        encoder=encoder,
        weighted=weights is not None,
        threshold=threshold,
        neighbors=neighbors,
        min_survivors=min_survivors,
        active_security=active_security,
        identities=identities,
        graph_seed=graph_seed,
        max_corrupt=max_corrupt,
    )
    clients = {
        i: spec.client(
            config,
            i,
            vectors[i],
            weight=int(weights[i]) if weights is not None else 1,
            identity=identity_keys.get(i),
            rng=np.random.Generator(np.random.PCG64([seed, i])) if seed is not None else None,
        )
        for i in range(n)
    }
    return drive(spec.server(config), clients, drop_at)


def drive(server: Any, clients: Mapping[int, Any], drop_at: Mapping[int, Stage] | None = None) -> AggregateResult:
    """Move messages between ``server`` and ``clients`` until the round ends.

    Exposed for tests that plug in adversarial servers or clients. A client
    that raises a :class:`SecAggError` stops answering (an honest client aborts
    on misbehaviour); its error is kept in ``result.extras["client_errors"]``.
    A reply the server refuses with an error naming that client is dropped and
    kept in ``result.extras["rejected"]``; other server errors propagate.
    """
    drop_at = dict(drop_at or {})
    bytes_up: dict[int, int] = defaultdict(int)
    bytes_down: dict[int, int] = defaultdict(int)
    stage_bytes: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    stage_seconds: dict[str, dict[Any, float]] = defaultdict(lambda: defaultdict(float))
    client_errors: dict[int, SecAggError] = {}
    rejected: dict[int, SecAggError] = {}
    silent: set[int] = set()

    clock = time.perf_counter
    t0 = clock()
    outbox = server.start()
    first_stage = getattr(server.state, "value", "start")
    stage_seconds[first_stage]["server"] += clock() - t0
    while server.state not in (DONE, ABORTED):
        stage_name = server.state.value
        for cid, msg in outbox.items():
            data = msg.to_bytes()
            bytes_down[cid] += len(data)
            stage_bytes[stage_name]["down"] += len(data)
            stop = drop_at.get(cid)
            if cid in silent or (stop is not None and msg.header.stage.index >= stop.index):
                silent.add(cid)
                continue
            t0 = clock()
            try:
                reply = clients[cid].handle(data)
            except SecAggError as exc:
                client_errors[cid] = exc
                silent.add(cid)
                reply = None
            stage_seconds[stage_name][cid] += clock() - t0
            if reply is None:
                continue
            reply_bytes = reply.to_bytes()
            bytes_up[cid] += len(reply_bytes)
            stage_bytes[stage_name]["up"] += len(reply_bytes)
            stage_bytes[stage_name][cid] += len(reply_bytes)
            t0 = clock()
            try:
                server.receive(cid, reply_bytes)
            except SecAggError as exc:
                # A reply the server refuses, naming its sender, is dropped as a transport would
                # drop it; anything else (a caller bug, an unattributed error) ends the run.
                if exc.fields.get("client_id") != cid or exc.fields.get("local"):
                    raise
                rejected[cid] = exc
            stage_seconds[stage_name]["server"] += clock() - t0
            if server.state in (DONE, ABORTED):  # a refusal left too few to close the stage
                break
        t0 = clock()
        outbox = server.close_stage()
        stage_seconds[stage_name]["server"] += clock() - t0
    result: AggregateResult = server.result()  # raises AbortError when ABORTED
    result.bytes_up = dict(bytes_up)
    result.bytes_down = dict(bytes_down)
    result.stage_bytes = {k: dict(v) for k, v in stage_bytes.items()}
    result.stage_seconds = {k: dict(v) for k, v in stage_seconds.items()}
    result.extras["client_errors"] = client_errors
    result.extras["rejected"] = rejected
    return result


def run_plaintext(
    updates: Sequence[NDArray[np.number]] | NDArray[np.number],
    *,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, Stage | str] | None = None,
    threshold: int | None = None,
    neighbors: int | None = None,
    seed: int | None = None,
    active_security: bool = False,
    encoder: Any = None,
    min_survivors: int | None = None,
) -> AggregateResult:
    """The insecure baseline with identical encoding: same arguments as
    :func:`run` (graph arguments are ignored). A client that drops at or before
    MASKED_INPUT contributes nothing; one that drops later had already delivered
    its input and is summed, so the survivors match those of :func:`run`."""
    dropouts = {
        i: Stage.MASKED_INPUT for i, s in (dropouts or {}).items() if as_stage(s).index <= Stage.MASKED_INPUT.index
    }
    return run(
        "plaintext",
        updates,
        weights=weights,
        dropouts=dropouts,
        seed=seed,
        encoder=encoder,
        min_survivors=min_survivors,
    )
