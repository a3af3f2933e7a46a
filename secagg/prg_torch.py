"""Torch backend for the mask PRG: the words of :mod:`secagg.prg`, on CPU or CUDA.

The contract is :mod:`secagg.prg`'s module docstring, unchanged: RFC 8439
ChaCha20, HKDF-derived key, nonce ``PRG_NONCE``, counter 0, ``offset`` in
output values, ``uint32`` values for ``bits <= 32`` and little-endian pairs of
words for ``32 < bits <= 64``. A GPU client and a CPU client that expand the
same seed get the same values bit for bit, so their masks cancel.

Representation. torch has no ``uint32`` arithmetic (``add`` and shifts are not
implemented for it), so the block function runs on ``int32`` bit patterns:
``add`` wraps modulo ``2**32`` (two's complement, as ATen's vectorised CPU and
CUDA kernels compute it), left shifts drop high bits, and the logical right
shift of a rotation is an arithmetic shift followed by a mask. ``arith="int64"``
is the alternative that never overflows: values in ``[0, 2**32)`` held in
``int64`` and masked after each addition. It is about 2.5x slower on the CPU;
keep it for a device where the ``int32`` path has not been checked. Both are
tested bit for bit against :func:`secagg.prg.keystream`.

Vectorisation: the state of ``nb`` blocks is a ``(16, nb)`` tensor; the four
column (then diagonal) quarter-rounds run as one operation on ``(4, nb)`` rows,
the way SIMD ChaCha implementations do, so eager mode issues ~500 kernels per
call instead of ~2000.

Kernels (``kernel=``): ``"eager"`` (the row formulation above), ``"compiled"``
(a word-by-word formulation fused by ``torch.compile``) and ``"triton"``
(:mod:`secagg.prg_triton`, native ``uint32`` arithmetic, CUDA and
``arith="int32"`` only). The default is ``"triton"`` on CUDA when Triton
imports (``"compiled"`` otherwise) and ``"eager"`` on the CPU; the
``compile`` flag and the ``SECAGG_TORCH_COMPILE`` variable pick between eager
and compiled. On one NVIDIA H200 the Triton kernel ran at 358 GB/s, the
compiled one at 104 GB/s and the eager one at 10 GB/s (``bench/gpu.py``); the
``gpu``-marked tests check every kernel bit for bit on CUDA. On the 2-core CPU
box inductor took 90-510 s to build the kernel (depending on load) and then
ran at 0.12-0.43 GB/s on one thread, against 0.06-0.19 GB/s eager and 1-3 GB/s
for ``cryptography``: not worth it there. If compiling fails, the eager kernel
runs and a
:class:`RuntimeWarning` says so.

torch is an optional extra (``fl``); it is imported on first use.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, require_extra
from .prg import KEY_BYTES, NONCE_BYTES, PRG_NONCE, WORDS_PER_BLOCK, derive_key

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "keystream_torch",
    "expand_torch",
    "to_numpy",
    "words_to_numpy",
    "ARITHS",
    "KERNELS",
]

KERNELS = ("eager", "compiled", "triton")
MAX_COUNTER = 2**32 - 1  # RFC 8439: 32-bit block counter that must not wrap (as secagg.prg)
ARITHS = ("int32", "int64")
_WORD_MASK = 0xFFFFFFFF
_SIGN_BIT = 0x80000000
_CHACHA_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_DOUBLE_ROUNDS = 10  # ChaCha20 = 20 rounds
# Blocks per kernel call. CPU: (4, 2**15) int32 rows are 512 KiB, which keeps the
# working set near L2 and measured fastest in eager mode (2**14..2**16 all within
# 10%). CUDA: 2**22 blocks (256 MiB of state) saturate an H100 per call.
_CPU_BLOCKS_PER_CALL = 1 << 15
_CUDA_BLOCKS_PER_CALL = 1 << 22
_COMPILE_ENV = "SECAGG_TORCH_COMPILE"  # "1"/"0" overrides the per-device default

_compiled: dict[str, Any] = {}


def _torch() -> Any:
    return require_extra("torch", "fl")


# ---------------------------------------------------------------------------
# Block function
# ---------------------------------------------------------------------------


def _rotl_int32_(v: "torch.Tensor", n: int) -> None:
    # Logical right shift emulated: arithmetic shift, then keep the low n bits.
    high = v >> (32 - n)
    high.bitwise_and_((1 << n) - 1)
    v.bitwise_left_shift_(n)
    v.bitwise_or_(high)


def _rotl_int64_(v: "torch.Tensor", n: int) -> None:
    # v holds [0, 2**32): v << n fits in 64 bits; the bits pushed past 32 come back down.
    v.bitwise_left_shift_(n)
    v.bitwise_or_(v >> 32)
    v.bitwise_and_(_WORD_MASK)


def _quarter_rounds(a: Any, b: Any, c: Any, d: Any, wide: bool) -> None:
    """Four ChaCha quarter-rounds at once, on (4, nb) row tensors, in place."""
    rotl = _rotl_int64_ if wide else _rotl_int32_
    for r1, r2 in ((16, 12), (8, 7)):  # a += b; d ^= a; d <<<= r1; c += d; b ^= c; b <<<= r2
        a.add_(b)
        if wide:
            a.bitwise_and_(_WORD_MASK)
        d.bitwise_xor_(a)
        rotl(d, r1)
        c.add_(d)
        if wide:
            c.bitwise_and_(_WORD_MASK)
        b.bitwise_xor_(c)
        rotl(b, r2)


def _block_rows(state: "torch.Tensor") -> "torch.Tensor":
    """Eager ChaCha20 block function: (16, nb) input state -> (nb, 16) keystream words (a view)."""
    torch = _torch()
    wide = state.dtype == torch.int64
    a, b, c, d = (state[4 * i : 4 * i + 4].clone() for i in range(4))
    for _ in range(_DOUBLE_ROUNDS):
        _quarter_rounds(a, b, c, d, wide)  # column round
        # Diagonal round: rotate rows of b, c, d so the diagonals line up as columns.
        b, c, d = b.roll(-1, 0), c.roll(-2, 0), d.roll(-3, 0)
        _quarter_rounds(a, b, c, d, wide)
        b, c, d = b.roll(1, 0), c.roll(2, 0), d.roll(3, 0)
    out = torch.cat([a, b, c, d]).add_(state)
    if wide:
        out.bitwise_and_(_WORD_MASK)
    return out.T


def _make_block_words(torch: Any) -> Any:
    """Word-by-word ChaCha20 block function, for torch.compile to fuse into one kernel.

    Built by a factory so that the traced function reaches torch through a
    closure, not through the lazy import (which dynamo would not trace).
    """

    def block_words(state: "torch.Tensor") -> "torch.Tensor":
        """(16, nb) input state -> (nb, 16) keystream words."""
        wide = state.dtype == torch.int64

        def rotl(v: Any, n: int) -> Any:
            if wide:
                t = v << n
                return (t | (t >> 32)) & _WORD_MASK
            return (v << n) | ((v >> (32 - n)) & ((1 << n) - 1))

        def add(x: Any, y: Any) -> Any:
            return (x + y) & _WORD_MASK if wide else x + y

        s = [state[i] for i in range(16)]

        def qr(a: int, b: int, c: int, d: int) -> None:
            s[a] = add(s[a], s[b])
            s[d] = rotl(s[d] ^ s[a], 16)
            s[c] = add(s[c], s[d])
            s[b] = rotl(s[b] ^ s[c], 12)
            s[a] = add(s[a], s[b])
            s[d] = rotl(s[d] ^ s[a], 8)
            s[c] = add(s[c], s[d])
            s[b] = rotl(s[b] ^ s[c], 7)

        for _ in range(_DOUBLE_ROUNDS):
            qr(0, 4, 8, 12)
            qr(1, 5, 9, 13)
            qr(2, 6, 10, 14)
            qr(3, 7, 11, 15)
            qr(0, 5, 10, 15)
            qr(1, 6, 11, 12)
            qr(2, 7, 8, 13)
            qr(3, 4, 9, 14)
        return torch.stack([add(s[i], state[i]) for i in range(16)], dim=1)

    return block_words


def _choose_kernel(device: Any, arith: str, compile: bool | None, kernel: str | None) -> str:
    """The kernel name for these arguments (module docstring); ConfigError for a bad choice."""
    if kernel is None:
        env = os.environ.get(_COMPILE_ENV)
        if compile is None and env in ("0", "1"):
            compile = env == "1"
        if compile is None and device.type == "cuda":
            return "triton" if arith == "int32" and _prg_triton().triton_available() else "compiled"
        return "compiled" if compile else "eager"
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {KERNELS}", kernel=kernel)
    if compile is not None:
        raise ConfigError("give kernel or compile, not both", kernel=kernel, compile=compile)
    if kernel == "triton" and (device.type != "cuda" or arith != "int32"):
        raise ConfigError("the Triton kernel runs on CUDA devices with arith='int32'", device=str(device), arith=arith)
    return kernel


def _prg_triton() -> Any:
    # Imported on demand: it imports Triton, which only CUDA builds of torch ship.
    from . import prg_triton

    return prg_triton


def _kernel(device: "torch.device", compile: bool | None) -> Any:
    if not compile:
        return _block_rows
    fn = _compiled.get(device.type)
    if fn is None:
        torch = _torch()
        fn = torch.compile(_make_block_words(torch), dynamic=None)
        _compiled[device.type] = fn
    return fn


# ---------------------------------------------------------------------------
# Keystream
# ---------------------------------------------------------------------------


def _as_word_pattern(value: int) -> int:
    """uint32 -> the int32 with the same bits."""
    return value - (1 << 32) if value & _SIGN_BIT else value


def _check_args(key: bytes, nonce: bytes, counter: int, n_words: int) -> tuple[int, int]:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise ConfigError(f"ChaCha20 key must be {KEY_BYTES} bytes", got=_length(key))
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != NONCE_BYTES:
        raise ConfigError(f"ChaCha20 nonce must be {NONCE_BYTES} bytes", got=_length(nonce))
    counter, n_words = int(counter), int(n_words)
    if not 0 <= counter <= MAX_COUNTER:
        raise ConfigError("counter must be in [0, 2**32)", counter=counter)
    if n_words < 0:
        raise ConfigError("n_words must be non-negative", n_words=n_words)
    n_blocks = -(-n_words // WORDS_PER_BLOCK)
    if counter + max(n_blocks, 1) - 1 > MAX_COUNTER:
        raise ConfigError("ChaCha20 block counter would pass 2**32 - 1", counter=counter, blocks=n_blocks)
    return counter, n_words


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, (bytes, bytearray)) else None


def _initial_state(key: bytes, nonce: bytes, counter: int, n_blocks: int, dtype: Any, device: Any) -> Any:
    torch = _torch()
    fixed = list(_CHACHA_CONSTANTS) + [int(w) for w in np.frombuffer(bytes(key), "<u4")]
    tail = [int(w) for w in np.frombuffer(bytes(nonce), "<u4")]
    if dtype == torch.int32:
        fixed = [_as_word_pattern(w) for w in fixed]
        tail = [_as_word_pattern(w) for w in tail]
    state = torch.empty((16, n_blocks), dtype=dtype, device=device)
    state[:12] = torch.tensor(fixed, dtype=dtype, device=device)[:, None]
    counters = torch.arange(counter, counter + n_blocks, dtype=torch.int64, device=device)
    if dtype == torch.int32:
        counters = (counters - ((counters & _SIGN_BIT) << 1)).to(torch.int32)
    state[12] = counters
    state[13:] = torch.tensor(tail, dtype=dtype, device=device)[:, None]
    return state


def keystream_torch(
    key: bytes,
    nonce: bytes,
    counter: int,
    n_words: int,
    *,
    device: "str | torch.device" = "cpu",
    dtype: "torch.dtype | None" = None,
    arith: str = "int32",
    compile: bool | None = None,
    kernel: str | None = None,
) -> "torch.Tensor":
    """Return ``n_words`` RFC 8439 ChaCha20 keystream words as a torch tensor on ``device``.

    Word ``16*i + j`` is word ``j`` of block ``counter + i``, exactly as
    :func:`secagg.prg.keystream`. ``dtype=torch.int64`` (the default) holds the
    ``uint32`` values themselves; ``dtype=torch.int32`` holds their bit
    patterns (half the memory; :func:`words_to_numpy` views them as ``uint32``).
    ``arith`` picks the kernel arithmetic and ``kernel`` the kernel (module
    docstring); ``compile`` is the older switch between eager and compiled.

    Raises :class:`ConfigError` for a bad key or nonce length, a negative size,
    a counter outside ``[0, 2**32)`` or a request that would run the block
    counter past ``2**32 - 1`` (the same cases as :func:`secagg.prg.keystream`),
    and for a kernel that cannot run with these arguments.
    """
    torch = _torch()
    counter, n_words = _check_args(key, nonce, counter, n_words)
    if arith not in ARITHS:
        raise ConfigError(f"arith must be one of {ARITHS}", arith=arith)
    dtype = torch.int64 if dtype is None else dtype
    if dtype not in (torch.int32, torch.int64):
        raise ConfigError("dtype must be torch.int32 or torch.int64", dtype=str(dtype))
    device = torch.device(device)
    chosen = _choose_kernel(device, arith, compile, kernel)
    words = _keystream_words(bytes(key), bytes(nonce), counter, n_words, device, arith, chosen)
    if dtype == torch.int64:
        return words.to(torch.int64).bitwise_and_(_WORD_MASK) if words.dtype == torch.int32 else words
    if words.dtype == torch.int64:
        return (words - ((words & _SIGN_BIT) << 1)).to(torch.int32)
    return words


def _keystream_words(key: bytes, nonce: bytes, counter: int, n_words: int, device: Any, arith: str, chosen: str) -> Any:
    """Checked arguments -> flat words tensor, int32 patterns or int64 values per ``arith``."""
    torch = _torch()
    dtype = torch.int32 if arith == "int32" else torch.int64
    n_blocks = -(-n_words // WORDS_PER_BLOCK)
    out = torch.empty((n_blocks, WORDS_PER_BLOCK), dtype=dtype, device=device)
    if n_blocks == 0:
        return out.reshape(-1)
    if chosen == "triton":
        flat = out.reshape(-1)
        return _prg_triton().chacha20_blocks_triton(flat, key, nonce, counter)[:n_words]
    step = _CUDA_BLOCKS_PER_CALL if device.type == "cuda" else _CPU_BLOCKS_PER_CALL
    kernel = _kernel(device, chosen == "compiled")
    for start in range(0, n_blocks, step):
        nb = min(step, n_blocks - start)
        state = _initial_state(key, nonce, counter + start, nb, dtype, device)
        try:
            block = kernel(state)
        except Exception as exc:  # compiled kernel failed to build: fall back, loudly
            if kernel is _block_rows:
                raise
            warnings.warn(f"torch.compile ChaCha20 failed ({exc!r}); using eager kernel", RuntimeWarning)
            _compiled[device.type] = kernel = _block_rows
            block = kernel(state)
        out[start : start + nb] = block
    return out.reshape(-1)[:n_words]


# ---------------------------------------------------------------------------
# expand and conversion to numpy
# ---------------------------------------------------------------------------


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise ConfigError("bits must be an integer in [1, 64]", bits=bits)
    return int(bits)


def expand_torch(
    seed: bytes,
    length: int,
    bits: int = 32,
    *,
    offset: int = 0,
    device: "str | torch.device" = "cpu",
    arith: str = "int32",
    compile: bool | None = None,
    kernel: str | None = None,
) -> "torch.Tensor":
    """Torch twin of :func:`secagg.prg.expand`: ``length`` values in ``[0, 2**bits)``.

    Returns an ``int64`` tensor on ``device``. For ``bits <= 63`` it holds the
    values; for ``bits == 64`` it holds the two's-complement bit pattern of each
    ``uint64`` value. ``to_numpy(t, bits)`` is then bit-identical to
    ``secagg.prg.expand(seed, length, bits, offset=offset)``.
    Raises :class:`ConfigError` exactly where ``expand`` does.
    """
    _torch()  # a missing torch fails here, before any work
    bits = _check_bits(bits)
    key = derive_key(seed)
    length, offset = int(length), int(offset)
    if length < 0 or offset < 0:
        raise ConfigError("length and offset must be non-negative", length=length, offset=offset)
    per_value = 1 if bits <= 32 else 2
    block, skip = divmod(offset * per_value, WORDS_PER_BLOCK)
    words = keystream_torch(
        key, PRG_NONCE, block, length * per_value + skip, device=device, arith=arith, compile=compile, kernel=kernel
    )[skip:]
    if bits <= 32:
        return words.bitwise_and_((1 << bits) - 1) if bits < 32 else words
    pairs = words.reshape(length, 2)
    low, high = pairs[:, 0], pairs[:, 1]
    if bits < 64:
        high = high & ((1 << (bits - 32)) - 1)
    else:
        high = high - ((high & _SIGN_BIT) << 1)  # signed high word: the product cannot overflow
    return high * (1 << 32) + low


def to_numpy(values: "torch.Tensor", bits: int) -> NDArray[np.unsignedinteger]:
    """``int64`` tensor from :func:`expand_torch` -> numpy ``uint32``/``uint64`` array.

    ``uint32`` for ``bits <= 32``, ``uint64`` otherwise, matching
    :func:`secagg.prg.expand`. Values must already lie in ``[0, 2**bits)``
    (or be the bit pattern, for ``bits == 64``).
    """
    torch = _torch()
    bits = _check_bits(bits)
    if values.dtype != torch.int64:
        raise ConfigError("to_numpy expects an int64 tensor", dtype=str(values.dtype))
    host = values.detach().to("cpu").contiguous().numpy()
    if bits <= 32:
        return host.astype(np.uint32)
    return host.view(np.uint64).copy()


def words_to_numpy(words: "torch.Tensor") -> NDArray[np.uint32]:
    """int32 bit patterns (``keystream_torch(..., dtype=torch.int32)``) -> numpy ``uint32``."""
    torch = _torch()
    if words.dtype != torch.int32:
        raise ConfigError("words_to_numpy expects an int32 tensor", dtype=str(words.dtype))
    return words.detach().to("cpu").contiguous().numpy().view(np.uint32)
