"""Random words for the DP samplers: a ChaCha20 CSPRNG, or a seeded generator for simulation.

Every sampler in :mod:`secagg.dp` consumes randomness only through
:class:`RandomWords`, so there is exactly one place that decides where noise
comes from:

* ``rng=None`` (the default): a fresh 256-bit key from :func:`os.urandom` per
  call, expanded with raw RFC 8439 ChaCha20 (:func:`secagg.prg.keystream`).
  This is a cryptographically secure generator; nothing about it can be
  predicted from other calls, other clients or other rounds.
* ``rng=np.random.Generator(...)``: an explicitly seeded generator, for
  reproducible *simulation and tests only*. Its raw 64-bit outputs are used.

Neither the :mod:`random` module nor numpy's global generator is ever used.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..prg import KEY_BYTES, MAX_COUNTER, NONCE_BYTES, WORDS_PER_BLOCK, keystream

__all__ = ["RandomWords", "as_random_words"]

# Nonce of the per-call noise stream. The key is fresh from os.urandom for every
# RandomWords, so a fixed nonce never repeats a (key, nonce) pair.
_NOISE_NONCE = b"SECAGG-DP-N1"
assert len(_NOISE_NONCE) == NONCE_BYTES

# Keystream is fetched in chunks of this many uint64 words (2 MiB), so that
# many small requests (the sampler's rejection loops) do not each pay a call
# into OpenSSL.
_BUFFER_WORDS = 1 << 18
_FIRST_REFILL_WORDS = 1 << 10


class RandomWords:
    """A stream of uniform 64-bit words.

    ``RandomWords()`` is a ChaCha20 CSPRNG keyed from :func:`os.urandom`;
    ``RandomWords(rng)`` draws from an explicitly seeded numpy Generator
    (simulation only). Raises :class:`ConfigError` if ``rng`` is not a
    :class:`numpy.random.Generator`.
    """

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ConfigError(
                "rng must be a numpy.random.Generator (seeded simulation) or None (OS CSPRNG)",
                type=type(rng).__name__,
            )
        self._rng = rng
        self._key = os.urandom(KEY_BYTES) if rng is None else b""
        self._counter = 0  # next ChaCha20 block
        self._buffer = np.empty(0, dtype=np.uint64)
        self._pos = 0
        self._refill_words = _FIRST_REFILL_WORDS

    @property
    def is_csprng(self) -> bool:
        """True when the words come from the OS-keyed ChaCha20 stream."""
        return self._rng is None

    def _refill(self, n_words: int) -> None:
        blocks = -(-2 * n_words // WORDS_PER_BLOCK)
        if self._counter + blocks > MAX_COUNTER:  # pragma: no cover - 256 GiB per call
            self._key, self._counter = os.urandom(KEY_BYTES), 0
        words32 = keystream(self._key, _NOISE_NONCE, self._counter, blocks * WORDS_PER_BLOCK)
        self._counter += blocks
        self._buffer = words32.view("<u8").view(np.uint64)
        self._pos = 0

    def words(self, n: int) -> NDArray[np.uint64]:
        """Return ``n`` independent uniform words in ``[0, 2**64)``."""
        n = int(n)
        if n <= 0:
            return np.empty(0, dtype=np.uint64)
        if self._rng is not None:
            return self._rng.bit_generator.random_raw(n).astype(np.uint64, copy=False)
        if n > _BUFFER_WORDS:
            # A large request gets its own keystream; the buffer is left for later small ones.
            blocks = -(-2 * n // WORDS_PER_BLOCK)
            if self._counter + blocks > MAX_COUNTER:  # pragma: no cover - 256 GiB per source
                self._key, self._counter = os.urandom(KEY_BYTES), 0
            words32 = keystream(self._key, _NOISE_NONCE, self._counter, blocks * WORDS_PER_BLOCK)
            self._counter += blocks
            return words32.view("<u8").view(np.uint64)[:n]
        if self._buffer.size - self._pos < n:
            # Start small (a short-lived source may need a few words) and double up to the cap.
            size = max(n, self._refill_words)
            self._refill_words = min(2 * size, _BUFFER_WORDS)
            self._refill(size)
        out = self._buffer[self._pos : self._pos + n].copy()
        self._pos += n
        return out

    def uniform53(self, n: int) -> NDArray[np.uint64]:
        """Return ``n`` uniform integers in ``[0, 2**53)`` (exactly representable as floats)."""
        return self.words(n) >> np.uint64(11)

    def below(self, bound: int, n: int) -> NDArray[np.int64]:
        """Return ``n`` exactly uniform integers in ``[0, bound)``, ``1 <= bound < 2**62``.

        Rejection sampling on 64-bit words: a word is kept only if it falls
        below the largest multiple of ``bound`` that fits, so there is no
        modular bias.
        """
        bound = int(bound)
        if not 1 <= bound < 2**62:
            raise ConfigError("bound must be in [1, 2**62)", bound=bound)
        limit = np.uint64((2**64 // bound) * bound - 1)  # accept w <= limit
        out = np.empty(int(n), dtype=np.int64)
        filled = 0
        while filled < n:
            need = n - filled
            w = self.words(need + need // 8 + 8)
            w = w[w <= limit][:need]
            out[filled : filled + w.size] = (w % np.uint64(bound)).astype(np.int64)
            filled += w.size
        return out


def as_random_words(rng: np.random.Generator | RandomWords | None) -> RandomWords:
    """Wrap ``rng`` (None = OS CSPRNG, a seeded Generator, or a RandomWords) as RandomWords."""
    if isinstance(rng, RandomWords):
        return rng
    return RandomWords(rng)
