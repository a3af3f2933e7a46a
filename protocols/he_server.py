"""Server side of the HE sessions (:mod:`protocols.he`), on the session core.

The server relays the key ceremony, checks and adds ciphertexts, and has the
sum decrypted. Its stages are the table in :meth:`HeServer.__init__`; the
core (:class:`~protocols.session.ServerCore`) checks every header before any
body, decodes under limits sized from the config (:class:`WireSizes`),
drops a client whose authenticated reply is bad (or aborts when too few
remain), and a stage's close either opens the next stage or ends the round
DONE or ABORTED: it never raises for what clients sent.
"""

from __future__ import annotations

import functools
import hmac
from typing import Any, Callable, Mapping

import numpy as np

from secagg import kex
from secagg import paillier_threshold as threshold_paillier
from secagg.errors import DecodeError, IntegrityError, SecAggError

from . import messages as m
from .he_config import (
    MAC_BYTES,
    HeConfig,
    HeScheme,
    WireSizes,
    advert_transcript,
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
    unpack_ints,
)
from .session import DONE, AggregateResult, BadInputPolicy, Binding, ServerCore, Stage, StageSpec

__all__ = ["HeServer"]

Outbox = dict[int, m.Message]


def _aborts_on_error(close: Callable[["HeServer", Mapping[int, Any]], Any]) -> Callable[..., Any]:
    """A stage close computes on what clients sent: any failure there ends
    the round ABORTED with the reason, instead of raising at the driver."""

    @functools.wraps(close)
    def run(self: "HeServer", accepted: Mapping[int, Any]) -> Any:
        try:
            return close(self, accepted)
        except (SecAggError, ValueError, ArithmeticError) as exc:
            detail = getattr(exc, "message", str(exc))
            return self.abort(1, 0, f"no valid outcome: {type(exc).__name__}: {detail}")

    return run


class HeServer(ServerCore):
    """Server side: relays the key ceremony, adds ciphertexts, gets the sum decrypted.

    ``receive`` refuses a reply whose tag or signature does not verify with
    the state unchanged (it may not come from its sender; the genuine one may
    still arrive). Any other bad reply drops its sender, naming it
    (``client_id``, ``stage``), or aborts the round when too few remain.
    """

    def __init__(self, config: HeConfig) -> None:
        self.config = config
        self.scheme = HeScheme(config)
        self.sizes = sizes = WireSizes.of(config, self.scheme)
        self._kx = kex.generate_keypair()
        self._publics: dict[int, bytes] = {}
        self._parties: list[int] = []
        self._public: Any = None
        self._sum: Any = None
        self._survivors: list[int] = []
        self._agg_chunks: dict[int, bytes] = {}
        n, sig = len(config.client_ids), 4 + kex.SIGNATURE_BYTES
        decryption = (
            StageSpec(
                HePartial,
                self._accept_partial,
                DONE,
                close=self._combine_partials,
                needed=config.threshold,
                limits=limits(4 + sizes.partial, 4 + sizes.proof),
            )
            if config.is_threshold
            else StageSpec(
                HeDecrypted,
                self._accept_sums,
                DONE,
                close=self._decode_sums,
                needed=1,
                limits=limits(m.ARRAY_PREFIX_BYTES + 8 * (config.dim + 1), words=config.dim + 1),
            )
        )
        advert = limits(4 + kex.KEY_BYTES, sig)
        super().__init__(
            Binding.of(config.scheme, config.session_id, config.round),
            config.client_ids,
            {
                Stage.ADVERTISE_KEYS: StageSpec(
                    HeAdvertise,
                    self._accept_advert,
                    Stage.SHARE_KEYS,
                    close=self._send_keys_to_holder,
                    needed=config.quorum,
                    limits=advert,
                ),
                Stage.SHARE_KEYS: StageSpec(
                    HeKeyDelivery,
                    self._accept_delivery,
                    Stage.MASKED_INPUT,
                    close=self._forward_keys,
                    needed=1,
                    limits=limits(4 + sizes.public_key, 4 + n * (8 + sizes.sealed), sig, entries=n, entry=sizes.sealed),
                ),
                Stage.MASKED_INPUT: StageSpec(
                    HeInput,
                    self._accept_input,
                    Stage.UNMASK,
                    close=self._request_decryption,
                    limits=limits(
                        4 + sizes.chunks * (8 + sizes.chunk), 4 + MAC_BYTES, entries=sizes.chunks, entry=sizes.chunk
                    ),
                ),
                Stage.UNMASK: decryption,
            },
            opening=self._request_adverts,
            min_survivors=config.min_survivors,
            limits=advert,
        )

    def receive(self, client_id: int, msg: Any) -> None:
        """Consume one reply (see the class docstring); typed errors only."""
        try:
            super().receive(client_id, msg)
        finally:
            self.on_bad_input = BadInputPolicy.DROP

    def _unauthenticated(self, error: SecAggError) -> SecAggError:
        """``error``, refused with the state unchanged rather than dropping the sender."""
        self.on_bad_input = BadInputPolicy.REJECT
        return error

    def _mac_key(self, u: int) -> bytes:
        return kex.agree(self._kx, self._publics[u], context=self.config.context(b"mac", u))

    # -- stage 0: ADVERTISE_KEYS ------------------------------------------------------
    def _request_adverts(self) -> Outbox:
        return {
            u: HeKeyRequest(self.header(Stage.ADVERTISE_KEYS, u), self._kx.public_bytes) for u in self.config.client_ids
        }

    def _accept_advert(self, u: int, msg: HeAdvertise) -> HeAdvertise:
        c = self.config
        if len(msg.public) != kex.KEY_BYTES:
            raise DecodeError("expected a 32-byte X25519 key", client_id=u)
        if c.identities is not None:
            try:
                verify_signed(c, u, msg.signature, advert_transcript(c, u, msg.public), "X25519 advert")
            except IntegrityError as exc:
                raise self._unauthenticated(exc) from None
        return msg

    @_aborts_on_error
    def _send_keys_to_holder(self, adverts: Mapping[int, HeAdvertise]) -> Outbox:
        c, holder = self.config, self.config.key_holder
        if holder is None or holder not in adverts:  # HeConfig always sets key_holder
            return self.abort(c.quorum, len(adverts), "key holder or quorum missing")
        self._parties = sorted(adverts)
        self._publics = {u: adverts[u].public for u in self._parties}
        signatures = {u: adverts[u].signature for u in self._parties}
        return {
            holder: HeKeysBroadcast(
                self.header(Stage.SHARE_KEYS, holder),
                dict(self._publics),
                signatures,
            )
        }

    # -- stage 1: SHARE_KEYS (the key holder deals) -----------------------------------
    @peer_data(Stage.SHARE_KEYS)
    def _accept_delivery(self, u: int, msg: HeKeyDelivery) -> HeKeyDelivery:
        c = self.config
        if set(msg.sealed) != set(self._parties):
            raise DecodeError("key delivery must seal one secret per live client", client_id=u)
        if c.identities is not None:
            transcript = key_transcript(c, msg.public_key, self._publics[u], tuple(self._parties))
            try:
                verify_signed(c, u, msg.signature, transcript, "HE public key")
            except IntegrityError as exc:
                raise self._unauthenticated(exc) from None
        self._public = self.scheme.load_public(msg.public_key)  # CKKS: refuses a secret key
        return msg

    @_aborts_on_error
    def _forward_keys(self, deliveries: Mapping[int, HeKeyDelivery]) -> Outbox:
        holder = self.config.key_holder
        assert holder is not None  # HeConfig.__post_init__ sets it
        delivery = deliveries[holder]
        return {
            u: HeKeyForward(
                self.header(Stage.MASKED_INPUT, u),
                delivery.public_key,
                self._publics[holder],
                delivery.sealed[u],
                tuple(self._parties),
                delivery.signature,
            )
            for u in self._parties
        }

    # -- stage 2: MASKED_INPUT (ciphertexts) ------------------------------------------
    @peer_data(Stage.MASKED_INPUT)
    def _accept_input(self, u: int, msg: HeInput) -> bool:
        if not hmac.compare_digest(msg.tag, chunk_mac(self._mac_key(u), msg.header.aad(), msg.chunks)):
            raise self._unauthenticated(IntegrityError("input tag does not verify", client_id=u))
        self._add_input(u, msg)
        return True

    def _add_input(self, u: int, msg: HeInput) -> None:
        """Check one client's ciphertexts (Paillier: range and gcd(c, n) = 1) and
        add them; all or nothing, so a refused input leaves the sum as it was."""
        c, s = self.config, self.scheme
        if c.scheme == "ckks":
            if self._sum is None:
                self._sum = s.ckks.Accumulator(self._public, c.dim)
            if set(msg.chunks) != set(range(len(self._sum.sizes))):
                raise DecodeError("wrong CKKS chunk indices", client_id=u)
            self._sum.add([msg.chunks[i] for i in range(len(self._sum.sizes))])
            return
        pk = s.paillier_key(self._public)
        if set(msg.chunks) != {0}:
            raise DecodeError("Paillier input is one chunk", client_id=u)
        cts = s.paillier.ciphertexts_from_bytes(pk, msg.chunks[0], s.plan.n_ciphertexts(c.dim + 1))  # units only
        self._sum = cts if self._sum is None else s.paillier.sum_ciphertexts(pk, [self._sum, cts])

    @_aborts_on_error
    def _request_decryption(self, inputs: Mapping[int, bool]) -> Outbox:
        c = self.config
        self._survivors = sorted(inputs)
        if c.scheme == "ckks":
            self._agg_chunks = dict(enumerate(self._sum.result()))
        else:
            pk = self.scheme.paillier_key(self._public)
            self._agg_chunks = {0: self.scheme.paillier.ciphertexts_to_bytes(pk, self._sum)}
        ask = self._survivors if c.is_threshold else self._survivors[: c.decryptors]
        out: Outbox = {}
        for u in ask:
            h = self.header(Stage.UNMASK, u)
            out[u] = HeDecryptRequest(
                h, self._agg_chunks, chunk_mac(self._mac_key(u), h.aad(), self._agg_chunks), tuple(self._survivors)
            )
        return out

    # -- stage 3: UNMASK (decryption) -------------------------------------------------
    def _accept_sums(self, u: int, msg: HeDecrypted) -> np.ndarray:
        c = self.config
        if msg.sums.shape != (c.dim + 1,) or msg.sums.dtype != c.encoder.dtype:
            raise DecodeError("decrypted sums have the wrong shape or word size", client_id=u)
        for other in self.accepted(Stage.UNMASK).values():
            if not np.array_equal(other, msg.sums):
                raise IntegrityError("decryptors disagree on the sum", client_id=u)
        return msg.sums

    @_aborts_on_error
    def _decode_sums(self, sums: Mapping[int, np.ndarray]) -> AggregateResult:
        return self._finish(sums[min(sums)])

    @peer_data(Stage.UNMASK)
    def _accept_partial(self, u: int, msg: HePartial) -> threshold_paillier.PartialDecryption:
        index = self._parties.index(u) + 1
        e, z, a, b = unpack_ints(msg.proof, 4)
        values = tuple(unpack_ints(msg.values))
        partial = threshold_paillier.PartialDecryption(index, values, e, z, a, b)
        try:
            threshold_paillier.verify_partial(self._public, self._sum, partial)
        except IntegrityError as exc:
            raise IntegrityError(str(exc.message), client_id=u, party=index) from None
        return partial

    @_aborts_on_error
    def _combine_partials(self, partials: Mapping[int, threshold_paillier.PartialDecryption]) -> AggregateResult:
        c = self.config
        plaintexts = threshold_paillier.combine(
            self._public, self._sum, [partials[u] for u in sorted(partials)], verify=False
        )
        try:
            ints = self.scheme.plan.unpack(plaintexts, c.dim + 1, len(self._survivors))
        except IntegrityError as exc:  # a unit ciphertext of an out-of-range plaintext: abort, never a sum
            raise IntegrityError(
                f"{exc.message} (a client encrypted a plaintext outside its bound; "
                "not attributable without range proofs)"
            ) from None
        return self._finish(c.encoder.to_modular(ints))

    def _finish(self, raw: np.ndarray) -> AggregateResult:
        """The result from the modular sum; IntegrityError if it is not a sum of encodings."""
        c = self.config
        vector_sum, weight_sum = c.encoder.decode_sum(raw)
        aggregate = vector_sum / weight_sum if c.weighted and weight_sum else vector_sum
        dropped = sorted(set(c.client_ids) - set(self._survivors))
        return AggregateResult(
            np.asarray(aggregate, dtype=np.float64),
            list(self._survivors),
            dropped,
            weight_sum=float(weight_sum),
            weighted=c.weighted,
            raw_sum=raw,
            extras={"scheme": c.scheme, "aggregate_bytes": sum(len(b) for b in self._agg_chunks.values())},
        )
