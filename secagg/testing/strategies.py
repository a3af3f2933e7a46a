"""Public Hypothesis strategies for secagg primitives.

Each function returns a strategy and composes like
``hypothesis.extra.numpy.arrays``::

    from hypothesis import given
    from secagg.testing.strategies import encoders, update_vectors, weights

    @given(enc=encoders(max_clients=8), x=update_vectors(dim=16, max_abs=2.0), w=weights(4))
    def test_roundtrip(enc, x, w): ...

Values are drawn from Hypothesis, never used as real key material: a seed from
:func:`seeds` is fine for a test and wrong for a deployment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.encoding import FixedPointEncoder, min_bits
from secagg.errors import require_extra

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:
    require_extra("hypothesis", "dev")  # raises MissingExtraError naming the extra
    raise

if TYPE_CHECKING:  # pragma: no cover - typing only
    from secagg.encoding import FixedPointEncoder

__all__ = ["update_vectors", "weights", "seeds", "encoders", "shamir_params"]


def update_vectors(
    dim: int | st.SearchStrategy[int] = st.integers(1, 64),
    max_abs: float = 10.0,
    dtype: Any = np.float32,
) -> st.SearchStrategy[np.ndarray]:
    """Finite 1-D float vectors (model updates) with entries in ``[-max_abs, max_abs]``.

    ``dim`` is a fixed length or a strategy for it; ``dtype`` is a numpy float
    dtype. ``max_abs`` may exceed an encoder's clip, to exercise clipping.

    Example: ``update_vectors(dim=10, max_abs=1.0, dtype=np.float64)``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a float dtype, got {dtype}")
    bound = float(np.asarray(max_abs, dtype=dtype))  # representable in dtype
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=8 * dtype.itemsize)
    return hnp.arrays(dtype, dim, elements=elements)


def weights(max_weight: int = 1) -> st.SearchStrategy[int]:
    """Client weights (numbers of examples) in ``[0, max_weight]``.

    Example: ``weights(max_weight=500)``.
    """
    if max_weight < 0:
        raise ValueError("max_weight must be non-negative")
    return st.integers(0, max_weight)


def seeds(sizes: tuple[int, ...] = (16, 32)) -> st.SearchStrategy[bytes]:
    """Seeds of the given byte sizes (default 16 or 32, what ``prg`` and ``kex`` accept).

    Example: ``seeds(sizes=(32,))``.
    """
    return st.sampled_from(sizes).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@st.composite
def encoders(
    draw: st.DrawFn,
    max_clients: int | st.SearchStrategy[int] = st.integers(1, 1000),
    clip: float | st.SearchStrategy[float] = st.floats(1e-3, 1e3),
    bits: int | st.SearchStrategy[int] | None = None,
    max_weight: int | st.SearchStrategy[int] = st.integers(1, 1000),
    norm: str | st.SearchStrategy[str] = st.sampled_from(["linf", "l2"]),
) -> FixedPointEncoder:
    """Valid :class:`secagg.encoding.FixedPointEncoder` instances.

    Each argument is a fixed value or a strategy. With ``bits=None`` the width
    is drawn from ``[b_min, 64]``, where ``b_min`` is the smallest width whose
    worst case still allows scale >= 1 (so construction never raises).

    Example: ``encoders(max_clients=10, clip=1.0, bits=32)``.
    """

    def pick(value: Any) -> Any:
        return draw(value) if isinstance(value, st.SearchStrategy) else value

    n, c, w, nm = pick(max_clients), pick(clip), pick(max_weight), pick(norm)
    lowest = min_bits(n, c, max_weight=w)
    b = draw(st.integers(lowest, 64)) if bits is None else pick(bits)
    return FixedPointEncoder(c, b, n, max_weight=w, norm=nm)


@st.composite
def shamir_params(draw: st.DrawFn, max_n: int = 20) -> tuple[int, int]:
    """Pairs ``(n, t)`` with ``1 <= t <= n <= max_n``.

    Example: ``shamir_params(max_n=10)``.
    """
    n = draw(st.integers(1, max_n))
    t = draw(st.integers(1, n))
    return n, t
