"""Client side of the HE sessions (:mod:`protocols.he`), on the session core.

A client advertises a session X25519 key, deals the HE key when it is the key
holder, opens its sealed key, encrypts its encoded update, and decrypts the
aggregate on request. Its stages are the table in :meth:`HeClient.__init__`;
the core (:class:`~protocols.session.ClientCore`) checks every header before
any body and decodes under limits sized from the config.
"""

from __future__ import annotations

import hmac
from typing import Any

import numpy as np

from secagg import aead, kex
from secagg import paillier_threshold as threshold_paillier
from secagg.encoding_torch import to_numpy
from secagg.errors import ConfigError, DecodeError, IntegrityError, ProtocolError, SecAggError

from . import messages as m
from .he_config import (
    MAC_BYTES,
    HeConfig,
    HeScheme,
    WireSizes,
    advert_transcript,
    ckks_chunk_sizes,
    key_transcript,
    limits,
    peer_data,
    verify_signed,
)
from .he_messages import (
    HeAdvertise,
    HeDecrypted,
    HeDecryptRequest,
    HeInput,
    HeKeyDelivery,
    HeKeyForward,
    HeKeyRequest,
    HeKeysBroadcast,
    HePartial,
    chunk_mac,
    pack_ints,
    unpack_ints,
)
from .session import ABORTED, DONE, Binding, ClientCore, Stage, StageSpec

__all__ = ["HeClient"]


class HeClient(ClientCore):
    """Client side: key ceremony, encrypt the encoded update, decrypt on request.

    ``update`` is a 1-D float array or torch tensor (bfloat16/float16 tensors
    are widened to float32, which holds them exactly). ``identity`` is this
    client's Ed25519 key, required when ``config.identities`` is set. Any
    error, a stray or replayed message included, moves the client to ABORTED
    (kept in ``error``): an honest client never tries its best. Every later
    ``handle`` raises ``ProtocolError``.
    """

    def __init__(
        self,
        config: HeConfig,
        client_id: int,
        update: Any,
        *,
        weight: int = 1,
        identity: kex.IdentityKey | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if client_id not in config.client_ids:
            raise ConfigError("unknown client id", client_id=client_id)
        if config.identities is not None and (
            identity is None or identity.public_bytes != config.identities[client_id]
        ):
            raise ConfigError("identities are configured: this client needs its own identity key", client_id=client_id)
        self.config, self.id, self.identity = config, client_id, identity
        self.scheme = HeScheme(config)
        self._ints = config.encoder.quantize(to_numpy(update), weight, rng)  # weight is the last slot
        self._kx = kex.generate_keypair()
        self._server_public = b""
        self._secret: Any = None
        self._public: Any = None
        self._parties: tuple[int, ...] = ()
        n, s, sig = len(config.client_ids), WireSizes.of(config, self.scheme), 4 + kex.SIGNATURE_BYTES
        request = limits(4 + kex.KEY_BYTES)
        super().__init__(
            Binding.of(config.scheme, config.session_id, config.round),
            client_id,
            {
                Stage.ADVERTISE_KEYS: StageSpec(HeKeyRequest, self._advertise, Stage.SHARE_KEYS, limits=request),
                # Only the key holder deals; every other client goes straight to its key forward.
                Stage.SHARE_KEYS: StageSpec(
                    HeKeysBroadcast,
                    self._deal,
                    Stage.MASKED_INPUT,
                    skippable=client_id != config.key_holder,
                    limits=limits(2 * (4 + n * (8 + kex.SIGNATURE_BYTES)), entries=n, entry=kex.SIGNATURE_BYTES),
                ),
                Stage.MASKED_INPUT: StageSpec(
                    HeKeyForward,
                    self._encrypt,
                    Stage.UNMASK,
                    limits=limits(4 + s.public_key, 4 + kex.KEY_BYTES, 4 + s.sealed, 4 + 4 * n, sig, entries=n),
                ),
                Stage.UNMASK: StageSpec(
                    HeDecryptRequest,
                    self._decrypt,
                    DONE,
                    limits=limits(
                        4 + s.chunks * (8 + s.chunk), 4 + MAC_BYTES, 4 + 4 * n, entries=max(n, s.chunks), entry=s.chunk
                    ),
                ),
            },
            limits=request,
        )

    def handle(self, msg: Any) -> m.Message | None:
        """Consume one server message and return the reply (see the class docstring)."""
        if not isinstance(self.state, Stage):
            return super().handle(msg)  # "session is over"
        try:
            return super().handle(msg)
        except SecAggError as exc:
            self.state, self.error = ABORTED, exc
            raise

    def _seal_key(self, peer_public: bytes, holder: int, receiver: int) -> tuple[bytes, bytes]:
        ctx = self.config.context(b"key-delivery", holder, receiver)
        return kex.agree(self._kx, peer_public, context=ctx), ctx

    def _mac_key(self) -> bytes:
        return kex.agree(self._kx, self._server_public, context=self.config.context(b"mac", self.id))

    # -- stage 0: ADVERTISE_KEYS --------------------------------------------------------
    @peer_data(Stage.ADVERTISE_KEYS)
    def _advertise(self, msg: HeKeyRequest) -> HeAdvertise:
        if len(msg.server_public) != kex.KEY_BYTES:
            raise DecodeError("expected the server's 32-byte X25519 key", stage=Stage.ADVERTISE_KEYS)
        self._server_public = bytes(msg.server_public)
        public = self._kx.public_bytes
        signature = (
            b"" if self.identity is None else self.identity.sign(advert_transcript(self.config, self.id, public))
        )
        return HeAdvertise(self.header(Stage.ADVERTISE_KEYS), public, signature)

    # -- stage 1: SHARE_KEYS (key holder only) --------------------------------------------
    @peer_data(Stage.SHARE_KEYS)
    def _deal(self, msg: HeKeysBroadcast) -> HeKeyDelivery:
        c = self.config
        if self.id != c.key_holder or msg.keys.get(self.id) != self._kx.public_bytes:
            raise ProtocolError("only the key holder deals keys, to its own advertised key", stage=Stage.SHARE_KEYS)
        if not set(msg.keys) <= set(c.client_ids) or len(msg.keys) < c.quorum:
            raise ProtocolError("keys of unknown clients, or fewer than the quorum", stage=Stage.SHARE_KEYS)
        for v, public in msg.keys.items():
            if len(public) != kex.KEY_BYTES:
                raise DecodeError("expected a 32-byte X25519 key", client_id=v)
            if c.identities is not None:  # else the server could pose as v and receive v's secret
                verify_signed(c, v, msg.signatures.get(v, b""), advert_transcript(c, v, public), "X25519 advert")
        parties = sorted(msg.keys)
        public, secrets_ = self.scheme.generate(parties)
        sealed = {}
        for u in parties:
            key, ctx = self._seal_key(msg.keys[u], self.id, u)
            sealed[u] = aead.seal(key, secrets_[u], aad=ctx)
        del secrets_  # the dealer keeps nothing (its own share arrives sealed, like everyone's)
        signature = (
            b""
            if self.identity is None
            else self.identity.sign(key_transcript(c, public, self._kx.public_bytes, tuple(parties)))
        )
        return HeKeyDelivery(self.header(Stage.SHARE_KEYS), public, sealed, signature)

    # -- stage 2: MASKED_INPUT (encrypt) ----------------------------------------------------
    @peer_data(Stage.MASKED_INPUT)
    def _encrypt(self, msg: HeKeyForward) -> HeInput:
        c, s = self.config, self.scheme
        if self.id not in msg.parties or not set(msg.parties) <= set(c.client_ids):
            raise ProtocolError("the party list omits this client or names unknown ones", stage=Stage.MASKED_INPUT)
        if c.identities is not None:  # before opening anything: a substituted key is refused here
            transcript = key_transcript(c, msg.public_key, msg.holder_public, msg.parties)
            verify_signed(c, c.key_holder, msg.signature, transcript, "HE key")  # type: ignore[arg-type]
        key, ctx = self._seal_key(msg.holder_public, c.key_holder, self.id)  # type: ignore[arg-type]
        secret = aead.open(key, msg.sealed, aad=ctx)
        if c.scheme == "ckks":
            self._secret = s.ckks.CkksKeyHolder.from_secret_bytes(s.params, secret)
            chunks = dict(enumerate(self._secret.encrypt(s.ckks.pack_integers(s.params, self._ints))))
        else:
            public = s.load_public(msg.public_key)
            if c.scheme == "paillier":
                self._secret = s.paillier.PaillierSecretKey(public, *unpack_ints(secret, 2))
                pool = s.paillier.NoisePool(public, self._secret, method=c.pool_method)
            else:
                self._secret = threshold_paillier.KeyShare(*unpack_ints(secret, 2))
                pool = s.paillier.NoisePool(public.paillier, method=c.pool_method)  # no factors here
            self._public, pk = public, s.paillier_key(public)
            pool.fill(s.plan.n_ciphertexts(self._ints.size), workers=c.workers)
            cts = s.paillier.encrypt_packed(pk, s.plan, self._ints, pool)
            chunks = {0: s.paillier.ciphertexts_to_bytes(pk, cts)}
        self._parties = tuple(msg.parties)
        h = self.header(Stage.MASKED_INPUT)
        return HeInput(h, chunks, chunk_mac(self._mac_key(), h.aad(), chunks))

    # -- stage 3: UNMASK (decrypt) ------------------------------------------------------------
    @peer_data(Stage.UNMASK)
    def _decrypt(self, msg: HeDecryptRequest) -> m.Message:
        c, s = self.config, self.scheme
        if not hmac.compare_digest(msg.tag, chunk_mac(self._mac_key(), msg.header.aad(), msg.chunks)):
            raise IntegrityError("aggregate tag does not verify", stage=Stage.UNMASK)
        if self._secret is None or not msg.survivors or not set(msg.survivors) <= set(self._parties):
            raise ProtocolError(
                "unexpected decrypt request: no key, or survivors outside the parties", stage=Stage.UNMASK
            )
        k = len(msg.survivors)
        h = self.header(Stage.UNMASK)
        if c.scheme == "ckks":
            sizes = ckks_chunk_sizes(s.params, c.dim)
            if set(msg.chunks) != set(range(len(sizes))):
                raise DecodeError("wrong CKKS chunk indices", stage=Stage.UNMASK)
            slots = self._secret.decrypt([msg.chunks[i] for i in range(len(sizes))], sizes)
            return HeDecrypted(h, c.encoder.to_modular(s.ckks.unpack_integers(s.params, slots, c.dim + 1, k)))
        pk = s.paillier_key(self._public)
        if set(msg.chunks) != {0}:
            raise DecodeError("Paillier aggregate is one chunk", stage=Stage.UNMASK)
        cts = s.paillier.ciphertexts_from_bytes(pk, msg.chunks[0], s.plan.n_ciphertexts(c.dim + 1))
        if c.scheme == "paillier":
            ints = s.paillier.decrypt_packed(self._secret, s.plan, cts, c.dim + 1, k, workers=c.workers)
            return HeDecrypted(h, c.encoder.to_modular(ints))
        part = threshold_paillier.partial_decrypt(self._public, self._secret, cts, workers=c.workers)
        return HePartial(
            h, pack_ints(*part.values), pack_ints(part.challenge, part.response, part.commitment_a, part.commitment_b)
        )
