"""Adversarial servers for the HE key ceremony (:mod:`protocols.he`), for tests.

:class:`KeySubstitutionServer` wraps an honest :class:`protocols.he.HeServer`
and substitutes keys while relaying the ceremony. With identities configured,
honest clients must refuse; without them, the attack works, and the wrapper
records what the server learnt, so tests can document that honestly.
Re-exported by :mod:`protocols.testing`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from secagg import aead, kex
from secagg import paillier_threshold as threshold_paillier

from . import messages as m
from .he_config import HeConfig, HeScheme, advert_transcript, ckks_chunk_sizes, key_transcript
from .he_messages import HeAdvertise, HeInput, HeKeyDelivery, HeKeyForward, HeKeysBroadcast, unpack_ints

__all__ = ["HE_ADVERSARIAL_BEHAVIOURS", "SIGNATURE_MODES", "KeySubstitutionServer"]

#: ``substitute_key``: every key forward carries an HE key the server generated.
#: ``substitute_advert``: the key holder is shown the server's X25519 key in
#: place of the victim's, so the holder seals the victim's secret to the server.
HE_ADVERSARIAL_BEHAVIOURS = ("substitute_key", "substitute_advert")
#: What the server does with the signatures it relays: ``keep`` the genuine
#: ones (which then do not match), ``strip`` them, or sign with its ``own``
#: identity key, which is not the one configured for the signer.
SIGNATURE_MODES = ("keep", "strip", "own")

Decoder = Callable[[dict], tuple[NDArray[np.float64], float]]


class KeySubstitutionServer:
    """Wraps an honest HE server and substitutes keys in the HE key ceremony.

    * ``substitute_key``: the server generates its own HE key (Paillier, a
      threshold Paillier key with every share, or CKKS), poses as the key
      holder with its own X25519 key, and seals its secret to each client.
      Clients that accept encrypt their update to the server; their inputs
      are decrypted into ``stolen`` and not passed on (the round then aborts).
    * ``substitute_advert``: the key holder receives the server's X25519 key
      in place of ``victim``'s, seals the victim's secret (the shared secret
      key, or its threshold share) to the server, which opens it into
      ``stolen_secrets`` and reseals it to the victim under its own X25519
      key. With a shared key, every input is then decrypted into ``stolen``
      and passed on, so the round completes as if nothing happened.

    ``signature`` is one of :data:`SIGNATURE_MODES`. ``stolen`` maps a client
    id to that client's decoded (update, weight); ``inputs`` lists the
    clients whose ciphertext under a key the server can open arrived.
    """

    def __init__(
        self, inner: Any, behaviour: str = "substitute_key", *, signature: str = "keep", victim: int | None = None
    ) -> None:
        if behaviour not in HE_ADVERSARIAL_BEHAVIOURS or signature not in SIGNATURE_MODES:
            raise ValueError((behaviour, signature))
        self.inner, self.behaviour, self.signature = inner, behaviour, signature
        self.config: HeConfig = inner.config
        holder = self.config.key_holder
        self.victim = victim if victim is not None else max(u for u in self.config.client_ids if u != holder)
        self.stolen: dict[int, tuple[NDArray[np.float64], float]] = {}
        self.stolen_secrets: dict[int, bytes] = {}
        self.inputs: list[int] = []
        self._kx = kex.generate_keypair()
        self._identity = kex.generate_identity()
        self._client_publics: dict[int, bytes] = {}
        self._decode: Decoder | None = None
        self._fake: tuple[bytes, dict[int, bytes]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # -- driver interface --------------------------------------------------------
    def start(self) -> dict[int, Any]:
        return self.inner.start()

    def receive(self, client_id: int, msg: Any) -> None:
        parsed = m.decode(bytes(msg)) if isinstance(msg, (bytes, bytearray, memoryview)) else msg
        if isinstance(parsed, HeAdvertise):
            self._client_publics[client_id] = parsed.public
        elif isinstance(parsed, HeKeyDelivery) and self.behaviour == "substitute_advert":
            self._steal_sealed(parsed)
        elif isinstance(parsed, HeInput):
            if self._decode is not None:
                self.inputs.append(client_id)
                self.stolen[client_id] = self._decode(parsed.chunks)
            if self.behaviour == "substitute_key":
                return  # encrypted to our key: useless to the honest aggregate
        self.inner.receive(client_id, msg)

    def close_stage(self) -> dict[int, Any]:
        return {u: self._corrupt(u, msg) for u, msg in self.inner.close_stage().items()}

    # -- the attack --------------------------------------------------------------
    def _corrupt(self, u: int, msg: Any) -> Any:
        if isinstance(msg, HeKeysBroadcast) and self.behaviour == "substitute_advert":
            keys = {**msg.keys, self.victim: self._kx.public_bytes}
            return dataclasses.replace(msg, keys=keys, signatures=self._signatures(msg.signatures))
        if isinstance(msg, HeKeyForward) and self.behaviour == "substitute_key":
            public, secrets_ = self._fake_key(msg.parties)
            return self._forward(msg, public, secrets_[u], u)
        if isinstance(msg, HeKeyForward) and u == self.victim and self.victim in self.stolen_secrets:
            return self._forward(msg, msg.public_key, self.stolen_secrets[self.victim], u)
        return msg

    def _signatures(self, signatures: dict) -> dict:
        if self.signature == "strip":
            return {u: s for u, s in signatures.items() if u != self.victim}
        if self.signature == "own":
            return {
                **signatures,
                self.victim: self._identity.sign(advert_transcript(self.config, self.victim, self._kx.public_bytes)),
            }
        return signatures

    def _forward(self, msg: HeKeyForward, public: bytes, secret: bytes, u: int) -> HeKeyForward:
        """``msg`` with ``secret`` sealed to ``u`` under our X25519 key posing as the holder's."""
        c = self.config
        ctx = c.context(b"key-delivery", c.key_holder, u)  # type: ignore[arg-type]
        sealed = aead.seal(kex.agree(self._kx, self._client_publics[u], context=ctx), secret, aad=ctx)
        signature = {
            "keep": msg.signature,
            "strip": b"",
            "own": self._identity.sign(key_transcript(c, public, self._kx.public_bytes, msg.parties)),
        }
        return dataclasses.replace(
            msg,
            public_key=public,
            holder_public=self._kx.public_bytes,
            sealed=sealed,
            signature=signature[self.signature],
        )

    def _fake_key(self, parties: tuple[int, ...]) -> tuple[bytes, dict[int, bytes]]:
        if self._fake is None:
            self._fake = HeScheme(self.config).generate(list(parties))
            self._decode = _decoder(self.config, *self._fake)
        return self._fake

    def _steal_sealed(self, delivery: HeKeyDelivery) -> None:
        c = self.config
        holder_public = self._client_publics[c.key_holder]  # type: ignore[index]
        ctx = c.context(b"key-delivery", c.key_holder, self.victim)  # type: ignore[arg-type]
        secret = aead.open(kex.agree(self._kx, holder_public, context=ctx), delivery.sealed[self.victim], aad=ctx)
        self.stolen_secrets[self.victim] = secret
        if c.scheme != "paillier-threshold":  # a shared key decrypts everyone
            self._decode = _decoder(c, delivery.public_key, {self.victim: secret})


def _decoder(config: HeConfig, public: bytes, secrets_: dict[int, bytes]) -> Decoder:
    """Decrypts and decodes one client's input chunks with keys the server holds."""
    scheme, c = HeScheme(config), config
    count = c.dim + 1
    any_secret = next(iter(secrets_.values()))
    if c.scheme == "ckks":
        holder = scheme.ckks.CkksKeyHolder.from_secret_bytes(scheme.params, any_secret)
        sizes = ckks_chunk_sizes(scheme.params, c.dim)

        def ints_of(chunks: dict) -> NDArray[np.int64]:
            slots = holder.decrypt([chunks[i] for i in range(len(sizes))], sizes)
            return scheme.ckks.unpack_integers(scheme.params, slots, count, 1)
    elif c.scheme == "paillier":
        pk = scheme.load_public(public)
        sk = scheme.paillier.PaillierSecretKey(pk, *unpack_ints(any_secret, 2))

        def ints_of(chunks: dict) -> NDArray[np.int64]:
            cts = scheme.paillier.ciphertexts_from_bytes(pk, chunks[0], scheme.plan.n_ciphertexts(count))
            return scheme.paillier.decrypt_packed(sk, scheme.plan, cts, count, 1)
    else:
        pub = scheme.load_public(public)
        shares = [threshold_paillier.KeyShare(*unpack_ints(s, 2)) for s in secrets_.values()][: pub.threshold]

        def ints_of(chunks: dict) -> NDArray[np.int64]:
            cts = scheme.paillier.ciphertexts_from_bytes(pub.paillier, chunks[0], scheme.plan.n_ciphertexts(count))
            partials = [threshold_paillier.partial_decrypt(pub, s, cts) for s in shares]
            return scheme.plan.unpack(threshold_paillier.combine(pub, cts, partials, verify=False), count, 1)

    def decode(chunks: dict) -> tuple[NDArray[np.float64], float]:
        vector, weight = c.encoder.decode_sum(c.encoder.to_modular(ints_of(chunks)))
        return np.asarray(vector, dtype=np.float64), float(weight)

    return decode
