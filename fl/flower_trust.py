"""What a SuperNode pins locally for secure aggregation over Flower: the roster
of identity public keys, its own identity key, and its own threat model.

None of it is ever taken from the server's round record. The server names
roster entries; every key comes from the node's own files.

Node config keys (``flower-supernode --node-config "k=v ..."``):

``secagg-roster``
    Path of the roster: who may take part, as name -> Ed25519 public key
    (32 bytes, hex). Either a JSON object ``{"alice": "<64 hex>", ...}`` or
    a text file of ``name <64 hex>`` lines (blank lines and ``#`` comments
    skipped). Names are 1-64 characters of ``[A-Za-z0-9._:-]``; a name or a key
    listed twice is refused (a key under two names would count one party
    twice). At most :data:`MAX_ROSTER_BYTES`.
``secagg-identity``
    Path of this node's Ed25519 private key: the raw 32-byte RFC 8032 seed,
    the same as 64 hex characters, or a PKCS#8 PEM (``openssl genpkey
    -algorithm ed25519``). Its public key must be in the roster; the node
    finds its own name there.
``secagg-active``
    ``true``: refuse any round without active security (signed keys and the
    consistency check against a malicious server).
``secagg-max-corrupt``
    The most clients this node assumes collude with the server; a round
    claiming fewer, or whose threshold does not resist this many, is refused.
``secagg-min-survivors``
    The fewest inputs the server may unmask; a round allowing fewer is refused.
``secagg-security-bits``
    The least statistical security (bits) a round may claim.

The server holds the same roster (``SecAggFitWorkflow(roster=...)``) and, before
each round, asks every sampled node who it is: the node answers with its
roster name and an Ed25519 signature over a fresh server nonce, its Flower
node id and that name (:func:`identify_transcript`). A node whose answer does
not verify is left out of the round.
"""

from __future__ import annotations

import binascii
import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key

from protocols import SecAggConfig
from secagg import kex
from secagg.errors import ConfigError, IntegrityError

__all__ = [
    "ROSTER_KEY",
    "IDENTITY_KEY",
    "ACTIVE_KEY",
    "MAX_CORRUPT_KEY",
    "MIN_SURVIVORS_KEY",
    "SECURITY_BITS_KEY",
    "MAX_ROSTER_BYTES",
    "NONCE_BYTES",
    "parse_roster",
    "load_roster",
    "parse_identity",
    "load_identity",
    "roster_name",
    "identify_transcript",
    "ClientPolicy",
    "check_identify_signature",
]

ROSTER_KEY = "secagg-roster"
IDENTITY_KEY = "secagg-identity"
ACTIVE_KEY = "secagg-active"
MAX_CORRUPT_KEY = "secagg-max-corrupt"
MIN_SURVIVORS_KEY = "secagg-min-survivors"
SECURITY_BITS_KEY = "secagg-security-bits"
# A roster line is ~100 bytes: 4 MiB holds ~40k parties, far above any cohort.
MAX_ROSTER_BYTES = 4 << 20
_MAX_IDENTITY_FILE = 4096  # a PEM Ed25519 key is 119 bytes
NONCE_BYTES = 32  # fresh per identify request: a signature cannot be replayed into a later round
_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_IDENTIFY_DOMAIN = b"secagg/flower/identify/v1|"


def _read(path: Any, what: str, limit: int) -> bytes:
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(f"{what} must name a file", type=type(path).__name__)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}", path=str(path), reason=str(exc)) from None
    if len(data) > limit:
        raise ConfigError(f"the {what} is larger than {limit} bytes", path=str(path), limit=limit)
    return data


def _public_key(name: str, value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * kex.KEY_BYTES:
        raise ConfigError("roster keys must be 64 hex characters (a 32-byte Ed25519 public key)", name=name)
    try:
        key = bytes.fromhex(value)
        Ed25519PublicKey.from_public_bytes(key)
    except ValueError:
        raise ConfigError("roster key is not a hex Ed25519 public key", name=name) from None
    return key


def parse_roster(data: bytes) -> dict[str, bytes]:
    """Roster bytes (JSON object or ``name hex`` lines) as ``{name: public key}``.

    Raises :class:`ConfigError` (with ``line`` or ``name``) for anything else:
    not UTF-8, bad JSON, a bad name or key, a name or key listed twice, an
    empty roster.
    """
    if not isinstance(data, bytes) or len(data) > MAX_ROSTER_BYTES:
        raise ConfigError("roster must be bytes of at most MAX_ROSTER_BYTES", type=type(data).__name__)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError("roster is not UTF-8") from None
    entries: list[tuple[str, Any]] = []
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"roster is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError("a JSON roster must be an object of name -> hex key")
        entries = list(doc.items())
    else:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ConfigError("roster lines are 'name hexkey'", line=number)
            entries.append((parts[0], parts[1]))
    roster: dict[str, bytes] = {}
    for name, value in entries:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError("roster names are 1-64 characters of [A-Za-z0-9._:-]", name=str(name)[:80])
        if name in roster:
            raise ConfigError("roster lists a name twice", name=name)
        roster[name] = _public_key(name, value)
    if not roster:
        raise ConfigError("roster is empty")
    if len(set(roster.values())) != len(roster):
        raise ConfigError("roster lists one public key under two names (one party would count twice)")
    return roster


def load_roster(path: Any) -> dict[str, bytes]:
    """:func:`parse_roster` of the file at ``path``; :class:`ConfigError` if unreadable."""
    return parse_roster(_read(path, "roster", MAX_ROSTER_BYTES))


def parse_identity(data: bytes) -> kex.IdentityKey:
    """An Ed25519 private key from raw 32 bytes, 64 hex characters or a PKCS#8 PEM.

    Raises :class:`ConfigError` for anything else (the error never echoes the key).
    """
    if not isinstance(data, bytes) or len(data) > _MAX_IDENTITY_FILE:
        raise ConfigError("identity key must be bytes of at most 4096", type=type(data).__name__)
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError("identity PEM is not an unencrypted private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("identity PEM is not an Ed25519 key", type=type(key).__name__)
        return kex.IdentityKey(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    if len(data) == kex.KEY_BYTES:
        return kex.IdentityKey(data)
    try:
        raw = binascii.unhexlify(data.strip())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != kex.KEY_BYTES:
        raise ConfigError("identity key must be 32 raw bytes, 64 hex characters or a PEM", size=len(data))
    return kex.IdentityKey(raw)


def load_identity(path: Any) -> kex.IdentityKey:
    """:func:`parse_identity` of the file at ``path``; :class:`ConfigError` if unreadable."""
    return parse_identity(_read(path, "identity key", _MAX_IDENTITY_FILE))


def roster_name(roster: Mapping[str, bytes], identity: kex.IdentityKey) -> str:
    """This node's name: the roster entry holding ``identity``'s public key (else :class:`ConfigError`)."""
    for name, key in roster.items():
        if key == identity.public_bytes:
            return name
    raise ConfigError("this node's identity key is not in its roster", public_key=identity.public_bytes.hex())


def identify_transcript(nonce: bytes, node_id: int, name: str) -> bytes:
    """What a node signs to claim ``name`` for Flower node ``node_id`` under the server's fresh ``nonce``."""
    encoded = name.encode()
    return (
        _IDENTIFY_DOMAIN
        + nonce
        + int(node_id).to_bytes(8, "little", signed=False)
        + len(encoded).to_bytes(1, "little")
        + encoded
    )


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"node config {name} must be true or false", key=name, value=repr(value)[:80])


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,10}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"node config {name} must be an integer in [{low}, {high}]", key=name, value=repr(value)[:80])
    return value


@dataclass(frozen=True)
class ClientPolicy:
    """The weakest round a client accepts. The server proposes; the client checks.

    ``active``: refuse rounds without active security. ``max_corrupt``: the
    colluders this client assumes (its round config is rebuilt with this
    many, so the threat-model check of :class:`SecAggConfig` runs on its own
    terms). ``min_survivors``, ``security_bits``: lower bounds. ``max_dim``:
    the longest update it accepts (``None``: any).
    """

    active: bool = False
    max_corrupt: int | None = None
    min_survivors: int = 1
    security_bits: int = 1
    max_dim: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.active, bool):
            raise ConfigError("active must be a bool", active=self.active)
        for name, value, low in (
            ("min_survivors", self.min_survivors, 1),
            ("security_bits", self.security_bits, 1),
            ("max_corrupt", self.max_corrupt, 0),
            ("max_dim", self.max_dim, 1),
        ):
            if value is None and name in ("max_corrupt", "max_dim"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}", **{name: value})
        if self.security_bits > 128:
            raise ConfigError("security_bits must be at most 128", security_bits=self.security_bits)

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> ClientPolicy:
        """The policy named by ``secagg-*`` node config keys (absent keys: no constraint)."""
        kwargs: dict[str, Any] = {}
        if ACTIVE_KEY in node_config:
            kwargs["active"] = _as_bool(ACTIVE_KEY, node_config[ACTIVE_KEY])
        if MAX_CORRUPT_KEY in node_config:
            kwargs["max_corrupt"] = _as_int(MAX_CORRUPT_KEY, node_config[MAX_CORRUPT_KEY], 0, 2**32)
        if MIN_SURVIVORS_KEY in node_config:
            kwargs["min_survivors"] = _as_int(MIN_SURVIVORS_KEY, node_config[MIN_SURVIVORS_KEY], 1, 2**32)
        if SECURITY_BITS_KEY in node_config:
            kwargs["security_bits"] = _as_int(SECURITY_BITS_KEY, node_config[SECURITY_BITS_KEY], 1, 128)
        return cls(**kwargs)

    def stricter(self, other: ClientPolicy) -> ClientPolicy:
        """The policy that refuses whatever either refuses."""

        def most(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else max(a, b)

        def least(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return ClientPolicy(
            self.active or other.active,
            most(self.max_corrupt, other.max_corrupt),
            max(self.min_survivors, other.min_survivors),
            max(self.security_bits, other.security_bits),
            least(self.max_dim, other.max_dim),
        )

    def check(self, config: SecAggConfig) -> SecAggConfig:
        """Refuse (:class:`ConfigError`) a round ``config`` weaker than this policy.

        Returns ``config`` unchanged when it passes. The threshold and degree
        are checked by rebuilding the config with this client's own
        ``max_corrupt`` and ``security_bits`` (:meth:`SecAggConfig._check_threat_model`).
        """
        if self.active and not config.active_security:
            raise ConfigError(
                "this client requires active security; the round is semi-honest only", required="active", got="passive"
            )
        if config.security_bits < self.security_bits:
            raise ConfigError(
                "round security_bits is below this client's", got=config.security_bits, needed=self.security_bits
            )
        if config.min_survivors < self.min_survivors:  # type: ignore[operator]
            raise ConfigError(
                "round min_survivors is below this client's", got=config.min_survivors, needed=self.min_survivors
            )
        if self.max_dim is not None and config.dim > self.max_dim:
            raise ConfigError("round update is longer than this client accepts", got=config.dim, needed=self.max_dim)
        if self.max_corrupt is None:
            return config
        if config.max_corrupt is not None and config.max_corrupt < self.max_corrupt:
            raise ConfigError(
                "round assumes fewer colluders than this client", got=config.max_corrupt, needed=self.max_corrupt
            )
        if self.max_corrupt >= config.n:
            raise ConfigError(
                "round has too few clients for this client's max_corrupt", n=config.n, max_corrupt=self.max_corrupt
            )
        # Raises ConfigError when t, k or min_survivors do not resist our own c.
        dataclasses.replace(
            config, max_corrupt=self.max_corrupt, security_bits=max(self.security_bits, config.security_bits)
        )
        return config


def check_identify_signature(roster: Mapping[str, bytes], name: Any, signature: Any, nonce: bytes, node_id: int) -> str:
    """The roster name node ``node_id`` proved it holds; :class:`IntegrityError` otherwise."""
    if not isinstance(name, str) or name not in roster:
        raise IntegrityError(
            "node claims a name that is not in the roster",
            node_id=node_id,
            name=str(name)[:80] if isinstance(name, str) else type(name).__name__,
        )
    if not isinstance(signature, bytes) or len(signature) != kex.SIGNATURE_BYTES:
        raise IntegrityError("identify signature must be 64 bytes", node_id=node_id)
    kex.verify(roster[name], signature, identify_transcript(nonce, node_id, name))
    return name
