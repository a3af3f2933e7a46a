"""SecAgg / SecAgg+ server (Bonawitz et al. 2017, Fig. 4; Bell et al. 2020):
:class:`SecAggServer`, its stages declared as a table on
:class:`protocols.session.ServerCore`. The stages and who is blamed for what
are described in :mod:`protocols.secagg`, which re-exports this module.
"""

from __future__ import annotations

from typing import Any, Mapping, NoReturn

import numpy as np

from secagg import kex, shamir
from secagg.encoding import word_dtype
from secagg.errors import ConfigError, DecodeError, IntegrityError, ProtocolError, ThresholdError, require_extra
from secagg.masking import unmask_sum

from . import messages as m
from .config import SecAggConfig
from .secagg_binding import (
    HASH_BYTES,
    KEY_BYTES,
    MAX_SHARE_CIPHERTEXT,
    SIGNATURE_BYTES,
    advert_transcript,
    mask_context,
    pair_sign,
    self_mask_commitment,
    share_hash,
    share_hashes_transcript,
    survivors_transcript,
)
from .secagg_client import decode_limits, round_binding
from .session import DONE, AggregateResult, ServerCore, Stage, StageSpec

__all__ = ["SecAggServer"]


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
            Stage.ADVERTISE_KEYS: StageSpec(
                m.AdvertiseKeys, self._check_advertise_keys, Stage.SHARE_KEYS, close=self._close_advertise_keys
            ),
            Stage.SHARE_KEYS: StageSpec(
                m.EncryptedShares, self._check_share_keys, Stage.MASKED_INPUT, close=self._close_share_keys
            ),
            Stage.MASKED_INPUT: StageSpec(
                m.MaskedInput, self._check_masked_input, after_input, close=self._close_masked_input
            ),
            Stage.CONSISTENCY: StageSpec(
                m.ConsistencySignature, self._check_consistency, Stage.UNMASK, close=self._close_consistency, needed=t
            ),
            Stage.UNMASK: StageSpec(m.UnmaskShares, self._check_unmask, DONE, close=self._close_unmask, needed=t),
        }
        if not config.active_security:
            del stages[Stage.CONSISTENCY]
        assert config.min_survivors is not None  # SecAggConfig.__post_init__ sets it
        super().__init__(
            round_binding(config),
            config.client_ids,
            stages,
            opening=lambda: {
                u: m.AdvertiseKeysRequest(self.header(Stage.ADVERTISE_KEYS, u)) for u in config.client_ids
            },
            min_survivors=config.min_survivors,
            limits=decode_limits(config, vectors=True),
        )

    def _blame_dealer(self, dealer: int, why: str) -> NoReturn:
        """End the round ABORTED and raise, naming the client that dealt inconsistent shares."""
        self.abort(self.config.threshold, 0, f"client {dealer} dealt inconsistent shares: {why}")
        raise IntegrityError(f"client {dealer} dealt inconsistent shares: {why}", client_id=dealer, stage=Stage.UNMASK)

    def _rebuild(
        self, share_lists: list[list[shamir.Share]], dealers: list[int] | tuple[int, ...], what: str
    ) -> list[bytes]:
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
        outbox: dict[int, m.Message] = {}
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
        self._dealt_hashes = {(v, u): entry for v, msg in inbox.items() for u, entry in msg.share_hashes.items()}
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
                "masked vector has the wrong length (truncated or oversized)",
                client_id=u,
                got=y.size,
                expected=c.dim + 1,
            )
        if c.bits not in (32, 64) and int(y.max(initial=0)) >> c.bits:
            raise DecodeError("masked vector has values outside Z_{2^bits}", client_id=u)
        return msg

    def _close_masked_input(self, inbox: Mapping[int, m.MaskedInput]) -> dict[int, m.Message]:
        self._survivors = tuple(sorted(inbox))
        if self.config.active_security:
            return {
                u: m.ConsistencyRequest(self.header(Stage.CONSISTENCY, u), self._survivors) for u in self._survivors
            }
        return self._unmask_requests(self._survivors, signatures=None)

    def _unmask_requests(
        self, recipients: tuple[int, ...], signatures: dict[int, bytes] | None
    ) -> dict[int, m.Message]:
        survivors = set(self._survivors)
        outbox: dict[int, m.Message] = {}
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
