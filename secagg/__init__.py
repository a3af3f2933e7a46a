"""secagg primitives: the hazmat layer.

Pure functions and small value types: key agreement (:mod:`secagg.kex`), AEAD
(:mod:`secagg.aead`), the ChaCha20 PRG (:mod:`secagg.prg`), Shamir sharing
(:mod:`secagg.shamir`), fixed-point encoding (:mod:`secagg.encoding`), and,
with extras, Paillier, CKKS and distributed-DP samplers. No protocol state, no
I/O, no global RNG. Most users want :mod:`protocols` instead.
"""

from . import aead, encoding, errors, kex, masking, prg, shamir
from .errors import (
    AbortError,
    ConfigError,
    DecodeError,
    IntegrityError,
    MissingExtraError,
    OverflowRiskError,
    PrivacyBudgetExceeded,
    ProtocolError,
    SecAggError,
    ThresholdError,
)

__version__ = "0.1.0"

__all__ = [
    "aead",
    "encoding",
    "errors",
    "kex",
    "masking",
    "prg",
    "shamir",
    "SecAggError",
    "ConfigError",
    "OverflowRiskError",
    "ThresholdError",
    "ProtocolError",
    "IntegrityError",
    "DecodeError",
    "AbortError",
    "PrivacyBudgetExceeded",
    "MissingExtraError",
    "__version__",
]
