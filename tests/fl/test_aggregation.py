"""fl.aggregation: the threat model reaches every protocol; HE rounds sign their key ceremony."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fl.aggregation import ProtocolAggregator, make_encoder, security_options
from secagg.errors import ConfigError, SecAggError

pytest.importorskip("protocols.sim")

from protocols import sim  # noqa: E402

N = 5


def deltas(n: int = N, dim: int = 6) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    rng = np.random.default_rng(3)
    ids = [10 + 3 * i for i in range(n)]  # centre ids are not 0..n-1
    return ({c: rng.uniform(-0.5, 0.5, dim).astype(np.float32) for c in ids}, {c: 1 + i for i, c in enumerate(ids)})


class SpySim:
    """protocols.sim, recording the keywords of every run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def run(self, protocol: str, vectors: Any, **kwargs: Any) -> Any:
        self.calls.append((protocol, kwargs))
        return sim.run(protocol, vectors, **kwargs)

    def default_encoder(self, *args: Any, **kwargs: Any) -> Any:
        return sim.default_encoder(*args, **kwargs)


def weighted_mean(updates: dict[int, np.ndarray], weights: dict[int, int]) -> np.ndarray:
    w = np.array([weights[c] for c in sorted(updates)], dtype=np.float64)
    return np.tensordot(w, np.stack([updates[c] for c in sorted(updates)]).astype(np.float64), 1) / w.sum()


def test_he_round_gives_every_client_an_identity_and_signs_the_ceremony() -> None:
    updates, weights = deltas()
    spy = SpySim()
    encoder = make_encoder(max_clients=N, max_weight=N)
    result = ProtocolAggregator("paillier", encoder, driver=spy)(updates, weights)
    ((protocol, kwargs),) = spy.calls
    assert protocol == "paillier" and kwargs["active_security"] is True  # sim: one identity per client, signed keys
    assert result.survivors == sorted(updates)
    assert np.max(np.abs(result.aggregate - weighted_mean(updates, weights))) <= 2 * encoder.precision


def test_secagg_defaults_are_unchanged() -> None:
    updates, weights = deltas()
    spy = SpySim()
    result = ProtocolAggregator("secagg", make_encoder(max_clients=N, max_weight=N), driver=spy)(updates, weights)
    ((_, kwargs),) = spy.calls
    assert kwargs["active_security"] is False and kwargs["max_corrupt"] is None and kwargs["threshold"] is None
    assert result.survivors == sorted(updates)


@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_shared_key_he_is_refused_when_the_user_names_colluders(scheme: str) -> None:
    updates, weights = deltas()
    aggregator = ProtocolAggregator(scheme, make_encoder(max_clients=N, max_weight=N), max_corrupt=1)
    with pytest.raises(ConfigError, match="max_corrupt"):
        aggregator(updates, weights)


def test_threshold_paillier_threshold_follows_max_corrupt() -> None:
    encoder = make_encoder(max_clients=N)
    options = security_options("paillier-threshold", N, 4, encoder, max_corrupt=3)
    assert options == {"threshold": 4, "active_security": True, "max_corrupt": 3}
    with pytest.raises(SecAggError):
        security_options("paillier-threshold", N, 4, encoder, threshold=3, max_corrupt=3)
    assert security_options("ckks", N, 4, encoder) == {"threshold": None, "active_security": True}


def test_secagg_threshold_is_checked_against_max_corrupt() -> None:
    updates, weights = deltas()
    encoder = make_encoder(max_clients=N, max_weight=N)
    with pytest.raises(ConfigError, match="max_corrupt"):
        ProtocolAggregator("secagg", encoder, threshold=3, max_corrupt=3)(updates, weights)
    result = ProtocolAggregator("secagg", encoder, threshold=5, max_corrupt=3)(updates, weights)
    assert result.survivors == sorted(updates)


def test_plaintext_twin_ignores_the_threat_model() -> None:
    updates, weights = deltas()
    aggregator = ProtocolAggregator("paillier", make_encoder(max_clients=N, max_weight=N), max_corrupt=1)
    result = aggregator.plaintext_twin()(updates, weights)
    assert result.survivors == sorted(updates)
