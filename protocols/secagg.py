"""SecAgg (Bonawitz et al. 2017) and SecAgg+ (Bell et al. 2020): one
implementation, with the neighbour graph as a parameter.

Stages (Bonawitz et al. 2017, Fig. 4), declared once per side as a stage table
on the shared session core (:mod:`protocols.session`: header checks before
bodies, decode limits from the config, duplicates, dropouts, aborts):

0. ADVERTISE_KEYS: client u sends c_pk (share encryption), s_pk (masks) and a
   hash commitment to its self-mask seed b_u, signed with its Ed25519 identity
   when identities are configured.
1. SHARE_KEYS: u Shamir-shares its self-mask seed b_u and the seed of its mask
   key s_u among its neighbours *and itself* (threshold t; Bonawitz et al. share
   among all of U1, u included, so t survivors suffice to unmask), each pair for
   a neighbour sealed with AES-GCM under agree(c_u, c_v); the server relays
   ciphertexts only. u also gives the server the hash of every share it deals
   (signed per holder when identities are configured); holders check what
   they receive against those hashes.
2. MASKED_INPUT: u sends y_u = encode(x_u) + PRG(b_u) + Σ_v ±PRG(s_uv) mod 2^bits
   over the neighbours v whose shares reached it (+ if u < v, − if u > v).
3. CONSISTENCY (active security only): the server sends the survivor set U3,
   clients sign it, and each client checks t neighbours' signatures on the same
   U3 before unmasking, so a server cannot show different survivor sets.
4. UNMASK: u reveals, per neighbour v, the share of b_v if v survived and the
   share of s_v if it dropped, never both. The server checks every revealed
   share against its dealer's hash, rebuilds b_u of survivors and s_v of
   dropouts, checks each against its commitment (or s_pk), and removes the
   masks.

Who misbehaved: errors about a message's *sender* carry ``client_id`` (the
peer); a revealed share that misses its hash names the holder, secrets that do
not rebuild consistently name their dealer; ``local=True`` marks a caller bug.
A round returns the exact sum of the survivors' inputs, or raises.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Mapping, NoReturn

import numpy as np
from numpy.typing import NDArray

from secagg import aead, kex, shamir
from secagg.encoding import word_dtype
from secagg.encoding_torch import is_tensor
from secagg.errors import (
    AbortError,
    ConfigError,
    DecodeError,
    IntegrityError,
    ProtocolError,
    ThresholdError,
    require_extra,
)
from secagg.masking import apply_masks, unmask_sum

from . import messages as m
from .config import SecAggConfig
from .messages import DecodeLimits
from .secagg_binding import (
    HASH_BYTES,
    KEY_BYTES,
    MAX_MAP_ENTRY,
    MAX_SHARE_CIPHERTEXT,
    SEED_BYTES,
    SIGNATURE_BYTES,
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
from .session import DONE, AggregateResult, Binding, ClientCore, ServerCore, Stage, StageSpec

__all__ = ["SecAggServer", "SecAggClient", "mask_context", "share_context", "pair_sign", "survivors_transcript"]


def _binding(config: SecAggConfig) -> Binding:
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
    masked with the update (DESIGN clarification 1). ``identity`` is this
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
        super().__init__(_binding(config), self.id, stages, limits=decode_limits(config, vectors=False))
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
        return m.AdvertiseKeys(
            self.header(Stage.ADVERTISE_KEYS), c_pk, s_pk, signature, commitment
        )

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
            # so the round holds one d-word vector, not two (issue #9, CPU streaming).
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
                raise IntegrityError("sealed shares differ from the hashes relayed for their dealer (the dealer "
                                     "or the server lied)", client_id=None, dealer=v)
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


class SecAggServer(ServerCore):
    """Server side of SecAgg / SecAgg+ (sans-I/O).

    ``start()`` -> outbox; ``receive(cid, msg)`` for each reply (typed errors on
    anything malformed, duplicate, unknown or out of stage; the state is then
    unchanged); ``close_stage()`` at each deadline -> next outbox; ``result()``
    once ``state is DONE``. Below ``min_survivors`` (or without t shares for a
    secret it must rebuild) the round ends ABORTED with ``abort_reason``.

    ``backend`` picks how the final unmasking runs (:func:`secagg.masking.unmask_sum`):
    ``"numpy"`` (default: ``cryptography``'s ChaCha20 on the CPU) or ``"torch"``
    (:mod:`secagg.prg_torch` on ``device``: default CUDA if present, else the
    CPU). Both give the same words, so the result does not depend on it.
    Raises :class:`ConfigError` for another backend, :class:`MissingExtraError`
    for ``"torch"`` without torch.
    """

    UNMASK_BACKENDS = ("numpy", "torch")

    def __init__(self, config: SecAggConfig, *, backend: str = "numpy", device: Any = None) -> None:
        if backend not in self.UNMASK_BACKENDS:
            raise ConfigError(f"backend must be one of {self.UNMASK_BACKENDS}", local=True, backend=backend)
        if backend == "torch":
            require_extra("torch", "fl")  # fail now, not after the clients have revealed shares
        elif device is not None:
            raise ConfigError("device is only meaningful with backend='torch'", local=True, device=str(device))
        self.backend, self.device = backend, device
        self.config = config
        self.graph = config.graph()
        self._keys: dict[int, tuple[bytes, bytes]] = {}
        self._delivered: dict[int, set[int]] = {}  # u -> senders whose shares u holds
        self._survivors: tuple[int, ...] = ()
        self._commitments: dict[int, bytes] = {}  # u -> commitment to b_u (round 0)
        self._dealt_hashes: dict[tuple[int, int], bytes] = {}  # (dealer, holder) -> share hashes (round 1)
        t = config.threshold
        after_input = Stage.CONSISTENCY if config.active_security else Stage.UNMASK
        # Bonawitz et al. 2017, Fig. 4, rounds 0-4, read top to bottom: the reply each stage
        # accepts, its check, the stage that follows, what closing it sends, and (where
        # it is not min_survivors) how many replies it needs.
        stages = {
            Stage.ADVERTISE_KEYS: StageSpec(m.AdvertiseKeys, self._check_advertise_keys, Stage.SHARE_KEYS,
                                            close=self._close_advertise_keys),
            Stage.SHARE_KEYS: StageSpec(m.EncryptedShares, self._check_share_keys, Stage.MASKED_INPUT,
                                        close=self._close_share_keys),
            Stage.MASKED_INPUT: StageSpec(m.MaskedInput, self._check_masked_input, after_input,
                                          close=self._close_masked_input),
            Stage.CONSISTENCY: StageSpec(m.ConsistencySignature, self._check_consistency, Stage.UNMASK,
                                         close=self._close_consistency, needed=t),
            Stage.UNMASK: StageSpec(m.UnmaskShares, self._check_unmask, DONE, close=self._close_unmask, needed=t),
        }
        if not config.active_security:
            del stages[Stage.CONSISTENCY]
        super().__init__(
            _binding(config),
            config.client_ids,
            stages,
            opening=lambda: {u: m.AdvertiseKeysRequest(self.header(Stage.ADVERTISE_KEYS, u)) for u in config.client_ids},
            min_survivors=config.min_survivors,
            limits=decode_limits(config, vectors=True),
        )

    def _blame_dealer(self, dealer: int, why: str) -> NoReturn:
        """End the round ABORTED and raise, naming the client that dealt inconsistent shares."""
        self.abort(self.config.threshold, 0, f"client {dealer} dealt inconsistent shares: {why}")
        raise IntegrityError(f"client {dealer} dealt inconsistent shares: {why}", client_id=dealer, stage=Stage.UNMASK)

    def _rebuild(self, share_lists: list[list[shamir.Share]], dealers: list[int] | tuple[int, ...], what: str) -> list[bytes]:
        """Rebuild one secret per dealer; shares that disagree name their dealer."""
        try:
            return shamir.combine_many(share_lists, self.config.threshold)
        except (IntegrityError, ThresholdError):
            for dealer, shares in zip(dealers, share_lists):
                try:
                    shamir.combine(shares, self.config.threshold)
                except (IntegrityError, ThresholdError):
                    self._blame_dealer(dealer, f"the shares of its {what} do not lie on one polynomial")
            raise

    # -- stage 0: advertise keys
    def _check_advertise_keys(self, u: int, msg: m.AdvertiseKeys) -> m.AdvertiseKeys:
        if len(msg.c_public) != KEY_BYTES or len(msg.s_public) != KEY_BYTES:
            raise DecodeError("public keys must be 32 bytes", client_id=u)
        if len(msg.signature) > SIGNATURE_BYTES:
            raise DecodeError("signature too long", client_id=u)
        if len(msg.self_mask_commitment) != HASH_BYTES:
            raise DecodeError("self-mask commitment must be 32 bytes", client_id=u)
        c = self.config
        if c.identities is not None and (c.active_security or msg.signature):
            kex.verify(
                c.identities[u],
                msg.signature,
                advert_transcript(c, u, msg.c_public, msg.s_public, msg.self_mask_commitment),
            )
        return msg

    def _close_advertise_keys(self, inbox: Mapping[int, m.AdvertiseKeys]) -> dict[int, m.Message]:
        self._keys = {u: (msg.c_public, msg.s_public) for u, msg in inbox.items()}
        self._commitments = {u: msg.self_mask_commitment for u, msg in inbox.items()}
        outbox = {}
        for u in sorted(inbox):
            keys = {
                v: inbox[v].c_public + inbox[v].s_public + inbox[v].self_mask_commitment + inbox[v].signature
                for v in self.graph[u]
                if v in inbox
            }
            outbox[u] = m.KeysBroadcast(self.header(Stage.SHARE_KEYS, u), keys)
        return outbox

    # -- stage 1: share keys
    def _check_share_keys(self, u: int, msg: m.EncryptedShares) -> m.EncryptedShares:
        allowed = {v for v in self.graph[u] if v in self._keys}
        extra = set(msg.ciphertexts) - allowed
        if extra:
            raise ProtocolError("shares addressed to clients that are not live neighbours", client_id=u)
        if len(msg.ciphertexts) + 1 < self.config.threshold:  # the sender holds one share itself
            raise ProtocolError("fewer share ciphertexts than the threshold", client_id=u)
        if any(len(ct) > MAX_SHARE_CIPHERTEXT for ct in msg.ciphertexts.values()):
            raise DecodeError("share ciphertext too large", client_id=u)
        c = self.config
        if set(msg.share_hashes) != set(msg.ciphertexts) | {u}:
            raise ProtocolError("share hashes must name exactly the holders the shares went to", client_id=u)
        if any(len(entry) != 2 * HASH_BYTES for entry in msg.share_hashes.values()):
            raise DecodeError("share hashes have the wrong size", client_id=u)
        if c.identities is not None and (c.active_security or msg.hashes_signature):
            # Signed hashes make a dealer's inconsistent shares provable to anyone.
            kex.verify(c.identities[u], msg.hashes_signature, share_hashes_transcript(c, u, msg.share_hashes))
        return msg

    def _close_share_keys(self, inbox: Mapping[int, m.EncryptedShares]) -> dict[int, m.Message]:
        incoming: dict[int, dict[int, bytes]] = {u: {} for u in inbox}
        for v, msg in inbox.items():
            for u, sealed in msg.ciphertexts.items():
                if u in incoming:
                    incoming[u][v] = sealed
        # u holds the shares of every sender that reached it, and its own
        self._delivered = {u: set(cts) | {u} for u, cts in incoming.items()}
        # (dealer, holder) -> hash(b share) || hash(s share): every revealed share is checked against it
        self._dealt_hashes = {
            (v, u): entry for v, msg in inbox.items() for u, entry in msg.share_hashes.items()
        }
        return {
            u: m.SharesDelivery(
                self.header(Stage.MASKED_INPUT, u),
                cts,
                {v: inbox[v].share_hashes[u] for v in cts},
            )
            for u, cts in incoming.items()
        }

    # -- stage 2: masked input
    def _check_masked_input(self, u: int, msg: m.MaskedInput) -> m.MaskedInput:
        c = self.config
        y = msg.masked
        dtype = word_dtype(c.bits)
        if y.dtype != dtype:
            raise DecodeError("masked vector has the wrong word size", client_id=u, dtype=str(y.dtype))
        if y.shape != (c.dim + 1,):
            raise DecodeError(
                "masked vector has the wrong length (truncated or oversized)", client_id=u, got=y.size, expected=c.dim + 1
            )
        if c.bits not in (32, 64) and int(y.max(initial=0)) >> c.bits:
            raise DecodeError("masked vector has values outside Z_{2^bits}", client_id=u)
        return msg

    def _close_masked_input(self, inbox: Mapping[int, m.MaskedInput]) -> dict[int, m.Message]:
        self._survivors = tuple(sorted(inbox))
        if self.config.active_security:
            return {u: m.ConsistencyRequest(self.header(Stage.CONSISTENCY, u), self._survivors) for u in self._survivors}
        return self._unmask_requests(self._survivors, signatures=None)

    def _unmask_requests(self, recipients: tuple[int, ...], signatures: dict[int, bytes] | None) -> dict[int, m.Message]:
        survivors = set(self._survivors)
        outbox = {}
        for u in recipients:
            held = self._delivered.get(u, set())
            sigs = {} if signatures is None else {w: s for w, s in signatures.items() if w in self.graph[u]}
            outbox[u] = m.UnmaskRequest(
                self.header(Stage.UNMASK, u),
                self._survivors,  # the whole U3: clients check its size against max(t, min_survivors)
                tuple(sorted(held - survivors)),
                sigs,
            )
        return outbox

    # -- stage 3: consistency
    def _check_consistency(self, u: int, msg: m.ConsistencySignature) -> m.ConsistencySignature:
        kex.verify(self.config.identities[u], msg.signature, survivors_transcript(self.config, self._survivors))  # type: ignore[index]
        return msg

    def _close_consistency(self, inbox: Mapping[int, m.ConsistencySignature]) -> dict[int, m.Message]:
        signatures = {u: msg.signature for u, msg in inbox.items()}
        return self._unmask_requests(tuple(sorted(inbox)), signatures)

    # -- stage 4: unmask
    def _check_unmask(self, u: int, msg: m.UnmaskShares) -> m.UnmaskShares:
        held = self._delivered.get(u, set())
        survivors = set(self._survivors)
        if not set(msg.self_mask_shares) <= held & survivors or not set(msg.mask_key_shares) <= held - survivors:
            raise ProtocolError("unmask shares for clients that were not asked for", client_id=u)
        for kind, shares in ((b"b", msg.self_mask_shares), (b"s", msg.mask_key_shares)):
            offset = 0 if kind == b"b" else HASH_BYTES
            for v, blob in shares.items():
                shamir.Share.from_bytes(blob)  # DecodeError on malformed shares
                dealt = self._dealt_hashes.get((v, u))
                if dealt is None or share_hash(self.config, v, u, kind, blob) != dealt[offset : offset + HASH_BYTES]:
                    raise IntegrityError(
                        "revealed share differs from the one its dealer committed to", client_id=u, dealer=v
                    )
        return msg

    def _close_unmask(self, inbox: Mapping[int, m.UnmaskShares]) -> AggregateResult | dict[int, m.Message]:
        c = self.config
        survivors = self._survivors
        dropped_after_sharing = sorted(set(self._delivered) - set(survivors))
        # Collect shares per secret.
        b_shares: dict[int, list[shamir.Share]] = {u: [] for u in survivors}
        s_shares: dict[int, list[shamir.Share]] = {v: [] for v in dropped_after_sharing}
        for msg in inbox.values():
            for u, blob in msg.self_mask_shares.items():
                b_shares[u].append(shamir.Share.from_bytes(blob))
            for v, blob in msg.mask_key_shares.items():
                s_shares[v].append(shamir.Share.from_bytes(blob))
        # Only dropouts whose masks some survivor added need their key rebuilt.
        owed = {v: [w for w in survivors if v in self._delivered[w]] for v in dropped_after_sharing}
        needed_s = [v for v in dropped_after_sharing if owed[v]]
        short = [(u, len(b_shares[u])) for u in survivors if len(b_shares[u]) < c.threshold]
        short += [(v, len(s_shares[v])) for v in needed_s if len(s_shares[v]) < c.threshold]
        if short:
            who, got = min(short, key=lambda item: item[1])
            return self.abort(c.threshold, got, f"not enough shares to rebuild the secrets of client {who}")
        # Every share was checked against its dealer's hash at receipt, so a secret that
        # does not rebuild consistently, or does not match its commitment, was dealt wrong.
        b_seeds = self._rebuild([b_shares[u] for u in survivors], survivors, "self-mask seed")
        s_seeds = self._rebuild([s_shares[v] for v in needed_s], needed_s, "mask-key seed")
        for u, b_seed in zip(survivors, b_seeds):
            if self_mask_commitment(c, u, b_seed) != self._commitments[u]:
                self._blame_dealer(u, "its rebuilt self-mask seed does not match its commitment")
        s_keys = [kex.generate_keypair(s_seed) for s_seed in s_seeds]
        for v, s_key in zip(needed_s, s_keys):
            if s_key.public_bytes != self._keys[v][1]:
                self._blame_dealer(v, "its rebuilt mask key does not match its advertised s_pk")
        pair_seeds: list[tuple[bytes, int]] = []
        for v, s_key in zip(needed_s, s_keys):
            for w in owed[v]:
                seed = kex.agree(s_key, self._keys[w][1], context=mask_context(c, w, v))
                pair_seeds.append((seed, pair_sign(w, v)))
        # Σ y_u over survivors, minus their self masks and the dropouts' pairwise
        # masks, mod 2^bits, in one streamed pass (no separate total vector).
        total = unmask_sum(
            [self.accepted(Stage.MASKED_INPUT)[u].masked for u in survivors],
            bits=c.bits,
            self_seeds=b_seeds,
            pair_seeds=pair_seeds,
            backend=self.backend,
            device=self.device,
        )
        vector_sum, weight_sum = c.encoder.decode_sum(total)
        aggregate = vector_sum / weight_sum if c.weighted and weight_sum else vector_sum
        dropped = sorted(set(c.client_ids) - set(survivors))
        return AggregateResult(
            aggregate=np.asarray(aggregate, dtype=np.float64),
            survivors=list(survivors),
            dropped=dropped,
            weight_sum=float(weight_sum),
            weighted=c.weighted,
            raw_sum=total,
            extras={"dropped_at": dict(self.dropped), "rebuilt_mask_keys": len(needed_s)},
        )
