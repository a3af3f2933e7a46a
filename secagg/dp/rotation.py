"""Randomised Hadamard rotation: spread a vector's mass evenly over its coordinates.

Kairouz, Liu, Steinke (ICML 2021, §4.2) rotate each client vector with
``R = H D / sqrt(p)`` before quantising: ``D`` is a diagonal of random signs
and ``H`` the ``p x p`` Walsh-Hadamard matrix, ``p = 2^ceil(log2 d)``. After
the rotation every coordinate is subgaussian with variance about
``||x||^2 / p``, so the modular range needed for the sum does not depend on
how "spiky" the input was. ``R`` is orthogonal: L2 norms (hence the clipping
bound and the DP sensitivity) are unchanged, and the server inverts it with
``R^T = D H / sqrt(p)``.

The sign seed is *public* and shared by all clients of a round (every client
must rotate the same way for the sum to be rotated as a whole); a new seed is
needed each round. Signs come from :func:`secagg.prg.expand` on a seed
domain-separated from mask seeds, so a rotation seed reused as a mask seed
(a caller bug) still gives unrelated bits.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..prg import SEED_SIZES, expand

__all__ = [
    "padded_dim",
    "fwht",
    "rotation_signs",
    "rotate",
    "unrotate",
    "ROTATION_DOMAIN",
]

ROTATION_DOMAIN = b"secagg/dp/rotation/v1"
# Largest padded dimension: 2^30 float64 coordinates is 8 GiB, beyond any update we ship.
_MAX_LOG2_DIM = 30


def padded_dim(dim: int) -> int:
    """Return ``2^ceil(log2 dim)``, the length the rotation works on. ``dim >= 1``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ConfigError("dim must be a positive integer", dim=dim)
    p = 1 << (int(dim) - 1).bit_length()
    if p > 1 << _MAX_LOG2_DIM:
        raise ConfigError("dimension too large for the Hadamard rotation", dim=dim, limit=1 << _MAX_LOG2_DIM)
    return p


def fwht(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """Unnormalised fast Walsh-Hadamard transform along the last axis (``H @ x``).

    The last axis must have power-of-two length. ``log2 p`` vectorised
    butterfly passes, no per-coordinate Python loop. ``H @ H = p * I``.
    """
    y = np.array(x, dtype=np.float64, copy=True)
    p = y.shape[-1]
    if p < 1 or p & (p - 1):
        raise ConfigError("fwht needs a power-of-two length", length=p)
    lead = y.shape[:-1]
    h = 1
    while h < p:
        # Pair element j with j + h inside each block of 2h: (a, b) -> (a + b, a - b).
        blocks = y.reshape(*lead, p // (2 * h), 2, h)
        a = blocks[..., 0, :].copy()
        b = blocks[..., 1, :]
        blocks[..., 0, :] += b
        np.subtract(a, b, out=blocks[..., 1, :])
        h *= 2
    return y


def rotation_signs(seed: bytes, dim: int) -> NDArray[np.float64]:
    """Return the ``padded_dim(dim)`` public random signs (+1.0 / -1.0) for ``seed``.

    ``seed`` is 16 or 32 public bytes, fresh per round. Raises :class:`ConfigError`
    for a bad seed or dimension.
    """
    if not isinstance(seed, (bytes, bytearray)) or len(seed) not in SEED_SIZES:
        raise ConfigError(
            "rotation seed must be 16 or 32 bytes", got=len(seed) if isinstance(seed, (bytes, bytearray)) else None
        )
    p = padded_dim(dim)
    separated = hashlib.sha256(ROTATION_DOMAIN + bytes(seed)).digest()
    bits = expand(separated, p, bits=1)
    return 1.0 - 2.0 * bits.astype(np.float64)


def rotate(x: NDArray[np.floating], seed: bytes) -> NDArray[np.float64]:
    """Zero-pad ``x`` (last axis, length d) to ``p = padded_dim(d)`` and apply ``H D / sqrt(p)``.

    Orthogonal: ``||rotate(x)|| == ||x||`` up to float rounding.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ConfigError("rotate needs a non-empty vector", shape=x.shape)
    d = x.shape[-1]
    p = padded_dim(d)
    padded = np.zeros(x.shape[:-1] + (p,), dtype=np.float64)
    padded[..., :d] = x
    padded *= rotation_signs(seed, d)
    out = fwht(padded)
    out *= 1.0 / np.sqrt(p)
    return out


def unrotate(y: NDArray[np.floating], seed: bytes, dim: int) -> NDArray[np.float64]:
    """Invert :func:`rotate`: apply ``D H / sqrt(p)`` and drop the padding, returning length ``dim``."""
    y = np.asarray(y, dtype=np.float64)
    p = padded_dim(dim)
    if y.ndim == 0 or y.shape[-1] != p:
        raise ConfigError("rotated vector has the wrong length", expected=p, got=y.shape[-1] if y.ndim else None)
    out = fwht(y)
    out *= rotation_signs(seed, dim) / np.sqrt(p)
    return out[..., :dim]
