"""Streaming mask arithmetic shared by client masking and server unmasking.

A client sends ``y = x + PRG(b) + sum_v sign_v * PRG(s_uv)  (mod 2**bits)``
(Bonawitz et al. 2017, §4, "masked input" round), where ``b`` is its
self-mask seed and ``s_uv`` the pairwise seed it shares with neighbour ``v``,
``sign_v = +1`` if ``u < v`` and ``-1`` otherwise, so that pairwise masks
cancel in the sum. The server adds the survivors' masked inputs and removes
the self masks of survivors and the pairwise masks of dropped clients (§4,
"unmasking" round). Every ``PRG`` here is :func:`secagg.prg.expand`, byte for
byte, whichever backend computes it.

Memory. Every function writes into one output array of the vector's size and
works through its inputs ``chunk`` values at a time, so extra memory is
O(chunk), not O(d × number of seeds). :func:`apply_masks` can write into the
caller's encoded buffer (``out=encoded``): a client that owns its encoding
then needs no second vector at all. :func:`unmask_sum` adds the survivors'
vectors and removes the masks in the same pass, so the server holds the
inputs and one output, never a separate total. On the CPU the inner step is
at most ``_CPU_PIECE`` values (the accumulator and one keystream piece stay in
L2); ``chunk`` is the upper bound on transient memory, and for the torch
backend also the number of values moved to and from the device per step.

Backends. ``"numpy"`` draws the keystream from ``cryptography``'s ChaCha20
straight into a reused buffer (one pass of ChaCha20 per stream, one add).
``"torch"`` runs :mod:`secagg.prg_torch` on the device and only brings the
masked ``uint32``/``uint64`` words back; for ``bits <= 32`` it adds int32 bit
patterns, which wrap modulo ``2**32`` as the ring needs (the same property
:mod:`secagg.prg_torch` relies on). Both produce identical bytes, so CPU and
GPU clients can share a round, and a server may unmask with either.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from numpy.typing import NDArray

from .encoding import word_dtype
from .encoding_torch import is_tensor
from .errors import ConfigError, require_extra
from .prg import PRG_NONCE, WORDS_PER_BLOCK, derive_key
from .prg_torch import keystream_torch

__all__ = ["apply_masks", "remove_masks", "unmask_sum", "masked_sum", "BACKENDS", "DEFAULT_CHUNK"]

BACKENDS = ("auto", "numpy", "torch")
DEFAULT_CHUNK = 1 << 20  # values per step: 4-8 MiB of transient memory
# Inner CPU step. Measured (d = 2**20, 9 streams, 2 cores): 2**16 values run at
# ~1.1x the raw ChaCha20 time, 2**20 at ~1.7x because the working set leaves L2.
_CPU_PIECE = 1 << 16
_RANGE_PIECE = 1 << 24  # values per step of the range check on a tensor (128 MiB as int64)
_MAX_COUNTER = 2**32 - 1  # RFC 8439 block counter limit, as in secagg.prg
_WORD_MASK = 0xFFFFFFFF
_SIGN_BIT = 0x80000000


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise ConfigError("bits must be an integer in [1, 64]", bits=bits)
    return int(bits)


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}", **{name: value})
    return int(value)


def _streams(
    self_seeds: Sequence[bytes], pair_seeds: Sequence[tuple[bytes, int]], flip: bool
) -> list[tuple[bytes, int]]:
    """Seeds -> (ChaCha20 key, sign) pairs; ``flip`` negates every sign (unmasking)."""
    out = []
    for seed in self_seeds:
        out.append((derive_key(seed), -1 if flip else 1))
    for pair in pair_seeds:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ConfigError("pair_seeds entries must be (seed, sign) pairs", got=type(pair).__name__)
        seed, sign = pair
        if isinstance(sign, bool) or not isinstance(sign, (int, np.integer)) or sign not in (1, -1):
            raise ConfigError("pairwise mask sign must be +1 or -1", sign=sign)
        out.append((derive_key(seed), -int(sign) if flip else int(sign)))
    return out


def _check_vector(vector: Any, bits: int, name: str) -> None:
    """1-D integer array or tensor with every value in [0, 2**bits); else ConfigError."""
    if is_tensor(vector):
        torch = sys.modules["torch"]
        if vector.dtype.is_floating_point or vector.dtype.is_complex or vector.dtype == torch.bool:
            raise ConfigError(f"{name} must hold encoded integers", dtype=str(vector.dtype))
        if vector.dtype == getattr(torch, "uint64", None):
            raise ConfigError(f"{name}: pass uint64 vectors as numpy arrays", dtype=str(vector.dtype))
        if vector.ndim != 1:
            raise ConfigError(f"{name} must be 1-D", shape=tuple(vector.shape))
        if vector.numel() == 0:
            return
        low, high = _tensor_range(vector)
    elif isinstance(vector, np.ndarray):
        if vector.dtype.kind not in "iu":
            raise ConfigError(f"{name} must hold encoded integers", dtype=str(vector.dtype))
        if vector.ndim != 1:
            raise ConfigError(f"{name} must be 1-D", shape=vector.shape)
        if vector.size == 0:
            return
        low = int(vector.min()) if vector.dtype.kind == "i" else 0
        high = int(vector.max()) if np.iinfo(vector.dtype).max >> bits else 0
    else:
        raise ConfigError(f"{name} must be a numpy array or torch tensor", type=type(vector).__name__)
    if low < 0 or high >> bits:
        raise ConfigError(f"{name} values must lie in [0, 2**bits)", bits=bits, min=low, max=high)


def _tensor_range(vector: Any) -> tuple[int, int]:
    """(min, max) of an integer tensor, widened to int64 a bounded piece at a time."""
    torch = sys.modules["torch"]
    low, high = 0, 0
    for start in range(0, vector.numel(), _RANGE_PIECE):
        lo, hi = torch.aminmax(vector[start : start + _RANGE_PIECE].to(torch.int64))
        low, high = min(low, int(lo)), max(high, int(hi))
    return low, high


def _check_counter(bits: int, offset: int, length: int) -> None:
    last_word = (offset + length) * (1 if bits <= 32 else 2) - 1
    if length and last_word // WORDS_PER_BLOCK > _MAX_COUNTER:
        raise ConfigError("ChaCha20 block counter would pass 2**32 - 1", offset=offset, length=length)


# ---------------------------------------------------------------------------
# CPU (numpy + cryptography) backend
# ---------------------------------------------------------------------------


def _cpu_encryptor(key: bytes, first_word: int) -> Any:
    """ChaCha20 keystream positioned at word ``first_word`` of the secagg.prg stream."""
    block, skip = divmod(first_word, WORDS_PER_BLOCK)
    # cryptography's 16-byte ChaCha20 nonce is the RFC 8439 counter (LE) || 12-byte nonce.
    encryptor = Cipher(algorithms.ChaCha20(key, block.to_bytes(4, "little") + PRG_NONCE), None).encryptor()
    if skip:
        encryptor.update(bytes(4 * skip))
    return encryptor


def _host_piece(part: Any) -> Any:
    return part.detach().to("cpu").numpy() if is_tensor(part) else part


def _mask_cpu(
    out: NDArray[Any],
    sources: Sequence[Any],
    streams: list[tuple[bytes, int]],
    bits: int,
    offset: int,
    chunk: int,
    *,
    inplace: bool = False,
) -> None:
    """out[:] = Σ sources + Σ sign·PRG mod 2**bits, streamed in pieces.

    ``inplace``: ``sources[0]`` *is* ``out`` (same memory, same dtype), so the
    first copy is skipped. Each piece of ``out`` is written only after the same
    piece of every source was read.
    """
    per_value = 1 if bits <= 32 else 2
    piece = min(chunk, _CPU_PIECE)
    encryptors = [(_cpu_encryptor(key, offset * per_value), sign) for key, sign in streams]
    keystream = np.empty(piece, dtype=out.dtype)
    zeros = memoryview(bytes(keystream.nbytes))
    mask = out.dtype.type((1 << bits) - 1)
    full = bits in (32, 64)
    for start in range(0, out.size, piece):
        stop = min(start + piece, out.size)
        acc = out[start:stop]
        if not inplace:
            np.copyto(acc, _host_piece(sources[0][start:stop]), casting="unsafe")  # values were range-checked
        for source in sources[1:]:
            # Convert to the accumulator's dtype first: uint64 + int64 would promote
            # to float64 in numpy. Values were range-checked, so this is exact.
            part = _host_piece(source[start:stop]).astype(out.dtype, copy=False)
            np.add(acc, part, out=acc)  # wraps mod 2**32 / 2**64
        ks = keystream[: stop - start]
        for encryptor, sign in encryptors:
            encryptor.update_into(zeros[: ks.nbytes], ks.view(np.uint8))
            (np.add if sign > 0 else np.subtract)(acc, ks, out=acc)  # wraps mod 2**32 / 2**64
        if not full:
            np.bitwise_and(acc, mask, out=acc)


# ---------------------------------------------------------------------------
# torch backend
# ---------------------------------------------------------------------------


def _to_int32_pattern(values: Any) -> Any:
    """int64 tensor of values in [0, 2**32) -> int32 tensor with the same bits."""
    torch = sys.modules["torch"]
    return (values - ((values & _SIGN_BIT) << 1)).to(torch.int32)


def _torch_words(key: bytes, first_word: int, n_words: int, device: Any, dtype: Any) -> Any:
    block, skip = divmod(first_word, WORDS_PER_BLOCK)
    return keystream_torch(key, PRG_NONCE, block, n_words + skip, device=device, dtype=dtype)[skip:]


def _readable_numpy(torch: Any, part: NDArray[Any]) -> Any:
    """numpy piece -> CPU tensor; a read-only piece (a decoded message) is copied,
    because torch refuses to wrap non-writable memory without a warning."""
    part = np.ascontiguousarray(part)
    return torch.from_numpy(part if part.flags.writeable else part.copy())


def _torch_pattern32(torch: Any, part: Any, device: Any, *, fresh: bool) -> Any:
    """A piece of values in [0, 2**32) -> int32 bit patterns on ``device``.

    ``fresh``: the result must own its memory (it is the accumulator, added to in
    place), never alias the caller's array or tensor.
    """
    if is_tensor(part):
        if part.dtype == torch.int64:
            return _to_int32_pattern(part.to(device))  # a new tensor
        if part.dtype == torch.int32:
            return part.to(device=device, copy=fresh)
        return part.to(device=device, dtype=torch.int32)  # uint8/int16/...: values fit, a new tensor
    if part.dtype.itemsize == 4:  # uint32 (the wire words) or int32: same bits
        host = _readable_numpy(torch, part.view(np.int32))
        return host.to(device=device, copy=fresh)
    return torch.from_numpy(part.astype(np.uint32).view(np.int32)).to(device)  # exact: range-checked


def _torch_limbs(torch: Any, part: Any, device: Any) -> tuple[Any, Any]:
    """A piece of values in [0, 2**64) -> (low, high) 32-bit limbs as int64 on ``device``.

    uint64 numpy words travel as int64 bit patterns; the high limb of a pattern
    >= 2**63 is then negative (arithmetic shift), but it is masked to
    ``bits - 32`` bits after the carries, so the residue is exact.
    """
    if is_tensor(part):
        value = part.to(device=device, dtype=torch.int64)  # range-checked: non-negative
    elif part.dtype == np.uint64:
        value = _readable_numpy(torch, part.view(np.int64)).to(device)
    else:
        value = torch.from_numpy(part.astype(np.int64)).to(device)
    return value & _WORD_MASK, value >> 32


class _HostWriter:
    """Writes finished device pieces into a host array.

    On CUDA a piece is copied without blocking into one of two
    pinned staging buffers, and the previous piece is copied from its buffer
    into the host array while the device works on this one: the host copy
    overlaps the device's work instead of following it. A buffer is refilled
    only after the host has drained it. Elsewhere each piece is copied directly.
    """

    def __init__(self, torch: Any, words: NDArray[np.int32], device: Any, piece_words: int) -> None:
        self._torch, self._words = torch, words
        self._cuda = device.type == "cuda"
        size = min(piece_words, words.size)
        self._buffers = [torch.empty(size, dtype=torch.int32, pin_memory=True) for _ in range(2)] if self._cuda else []
        self._pending: tuple[Any, Any, int, int] | None = None
        self._count = 0

    def put(self, start: int, stop: int, piece: Any) -> None:
        """Words ``[start, stop)`` of the host array get ``piece`` (int32 patterns, flat)."""
        if not self._cuda:
            self._torch.from_numpy(self._words[start:stop]).copy_(piece)
            return
        buffer = self._buffers[self._count % 2][: stop - start]
        self._count += 1
        buffer.copy_(piece, non_blocking=True)
        done = self._torch.cuda.Event()
        done.record()
        self.flush()
        self._pending = (done, buffer, start, stop)

    def flush(self) -> None:
        """Finish the piece in flight, if any."""
        if self._pending is not None:
            done, buffer, start, stop = self._pending
            self._pending = None
            done.synchronize()
            self._words[start:stop] = buffer.numpy()


def _mask_torch(
    out: NDArray[Any],
    sources: Sequence[Any],
    streams: list[tuple[bytes, int]],
    bits: int,
    offset: int,
    chunk: int,
    device: Any,
) -> None:
    """Torch twin of _mask_cpu, on ``device``: no overflow that the ring does not absorb.

    ``bits <= 32``: int32 bit patterns, whose wrapping adds are exact mod 2**32.
    ``bits > 32``: two 32-bit limbs in int64, carries resolved once per chunk.
    Each piece of ``out`` is written after the same piece of every source was
    read, so ``out`` may be ``sources[0]`` itself.
    """
    torch = require_extra("torch", "fl")
    per_value = 1 if bits <= 32 else 2
    writer = _HostWriter(torch, out.view(np.int32), device, per_value * chunk)
    for start in range(0, out.size, chunk):
        stop = min(start + chunk, out.size)
        n = stop - start
        if bits <= 32:
            acc = _torch_pattern32(torch, sources[0][start:stop], device, fresh=True)
            for source in sources[1:]:
                acc.add_(_torch_pattern32(torch, source[start:stop], device, fresh=False))
            for key, sign in streams:
                words = _torch_words(key, offset + start, n, device, torch.int32)
                if sign > 0:
                    acc.add_(words)
                else:
                    acc.sub_(words)
            if bits < 32:
                acc.bitwise_and_((1 << bits) - 1)  # two's complement: right for wrapped patterns
            writer.put(start, stop, acc)
            continue
        low, high = _torch_limbs(torch, sources[0][start:stop], device)
        for source in sources[1:]:
            more_low, more_high = _torch_limbs(torch, source[start:stop], device)
            low.add_(more_low)
            high.add_(more_high)
        for key, sign in streams:
            words = _torch_words(key, 2 * (offset + start), 2 * n, device, torch.int64).view(n, 2)
            step = low.add_ if sign > 0 else low.sub_
            step(words[:, 0])
            step = high.add_ if sign > 0 else high.sub_
            step(words[:, 1])
        high.add_(low >> 32)  # arithmetic shift = floor division: exact carry or borrow
        low.bitwise_and_(_WORD_MASK)
        high.bitwise_and_((1 << (bits - 32)) - 1)
        packed = torch.stack([_to_int32_pattern(low), _to_int32_pattern(high)], dim=1)
        writer.put(2 * start, 2 * stop, packed.reshape(-1))  # little-endian word pairs
    writer.flush()


def _torch_device(torch: Any, device: Any, vectors: Sequence[Any]) -> Any:
    """``device`` if given, else the first tensor's device, else CUDA if present, else CPU."""
    if device is not None:
        return torch.device(device)
    for vector in vectors:
        if is_tensor(vector):
            return vector.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}", backend=backend)


def _address_range(value: Any) -> tuple[int, int]:
    if is_tensor(value):
        start = value.data_ptr()
        return start, start + value.numel() * value.element_size()
    start = value.__array_interface__["data"][0]
    return start, start + value.nbytes


def _check_out(out: Any, encoded: Any, length: int, bits: int) -> bool:
    """Validate ``out``; True when it is ``encoded``'s own memory (masking in place).

    ``out`` may alias ``encoded`` only exactly (same start, same word size,
    contiguous): every piece is read before it is written, so that is safe; a
    partial overlap would read words already masked.
    """
    dtype = np.dtype(word_dtype(bits))
    if not isinstance(out, np.ndarray) or out.ndim != 1 or out.shape[0] != length or out.dtype != dtype:
        raise ConfigError(
            f"out must be a 1-D numpy {dtype} array of the input's length",
            local=True,
            type=type(out).__name__,
            shape=getattr(out, "shape", None),
            dtype=str(getattr(out, "dtype", None)),
        )
    if not out.flags.writeable or not out.flags.c_contiguous:
        raise ConfigError("out must be writeable and contiguous", local=True)
    if length == 0 or (is_tensor(encoded) and encoded.device.type != "cpu"):
        return False
    lo, hi = _address_range(out)
    e_lo, e_hi = _address_range(encoded)
    if e_hi <= lo or hi <= e_lo:
        return False
    itemsize = encoded.element_size() if is_tensor(encoded) else encoded.itemsize
    contiguous = encoded.is_contiguous() if is_tensor(encoded) else encoded.flags.c_contiguous
    if e_lo != lo or itemsize != out.itemsize or not contiguous:
        raise ConfigError("out overlaps encoded without being the same words", local=True)
    return True


def apply_masks(
    encoded: Any,
    *,
    bits: int,
    self_seed: bytes | None,
    pair_seeds: Sequence[tuple[bytes, int]],
    offset: int = 0,
    chunk: int = DEFAULT_CHUNK,
    backend: str = "auto",
    out: NDArray[np.unsignedinteger] | None = None,
) -> NDArray[np.unsignedinteger]:
    """Client side: ``(encoded + PRG(self_seed) + Σ sign·PRG(seed)) mod 2**bits``.

    ``encoded`` is a 1-D numpy array or torch tensor (any device) of integers in
    ``[0, 2**bits)``; ``pair_seeds`` holds ``(seed, sign)`` with sign ``+1`` or
    ``-1``; ``offset`` (in values) masks a slice that starts ``offset`` values
    into the PRG streams. Returns a numpy ``uint32`` (``bits <= 32``) or
    ``uint64`` array, ready for the wire: ``out`` if given, else a new one.
    ``out=encoded`` masks the caller's own buffer in place (a client that no
    longer needs its plaintext encoding saves a vector); the words are the same
    as with a fresh output. ``backend``: ``"numpy"``, ``"torch"`` or ``"auto"``
    (torch for a tensor). Extra memory is O(chunk).

    Raises :class:`ConfigError` for bits outside 1..64, a float, negative or
    too-large input, a seed that is not 16 or 32 bytes, a sign other than ±1,
    an unknown backend, or an ``out`` of the wrong dtype or length, read-only,
    or partly overlapping ``encoded``; :class:`MissingExtraError` if torch is
    needed and absent.
    """
    bits = _check_bits(bits)
    offset = _check_count("offset", offset, 0)
    chunk = _check_count("chunk", chunk, 1)
    _check_backend(backend)
    _check_vector(encoded, bits, "encoded")
    streams = _streams([] if self_seed is None else [self_seed], pair_seeds, flip=False)
    length = int(encoded.shape[0])
    _check_counter(bits, offset, length)
    inplace = False
    if out is None:
        out = np.empty(length, dtype=word_dtype(bits))
    else:
        inplace = _check_out(out, encoded, length, bits)
    if backend == "torch" or (backend == "auto" and is_tensor(encoded)):
        torch = require_extra("torch", "fl")
        device = encoded.device if is_tensor(encoded) else torch.device("cpu")
        _mask_torch(out, [encoded], streams, bits, offset, chunk, device)
    else:
        # The copy of the first piece can be skipped only when it is the same words.
        same_words = inplace and isinstance(encoded, np.ndarray) and encoded.dtype == out.dtype
        _mask_cpu(out, [encoded], streams, bits, offset, chunk, inplace=same_words)
    return out


def remove_masks(
    total: NDArray[np.integer],
    *,
    bits: int,
    self_seeds: Sequence[bytes],
    pair_seeds: Sequence[tuple[bytes, int]],
    chunk: int = DEFAULT_CHUNK,
    backend: str = "numpy",
    device: Any = None,
) -> NDArray[np.unsignedinteger]:
    """Server side: ``(total - Σ PRG(self_seed) - Σ sign·PRG(seed)) mod 2**bits``.

    ``self_seeds`` are the reconstructed self-mask seeds of survivors;
    ``pair_seeds`` the ``(seed, sign)`` pairs of dropped clients' masks that
    survivors still carry, with the sign the *survivor* used. ``total`` is not
    modified; a new ``uint32``/``uint64`` array is returned. ``backend``:
    ``"numpy"`` (default), ``"torch"`` (PRG streams generated on ``device``,
    default the tensor's device, else CUDA if available, else CPU; the result
    is identical) or ``"auto"`` (torch for a tensor ``total``). Raises
    :class:`ConfigError` as :func:`apply_masks` does, also for an unknown backend.
    """
    return unmask_sum(
        [total], bits=bits, self_seeds=self_seeds, pair_seeds=pair_seeds, chunk=chunk, backend=backend, device=device
    )


def unmask_sum(
    masked: Sequence[Any],
    *,
    bits: int,
    self_seeds: Sequence[bytes],
    pair_seeds: Sequence[tuple[bytes, int]],
    chunk: int = DEFAULT_CHUNK,
    backend: str = "numpy",
    device: Any = None,
) -> NDArray[np.unsignedinteger]:
    """Server side in one pass: ``(Σ masked - Σ PRG(self_seed) - Σ sign·PRG(seed)) mod 2**bits``.

    Equal to ``remove_masks(masked_sum(masked), ...)`` word for word, without
    the intermediate total: each chunk of the survivors' vectors is added and
    unmasked before the next (Bonawitz et al. 2017, Fig. 4, round 4). ``masked``
    is a non-empty sequence of 1-D numpy arrays or tensors of one length, with
    values in ``[0, 2**bits)``; they are not modified. ``backend`` and
    ``device`` as in :func:`remove_masks`: with ``"torch"`` each chunk of
    every vector is moved to ``device``, summed and unmasked there, and only
    the result comes back. Raises :class:`ConfigError` for an empty sequence,
    vectors of different lengths and everything :func:`remove_masks` rejects.
    """
    bits = _check_bits(bits)
    chunk = _check_count("chunk", chunk, 1)
    _check_backend(backend)
    vectors = list(masked)
    if not vectors:
        raise ConfigError("unmask_sum needs at least one masked vector")
    use_torch = backend == "torch" or (backend == "auto" and any(is_tensor(v) for v in vectors))
    length = None
    for index, vector in enumerate(vectors):
        if is_tensor(vector) and not use_torch:
            vectors[index] = vector = vector.detach().to("cpu").numpy()
        _check_vector(vector, bits, "total" if len(vectors) == 1 else f"masked[{index}]")
        if length is None:
            length = int(vector.shape[0])
        elif int(vector.shape[0]) != length:
            raise ConfigError("masked vectors differ in length", index=index, expected=length, got=int(vector.shape[0]))
    assert length is not None
    streams = _streams(self_seeds, pair_seeds, flip=True)
    _check_counter(bits, 0, length)
    out = np.empty(length, dtype=word_dtype(bits))
    if not use_torch:
        _mask_cpu(out, vectors, streams, bits, 0, chunk)
        return out
    torch = require_extra("torch", "fl")
    _mask_torch(out, vectors, streams, bits, 0, chunk, _torch_device(torch, device, vectors))
    return out


def masked_sum(vectors: Iterable[NDArray[np.integer]], *, bits: int) -> NDArray[np.unsignedinteger]:
    """Σ vectors mod 2**bits, one vector in memory at a time (beyond the result).

    Every vector must be 1-D, of the same length, with values in ``[0, 2**bits)``.
    Raises :class:`ConfigError` on an empty iterable, a length mismatch or a bad
    vector.
    """
    bits = _check_bits(bits)
    acc: NDArray[Any] | None = None
    for index, vector in enumerate(vectors):
        if is_tensor(vector):
            vector = vector.detach().to("cpu").numpy()
        _check_vector(vector, bits, f"vectors[{index}]")
        if acc is None:
            acc = np.empty(vector.shape[0], dtype=word_dtype(bits))
            np.copyto(acc, vector, casting="unsafe")
            continue
        if vector.shape[0] != acc.shape[0]:
            raise ConfigError("vectors differ in length", index=index, expected=acc.shape[0], got=vector.shape[0])
        for start in range(0, acc.shape[0], _CPU_PIECE):
            # Convert a piece to the accumulator's dtype first: uint64 + int64 would
            # promote to float64 in numpy. Values were range-checked, so this is exact.
            part = vector[start : start + _CPU_PIECE].astype(acc.dtype, copy=False)
            np.add(acc[start : start + _CPU_PIECE], part, out=acc[start : start + _CPU_PIECE])
    if acc is None:
        raise ConfigError("masked_sum needs at least one vector")
    if bits not in (32, 64):
        np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)
    return acc
