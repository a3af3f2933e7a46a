"""SecAgg / SecAgg+ client (Bonawitz et al. 2017, Fig. 4; Bell et al. 2020):
one :class:`SecAggClient` per client, its stages declared as a table on
:class:`protocols.session.ClientCore`. The stages and who is blamed for what
are described in :mod:`protocols.secagg`, which re-exports this module.

Also what both sides of a round derive from its config alike:
:func:`round_binding` (protocol, session, round of every header) and
:func:`decode_limits` (the largest message either side decodes).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import numpy as np
from numpy.typing import NDArray

from secagg import aead, kex, shamir
from secagg.encoding import word_dtype
from secagg.encoding_torch import is_tensor
from secagg.errors import AbortError, ConfigError, DecodeError, IntegrityError, ProtocolError
from secagg.masking import apply_masks

from . import messages as m
from .config import SecAggConfig
from .messages import DecodeLimits
from .secagg_binding import (
    HASH_BYTES,
    KEY_BYTES,
    MAX_MAP_ENTRY,
    SEED_BYTES,
    advert_transcript,
    mask_context,
    open_share_pair,
    pair_sign,
    self_mask_commitment,
    share_context,
    share_hash,
    share_hashes_transcript,
    share_pair_plaintext,
    survivors_transcript,
)
from .session import DONE, Binding, ClientCore, Stage, StageSpec

__all__ = ["SecAggClient", "round_binding", "decode_limits"]


def round_binding(config: SecAggConfig) -> Binding:
    """What every header of this round carries besides stage, sender and receiver."""
    return Binding.of(config.protocol, config.session_id, config.round)


def decode_limits(config: SecAggConfig, *, vectors: bool) -> DecodeLimits:
    """What one SecAgg message of this round may hold: per-client maps of at most
    n entries of at most :data:`MAX_MAP_ENTRY` bytes, id lists of at most n, and
    (``vectors``) one masked vector of dim + 1 words. ``config.max_message_bytes``
    lowers the total further."""
    limits = DecodeLimits.for_round(
        clients=config.n,
        dim=config.dim if vectors else 0,
        word_bytes=np.dtype(word_dtype(config.bits)).itemsize,
        entry_bytes=MAX_MAP_ENTRY,
        maps=3,
    )
    if config.max_message_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=min(limits.max_bytes, config.max_message_bytes))
    return limits


class SecAggClient(ClientCore):
    """Client side of SecAgg / SecAgg+ (sans-I/O): ``handle(msg) -> reply | None``.

    ``update`` is a 1-D float array of length ``config.dim``; ``weight`` is n_k,
    masked with the update (the server learns only the sum of weights). ``identity`` is this
    client's :class:`secagg.kex.IdentityKey` (required in active mode). ``rng``
    only drives the stochastic rounding of the encoder (seeded simulations);
    keys, seeds and masks always come from the OS CSPRNG. An honest client that
    detects misbehaviour raises and stays ABORTED: it never "tries its best".
    """

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        update: NDArray[np.floating],
        *,
        weight: int = 1,
        identity: kex.IdentityKey | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.config = config
        if client_id not in config.client_ids:
            raise ConfigError("unknown client id", local=True, client_id=client_id)
        self.id = int(client_id)
        # A torch tensor stays on its device: encode there (secagg.encoding_torch) and
        # mask there (apply_masks' torch backend); only the masked words reach the host.
        if not is_tensor(update):
            update = np.asarray(update)
        if update.ndim != 1 or update.shape[0] != config.dim:
            raise ConfigError("update must be a 1-D array of length config.dim", shape=update.shape, dim=config.dim)
        if config.active_security and identity is None:
            raise ConfigError("active security needs this client's identity key", client_id=client_id)
        if identity is not None and config.identities is not None:
            if identity.public_bytes != config.identities[self.id]:
                raise ConfigError("identity does not match the configured public key", client_id=client_id)
        self.identity = identity
        self._encoded = config.encoder.encode(update, weight=weight, rng=rng)
        self.neighbors = config.graph()[self.id]
        after_input = Stage.CONSISTENCY if config.active_security else Stage.UNMASK
        # Bonawitz et al. 2017, Fig. 4, rounds 0-4, read top to bottom: what the server
        # sends at each stage, who handles it, and the stage that follows.
        stages = {
            Stage.ADVERTISE_KEYS: StageSpec(m.AdvertiseKeysRequest, self._advertise_keys, Stage.SHARE_KEYS),
            Stage.SHARE_KEYS: StageSpec(m.KeysBroadcast, self._share_keys, Stage.MASKED_INPUT),
            Stage.MASKED_INPUT: StageSpec(m.SharesDelivery, self._masked_input, after_input),
            Stage.CONSISTENCY: StageSpec(m.ConsistencyRequest, self._consistency, Stage.UNMASK),
            Stage.UNMASK: StageSpec(m.UnmaskRequest, self._unmask, DONE),
        }
        if not config.active_security:
            del stages[Stage.CONSISTENCY]
        super().__init__(round_binding(config), self.id, stages, limits=decode_limits(config, vectors=False))
        self._peers: dict[int, tuple[bytes, bytes]] = {}  # v -> (c_pk, s_pk)
        self._pair_keys: dict[int, bytes] = {}  # v -> AEAD key for shares between us and v
        self._held: dict[int, tuple[shamir.Share, shamir.Share]] = {}  # v -> (b_v share, s_v share)
        self._survivors: tuple[int, ...] | None = None  # U3 signed in active mode
        self.revealed_self_mask: set[int] = set()
        self.revealed_mask_key: set[int] = set()

    # -- round 0
    def _advertise_keys(self, msg: m.AdvertiseKeysRequest) -> m.AdvertiseKeys:
        self._c = kex.generate_keypair()
        self._s_seed = secrets.token_bytes(SEED_BYTES)
        self._s = kex.generate_keypair(self._s_seed)
        self._b_seed = secrets.token_bytes(SEED_BYTES)
        c_pk, s_pk = self._c.public_bytes, self._s.public_bytes
        commitment = self_mask_commitment(self.config, self.id, self._b_seed)
        signature = b""
        if self.identity is not None:
            signature = self.identity.sign(advert_transcript(self.config, self.id, c_pk, s_pk, commitment))
        return m.AdvertiseKeys(self.header(Stage.ADVERTISE_KEYS), c_pk, s_pk, signature, commitment)

    # -- round 1
    def _share_keys(self, msg: m.KeysBroadcast) -> m.EncryptedShares:
        c, t = self.config, self.config.threshold
        for v, blob in msg.keys.items():
            if v not in self.neighbors:
                raise ProtocolError("server sent keys of a non-neighbour", client_id=v)
            c_pk, s_pk = blob[:KEY_BYTES], blob[KEY_BYTES : 2 * KEY_BYTES]
            commitment, sig = blob[2 * KEY_BYTES : 2 * KEY_BYTES + HASH_BYTES], blob[2 * KEY_BYTES + HASH_BYTES :]
            if len(commitment) != HASH_BYTES:
                raise DecodeError("truncated public keys", client_id=v)
            if c.identities is not None and (c.active_security or sig):
                kex.verify(c.identities[v], sig, advert_transcript(c, v, c_pk, s_pk, commitment))
            if c_pk == s_pk:
                raise IntegrityError("c_pk and s_pk must differ", client_id=v)
            self._peers[v] = (c_pk, s_pk)
        if len(self._peers) + 1 < t:  # the share holders are the live neighbours and u itself
            raise AbortError(
                "too few neighbours advertised keys", stage=Stage.SHARE_KEYS, needed=t, got=len(self._peers) + 1
            )
        holders = sorted([*self._peers, self.id])
        xs = [v + 1 for v in holders]  # x = id + 1: never zero
        b_shares, s_shares = self._deal(xs)
        sealed, hashes = {}, {}
        for v, b_share, s_share in zip(holders, b_shares, s_shares):
            hashes[v] = self._share_hashes(v, b_share, s_share)
            if v == self.id:
                self._held[v] = (b_share, s_share)  # our own share never leaves us unsealed
                continue
            # One key per unordered pair seals both directions; the AAD names sender and receiver.
            key = self._pair_keys[v] = kex.agree(self._c, self._peers[v][0], context=share_context(c, self.id, v))
            plaintext = share_pair_plaintext(self.id, v, b_share, s_share)
            aad = self.binding.header(Stage.SHARE_KEYS, self.id, v).aad()
            sealed[v] = aead.seal(key, plaintext, aad=aad)
        signature = b"" if self.identity is None else self.identity.sign(share_hashes_transcript(c, self.id, hashes))
        return m.EncryptedShares(self.header(Stage.SHARE_KEYS), sealed, hashes, signature)

    def _deal(self, xs: list[int]) -> tuple[list[shamir.Share], list[shamir.Share]]:
        """Shamir-share b_u and s_u at the points ``xs`` (threshold t)."""
        b_shares, s_shares = shamir.split_many([self._b_seed, self._s_seed], len(xs), self.config.threshold, xs=xs)
        return list(b_shares), list(s_shares)

    def _share_hashes(self, holder: int, b_share: shamir.Share, s_share: shamir.Share) -> bytes:
        """hash(b share) || hash(s share) dealt to ``holder``."""
        c = self.config
        return share_hash(c, self.id, holder, b"b", b_share.to_bytes()) + share_hash(
            c, self.id, holder, b"s", s_share.to_bytes()
        )

    # -- round 2
    def _masked_input(self, msg: m.SharesDelivery) -> m.MaskedInput:
        c = self.config
        for v, sealed in msg.ciphertexts.items():
            if v not in self._peers:  # (never ourselves: we are not our own peer)
                raise ProtocolError("shares from a client that did not advertise keys to us", client_id=v)
            plaintext = aead.open(
                self._pair_keys[v], sealed, aad=self.binding.header(Stage.SHARE_KEYS, v, self.id).aad()
            )
            pair = open_share_pair(plaintext, dealer=v, holder=self.id)
            self._check_dealt_hashes(v, pair, msg.share_hashes.get(v))
            self._held[v] = pair
        if len(self._held) < c.threshold:
            raise AbortError(
                "too few neighbours shared keys", stage=Stage.MASKED_INPUT, needed=c.threshold, got=len(self._held)
            )
        pair_seeds = [
            (kex.agree(self._s, self._peers[v][1], context=mask_context(c, self.id, v)), pair_sign(self.id, v))
            for v in sorted(self._held)
            if v != self.id
        ]
        encoded, self._encoded = self._encoded, None  # the plaintext encoding is not needed after this
        if is_tensor(encoded):
            masked = apply_masks(encoded, bits=c.bits, self_seed=self._b_seed, pair_seeds=pair_seeds, backend="torch")
        else:
            # We own the encoding and never need it unmasked again: mask it in place,
            # so the round holds one d-word vector, not two (bounded memory for large updates).
            out = encoded if _maskable_in_place(encoded, c.bits) else None
            masked = apply_masks(
                encoded, bits=c.bits, self_seed=self._b_seed, pair_seeds=pair_seeds, backend="numpy", out=out
            )
        return m.MaskedInput(self.header(Stage.MASKED_INPUT), masked)

    def _check_dealt_hashes(self, v: int, pair: tuple[shamir.Share, shamir.Share], entry: bytes | None) -> None:
        """The shares v sealed to us must be the ones whose hashes v gave the server
        (and, with identities, signed), or an honest server would later blame us
        for revealing them. A mismatch ends our round before any input is
        masked; it names v unless the server is untrusted (active mode), where
        the relay could have lied instead."""
        c = self.config
        if entry is None or len(entry) != 2 * HASH_BYTES:
            raise ProtocolError("shares relayed without the dealer's share hashes", client_id=None, dealer=v)
        expected = share_hash(c, v, self.id, b"b", pair[0].to_bytes()) + share_hash(
            c, v, self.id, b"s", pair[1].to_bytes()
        )
        if expected != entry:
            if c.active_security:  # the relay is untrusted: it, or v, lied; we cannot tell which
                raise IntegrityError(
                    "sealed shares differ from the hashes relayed for their dealer (the dealer or the server lied)",
                    client_id=None,
                    dealer=v,
                )
            raise IntegrityError("dealer sealed shares that differ from the hashes it committed to", client_id=v)

    # -- round 3 (active security)
    def _consistency(self, msg: m.ConsistencyRequest) -> m.ConsistencySignature:
        c = self.config
        survivors = tuple(msg.survivors)
        self._check_survivor_count(len(survivors), Stage.CONSISTENCY)
        unknown = (set(survivors) & self.neighbors) - set(self._held)
        if unknown:
            raise IntegrityError("survivor set names neighbours that never shared keys", client_id=min(unknown))
        self._survivors = survivors
        assert self.identity is not None
        signature = self.identity.sign(survivors_transcript(c, survivors))
        return m.ConsistencySignature(self.header(Stage.CONSISTENCY), signature)

    # -- round 4
    def _unmask(self, msg: m.UnmaskRequest) -> m.UnmaskShares:
        """Reveal b-shares of held survivors and s-shares of held dropouts.

        ``msg.survivors`` is the whole survivor set U3. Refused (typed error,
        ABORTED): U3 smaller than max(t, min_survivors); a client listed both as
        survivor and dropped; this client listed as dropped; a dropout whose
        shares it never held; in active mode, a U3 other than the one it signed
        or fewer than t neighbours' valid signatures on it.
        """
        c = self.config
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        self._check_survivor_count(len(survivors), Stage.UNMASK)
        both = survivors & dropped
        if both:
            raise IntegrityError(
                "server asked for both shares of the same client (an honest client never reveals both)",
                client_id=min(both),
            )
        if self.id in dropped:  # we delivered our masked input: our mask key must stay secret
            raise IntegrityError("server claims this client dropped and asks for its own mask key", client_id=self.id)
        if self.id not in survivors:
            raise IntegrityError("server asks this client to unmask a survivor set without it", client_id=self.id)
        for v in dropped:
            if v not in self._held:
                raise ProtocolError("asked to unmask a client whose shares we never held", client_id=v)
        if c.active_security:
            assert self._survivors is not None
            signed = set(self._survivors)
            if survivors != signed:
                raise IntegrityError("unmask request contradicts the signed survivor set")
            transcript = survivors_transcript(c, self._survivors)
            valid = 1  # our own signature on the same set
            for w, signature in msg.signatures.items():
                if w not in signed or w == self.id:
                    raise IntegrityError("signature from a client outside the survivor set", client_id=w)
                kex.verify(c.identities[w], signature, transcript)  # type: ignore[index]
                valid += w in self.neighbors
            if valid < c.threshold:
                raise AbortError(
                    "too few neighbours signed the survivor set", stage=Stage.UNMASK, needed=c.threshold, got=valid
                )
        held_survivors = sorted(v for v in survivors if v in self._held)
        self_mask_shares = {v: self._held[v][0].to_bytes() for v in held_survivors}
        mask_key_shares = {v: self._held[v][1].to_bytes() for v in sorted(dropped)}
        self.revealed_self_mask |= set(held_survivors)
        self.revealed_mask_key |= dropped
        return m.UnmaskShares(self.header(Stage.UNMASK), self_mask_shares, mask_key_shares)

    def colluder_view(self) -> dict[int, tuple[shamir.Share, shamir.Share]]:
        """The (self-mask, mask-key) share pairs this client holds, by dealer.

        What a client that colludes with the server hands over; used by
        :func:`protocols.adversary.exposure` to model colluders. Never sent.
        """
        return dict(self._held)

    def colluder_view_seeds(self) -> tuple[bytes, bytes]:
        """This client's own (self-mask seed, mask-key seed), for the same model."""
        return self._b_seed, self._s_seed

    def _check_survivor_count(self, count: int, stage: Stage) -> None:
        assert self.config.min_survivors is not None  # SecAggConfig.__post_init__ sets it
        needed = max(self.config.threshold, self.config.min_survivors)
        if count < needed:
            raise AbortError(
                "survivor set smaller than max(threshold, min_survivors): refusing to help unmask",
                stage=stage,
                needed=needed,
                got=count,
            )


def _maskable_in_place(encoded: Any, bits: int) -> bool:
    """True for a writeable, contiguous 1-D array already in the wire dtype."""
    wire = word_dtype(bits)
    return (
        isinstance(encoded, np.ndarray)
        and encoded.dtype == wire
        and encoded.flags.writeable
        and encoded.flags.c_contiguous
        and encoded.flags.owndata  # not a view into something the encoder may still hold
    )
