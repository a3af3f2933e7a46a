"""Homomorphic-encryption aggregation: packed Paillier, threshold Paillier, CKKS.

Same session interface as SecAgg (``protocols.session``); ``protocols.sim.run``
accepts ``"paillier"``, ``"paillier-threshold"`` and ``"ckks"``. Stages:

0. ADVERTISE_KEYS: the server sends its X25519 public key; each client answers
   with a fresh X25519 public key (per session), signed with its Ed25519
   identity when ``config.identities`` is set.
1. SHARE_KEYS: the key holder (``config.key_holder``, default the lowest id)
   receives everyone's public keys (checking their signatures) and generates
   the session's HE key: a Paillier or CKKS key pair, or, as threshold
   *dealer*, a threshold Paillier key and one share per live client. It seals
   the secret key (or share i) to each client with AES-256-GCM under
   ``kex.agree`` of the two X25519 keys and signs the public key
   (:func:`key_transcript`); the server relays ciphertexts only.
2. MASKED_INPUT: every client checks the key holder's signature, opens its
   sealed key, quantises its update with the shared fixed-point encoder
   (weight n_k as the last, encrypted slot), packs and encrypts it, and sends
   it with an HMAC-SHA256 tag under a client–server key (``kex.agree``), so
   transport tampering is an ``IntegrityError``. The server checks the tag
   and each ciphertext (Paillier: a unit of Z*_{n²}), decodes and adds.
3. UNMASK: the server sends the aggregate ciphertexts (tagged) to surviving
   key holders. Shared key: ``config.decryptors`` survivors decrypt and return
   the integer sums. Threshold: every survivor returns a partial decryption
   with a proof; the server verifies each (a bad one is an ``IntegrityError``
   naming the party) and combines any t.

Both Paillier and CKKS carry the encoder's integers exactly (CKKS in integer
packing, ``secagg.ckks.integer_params``), so the result equals
``run_plaintext``'s bit for bit when the encoders' rounding agrees.

**Trust model**:

* ``paillier`` and ``ckks`` (shared secret key): every client holds the secret
  key, so **the server colluding with any one client decrypts every client's
  update**. ``HeConfig`` refuses them when ``max_corrupt > 0``.
* ``paillier-threshold``: no single party holds the key. With t >
  ``max_corrupt``, the colluding clients' shares, even with the server, do
  not decrypt anything. The dealer (the key holder) knows the factorisation
  while dealing and must erase it; it is **trusted during set-up only**.
* Signed ceremony (when ``HeConfig.identities`` is set): each client signs its
  session X25519 key and the key holder checks those signatures before
  sealing; the key holder signs the HE public key (Paillier n, the threshold
  key with its verification keys, or the public CKKS context), its X25519 key
  and the parties, bound to protocol, session, round and holder id
  (:func:`key_transcript`). Clients refuse an unsigned or mismatched key with
  an ``IntegrityError`` naming the key holder, so a server that substitutes
  keys learns nothing. **Without identities the ceremony is unsigned** and a
  malicious server can substitute keys and read every update
  (``tests/protocols/test_he_active.py`` shows both).
* The server refuses a Paillier ciphertext that is not a unit of Z*_{n²},
  naming its sender. A unit that encrypts an out-of-range plaintext cannot be
  attributed without range proofs; when it overflows the packing, the round
  aborts at decryption instead of returning a sum.
* Keys are per session: every session (round) runs a fresh ceremony, so keys
  rotate every round. Reusing a key across N rounds is not implemented.
* HE gives no integrity against the server: it can add any ciphertext it likes.
  Decryptors cannot check that what they are asked to decrypt is the
  aggregate, so a *malicious* server can still have one client's ciphertext
  decrypted (in all schemes). Privacy of individual updates holds against a
  semi-honest server only; the signed ceremony removes key substitution, not
  this.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from secagg import aead, kex
from secagg.encoding_torch import to_numpy
from secagg.errors import ConfigError, DecodeError, IntegrityError, ProtocolError, SecAggError, ThresholdError

from . import messages as m
from .he_messages import (HeAdvertise, HeDecrypted, HeDecryptRequest, HeInput, HeKeyDelivery, HeKeyForward,
                          HeKeyRequest, HeKeysBroadcast, HePartial, chunk_mac, pack_ints, unpack_ints)
from .session import ABORTED, DONE, AbortReason, AggregateResult, SessionState, Stage

__all__ = ["SCHEMES", "SHARED_KEY_SCHEMES", "HeConfig", "HeScheme", "HeServer", "HeClient", "advert_transcript",
           "key_transcript", "ckks_chunk_sizes", "register"]

SCHEMES = ("paillier", "paillier-threshold", "ckks")
#: Schemes in which every client holds the whole secret key.
SHARED_KEY_SCHEMES = ("paillier", "ckks")
_CONTEXT = b"secagg/he/v1"
_U32 = struct.Struct(">I")
_X25519_BYTES = 32


@dataclass(frozen=True)
class HeConfig:
    """Validated HE session parameters.

    ``encoder`` is the shared ``FixedPointEncoder``; ``key_bits`` the Paillier
    modulus size; ``threshold`` the t of threshold Paillier (default n//2 + 1);
    ``min_survivors`` the fewest inputs aggregated; ``decryptors`` how many
    survivors are asked to decrypt (shared key); ``workers`` processes for
    Paillier pools and decryption; ``pool_method`` ``"standard"`` (textbook
    r) or ``"djn"`` (DJN 2010 short-exponent r, ~5-20x cheaper encryption;
    see ``secagg.paillier``).

    ``max_corrupt`` is how many clients may collude with the server (default
    0). Above 0, ``paillier`` and ``ckks`` are refused (every client holds the
    key), and ``paillier-threshold`` needs t > max_corrupt; the default t is
    max(n//2 + 1, max_corrupt + 1). ``identities`` maps every client id to its
    Ed25519 public key; when set, the key ceremony is signed (module
    docstring) and every ``HeClient`` needs its ``identity``. When ``None`` the
    ceremony is unsigned: safe against a semi-honest server only.
    """

    client_ids: tuple[int, ...]
    dim: int
    encoder: Any
    scheme: str = "paillier"
    key_holder: int | None = None
    threshold: int | None = None
    min_survivors: int = 1
    weighted: bool = False
    key_bits: int = 2048
    decryptors: int = 2
    workers: int = 1
    pool_method: str = "standard"
    session_id: bytes = field(default_factory=lambda: os.urandom(16))
    round: int = 0
    max_corrupt: int = 0
    identities: Mapping[int, bytes] | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {SCHEMES}", scheme=self.scheme)
        ids = self.client_ids
        if not ids or len(set(ids)) != len(ids) or any(not isinstance(i, int) or i < 0 for i in ids):
            raise ConfigError("client_ids must be distinct non-negative ints")
        if self.key_holder is None:
            object.__setattr__(self, "key_holder", min(ids))
        elif self.key_holder not in ids:
            raise ConfigError("key_holder must be a client", key_holder=self.key_holder)
        self._check_collusion()
        self._check_identities()
        if not 1 <= self.min_survivors <= len(ids):
            raise ConfigError("min_survivors must be in [1, n]", min_survivors=self.min_survivors)
        if self.pool_method not in ("standard", "djn"):
            raise ConfigError("pool_method must be 'standard' or 'djn'", pool_method=self.pool_method)
        if self.dim < 0 or self.decryptors < 1 or self.workers < 1:
            raise ConfigError("dim >= 0, decryptors >= 1 and workers >= 1 are required")

    def _check_collusion(self) -> None:
        n, c = len(self.client_ids), self.max_corrupt
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n:
            raise ConfigError("max_corrupt must be an int in [0, n - 1]", max_corrupt=c, n=n)
        if c and self.scheme in SHARED_KEY_SCHEMES:
            raise ConfigError(
                f"{self.scheme!r} gives every client the secret key, so one client colluding with the server "
                f"decrypts every update; with max_corrupt={c} use 'paillier-threshold' with threshold >= {c + 1}",
                scheme=self.scheme, max_corrupt=c)
        if self.scheme != "paillier-threshold":
            return
        t = max(n // 2 + 1, c + 1) if self.threshold is None else self.threshold
        if not 1 <= t <= n:
            raise ThresholdError("threshold must be in [1, n]", needed=t, got=n)
        if t <= c:  # c colluding clients hold c shares: they must stay below t
            raise ConfigError(f"paillier-threshold needs threshold > max_corrupt (got threshold={t}, "
                              f"max_corrupt={c}); use threshold >= {c + 1}", needed=c + 1, got=t, max_corrupt=c)
        object.__setattr__(self, "threshold", t)

    def _check_identities(self) -> None:
        if self.identities is None:
            return
        ids = dict(self.identities)
        if set(ids) != set(self.client_ids) or any(not isinstance(k, bytes) or len(k) != 32 for k in ids.values()):
            raise ConfigError("identities must map every client id to a 32-byte Ed25519 public key")
        object.__setattr__(self, "identities", ids)

    @property
    def protocol_id(self) -> int:
        return m.PROTOCOL_IDS[self.scheme]

    @property
    def bound(self) -> int:
        """Largest |integer| the encoder's ``quantize`` emits (values and the weight)."""
        return int(self.encoder.max_abs_int)

    def context(self, purpose: bytes, *ids: int) -> bytes:
        """HKDF/AEAD/MAC context: scheme, session, round, purpose, party ids."""
        return b"|".join([_CONTEXT, self.scheme.encode(), self.session_id, _U32.pack(self.round), purpose,
                          *(_U32.pack(i) for i in ids)])


def _header(config: HeConfig, stage: Stage, sender: int, receiver: int) -> m.Header:
    return m.Header(config.protocol_id, config.session_id, config.round, stage, sender, receiver)


# ---------------------------------------------------------------- signed transcripts
def _transcript(config: HeConfig, label: bytes, *fields: bytes) -> bytes:
    """Length-prefixed fields after scheme, protocol id, session and round, so
    no two different transcripts encode alike."""
    parts = (_CONTEXT + b"/" + label, config.scheme.encode(), _U32.pack(config.protocol_id), config.session_id,
             _U32.pack(config.round), *fields)
    return b"".join(_U32.pack(len(p)) + p for p in parts)


def advert_transcript(config: HeConfig, client_id: int, public: bytes) -> bytes:
    """What client ``client_id`` signs: its X25519 key for this session."""
    return _transcript(config, b"advertise", _U32.pack(client_id), public)


def key_transcript(config: HeConfig, he_public: bytes, holder_public: bytes, parties: tuple[int, ...]) -> bytes:
    """What the key holder signs: the HE public key bytes (Paillier n; the
    threshold key with its verification keys; the public CKKS context), the
    holder's X25519 key that sealed the secrets, and the parties."""
    return _transcript(config, b"he-key", _U32.pack(config.key_holder), he_public,  # type: ignore[arg-type]
                       holder_public, b"".join(_U32.pack(u) for u in parties))


def _verify_signed(config: HeConfig, signer: int, signature: bytes, transcript: bytes, what: str) -> None:
    """``IntegrityError(client_id=signer)`` unless ``signer`` signed ``transcript``."""
    try:
        kex.verify(config.identities[signer], signature, transcript)  # type: ignore[index]
    except IntegrityError:
        raise IntegrityError(f"{what} is unsigned or not signed by client {signer}", client_id=signer) from None


# ---------------------------------------------------------------- scheme back-ends
class HeScheme:
    """What differs between Paillier, threshold Paillier and CKKS."""

    def __init__(self, config: HeConfig) -> None:
        self.config = config
        n = len(config.client_ids)
        if config.scheme == "ckks":
            from secagg import ckks
            self.ckks = ckks
            self.params = ckks.integer_params(n, config.bound)
        else:
            from secagg import paillier
            self.paillier = paillier
            self.plan = paillier.PackingPlan(n, config.bound, config.key_bits)

    # key holder / dealer: returns (public bytes, {client: secret bytes})
    def generate(self, parties: list[int]) -> tuple[bytes, dict[int, bytes]]:
        c = self.config
        if c.scheme == "ckks":
            holder = self.ckks.CkksKeyHolder(self.params)
            secret = holder.secret_bytes()
            return holder.server_context_bytes(), {u: secret for u in parties}
        if c.scheme == "paillier":
            pk, sk = self.paillier.generate_keypair(c.key_bits)
            return pack_ints(pk.n), {u: pack_ints(sk.p, sk.q) for u in parties}
        from secagg import paillier_threshold as T
        pub, shares = T.deal(c.threshold, len(parties), bits=c.key_bits)  # type: ignore[arg-type]
        public = pack_ints(pub.n, pub.threshold, pub.parties, pub.v, *pub.verification_keys)
        return public, {u: pack_ints(s.index, s.share) for u, s in zip(parties, shares)}

    def load_public(self, data: bytes) -> Any:
        """The HE public key from the key holder; ``DecodeError`` if malformed.
        A CKKS context carrying a secret key is an ``IntegrityError``."""
        c = self.config
        if c.scheme == "ckks":
            return self.ckks.CkksServerContext(self.params, data)
        ints = unpack_ints(data)
        try:
            if c.scheme == "paillier":
                if len(ints) != 1 or ints[0].bit_length() != c.key_bits:
                    raise DecodeError("bad Paillier public key")
                return self.paillier.PaillierPublicKey(ints[0])
            from secagg import paillier_threshold as T
            if len(ints) < 5 or ints[1] != c.threshold or ints[0].bit_length() < c.key_bits - 1:
                raise DecodeError("bad threshold public key")
            n, t, l, v, *vks = ints
            return T.ThresholdPublicKey(n, t, l, v, tuple(vks))
        except (ConfigError, ThresholdError) as exc:
            raise DecodeError(f"bad public key: {exc}") from None


class HeServer:
    """Server side: relays the key ceremony, adds ciphertexts, gets the sum decrypted."""

    def __init__(self, config: HeConfig) -> None:
        self.config = config
        self.scheme = HeScheme(config)
        self.state: Stage | SessionState = Stage.ADVERTISE_KEYS
        self.abort_reason: AbortReason | None = None
        self._kx = kex.generate_keypair()
        self._dropped: dict[str, tuple[int, ...]] = {}
        self._inbox: dict[int, Any] = {}
        self._publics: dict[int, bytes] = {}
        self._parties: list[int] = []
        self._public: Any = None
        self._sum: Any = None
        self._survivors: list[int] = []
        self._agg_chunks: dict[int, bytes] = {}
        self._result: AggregateResult | None = None

    # -- driver interface ---------------------------------------------------
    def start(self) -> dict[int, m.Message]:
        return {u: HeKeyRequest(_header(self.config, Stage.ADVERTISE_KEYS, m.SERVER_ID, u), self._kx.public_bytes)
                for u in self.config.client_ids}

    def receive(self, client_id: int, msg: Any) -> None:
        """Consume one reply; ProtocolError / DecodeError / IntegrityError leave the state unchanged."""
        if self.state in (DONE, ABORTED):
            raise ProtocolError("no stage is open", local=True)
        if client_id not in self.config.client_ids:
            raise ProtocolError("message from an unknown sender", client_id=client_id)
        if isinstance(msg, (bytes, bytearray, memoryview)):
            msg = m.decode(bytes(msg))
        stage = self.state
        assert isinstance(stage, Stage)
        if not isinstance(msg, m.Message) or msg.header != _header(self.config, stage, client_id, m.SERVER_ID):
            raise ProtocolError("message for another stage, session or party", client_id=client_id,
                                stage=stage)
        if client_id in self._inbox:
            raise ProtocolError("duplicate message", client_id=client_id, stage=stage)
        handler = {Stage.ADVERTISE_KEYS: self._on_advertise, Stage.SHARE_KEYS: self._on_delivery,
                   Stage.MASKED_INPUT: self._on_input, Stage.UNMASK: self._on_decrypted}[stage]
        self._inbox[client_id] = handler(client_id, msg)

    def close_stage(self) -> dict[int, m.Message]:
        stage = self.state
        if stage in (DONE, ABORTED):
            return {}
        closer = {Stage.ADVERTISE_KEYS: self._close_advertise, Stage.SHARE_KEYS: self._close_delivery,
                  Stage.MASKED_INPUT: self._close_input, Stage.UNMASK: self._close_decrypted}[stage]  # type: ignore
        outbox = closer()
        self._inbox = {}
        return outbox

    def result(self) -> AggregateResult:
        if self.state is ABORTED:
            raise self.abort_reason.to_error()  # type: ignore[union-attr]
        if self._result is None:
            raise ProtocolError("round not finished", local=True)
        return self._result

    # -- helpers ------------------------------------------------------------
    def _abort(self, stage: Stage, needed: int, got: int, detail: str = "") -> dict[int, m.Message]:
        self.state = ABORTED
        self.abort_reason = AbortReason(stage, needed, got, dict(self._dropped), detail)
        return {}

    def _note_dropped(self, stage: Stage, expected: list[int]) -> list[int]:
        alive = [u for u in expected if u in self._inbox]
        missing = tuple(sorted(set(expected) - set(alive)))
        if missing:
            self._dropped[stage.value] = missing
        return alive

    def _mac_key(self, u: int) -> bytes:
        return kex.agree(self._kx, self._publics[u], context=self.config.context(b"mac", u))

    # -- stage 0 ------------------------------------------------------------
    def _on_advertise(self, u: int, msg: Any) -> HeAdvertise:
        c = self.config
        if not isinstance(msg, HeAdvertise) or len(msg.public) != _X25519_BYTES:
            raise DecodeError("expected a 32-byte X25519 key", client_id=u)
        if c.identities is not None:
            _verify_signed(c, u, msg.signature, advert_transcript(c, u, msg.public), "X25519 advert")
        return msg

    def _close_advertise(self) -> dict[int, m.Message]:
        c = self.config
        self._parties = self._note_dropped(Stage.ADVERTISE_KEYS, sorted(c.client_ids))
        self._publics = {u: msg.public for u, msg in self._inbox.items()}
        signatures = {u: msg.signature for u, msg in self._inbox.items()}
        needed = c.threshold if c.scheme == "paillier-threshold" else c.min_survivors
        if c.key_holder not in self._publics or len(self._parties) < needed:  # type: ignore[operator]
            return self._abort(Stage.ADVERTISE_KEYS, needed or 1, len(self._parties), "key holder or quorum missing")
        self.state = Stage.SHARE_KEYS
        holder = c.key_holder
        return {holder: HeKeysBroadcast(_header(c, Stage.SHARE_KEYS, m.SERVER_ID, holder),  # type: ignore[arg-type]
                                        dict(self._publics), signatures)}

    # -- stage 1 ------------------------------------------------------------
    def _on_delivery(self, u: int, msg: Any) -> HeKeyDelivery:
        if u != self.config.key_holder:
            raise ProtocolError("only the key holder speaks in this stage", client_id=u)
        c = self.config
        if not isinstance(msg, HeKeyDelivery) or set(msg.sealed) != set(self._parties):
            raise DecodeError("key delivery must seal one secret per live client", client_id=u)
        if c.identities is not None:
            transcript = key_transcript(c, msg.public_key, self._publics[u], tuple(self._parties))
            _verify_signed(c, u, msg.signature, transcript, "HE public key")
        self._public = self.scheme.load_public(msg.public_key)  # CKKS: refuses a secret key
        return msg

    def _close_delivery(self) -> dict[int, m.Message]:
        c = self.config
        delivery = self._inbox.get(c.key_holder)  # type: ignore[arg-type]
        if delivery is None:
            self._dropped[Stage.SHARE_KEYS.value] = (c.key_holder,)  # type: ignore[assignment]
            return self._abort(Stage.SHARE_KEYS, 1, 0, "the key holder dropped")
        self.state = Stage.MASKED_INPUT
        holder_public = self._publics[c.key_holder]  # type: ignore[index]
        return {u: HeKeyForward(_header(c, Stage.MASKED_INPUT, m.SERVER_ID, u), delivery.public_key,
                                holder_public, delivery.sealed[u], tuple(self._parties), delivery.signature)
                for u in self._parties}

    # -- stage 2 ------------------------------------------------------------
    def _on_input(self, u: int, msg: Any) -> bool:
        if u not in self._parties or not isinstance(msg, HeInput):
            raise ProtocolError("unexpected input", client_id=u)
        if not hmac.compare_digest(msg.tag, chunk_mac(self._mac_key(u), msg.header.aad(), msg.chunks)):
            raise IntegrityError("input tag does not verify", client_id=u)
        try:
            self._add_input(u, msg)
        except (DecodeError, IntegrityError) as exc:  # blame the sender, never the decryptors later
            raise type(exc)(exc.message, **{**exc.fields, "client_id": u, "stage": Stage.MASKED_INPUT}) from None
        return True

    def _add_input(self, u: int, msg: HeInput) -> None:
        """Check one client's ciphertexts (Paillier: range and gcd(c, n) = 1) and add them."""
        c, s = self.config, self.scheme
        if c.scheme == "ckks":
            if self._sum is None:
                self._sum = s.ckks.Accumulator(self._public, c.dim)
            chunks = [msg.chunks.get(i, b"") for i in range(len(self._sum.sizes))]
            if set(msg.chunks) != set(range(len(chunks))):
                raise DecodeError("wrong CKKS chunk indices", client_id=u)
            self._sum.add(chunks)  # all-or-nothing
        else:
            pk = self._public.paillier if c.scheme == "paillier-threshold" else self._public
            count = s.plan.n_ciphertexts(c.dim + 1)
            if set(msg.chunks) != {0}:
                raise DecodeError("Paillier input is one chunk", client_id=u)
            cts = s.paillier.ciphertexts_from_bytes(pk, msg.chunks[0], count)  # refuses non-units
            self._sum = cts if self._sum is None else s.paillier.sum_ciphertexts(pk, [self._sum, cts])

    def _close_input(self) -> dict[int, m.Message]:
        c = self.config
        self._survivors = self._note_dropped(Stage.MASKED_INPUT, self._parties)
        if len(self._survivors) < c.min_survivors or self._sum is None:
            return self._abort(Stage.MASKED_INPUT, c.min_survivors, len(self._survivors))
        if c.scheme == "ckks":
            self._agg_chunks = dict(enumerate(self._sum.result()))
        else:
            pk = self._public.paillier if c.scheme == "paillier-threshold" else self._public
            self._agg_chunks = {0: self.scheme.paillier.ciphertexts_to_bytes(pk, self._sum)}
        self.state = Stage.UNMASK
        ask = self._survivors if c.scheme == "paillier-threshold" else self._survivors[: c.decryptors]
        out = {}
        for u in ask:
            h = _header(c, Stage.UNMASK, m.SERVER_ID, u)
            out[u] = HeDecryptRequest(h, self._agg_chunks, chunk_mac(self._mac_key(u), h.aad(), self._agg_chunks),
                                      tuple(self._survivors))
        return out

    # -- stage 3 ------------------------------------------------------------
    def _on_decrypted(self, u: int, msg: Any) -> Any:
        c = self.config
        if u not in self._survivors:
            raise ProtocolError("not asked to decrypt", client_id=u)
        if c.scheme != "paillier-threshold":
            if not isinstance(msg, HeDecrypted) or msg.sums.shape != (c.dim + 1,) \
                    or msg.sums.dtype != c.encoder.dtype:
                raise DecodeError("decrypted sums have the wrong shape or word size", client_id=u)
            for other in self._inbox.values():
                if not np.array_equal(other, msg.sums):
                    raise IntegrityError("decryptors disagree on the sum", client_id=u)
            return msg.sums
        from secagg import paillier_threshold as T
        if not isinstance(msg, HePartial):
            raise ProtocolError("expected a partial decryption", client_id=u)
        index = self._parties.index(u) + 1
        e, z, a, b = unpack_ints(msg.proof, 4)
        values = tuple(unpack_ints(msg.values))
        partial = T.PartialDecryption(index, values, e, z, a, b)
        try:
            T.verify_partial(self._public, self._sum, partial)
        except IntegrityError as exc:
            raise IntegrityError(str(exc.message), client_id=u, party=index) from None
        return partial

    def _close_decrypted(self) -> dict[int, m.Message]:
        c = self.config
        answered = [u for u in self._survivors if u in self._inbox]
        if c.scheme == "paillier-threshold":
            from secagg import paillier_threshold as T
            t = self._public.threshold
            if len(answered) < t:
                self._dropped[Stage.UNMASK.value] = tuple(sorted(set(self._survivors) - set(answered)))
                return self._abort(Stage.UNMASK, t, len(answered), "too few partial decryptions")
            plaintexts = T.combine(self._public, self._sum, [self._inbox[u] for u in answered], verify=False)
        elif not answered:
            self._dropped[Stage.UNMASK.value] = tuple(self._survivors[: c.decryptors])
            return self._abort(Stage.UNMASK, 1, 0, "no decryptor answered")
        try:
            if c.scheme == "paillier-threshold":
                raw = c.encoder.to_modular(self.scheme.plan.unpack(plaintexts, c.dim + 1, len(self._survivors)))
            else:
                raw = self._inbox[answered[0]]
            vector_sum, weight_sum = c.encoder.decode_sum(raw)
        except IntegrityError as exc:  # a unit ciphertext of an out-of-range plaintext: abort, never a sum
            return self._abort(Stage.UNMASK, 1, 0, f"no valid sum: {exc.message} (a client encrypted a plaintext "
                               "outside its bound; not attributable without range proofs)")
        aggregate = vector_sum / weight_sum if c.weighted and weight_sum else vector_sum
        dropped = sorted(set(c.client_ids) - set(self._survivors))
        self._result = AggregateResult(np.asarray(aggregate, dtype=np.float64), list(self._survivors), dropped,
                                       weight_sum=float(weight_sum), weighted=c.weighted, raw_sum=raw,
                                       extras={"scheme": c.scheme, "aggregate_bytes":
                                               sum(len(b) for b in self._agg_chunks.values())})
        self.state = DONE
        return {}


def ckks_chunk_sizes(params: Any, dim: int) -> list[int]:
    """Slots per CKKS ciphertext chunk for a ``dim``-long update plus its weight."""
    from secagg.ckks import SLOTS
    n_slots = params.n_slots(dim)
    return [min(SLOTS, n_slots - i) for i in range(0, n_slots, SLOTS)]


class HeClient:
    """Client side: key ceremony, encrypt the encoded update, decrypt on request.

    ``update`` is a 1-D float array or torch tensor (bfloat16/float16 tensors
    are widened to float32, which holds them exactly). ``identity`` is this
    client's Ed25519 key, required when ``config.identities`` is set. Any
    error moves the client to ABORTED (kept in ``error``); every later
    ``handle`` raises ``ProtocolError``.
    """

    def __init__(self, config: HeConfig, client_id: int, update: Any, *, weight: int = 1,
                 identity: kex.IdentityKey | None = None, rng: np.random.Generator | None = None) -> None:
        if client_id not in config.client_ids:
            raise ConfigError("unknown client id", client_id=client_id)
        if config.identities is not None and (identity is None
                                              or identity.public_bytes != config.identities[client_id]):
            raise ConfigError("identities are configured: this client needs its own identity key",
                              client_id=client_id)
        self.config, self.id, self.identity = config, client_id, identity
        self.scheme = HeScheme(config)
        self._ints = config.encoder.quantize(to_numpy(update), weight, rng)  # weight is the last slot
        self._kx = kex.generate_keypair()
        self._server_public = b""
        self._secret: Any = None
        self._public: Any = None
        self._parties: tuple[int, ...] = ()
        self.error: SecAggError | None = None
        self.state: Stage | SessionState = Stage.ADVERTISE_KEYS

    def handle(self, msg: Any) -> m.Message | None:
        """Consume one server message and return the reply."""
        if self.state in (DONE, ABORTED):
            raise ProtocolError("session is over", local=True, client_id=self.id, state=self.state.value)
        try:
            return self._step(msg)
        except SecAggError as exc:
            self.state, self.error = ABORTED, exc
            raise
        except (ValueError, TypeError, ArithmeticError, LookupError, RuntimeError) as exc:
            # a library (gmpy2, TenSEAL, numpy) choking on bytes the server sent
            err = DecodeError(f"cannot process the server's message: {type(exc).__name__}: {exc}",
                              stage=getattr(self.state, "value", None))
            self.state, self.error = ABORTED, err
            raise err from exc

    def _step(self, msg: Any) -> m.Message | None:
        if isinstance(msg, (bytes, bytearray, memoryview)):
            msg = m.decode(bytes(msg))
        if not isinstance(msg, m.Message):
            raise ProtocolError("not a message", local=True)
        entry = _CLIENT_TRANSITIONS[self.state].get(type(msg))  # type: ignore[index]
        if entry is None:
            raise ProtocolError("message at the wrong stage, or a duplicate", stage=msg.header.stage,
                                state=self.state.value, kind=type(msg).__name__)  # type: ignore[union-attr]
        stage, handler, next_state = entry
        if msg.header != _header(self.config, stage, m.SERVER_ID, self.id):
            raise ProtocolError("message for another stage, session or party", stage=stage)
        reply = handler(self, msg)
        self.state = next_state
        return reply

    def _reply_header(self, stage: Stage) -> m.Header:
        return _header(self.config, stage, self.id, m.SERVER_ID)

    def _seal_key(self, peer_public: bytes, holder: int, receiver: int) -> tuple[bytes, bytes]:
        ctx = self.config.context(b"key-delivery", holder, receiver)
        return kex.agree(self._kx, peer_public, context=ctx), ctx

    def _advertise(self, msg: HeKeyRequest) -> HeAdvertise:
        self._server_public = msg.server_public
        public = self._kx.public_bytes
        signature = b"" if self.identity is None else self.identity.sign(advert_transcript(self.config, self.id, public))
        return HeAdvertise(self._reply_header(Stage.ADVERTISE_KEYS), public, signature)

    def _deal(self, msg: HeKeysBroadcast) -> HeKeyDelivery:
        c = self.config
        if self.id != c.key_holder or msg.keys.get(self.id) != self._kx.public_bytes:
            raise ProtocolError("only the key holder deals keys, to its own advertised key", stage=Stage.SHARE_KEYS)
        if not set(msg.keys) <= set(c.client_ids):
            raise ProtocolError("keys of unknown clients", stage=Stage.SHARE_KEYS)
        for v, public in msg.keys.items():
            if len(public) != _X25519_BYTES:
                raise DecodeError("expected a 32-byte X25519 key", client_id=v)
            if c.identities is not None:  # else the server could pose as v and receive v's secret
                _verify_signed(c, v, msg.signatures.get(v, b""), advert_transcript(c, v, public), "X25519 advert")
        parties = sorted(msg.keys)
        public, secrets_ = self.scheme.generate(parties)
        sealed = {}
        for u in parties:
            key, ctx = self._seal_key(msg.keys[u], self.id, u)
            sealed[u] = aead.seal(key, secrets_[u], aad=ctx)
        del secrets_  # the dealer keeps nothing (its own share arrives sealed, like everyone's)
        signature = b"" if self.identity is None else self.identity.sign(
            key_transcript(c, public, self._kx.public_bytes, tuple(parties)))
        return HeKeyDelivery(self._reply_header(Stage.SHARE_KEYS), public, sealed, signature)

    def _encrypt(self, msg: HeKeyForward) -> HeInput:
        c, s = self.config, self.scheme
        if self.id not in msg.parties or not set(msg.parties) <= set(c.client_ids):
            raise ProtocolError("the party list omits this client or names unknown ones", stage=Stage.MASKED_INPUT)
        if c.identities is not None:  # before opening anything: a substituted key is refused here
            transcript = key_transcript(c, msg.public_key, msg.holder_public, msg.parties)
            _verify_signed(c, c.key_holder, msg.signature, transcript, "HE key")  # type: ignore[arg-type]
        key, ctx = self._seal_key(msg.holder_public, c.key_holder, self.id)  # type: ignore[arg-type]
        secret = aead.open(key, msg.sealed, aad=ctx)
        if c.scheme == "ckks":
            self._secret = s.ckks.CkksKeyHolder.from_secret_bytes(s.params, secret)
            slots = s.ckks.pack_integers(s.params, self._ints)
            chunks = dict(enumerate(self._secret.encrypt(slots)))
        else:
            public = s.load_public(msg.public_key)
            if c.scheme == "paillier":
                p, q = unpack_ints(secret, 2)
                self._secret = s.paillier.PaillierSecretKey(public, p, q)
                pk = public
                pool = s.paillier.NoisePool(pk, self._secret, method=c.pool_method)
            else:
                from secagg import paillier_threshold as T
                index, share = unpack_ints(secret, 2)
                self._secret = T.KeyShare(index, share)
                pk = public.paillier
                pool = s.paillier.NoisePool(pk, method=c.pool_method)  # no factors here
            self._public = public
            pool.fill(s.plan.n_ciphertexts(self._ints.size), workers=c.workers)
            cts = s.paillier.encrypt_packed(pk, s.plan, self._ints, pool)
            chunks = {0: s.paillier.ciphertexts_to_bytes(pk, cts)}
        self._parties = msg.parties
        h = self._reply_header(Stage.MASKED_INPUT)
        return HeInput(h, chunks, chunk_mac(self._mac_key(), h.aad(), chunks))

    def _mac_key(self) -> bytes:
        return kex.agree(self._kx, self._server_public, context=self.config.context(b"mac", self.id))

    def _decrypt(self, msg: HeDecryptRequest) -> m.Message:
        c, s = self.config, self.scheme
        if not hmac.compare_digest(msg.tag, chunk_mac(self._mac_key(), msg.header.aad(), msg.chunks)):
            raise IntegrityError("aggregate tag does not verify", stage=Stage.UNMASK)
        if self._secret is None or not msg.survivors or not set(msg.survivors) <= set(self._parties):
            raise ProtocolError("unexpected decrypt request: no key, or survivors outside the parties",
                                stage=Stage.UNMASK)
        k = len(msg.survivors)
        h = self._reply_header(Stage.UNMASK)
        if c.scheme == "ckks":
            sizes = ckks_chunk_sizes(s.params, c.dim)
            if set(msg.chunks) != set(range(len(sizes))):
                raise DecodeError("wrong CKKS chunk indices")
            slots = self._secret.decrypt([msg.chunks[i] for i in range(len(sizes))], sizes)
            ints = s.ckks.unpack_integers(s.params, slots, c.dim + 1, k)
            return HeDecrypted(h, c.encoder.to_modular(ints))
        pk = self._public.paillier if c.scheme == "paillier-threshold" else self._public
        if set(msg.chunks) != {0}:
            raise DecodeError("Paillier aggregate is one chunk")
        cts = s.paillier.ciphertexts_from_bytes(pk, msg.chunks[0], s.plan.n_ciphertexts(c.dim + 1))
        if c.scheme == "paillier":
            ints = s.paillier.decrypt_packed(self._secret, s.plan, cts, c.dim + 1, k, workers=c.workers)
            return HeDecrypted(h, c.encoder.to_modular(ints))
        from secagg import paillier_threshold as T
        part = T.partial_decrypt(self._public, self._secret, cts, workers=c.workers)
        return HePartial(h, pack_ints(*part.values),
                         pack_ints(part.challenge, part.response, part.commitment_a, part.commitment_b))


#: The client's stages, h11-style: state -> message type -> (header stage, handler, next state).
#: The key holder goes through SHARE_KEYS (it deals); every other client skips it.
_CLIENT_TRANSITIONS: dict[Any, dict[type, tuple[Stage, Any, Any]]] = {
    Stage.ADVERTISE_KEYS: {HeKeyRequest: (Stage.ADVERTISE_KEYS, HeClient._advertise, Stage.SHARE_KEYS)},
    Stage.SHARE_KEYS: {HeKeysBroadcast: (Stage.SHARE_KEYS, HeClient._deal, Stage.MASKED_INPUT),
                       HeKeyForward: (Stage.MASKED_INPUT, HeClient._encrypt, Stage.UNMASK)},
    Stage.MASKED_INPUT: {HeKeyForward: (Stage.MASKED_INPUT, HeClient._encrypt, Stage.UNMASK)},
    Stage.UNMASK: {HeDecryptRequest: (Stage.UNMASK, HeClient._decrypt, DONE)},
}


# ---------------------------------------------------------------- sim registration
def register(*, key_bits: int = 2048, threshold_key_bits: int = 2048, decryptors: int = 2,
             workers: int = 1, pool_method: str = "standard", max_corrupt: int = 0) -> None:
    """(Re)register the three HE protocols with ``protocols.sim``.

    Tests call it with small keys; deployments keep 2048 bits. Dealing a
    2048-bit threshold key generates two 1024-bit safe primes (can take minutes).
    The simulator's identities (``sim.run(..., active_security=True)``) sign
    the key ceremony; ``max_corrupt`` goes to every ``HeConfig``.
    """
    from .sim import ProtocolSpec, register_protocol

    def builder(scheme: str):
        bits = threshold_key_bits if scheme == "paillier-threshold" else key_bits

        def build(client_ids, dim, *, encoder, weighted, threshold, min_survivors, identities=None,
                  **_: Any) -> HeConfig:
            return HeConfig(tuple(client_ids), dim, encoder, scheme, threshold=threshold,
                            min_survivors=min_survivors or 1, weighted=weighted, key_bits=bits,
                            decryptors=decryptors, workers=workers, pool_method=pool_method,
                            max_corrupt=max_corrupt, identities=identities)
        return build

    for scheme in SCHEMES:
        register_protocol(ProtocolSpec(scheme, builder(scheme), HeServer, HeClient), replace=True)


register()
