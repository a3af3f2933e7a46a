"""The one exception hierarchy of secagg.

Every error raised by ``secagg``, ``protocols`` and ``fl`` derives from
:class:`SecAggError`. Errors carry the fields that explain them (``stage``,
``client_id``, ``needed``, ``got``) so that callers can react without parsing
messages.

Who misbehaved matters, as in h11's local/remote protocol errors: :class:`ConfigError` and
:class:`ProtocolError` raised with ``local=True`` mean *our caller* made a
mistake; :class:`IntegrityError`, :class:`DecodeError` and peer-attributed
:class:`ProtocolError` mean a *remote party* did.
"""

from __future__ import annotations

import importlib
from typing import Any

_BYTES_LIKE = (bytes, bytearray, memoryview)

__all__ = [
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
    "require_bytes",
    "require_extra",
]


class SecAggError(Exception):
    """Root of every error raised by this project.

    Keyword arguments become attributes, so ``err.client_id`` or
    ``err.stage`` can be read by callers; unknown fields default to ``None``.
    """

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields)
        for key, value in fields.items():
            setattr(self, key, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes that were not set: a missing field is None.
        if name.startswith("_"):
            raise AttributeError(name)
        return None

    def __reduce__(self):  # keep fields across pickling (process pools)
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        if not self.fields:
            return self.message
        extra = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.message} ({extra})"


def _rebuild(cls: type[SecAggError], message: str, fields: dict[str, Any]) -> SecAggError:
    return cls(message, **fields)


class ConfigError(SecAggError):
    """A configuration or argument is invalid; raised before any crypto runs."""


class OverflowRiskError(ConfigError):
    """The planned bit width cannot hold the sum: it could wrap around."""


class ThresholdError(SecAggError):
    """A threshold t is out of range, or fewer than t shares were given to combine."""


class ProtocolError(SecAggError):
    """A message arrived at the wrong stage, twice, or from an unknown sender,
    or the server's view is inconsistent.

    ``local=True`` marks a caller bug (we misused the state machine);
    otherwise the peer named by ``client_id`` misbehaved.
    """


class IntegrityError(SecAggError):
    """A MAC, a signature, a proof or a set of shares failed to verify."""


class DecodeError(SecAggError):
    """Bytes are malformed, truncated, oversized or of an unknown version."""


class AbortError(SecAggError):
    """The round cannot complete: too few parties survived.

    Fields: ``stage`` (where it failed), ``needed``, ``got``, ``dropped``
    (mapping stage name to the client ids that vanished there).
    """


class PrivacyBudgetExceeded(SecAggError):
    """Running the next round would spend more than the privacy budget."""


class MissingExtraError(SecAggError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require_extra(module: str, extra: str) -> Any:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{module!r} is needed here; install it with: pip install 'secagg[{extra}]'",
            module=module,
            extra=extra,
        ) from exc


def require_bytes(
    value: object, name: str, *, max_size: int | None = None, error: type[SecAggError] = ConfigError
) -> bytes:
    """``value`` as ``bytes`` if it is bytes-like and at most ``max_size`` bytes long.

    Anything else (an int, a str, a float, a list) raises ``error`` (default
    :class:`ConfigError`: a caller bug; pass :class:`DecodeError` for bytes
    from a peer) with the fields ``name``, ``type`` and, for an oversized
    value, ``size`` and ``limit``. The type and size are checked before any
    copy, so ``bytes(10**9)`` is never built from an int.
    """
    if not isinstance(value, _BYTES_LIKE):
        raise error(f"{name} must be bytes", name=name, type=type(value).__name__)
    size = value.nbytes if isinstance(value, memoryview) else len(value)
    if max_size is not None and size > max_size:
        raise error(f"{name} is larger than {max_size} bytes", name=name, size=size, limit=max_size)
    return value if type(value) is bytes else bytes(value)
