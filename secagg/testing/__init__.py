"""Hypothesis strategies for secagg primitives, shipped for third parties.

Import from :mod:`secagg.testing.strategies` (or from here). This package needs
``hypothesis`` (the ``dev`` extra); nothing else in ``secagg`` imports it, so
the core library never depends on it. Protocol-level strategies (configs,
dropout schedules, adversarial servers) live in ``protocols.testing``.
"""

from __future__ import annotations

from .strategies import encoders, seeds, shamir_params, update_vectors, weights

__all__ = ["update_vectors", "weights", "seeds", "encoders", "shamir_params"]
