"""Homomorphic-encryption aggregation: packed Paillier, threshold Paillier, CKKS.

Same session interface as SecAgg (``protocols.session``); ``protocols.sim.run``
accepts ``"paillier"``, ``"paillier-threshold"`` and ``"ckks"``. Stages:

0. ADVERTISE_KEYS: the server sends its X25519 public key; each client answers
   with a fresh X25519 public key (per session).
1. SHARE_KEYS: the key holder (``config.key_holder``, default the lowest id)
   receives everyone's public keys and generates the session's HE key: a
   Paillier or CKKS key pair, or, as threshold *dealer*, a threshold Paillier
   key and one share per live client. It seals the secret key (or share i) to
   each client with AES-256-GCM under ``kex.agree`` of the two X25519 keys; the
   server relays ciphertexts only.
2. MASKED_INPUT: every client opens its sealed key, quantises its update with
   the shared fixed-point encoder (weight n_k as the last, encrypted slot),
   packs and encrypts it, and sends it with an HMAC-SHA256 tag under a
   client–server key (``kex.agree``), so transport tampering is an
   ``IntegrityError``. The server checks the tag, decodes and adds.
3. UNMASK: the server sends the aggregate ciphertexts (tagged) to surviving
   key holders. Shared key: ``config.decryptors`` survivors decrypt and return
   the integer sums. Threshold: every survivor returns a partial decryption
   with a proof; the server verifies each (a bad one is an ``IntegrityError``
   naming the party) and combines any t.

Both Paillier and CKKS carry the encoder's integers exactly (CKKS in integer
packing, ``secagg.ckks.integer_params``), so the result equals
``run_plaintext``'s bit for bit when the encoders' rounding agrees.

**Trust model** (semi-honest server; no identity signatures here):

* ``paillier`` and ``ckks`` (shared secret key): every client holds the secret
  key. The server sees only ciphertexts and the final sum, but **the server
  colluding with any one client decrypts every client's update**. A malicious
  server could also substitute keys during the ceremony (no signatures).
* ``paillier-threshold``: no single party holds the key. Fewer than t
  clients, even together with the server, learn nothing beyond the sum. The
  dealer (the key holder) knows the factorisation while dealing and must
  erase it; it is **trusted during set-up only**.
* Keys are per session: every session (round) runs a fresh ceremony, so keys
  rotate every round. Reusing a key across N rounds is not implemented.
* HE gives no integrity against the server: it can add any ciphertext it likes.
  Decryptors cannot check that what they are asked to decrypt is the
  aggregate, so a *malicious* server could have one client's ciphertext
  decrypted (in both models). The guarantees above are for a semi-honest
  server.
"""

from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from secagg import aead, kex
from secagg.errors import ConfigError, DecodeError, IntegrityError, ProtocolError, ThresholdError

from . import messages as m
from .he_messages import (HeAdvertise, HeDecrypted, HeDecryptRequest, HeInput, HeKeyDelivery, HeKeyForward,
                          HeKeyRequest, HeKeysBroadcast, HePartial, chunk_mac, pack_ints, unpack_ints)
from .session import ABORTED, DONE, AbortReason, AggregateResult, SessionState, Stage

__all__ = ["SCHEMES", "HeConfig", "HeServer", "HeClient", "register"]

SCHEMES = ("paillier", "paillier-threshold", "ckks")
_CONTEXT = b"secagg/he/v1"
_U32 = struct.Struct(">I")


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
        if self.scheme == "paillier-threshold":
            t = len(ids) // 2 + 1 if self.threshold is None else self.threshold
            if not 1 <= t <= len(ids):
                raise ThresholdError("threshold must be in [1, n]", needed=t, got=len(ids))
            object.__setattr__(self, "threshold", t)
        if not 1 <= self.min_survivors <= len(ids):
            raise ConfigError("min_survivors must be in [1, n]", min_survivors=self.min_survivors)
        if self.pool_method not in ("standard", "djn"):
            raise ConfigError("pool_method must be 'standard' or 'djn'", pool_method=self.pool_method)
        if self.dim < 0 or self.decryptors < 1 or self.workers < 1:
            raise ConfigError("dim >= 0, decryptors >= 1 and workers >= 1 are required")

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


# ---------------------------------------------------------------- scheme back-ends
class _Scheme:
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
        self.scheme = _Scheme(config)
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
    def _on_advertise(self, u: int, msg: Any) -> bytes:
        if not isinstance(msg, HeAdvertise) or len(msg.public) != 32:
            raise DecodeError("expected a 32-byte X25519 key", client_id=u)
        return msg.public

    def _close_advertise(self) -> dict[int, m.Message]:
        c = self.config
        self._parties = self._note_dropped(Stage.ADVERTISE_KEYS, sorted(c.client_ids))
        self._publics = dict(self._inbox)
        needed = c.threshold if c.scheme == "paillier-threshold" else c.min_survivors
        if c.key_holder not in self._publics or len(self._parties) < needed:  # type: ignore[operator]
            return self._abort(Stage.ADVERTISE_KEYS, needed or 1, len(self._parties), "key holder or quorum missing")
        self.state = Stage.SHARE_KEYS
        holder = c.key_holder
        return {holder: HeKeysBroadcast(_header(c, Stage.SHARE_KEYS, m.SERVER_ID, holder),  # type: ignore[arg-type]
                                        dict(self._publics))}

    # -- stage 1 ------------------------------------------------------------
    def _on_delivery(self, u: int, msg: Any) -> HeKeyDelivery:
        if u != self.config.key_holder:
            raise ProtocolError("only the key holder speaks in this stage", client_id=u)
        if not isinstance(msg, HeKeyDelivery) or set(msg.sealed) != set(self._parties):
            raise DecodeError("key delivery must seal one secret per live client", client_id=u)
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
                                holder_public, delivery.sealed[u], tuple(self._parties))
                for u in self._parties}

    # -- stage 2 ------------------------------------------------------------
    def _on_input(self, u: int, msg: Any) -> bool:
        if u not in self._parties or not isinstance(msg, HeInput):
            raise ProtocolError("unexpected input", client_id=u)
        if not hmac.compare_digest(msg.tag, chunk_mac(self._mac_key(u), msg.header.aad(), msg.chunks)):
            raise IntegrityError("input tag does not verify", client_id=u)
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
            cts = s.paillier.ciphertexts_from_bytes(pk, msg.chunks[0], count)
            self._sum = cts if self._sum is None else s.paillier.sum_ciphertexts(pk, [self._sum, cts])
        return True

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
            ints = self.scheme.plan.unpack(plaintexts, c.dim + 1, len(self._survivors))
            raw = c.encoder.to_modular(ints)
        else:
            if not answered:
                self._dropped[Stage.UNMASK.value] = tuple(self._survivors[: c.decryptors])
                return self._abort(Stage.UNMASK, 1, 0, "no decryptor answered")
            raw = self._inbox[answered[0]]
        vector_sum, weight_sum = c.encoder.decode_sum(raw)
        aggregate = vector_sum / weight_sum if c.weighted and weight_sum else vector_sum
        dropped = sorted(set(c.client_ids) - set(self._survivors))
        self._result = AggregateResult(np.asarray(aggregate, dtype=np.float64), list(self._survivors), dropped,
                                       weight_sum=float(weight_sum), weighted=c.weighted, raw_sum=raw,
                                       extras={"scheme": c.scheme, "aggregate_bytes":
                                               sum(len(b) for b in self._agg_chunks.values())})
        self.state = DONE
        return {}


def _ckks_sizes(params: Any, dim: int) -> list[int]:
    from secagg.ckks import SLOTS
    n_slots = params.n_slots(dim)
    return [min(SLOTS, n_slots - i) for i in range(0, n_slots, SLOTS)]


class HeClient:
    """Client side: key ceremony, encrypt the encoded update, decrypt on request."""

    def __init__(self, config: HeConfig, client_id: int, update: NDArray[np.floating], *, weight: int = 1,
                 identity: Any = None, rng: np.random.Generator | None = None) -> None:
        if client_id not in config.client_ids:
            raise ConfigError("unknown client id", client_id=client_id)
        self.config, self.id = config, client_id
        self.scheme = _Scheme(config)
        self._ints = config.encoder.quantize(np.asarray(update), weight, rng)  # weight is the last slot
        self._kx = kex.generate_keypair()
        self._server_public = b""
        self._secret: Any = None
        self._public: Any = None
        self._parties: tuple[int, ...] = ()
        self._handled: set[Stage] = set()
        self.state: Stage | SessionState = Stage.ADVERTISE_KEYS

    def handle(self, msg: Any) -> m.Message | None:
        if isinstance(msg, (bytes, bytearray, memoryview)):
            msg = m.decode(bytes(msg))
        if self.state in (DONE, ABORTED) or not isinstance(msg, m.Message):
            raise ProtocolError("session is over or message is not a message", local=True)
        stage = msg.header.stage
        if msg.header != _header(self.config, stage, m.SERVER_ID, self.id):
            raise ProtocolError("message for another session or party", stage=stage)
        expected = {HeKeyRequest: Stage.ADVERTISE_KEYS, HeKeysBroadcast: Stage.SHARE_KEYS,
                    HeKeyForward: Stage.MASKED_INPUT, HeDecryptRequest: Stage.UNMASK}.get(type(msg))
        order = [Stage.ADVERTISE_KEYS, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK]
        if expected is not stage or stage in self._handled \
                or order.index(stage) < order.index(self.state):  # type: ignore[arg-type]
            raise ProtocolError("message at the wrong stage, or a duplicate", stage=stage, state=self.state)
        self._handled.add(stage)
        self.state = stage
        reply = {HeKeyRequest: self._advertise, HeKeysBroadcast: self._deal, HeKeyForward: self._encrypt,
                 HeDecryptRequest: self._decrypt}[type(msg)](msg)
        if stage is Stage.UNMASK:
            self.state = DONE
        return reply

    def _reply_header(self, stage: Stage) -> m.Header:
        return _header(self.config, stage, self.id, m.SERVER_ID)

    def _seal_key(self, peer_public: bytes, holder: int, receiver: int) -> tuple[bytes, bytes]:
        ctx = self.config.context(b"key-delivery", holder, receiver)
        return kex.agree(self._kx, peer_public, context=ctx), ctx

    def _advertise(self, msg: HeKeyRequest) -> HeAdvertise:
        self._server_public = msg.server_public
        return HeAdvertise(self._reply_header(Stage.ADVERTISE_KEYS), self._kx.public_bytes)

    def _deal(self, msg: HeKeysBroadcast) -> HeKeyDelivery:
        if self.id != self.config.key_holder or self.id not in msg.keys:
            raise ProtocolError("only the key holder deals keys", local=True)
        parties = sorted(msg.keys)
        public, secrets_ = self.scheme.generate(parties)
        sealed = {}
        for u in parties:
            key, ctx = self._seal_key(msg.keys[u], self.id, u)
            sealed[u] = aead.seal(key, secrets_[u], aad=ctx)
        del secrets_  # the dealer keeps nothing (its own share arrives sealed, like everyone's)
        return HeKeyDelivery(self._reply_header(Stage.SHARE_KEYS), public, sealed)

    def _encrypt(self, msg: HeKeyForward) -> HeInput:
        c, s = self.config, self.scheme
        key, ctx = self._seal_key(msg.holder_public, c.key_holder, self.id)  # type: ignore[arg-type]
        secret = aead.open(key, msg.sealed, aad=ctx)
        self._parties = msg.parties
        if c.scheme == "ckks":
            self._secret = s.ckks.CkksKeyHolder.from_secret_bytes(s.params, secret)
            slots = s.ckks.pack_integers(s.params, self._ints)
            chunks = dict(enumerate(self._secret.encrypt(slots)))
        else:
            self._public = s.load_public(msg.public_key)
            if c.scheme == "paillier":
                p, q = unpack_ints(secret, 2)
                self._secret = s.paillier.PaillierSecretKey(self._public, p, q)
                pk = self._public
                pool = s.paillier.NoisePool(pk, self._secret, method=c.pool_method)
            else:
                from secagg import paillier_threshold as T
                index, share = unpack_ints(secret, 2)
                self._secret = T.KeyShare(index, share)
                pk = self._public.paillier
                pool = s.paillier.NoisePool(pk, method=c.pool_method)  # no factors here
            pool.fill(s.plan.n_ciphertexts(self._ints.size), workers=c.workers)
            cts = s.paillier.encrypt_packed(pk, s.plan, self._ints, pool)
            chunks = {0: s.paillier.ciphertexts_to_bytes(pk, cts)}
        h = self._reply_header(Stage.MASKED_INPUT)
        return HeInput(h, chunks, chunk_mac(self._mac_key(), h.aad(), chunks))

    def _mac_key(self) -> bytes:
        return kex.agree(self._kx, self._server_public, context=self.config.context(b"mac", self.id))

    def _decrypt(self, msg: HeDecryptRequest) -> m.Message:
        c, s = self.config, self.scheme
        if not hmac.compare_digest(msg.tag, chunk_mac(self._mac_key(), msg.header.aad(), msg.chunks)):
            raise IntegrityError("aggregate tag does not verify")
        if not set(msg.survivors) <= set(self._parties) or not msg.survivors:
            raise ProtocolError("survivor set is not a subset of the parties")
        k = len(msg.survivors)
        h = self._reply_header(Stage.UNMASK)
        if c.scheme == "ckks":
            sizes = _ckks_sizes(s.params, c.dim)
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


# ---------------------------------------------------------------- sim registration
def register(*, key_bits: int = 2048, threshold_key_bits: int = 2048, decryptors: int = 2,
             workers: int = 1, pool_method: str = "standard") -> None:
    """(Re)register the three HE protocols with ``protocols.sim``.

    Tests call it with small keys; deployments keep 2048 bits. Dealing a
    2048-bit threshold key generates two 1024-bit safe primes (can take minutes).
    """
    from .sim import ProtocolSpec, register_protocol

    def builder(scheme: str):
        bits = threshold_key_bits if scheme == "paillier-threshold" else key_bits

        def build(client_ids, dim, *, encoder, weighted, threshold, min_survivors, **_: Any) -> HeConfig:
            return HeConfig(tuple(client_ids), dim, encoder, scheme, threshold=threshold,
                            min_survivors=min_survivors or 1, weighted=weighted, key_bits=bits,
                            decryptors=decryptors, workers=workers, pool_method=pool_method)
        return build

    for scheme in SCHEMES:
        register_protocol(ProtocolSpec(scheme, builder(scheme), HeServer, HeClient))


register()
