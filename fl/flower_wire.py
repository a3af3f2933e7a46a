"""The wire format of our rounds over Flower: record keys, the error reply
format, payload limits, stage labels and the round config as canonical JSON.

Every check on a record from the other side lives here: field presence,
types and sizes before any copy (:func:`payload_limit`,
:data:`MAX_CONFIG_BYTES`), stage labels, and the round config, whose roster
names become identities only through the receiving node's own roster.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from protocols import SecAggConfig, Stage, as_stage
from protocols.config import DEFAULT_SECURITY_BITS
from secagg.encoding import FixedPointEncoder, word_dtype
from secagg.errors import ConfigError, DecodeError, IntegrityError, SecAggError, require_bytes, require_extra

require_extra("flwr", "flower")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402

__all__ = [
    "RECORD_KEY",
    "STATE_KEY",
    "STATUS_KEY",
    "ERROR_CODE",
    "CONFIG_VERSION",
    "MAX_CONFIG_BYTES",
    "IDENTIFY_LABEL",
    "error_reason",
    "payload_limit",
    "require_field",
    "record_stage",
    "encode_round_config",
    "decode_round_config",
    "message_stage",
]

RECORD_KEY = "secagg.round"  # ConfigRecord carrying our stage, message bytes and round config
STATE_KEY = "secagg.client_state"  # node-local Context record holding the pickled client session
STATUS_KEY = "secagg.status"  # server Context record: outcome of the last round (status, reason)
# Flower's ErrorCode uses 0-8; ours is distinct so a driver can tell our typed
# refusals from crashes (ErrorCode.CLIENT_APP_RAISED_EXCEPTION = 2).
ERROR_CODE = 0x5EC
CONFIG_VERSION = 1
# The round config is JSON of node ids and layer shapes: 1 MiB holds ~10^5
# clients or layers. A larger (or non-bytes) config is refused before parsing.
MAX_CONFIG_BYTES = 1 << 20
# Bounds for payload_limit: the header and field prefixes of any message, and
# what one party adds to a message that lists every party (a broadcast key
# bundle with signature, an encrypted share pair, a share, ids): 4-8x the
# largest such entry today, so an honest message always fits.
_FIXED_MESSAGE_BYTES = 4096
_PER_PARTY_BYTES = 1024
_MAX_STAGE_LABEL = 32  # longest Stage value is 14 characters
# Not a protocol stage: the server's pre-round "who are you" (roster name, signed nonce).
IDENTIFY_LABEL = "identify"


def error_reason(exc: BaseException) -> str:
    """``"<ErrorType>: <message> (field=value, ...)"`` for a Flower error reply."""
    return f"{type(exc).__name__}: {exc}"


def payload_limit(config: SecAggConfig) -> int:
    """Most bytes one protocol message of a round with ``config`` can take, either way.

    The masked input (``dim + 1`` words of ``word_dtype(bits)``) plus a fixed
    header allowance and a per-party allowance for the messages that list
    every client (keys, encrypted shares, unmasking shares). The adapter
    refuses a larger payload, on either side, before it is copied or parsed.
    """
    word = np.dtype(word_dtype(config.bits)).itemsize
    return _FIXED_MESSAGE_BYTES + config.n * _PER_PARTY_BYTES + (config.dim + 1) * word


def require_field(record: ConfigRecord, name: str) -> Any:
    """``record[name]``; a missing field is the peer's :class:`DecodeError`."""
    if name not in record:
        raise DecodeError(f"message lacks field {name!r}", field=name)
    return record[name]


def record_stage(record: ConfigRecord) -> Stage:
    """The stage label of our record: a short str naming a :class:`Stage`, else :class:`DecodeError`."""
    label = require_field(record, "stage")
    if not isinstance(label, str) or len(label) > _MAX_STAGE_LABEL:
        raise DecodeError("stage label must be a stage name", type=type(label).__name__)
    try:
        return as_stage(label)
    except ConfigError:
        raise DecodeError("unknown stage label", stage=label) from None


def encode_round_config(
    config: SecAggConfig, node_ids: Sequence[int], shapes: Sequence[tuple[int, ...]], names: Sequence[str] | None = None
) -> bytes:
    """The round config as canonical JSON bytes (no pickle: it comes from the server).

    ``node_ids[i]`` is the Flower node that plays client ``i``; ``shapes`` are
    the model arrays, flattened in order into the ``dim``-long update.
    ``names[i]`` is client ``i``'s roster name, required when the config has
    ``identities``: the record names roster entries, never keys (each node
    looks the keys up in its own roster).
    """
    enc = config.encoder
    if not isinstance(enc, FixedPointEncoder):
        raise ConfigError("the Flower adapter ships FixedPointEncoder configs only", encoder=type(enc).__name__)
    if (config.identities is None) != (names is None) or (names is not None and len(names) != config.n):
        raise ConfigError(
            "a config with identities needs one roster name per client, and only then",
            names=None if names is None else len(names),
            n=config.n,
        )
    doc = {
        "v": CONFIG_VERSION,
        "node_ids": [int(n) for n in node_ids],
        "shapes": [list(map(int, s)) for s in shapes],
        "threshold": config.threshold,
        "dim": config.dim,
        "neighbors": config.neighbors,
        "min_survivors": config.min_survivors,
        "session_id": config.session_id.hex(),
        "graph_seed": config.graph_seed.hex(),
        "round": config.round,
        "weighted": config.weighted,
        "encoder": {
            "clip": enc.clip,
            "bits": enc.bits,
            "max_clients": enc.max_clients,
            "max_weight": enc.max_weight,
            "norm": enc.norm,
            "scale": enc.scale,
        },
        "active": config.active_security,
        "max_corrupt": config.max_corrupt,
        "security_bits": config.security_bits,
        "names": None if names is None else [str(x) for x in names],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _identities(names: Any, roster: Mapping[str, bytes] | None, n: int) -> dict[int, bytes] | None:
    """Client index -> public key, from the record's roster names and this node's own roster."""
    if names is None:
        return None
    if roster is None:
        raise ConfigError("the round names roster identities, but this node has no roster (node config secagg-roster)")
    if not isinstance(names, list) or len(names) != n or not all(isinstance(x, str) for x in names):
        raise DecodeError("round config: names must be one string per client", n=n)
    if len(set(names)) != n:
        raise IntegrityError("round config names one roster entry twice (one party counted twice)")
    unknown = [x[:80] for x in names if x not in roster]
    if unknown:
        raise IntegrityError("round config names parties that are not in this node's roster", unknown=unknown[:8])
    return {i: roster[x] for i, x in enumerate(names)}


def decode_round_config(
    data: bytes,
    roster: Mapping[str, bytes] | None = None,
) -> tuple[SecAggConfig, list[int], list[tuple[int, ...]]]:
    """Inverse of :func:`encode_round_config`; :class:`DecodeError` on malformed
    input (not bytes, over :data:`MAX_CONFIG_BYTES`, bad JSON or fields),
    :class:`ConfigError` (from the config's own validation) on unsafe values.

    Roster names in the record become ``identities`` through ``roster`` (this
    node's own): :class:`ConfigError` without one, :class:`IntegrityError` for a
    name it does not list or a name listed twice.
    """
    data = require_bytes(data, "round config", max_size=MAX_CONFIG_BYTES, error=DecodeError)
    try:
        doc = json.loads(data.decode())
        if not isinstance(doc, dict) or doc.get("v") != CONFIG_VERSION:
            raise DecodeError("unsupported round config version")
        node_ids = [int(n) for n in doc["node_ids"]]
        shapes = [tuple(int(x) for x in s) for s in doc["shapes"]]
        e = doc["encoder"]
        encoder = FixedPointEncoder(
            float(e["clip"]),
            int(e["bits"]),
            int(e["max_clients"]),
            max_weight=int(e["max_weight"]),
            norm=str(e["norm"]),
            scale=float(e["scale"]),
        )
        neighbors, max_corrupt = doc["neighbors"], doc.get("max_corrupt")
        active = doc.get("active", False)
        if not isinstance(active, bool):
            raise DecodeError("round config: active must be a bool")
        config = SecAggConfig(
            tuple(range(len(node_ids))),
            int(doc["threshold"]),
            int(doc["dim"]),
            encoder,
            neighbors=None if neighbors is None else int(neighbors),
            min_survivors=int(doc["min_survivors"]),
            session_id=bytes.fromhex(doc["session_id"]),
            graph_seed=bytes.fromhex(doc["graph_seed"]),
            round=int(doc["round"]),
            weighted=bool(doc["weighted"]),
            active_security=active,
            identities=_identities(doc.get("names"), roster, len(node_ids)),
            max_corrupt=None if max_corrupt is None else int(max_corrupt),
            security_bits=int(doc.get("security_bits", DEFAULT_SECURITY_BITS)),
        )
    except SecAggError:
        raise
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        RecursionError,
    ) as exc:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"malformed round config: {exc}") from None
    if any(x < 0 for s in shapes for x in s):
        raise DecodeError("round config: negative array dimension")
    # math.prod on Python ints: np.prod would wrap at 2**63 and let huge shapes "add up".
    if len(set(node_ids)) != len(node_ids) or sum(math.prod(s) for s in shapes) != config.dim:
        raise DecodeError("round config: node ids repeat or shapes do not add up to dim")
    return config, node_ids, shapes


def message_stage(content: RecordDict) -> str | None:
    """The secure-aggregation stage a message belongs to: ours (:data:`RECORD_KEY`)
    or Flower's SecAgg+ (``secaggplus_configs``); ``None`` for anything else."""
    for key, field_name in ((RECORD_KEY, "stage"), ("secaggplus_configs", "stage")):
        record = content.config_records.get(key)
        if record is not None and field_name in record:
            label = record[field_name]
            return label if isinstance(label, str) and len(label) <= _MAX_STAGE_LABEL else None
    return None
