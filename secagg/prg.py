"""ChaCha20 pseudo-random generator for masks (RFC 8439).

This module is part of the wire protocol: two parties that expand the same seed
must produce the same words, on any machine and any backend (CPU here, a GPU
later), or masks stop cancelling. The derivation is therefore fixed, byte for
byte:

``keystream(key, nonce, counter, n_words)``
    Raw RFC 8439 ChaCha20: 32-byte key, 12-byte nonce, 32-bit initial block
    counter. The keystream bytes (the encryption of zeros) are read as
    little-endian ``uint32`` words; word ``16*i + j`` is word ``j`` of block
    ``counter + i``. A request that would run the 32-bit block counter past
    ``2**32 - 1`` is a :class:`ConfigError` (RFC 8439 §2.4 forbids wrapping).

``expand(seed, length, bits=32, *, offset=0)``
    1. ``seed`` is 16 or 32 bytes (128- or 256-bit security).
    2. ``key = HKDF-SHA256(ikm=seed, salt=b"", info=PRG_INFO, length=32)``.
    3. ``nonce = PRG_NONCE`` (the 12 ASCII bytes ``SECAGG-PRG-1``), counter 0.
    4. For ``bits <= 32`` value ``i`` is keystream word ``i`` masked to the low
       ``bits`` bits (``uint32``). For ``32 < bits <= 64`` value ``i`` is the
       little-endian ``uint64`` made of words ``2i`` (low) and ``2i+1`` (high),
       masked to ``bits`` bits (``uint64``).
    5. ``offset`` counts output values: ``expand(s, n, b, offset=o)`` equals
       ``expand(s, o + n, b)[o:]``. Chunked, streamed or GPU producers use it to
       generate any slice of the stream independently.

Masking with the low ``bits`` bits of a uniform word is exactly uniform on
``[0, 2**bits)``: no modular bias.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from .errors import ConfigError

__all__ = [
    "keystream",
    "expand",
    "derive_key",
    "PRG_INFO",
    "PRG_NONCE",
    "KEY_BYTES",
    "NONCE_BYTES",
    "WORDS_PER_BLOCK",
    "SEED_SIZES",
]

KEY_BYTES = 32
NONCE_BYTES = 12
WORDS_PER_BLOCK = 16  # a ChaCha20 block is 64 bytes = 16 little-endian uint32 words
MAX_COUNTER = 2**32 - 1  # RFC 8439 block counter is 32 bits and must not wrap
SEED_SIZES = (16, 32)  # 128-bit or 256-bit seeds; anything shorter is brute-forceable
PRG_INFO = b"secagg/prg/chacha20/v1"
PRG_NONCE = b"SECAGG-PRG-1"
assert len(PRG_NONCE) == NONCE_BYTES

# Keystream is written straight into the output array (``update_into``) in
# chunks of this many blocks (256 KiB): large enough to amortise the call into
# OpenSSL, small enough that the zero input stays in cache and no second
# full-size copy of a 10^8-word request is ever held. bench/primitives.py
# measured 256 KiB at or below raw ``encryptor.update`` on one full buffer.
_CHUNK_BLOCKS = 1 << 12
_ZEROS = bytes(_CHUNK_BLOCKS * WORDS_PER_BLOCK * 4)


def _check_key_nonce(key: bytes, nonce: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise ConfigError(f"ChaCha20 key must be {KEY_BYTES} bytes", got=_length(key))
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != NONCE_BYTES:
        raise ConfigError(f"ChaCha20 nonce must be {NONCE_BYTES} bytes", got=_length(nonce))


def _length(value: object) -> int | None:
    return len(value) if isinstance(value, (bytes, bytearray)) else None


def _fill(key: bytes, nonce: bytes, counter: int, out: NDArray[np.uint32]) -> None:
    """Write keystream starting at block ``counter`` into ``out`` (uint32, C-contiguous)."""
    n_words = out.size
    n_blocks = -(-n_words // WORDS_PER_BLOCK)
    if counter + max(n_blocks, 1) - 1 > MAX_COUNTER:
        raise ConfigError(
            "ChaCha20 block counter would pass 2**32 - 1",
            counter=counter,
            blocks=n_blocks,
        )
    # cryptography's ChaCha20 takes a 16-byte "nonce": 4-byte LE counter || 12-byte nonce.
    full_nonce = int(counter).to_bytes(4, "little") + bytes(nonce)
    encryptor = Cipher(algorithms.ChaCha20(bytes(key), full_nonce), mode=None).encryptor()
    out_bytes = out.view(np.uint8)
    chunk = len(_ZEROS)
    done = 0
    total = n_words * 4
    while done < total:
        step = min(chunk, total - done)
        # Encrypting zeros yields the keystream; write it in place, no temporary.
        encryptor.update_into(_ZEROS if step == chunk else _ZEROS[:step], out_bytes[done : done + step].data)
        done += step


def keystream(key: bytes, nonce: bytes, counter: int, n_words: int) -> NDArray[np.uint32]:
    """Return ``n_words`` little-endian uint32 words of RFC 8439 ChaCha20 keystream.

    The stream starts at block ``counter``; ``n_words`` need not be a multiple
    of 16 (the last block is truncated). Raises :class:`ConfigError` for a bad
    key or nonce length, a negative size or counter, or a counter overflow.
    """
    _check_key_nonce(key, nonce)
    if not 0 <= int(counter) <= MAX_COUNTER:
        raise ConfigError("counter must be in [0, 2**32)", counter=counter)
    if int(n_words) < 0:
        raise ConfigError("n_words must be non-negative", n_words=n_words)
    out = np.empty(int(n_words), dtype="<u4")
    if n_words:
        _fill(key, nonce, int(counter), out)
    return out.view(np.uint32)


def derive_key(seed: bytes) -> bytes:
    """Derive the 32-byte ChaCha20 key for ``expand`` from a 16- or 32-byte seed."""
    if not isinstance(seed, (bytes, bytearray)) or len(seed) not in SEED_SIZES:
        raise ConfigError("PRG seed must be 16 or 32 bytes", got=_length(seed), type=type(seed).__name__)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=PRG_INFO).derive(bytes(seed))


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise ConfigError("bits must be an integer in [1, 64]", bits=bits)
    return int(bits)


def expand(seed: bytes, length: int, bits: int = 32, *, offset: int = 0) -> NDArray[np.unsignedinteger]:
    """Expand ``seed`` into ``length`` uniform values in ``[0, 2**bits)``.

    Returns ``uint32`` for ``bits <= 32`` and ``uint64`` otherwise. Deterministic
    and chunking-invariant: ``expand(s, n, b, offset=o) == expand(s, o+n, b)[o:]``.
    See the module docstring for the exact derivation (part of the wire format).
    Raises :class:`ConfigError` for a seed that is not 16 or 32 bytes, bits
    outside ``[1, 64]`` or a negative length or offset.
    """
    bits = _check_bits(bits)
    key = derive_key(seed)
    length, offset = int(length), int(offset)
    if length < 0 or offset < 0:
        raise ConfigError("length and offset must be non-negative", length=length, offset=offset)
    words_per_value = 1 if bits <= 32 else 2
    first_word = offset * words_per_value
    n_words = length * words_per_value
    block, skip = divmod(first_word, WORDS_PER_BLOCK)
    if skip == 0:
        words = keystream(key, PRG_NONCE, block, n_words)
    else:
        # Start mid-block: generate from the block start and drop the head.
        words = keystream(key, PRG_NONCE, block, n_words + skip)[skip:]
    if bits <= 32:
        if bits < 32:
            np.bitwise_and(words, np.uint32((1 << bits) - 1), out=words)
        return words
    values = np.ascontiguousarray(words).view("<u8").view(np.uint64)
    if bits < 64:
        np.bitwise_and(values, np.uint64((1 << bits) - 1), out=values)
    return values
