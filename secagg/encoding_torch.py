"""Device-side twin of :meth:`secagg.encoding.FixedPointEncoder.encode` for torch tensors.

:func:`encode_torch` clips, scales, stochastically rounds and maps a 1-D float
(float16/bfloat16/float32/float64) or integer tensor to ``Z_{2^bits}`` on the
tensor's own device, ``chunk`` values at a time, and returns an int64 tensor on
that device: ``d`` ring elements in ``[0, 2^bits)`` followed by the weight.

Arithmetic is the numpy path's, step for step: widen to float64, multiply by
``fl(scale * weight)``, clamp to ``+-fl(clip * scale * weight)`` (clipped before
rounding, so the overflow proof in :mod:`secagg.encoding` holds unchanged),
then ``floor + (u < frac)``. For values on the quantisation grid (``frac == 0``)
the output words equal the numpy path's bit for bit; otherwise only the coin
flips differ. For ``norm="l2"`` the norm is summed by torch, whose float64
reduction order may differ from numpy's by an ulp, so the rescale factor can
differ in the last bit; the clamp keeps ``|v| <= M`` regardless.

Rounding randomness (security note): the coin flips come from a
``torch.Generator`` seeded with 64 bits from :mod:`secrets` (or the caller's
``generator``, for tests). Torch generators are not cryptographic; this is
acceptable only because the flips are rounding dither, exactly like the numpy
path's CSPRNG-seeded PCG64. Keys, masks and DP noise never come from here.

Limits: ``bits <= 63`` (the int64 result must hold every ring element);
``bits = 64`` raises :class:`ConfigError` (use the numpy path).
"""

from __future__ import annotations

import math
import secrets
import sys
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from .errors import ConfigError, require_extra

if TYPE_CHECKING:
    import torch

    from .encoding import FixedPointEncoder

__all__ = ["encode_torch", "is_tensor", "to_numpy", "DEFAULT_CHUNK", "MAX_TORCH_BITS"]

DEFAULT_CHUNK = 1 << 20  # values per step: ~8 MiB of float64 temporaries, bounded memory
MAX_TORCH_BITS = 63  # results are int64 tensors holding values in [0, 2**bits)
_SEED_BITS = 64  # torch.Generator.manual_seed takes a 64-bit seed
_TINY = float(np.finfo(np.float64).tiny)  # an L2 factor below it would be subnormal: rescale via the peak


def is_tensor(value: object) -> TypeGuard["torch.Tensor"]:
    """True for a torch tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_numpy(value: object) -> Any:
    """``value`` as a numpy array: array-likes through ``np.asarray``; a torch
    tensor detached and copied to the CPU, its half-precision floats (float16,
    bfloat16, float8: numpy has no bfloat16) widened exactly to float32.

    Raises :class:`ConfigError` (fields ``type``, ``dtype``) for a value numpy
    cannot turn into an array (a ragged list, an exotic tensor dtype). The
    result is not validated further: callers check shape and dtype kind.
    """
    try:
        if is_tensor(value):
            torch = sys.modules["torch"]
            tensor = value.detach()
            if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
                tensor = tensor.to(torch.float32)
            return tensor.cpu().numpy()
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot read this value as a real array: {exc}",
            type=type(value).__name__,
            dtype=str(getattr(value, "dtype", None)),
        ) from None


def _check_tensor(torch: Any, x: Any, chunk: int) -> None:
    if x.ndim != 1 or x.is_complex() or x.dtype == torch.bool:
        raise ConfigError("x must be a 1-D real tensor", shape=tuple(x.shape), dtype=str(x.dtype))
    if not x.is_floating_point():
        return
    bad = 0
    for start in range(0, x.numel(), chunk):
        bad += int((~torch.isfinite(x[start : start + chunk])).sum())
    if bad:
        raise ConfigError("x contains NaN or infinity", bad=bad)


def _l2_factor(torch: Any, x: Any, clip: float, chunk: int) -> tuple[float | None, float] | None:
    """How to rescale x to L2 norm ``clip`` (overflow-safe, chunked), as the numpy path's
    ``_l2_factor``: None if it is not longer, else ``(peak, factor)``: ``x * factor``
    when ``peak`` is None, ``x / peak * factor`` when ``peak * ||x / peak||`` overflows
    or ``clip / ||x||`` would be subnormal."""
    peak = 0.0
    for start in range(0, x.numel(), chunk):
        part = x[start : start + chunk].to(torch.float64)
        if part.numel():
            peak = max(peak, float(part.abs().max()))
    if peak == 0.0:
        return None
    total = 0.0
    for start in range(0, x.numel(), chunk):
        part = x[start : start + chunk].to(torch.float64) / peak  # entries in [-1, 1]: no overflow
        total += float(torch.dot(part, part))
    unit_norm = total**0.5
    norm = peak * unit_norm
    if not norm > clip:
        return None
    if math.isfinite(norm) and clip / norm >= _TINY:
        return None, clip / norm
    return peak, clip / unit_norm


def encode_torch(
    encoder: FixedPointEncoder,
    x: Any,
    *,
    weight: int = 1,
    generator: Any = None,
    chunk: int = DEFAULT_CHUNK,
) -> Any:
    """Encode tensor ``x`` with ``weight`` on ``x.device``; int64 tensor of length ``d + 1``.

    Sets ``encoder.last_clipped`` as the numpy path does. Raises
    :class:`ConfigError` for a non-1-D or complex/bool tensor, NaN/inf, a
    weight that is not an integer in ``[0, max_weight]``, ``bits > 63`` or a
    non-positive ``chunk``; :class:`MissingExtraError` without torch.
    """
    torch = require_extra("torch", "fl")
    if not is_tensor(x):
        raise ConfigError("encode_torch needs a torch tensor", type=type(x).__name__)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError("chunk must be a positive integer", chunk=chunk)
    bits = encoder.bits
    if bits > MAX_TORCH_BITS:
        raise ConfigError("the torch encoding path supports bits <= 63", bits=bits)
    weight = encoder._check_weight(weight)
    x = x.detach()
    _check_tensor(torch, x, chunk)
    device = x.device
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(secrets.randbits(_SEED_BITS))
    k = encoder.scale * float(weight)
    clip = encoder.clip
    rescale: tuple[float | None, float] | None = None
    if encoder.norm == "linf":
        clipped = 0
        for start in range(0, x.numel(), chunk):
            part = x[start : start + chunk].to(torch.float64)
            clipped += int((part > clip).sum()) + int((part < -clip).sum())
        encoder.last_clipped = clipped
    else:
        rescale = _l2_factor(torch, x, clip, chunk)
        encoder.last_clipped = 0 if rescale is None else 1
    ring = (1 << bits) - 1
    d = x.numel()
    out = torch.empty(d + 1, dtype=torch.int64, device=device)
    for start in range(0, d, chunk):
        part = x[start : start + chunk].to(torch.float64)
        if rescale is None:
            scaled = part * k  # +-inf for x near the float max: clamped next (L-inf; L2 rescaled it)
            if encoder.norm == "linf":
                # Clamp unconditionally: the overflow proof must not rest on the count.
                scaled.clamp_(-clip * k, clip * k)
        else:
            peak, factor = rescale
            unit = part if peak is None else part / peak
            scaled = (unit * factor).clamp_(-clip, clip).mul_(k)
        floor = torch.floor(scaled)
        frac = scaled.sub_(floor)
        coins = torch.rand(frac.shape, generator=generator, dtype=torch.float64, device=device)
        floor.add_((coins < frac).to(torch.float64))  # E[q] = floor + frac = v (unbiased)
        # |q| <= M < 2**(bits-1): exact in float64 and int64; & maps to two's complement.
        out[start : start + part.numel()] = floor.to(torch.int64).bitwise_and_(ring)
    out[d] = weight
    return out
