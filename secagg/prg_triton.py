"""ChaCha20 keystream as one Triton kernel, for CUDA devices.

The words are exactly :func:`secagg.prg.keystream`'s (RFC 8439 ChaCha20): word
``16*i + j`` of the output is word ``j`` of block ``counter + i``. The tests
check them bit for bit against ``cryptography``'s ChaCha20 through that
function, on the device.

Why a hand-written kernel: torch has no ``uint32`` arithmetic, so the torch
block function (:mod:`secagg.prg_torch`) works on ``int32`` bit patterns and
emulates each logical right shift with an arithmetic shift and a mask. Triton
has ``uint32``: additions wrap modulo ``2**32``, right shifts are logical, and a
rotation is ``(x << n) | (x >> (32 - n))``, which the compiler may fuse into one
funnel shift. Each
program keeps ``BLOCK`` blocks' states in registers for all 20 rounds and
writes only the keystream.

The key, counter and nonce reach the kernel as a 12-word device tensor, never
as scalar arguments: Triton specialises integer arguments on their values
(equal to 1, divisible by 16), which would compile a new kernel for some keys.

Triton ships with CUDA builds of torch; :mod:`secagg.prg_torch` imports this
module only for a CUDA device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import require_extra

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of torch ship no Triton
    triton = None

__all__ = ["chacha20_blocks_triton", "triton_available"]

# ChaCha20 blocks per program, and warps. On one NVIDIA H200 every setting from 64
# blocks on 2 warps to 1024 on 8 ran at 353-374 GB/s (bench/gpu.py, 1 GiB requests).
_BLOCK = 256
_NUM_WARPS = 4
_WORDS_PER_BLOCK = 16


def triton_available() -> bool:
    """True when Triton imports (CUDA builds of torch ship it; CPU builds do not)."""
    return triton is not None


# The kernels carry no type annotations: Triton compiles their source and resolves
# every name in it, annotations included, as a kernel global.
if triton is not None:

    @triton.jit
    def _rotl(x, n: tl.constexpr):
        return (x << n) | (x >> (32 - n))

    @triton.jit
    def _quarter_round(a, b, c, d):
        a = a + b
        d = _rotl(d ^ a, 16)
        c = c + d
        b = _rotl(b ^ c, 12)
        a = a + b
        d = _rotl(d ^ a, 8)
        c = c + d
        b = _rotl(b ^ c, 7)
        return a, b, c, d

    @triton.jit
    def _blocks(out_ptr, params_ptr, n_blocks, BLOCK: tl.constexpr):
        idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        live = idx < n_blocks
        zero = tl.zeros([BLOCK], dtype=tl.uint32)
        # params: key words 0..7, counter, nonce words 0..2 (int32 bit patterns).
        k0 = tl.load(params_ptr + 0).to(tl.uint32, bitcast=True)
        k1 = tl.load(params_ptr + 1).to(tl.uint32, bitcast=True)
        k2 = tl.load(params_ptr + 2).to(tl.uint32, bitcast=True)
        k3 = tl.load(params_ptr + 3).to(tl.uint32, bitcast=True)
        k4 = tl.load(params_ptr + 4).to(tl.uint32, bitcast=True)
        k5 = tl.load(params_ptr + 5).to(tl.uint32, bitcast=True)
        k6 = tl.load(params_ptr + 6).to(tl.uint32, bitcast=True)
        k7 = tl.load(params_ptr + 7).to(tl.uint32, bitcast=True)
        ctr = tl.load(params_ptr + 8).to(tl.uint32, bitcast=True) + idx.to(tl.uint32)
        n0 = tl.load(params_ptr + 9).to(tl.uint32, bitcast=True)
        n1 = tl.load(params_ptr + 10).to(tl.uint32, bitcast=True)
        n2 = tl.load(params_ptr + 11).to(tl.uint32, bitcast=True)
        # "expand 32-byte k" (RFC 8439, section 2.3)
        x0 = zero + 0x61707865
        x1 = zero + 0x3320646E
        x2 = zero + 0x79622D32
        x3 = zero + 0x6B206574
        x4, x5, x6, x7 = zero + k0, zero + k1, zero + k2, zero + k3
        x8, x9, x10, x11 = zero + k4, zero + k5, zero + k6, zero + k7
        x12, x13, x14, x15 = ctr, zero + n0, zero + n1, zero + n2
        for _ in tl.static_range(10):  # 10 double rounds = ChaCha20
            x0, x4, x8, x12 = _quarter_round(x0, x4, x8, x12)
            x1, x5, x9, x13 = _quarter_round(x1, x5, x9, x13)
            x2, x6, x10, x14 = _quarter_round(x2, x6, x10, x14)
            x3, x7, x11, x15 = _quarter_round(x3, x7, x11, x15)
            x0, x5, x10, x15 = _quarter_round(x0, x5, x10, x15)
            x1, x6, x11, x12 = _quarter_round(x1, x6, x11, x12)
            x2, x7, x8, x13 = _quarter_round(x2, x7, x8, x13)
            x3, x4, x9, x14 = _quarter_round(x3, x4, x9, x14)
        base = out_ptr + idx * 16
        tl.store(base + 0, (x0 + 0x61707865).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 1, (x1 + 0x3320646E).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 2, (x2 + 0x79622D32).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 3, (x3 + 0x6B206574).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 4, (x4 + k0).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 5, (x5 + k1).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 6, (x6 + k2).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 7, (x7 + k3).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 8, (x8 + k4).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 9, (x9 + k5).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 10, (x10 + k6).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 11, (x11 + k7).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 12, (x12 + ctr).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 13, (x13 + n0).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 14, (x14 + n1).to(tl.int32, bitcast=True), mask=live)
        tl.store(base + 15, (x15 + n2).to(tl.int32, bitcast=True), mask=live)


def chacha20_blocks_triton(out: Any, key: bytes, nonce: bytes, counter: int, *, block: int = _BLOCK) -> Any:
    """Fill ``out``, a contiguous ``int32`` tensor of ``16 * nb`` words, with ChaCha20 blocks.

    Block ``i`` of ``out`` is the block at ``counter + i`` under ``key`` (32 bytes)
    and ``nonce`` (12 bytes), as ``int32`` bit patterns of the ``uint32`` words.
    The caller checks the arguments (lengths, and a counter that does not pass
    ``2**32 - 1``), as :func:`secagg.prg_torch.keystream_torch` does. Returns ``out``.
    """
    torch = require_extra("torch", "fl")
    if triton is None:
        require_extra("triton", "fl")
    words = np.concatenate(
        [
            np.frombuffer(bytes(key), "<u4"),
            np.array([counter], dtype=np.uint32),
            np.frombuffer(bytes(nonce), "<u4"),
        ]
    ).view(np.int32)
    params = torch.from_numpy(words.copy()).to(out.device)
    n_blocks = out.numel() // _WORDS_PER_BLOCK
    grid = (-(-n_blocks // block),)
    _blocks[grid](out, params, n_blocks, BLOCK=block, num_warps=_NUM_WARPS)
    return out
