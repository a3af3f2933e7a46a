"""Known-answer test vectors from standards, stored as JSON data files.

One file per standard or topic (``chacha20_rfc8439.json``,
``x25519_rfc7748.json``, ``hkdf_rfc5869.json``, ...). Tests load them with
:func:`load` instead of pasting hex inline, as pyca/cryptography does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["load", "VECTOR_DIR"]

VECTOR_DIR = Path(__file__).resolve().parent


def load(name: str) -> Any:
    """Return the parsed JSON of ``tests/vectors/<name>.json``.

    ``name`` is the bare file stem (no directory, no ``.json``); a missing file
    raises :class:`FileNotFoundError` naming the path.
    """
    if "/" in name or "\\" in name or name.endswith(".json"):
        raise ValueError(f"vector name must be a bare stem, got {name!r}")
    path = VECTOR_DIR / f"{name}.json"
    with path.open("r", encoding="utf-8") as handle:
        return json.load(handle)
