"""Adversarial servers for SecAgg / SecAgg+, and what their view reveals.

An adversary here is a server that may deviate from the protocol and that
colludes with a fixed set of clients: it reads everything they hold (their
own seeds and every share dealt to them) and everything any client sends it.
The servers below wrap an honest :class:`protocols.secagg.SecAggServer` and
change only what they relay, so every attack is the smallest deviation that
tries to break one claim:

* :class:`SelectiveDeliveryServer`: delivers to a target only the shares of the
  colluders and of a set D of honest clients, then claims D dropped, so the
  target's masked input would be unmaskable alone (Bonawitz et al. 2017, §6).
* :class:`EquivocatingServer`: shows one survivor set to half of the clients
  and another to the other half, so that the two halves reveal both secrets of
  a target.

:func:`exposure` then *tries to reconstruct*: from the shares the adversary
saw and the colluders hold it rebuilds every secret it can (checked against the
clients' real seeds), and it unmasks the smallest set of honest inputs that
those secrets let it isolate (checked against the clients' real updates). It
never counts messages in place of reconstructing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, cast

import numpy as np

from secagg import kex, shamir
from secagg.errors import SecAggError
from secagg.masking import unmask_sum

from . import messages as m
from .config import GRAPH_SEED_BYTES
from .graph import harary_graph
from .secagg import SecAggClient, mask_context, pair_sign, survivors_transcript
from .session import Stage

__all__ = [
    "AdversaryLog",
    "SelectiveDeliveryServer",
    "EquivocatingServer",
    "BadShareClient",
    "InconsistentDealerClient",
    "MismatchedHashDealerClient",
    "Exposure",
    "exposure",
    "grind_graph_seed",
]


@dataclass
class AdversaryLog:
    """Everything the server saw: each client's messages by stage, and the share
    ciphertexts it actually delivered to each client (sender ids)."""

    received: dict[Stage, dict[int, m.Message]] = field(default_factory=lambda: {s: {} for s in Stage})
    delivered: dict[int, set[int]] = field(default_factory=dict)

    def record(self, client_id: int, msg: Any) -> m.Message | None:
        try:
            parsed = m.decode(bytes(msg)) if isinstance(msg, (bytes, bytearray, memoryview)) else msg
        except SecAggError:
            return None
        self.received[parsed.header.stage].setdefault(client_id, parsed)
        return parsed


class _WrappingServer:
    """Relays to an honest inner server; subclasses rewrite what is relayed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log = AdversaryLog()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def start(self) -> dict[int, Any]:
        return self._outgoing(self.inner.start())

    def close_stage(self) -> dict[int, Any]:
        return self._outgoing(self.inner.close_stage())

    def receive(self, client_id: int, msg: Any) -> None:
        parsed = self.log.record(client_id, msg)
        if parsed is not None and self._swallow(client_id, parsed):
            return
        self.inner.receive(client_id, msg)

    def _swallow(self, client_id: int, msg: m.Message) -> bool:
        return False

    def _outgoing(self, outbox: dict[int, Any]) -> dict[int, Any]:
        out = {u: self._rewrite(u, msg) for u, msg in outbox.items()}
        for u, msg in out.items():
            if isinstance(msg, m.SharesDelivery):
                self.log.delivered[u] = set(msg.ciphertexts) | {u}
        return out

    def _rewrite(self, u: int, msg: m.Message) -> m.Message:
        return msg


class SelectiveDeliveryServer(_WrappingServer):
    """Selective share delivery with fake dropouts.

    The target receives only the share ciphertexts of ``colluders`` and
    ``fake_dropped``; the masked inputs of ``fake_dropped`` are then withheld
    from the honest inner server, which therefore announces them as dropped and
    asks the survivors for their mask-key shares, while the target, announced
    as a survivor, has its self-mask share revealed.
    """

    def __init__(self, inner: Any, *, target: int, colluders: Iterable[int], fake_dropped: Iterable[int]) -> None:
        super().__init__(inner)
        self.target = target
        self.colluders = frozenset(colluders)
        self.fake_dropped = frozenset(fake_dropped)

    def _rewrite(self, u: int, msg: m.Message) -> m.Message:
        if u == self.target and isinstance(msg, m.SharesDelivery):
            keep = self.colluders | self.fake_dropped
            return dataclasses.replace(msg, ciphertexts={v: c for v, c in msg.ciphertexts.items() if v in keep})
        return msg

    def _swallow(self, client_id: int, msg: m.Message) -> bool:
        return client_id in self.fake_dropped and isinstance(msg, m.MaskedInput)


class EquivocatingServer(_WrappingServer):
    """Survivor-set equivocation: clients in ``half`` are shown the survivor
    set without ``target`` (and asked for its mask-key share), the others the
    true one (and asked for its self-mask share).

    In an active round the server keeps each half's signatures to itself,
    signs the half's set with every colluder's identity (``colluder_keys``:
    id -> :class:`secagg.kex.IdentityKey`; colluders sign both views) and
    shows each client only the signatures that are valid for its own view.
    """

    def __init__(
        self,
        inner: Any,
        *,
        target: int,
        half: Iterable[int],
        colluder_keys: Mapping[int, kex.IdentityKey] | None = None,
    ) -> None:
        super().__init__(inner)
        self.target = target
        self.half = frozenset(half) - {target}
        self.colluder_keys = dict(colluder_keys or {})
        self._half_view: tuple[int, ...] | None = None
        self._half_signatures: dict[int, bytes] = {}

    def _swallow(self, client_id: int, msg: m.Message) -> bool:
        if client_id not in self.half:
            return False
        if isinstance(msg, m.ConsistencySignature):
            self._half_signatures[client_id] = msg.signature
            return True
        return isinstance(msg, m.UnmaskShares)  # the honest server would refuse shares it did not ask for

    def _rewrite(self, u: int, msg: m.Message) -> m.Message:
        if u in self.half and isinstance(msg, m.ConsistencyRequest) and self.target in msg.survivors:
            self._half_view = tuple(v for v in msg.survivors if v != self.target)
            return dataclasses.replace(msg, survivors=self._half_view)
        if u in self.half and isinstance(msg, m.UnmaskRequest) and self.target in msg.survivors:
            return self._half_request(u, msg)
        return msg

    def _outgoing(self, outbox: dict[int, Any]) -> dict[int, Any]:
        requests = [msg for msg in outbox.values() if isinstance(msg, m.UnmaskRequest)]
        if requests and self._half_view is not None:  # the half did not sign the honest set: they get no request
            for u in self.half - set(outbox):
                if u in self._half_signatures:
                    outbox = {
                        **outbox,
                        u: dataclasses.replace(requests[0], header=dataclasses.replace(requests[0].header, receiver=u)),
                    }
        return super()._outgoing(outbox)

    def _half_request(self, u: int, template: m.UnmaskRequest) -> m.UnmaskRequest:
        config = self.inner.config
        view = (
            self._half_view if self._half_view is not None else tuple(v for v in template.survivors if v != self.target)
        )
        signatures = {w: sig for w, sig in self._half_signatures.items() if w != u}
        for w, key in self.colluder_keys.items():
            if w in view and w != u:
                signatures[w] = key.sign(survivors_transcript(config, view))
        graph = config.graph()
        return dataclasses.replace(
            template,
            header=dataclasses.replace(template.header, receiver=u),
            survivors=view,
            dropped=tuple(sorted({*template.dropped, self.target} - set(view))),
            signatures={w: sig for w, sig in signatures.items() if w in graph[u]},
        )


# ----------------------------------------------------------------- graph grinding


def grind_graph_seed(
    ids: Sequence[int], neighbors: int, colluders: Iterable[int], quota: int, tries: int
) -> tuple[bytes, int] | None:
    """A server that picks the public SecAgg+ graph seed tries up to ``tries``
    fresh seeds and keeps the first whose graph puts at least ``quota`` of
    ``colluders`` among some honest client's neighbours (``quota`` is
    :func:`protocols.config.colluder_quota`). Returns (seed, that client) or
    None. Against a semi-honest per-graph bound this succeeds after about
    1 / (n · P[break]) tries; an accepted active config has quota > max_corrupt,
    so no seed can succeed."""
    colluding = frozenset(colluders)
    for _ in range(tries):
        seed = os.urandom(GRAPH_SEED_BYTES)
        graph = harary_graph(list(ids), neighbors, seed)
        for u, around in graph.items():
            if u not in colluding and len(around & colluding) >= quota:
                return seed, u
    return None


# ----------------------------------------------------------------- malicious clients


def _off_by_one(share: shamir.Share) -> shamir.Share:
    return shamir.Share(share.x, (share.y + 1) % shamir.PRIME, share.length)


class BadShareClient(SecAggClient):
    """Reveals one wrong share in the unmask round: the first self-mask share
    (``kind="b"``) or mask-key share (``kind="s"``) it sends is off by one."""

    def __init__(self, *args: Any, kind: str = "b", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind

    def _unmask(self, msg: m.UnmaskRequest) -> m.UnmaskShares:
        reply = super()._unmask(msg)
        name = "self_mask_shares" if self.kind == "b" else "mask_key_shares"
        shares = dict(getattr(reply, name))
        if shares:
            v = min(shares)
            shares[v] = _off_by_one(shamir.Share.from_bytes(shares[v])).to_bytes()
        if self.kind == "b":
            return dataclasses.replace(reply, self_mask_shares=shares)
        return dataclasses.replace(reply, mask_key_shares=shares)


class InconsistentDealerClient(SecAggClient):
    """Deals ``victim`` self-mask and mask-key shares off its polynomials, and
    commits to their hashes (so the victim accepts them and reveals them)."""

    def __init__(self, *args: Any, victim: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victim = victim

    def _deal(self, xs: list[int]) -> tuple[list[shamir.Share], list[shamir.Share]]:
        b_shares, s_shares = super()._deal(xs)
        i = xs.index(self.victim + 1) if self.victim + 1 in xs else None
        if i is not None:
            b_shares[i], s_shares[i] = _off_by_one(b_shares[i]), _off_by_one(s_shares[i])
        return b_shares, s_shares


class MismatchedHashDealerClient(SecAggClient):
    """Commits, for ``victim``, to hashes of shares other than the ones it seals."""

    def __init__(self, *args: Any, victim: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.victim = victim

    def _share_hashes(self, holder: int, b_share: shamir.Share, s_share: shamir.Share) -> bytes:
        if holder == self.victim:
            b_share, s_share = _off_by_one(b_share), _off_by_one(s_share)
        return super()._share_hashes(holder, b_share, s_share)


# ----------------------------------------------------------------- what the view reveals


@dataclass(frozen=True)
class Exposure:
    """What an adversary rebuilt.

    ``both_secrets``: honest clients whose self-mask seed *and* mask-key seed
    it rebuilt. ``smallest_sum``: the fewest honest inputs in a sum it unmasked
    and checked against the real updates (``None`` when it could unmask none).
    ``unmasked``: every honest set it unmasked, as sorted tuples.
    """

    both_secrets: frozenset[int]
    smallest_sum: int | None
    unmasked: tuple[tuple[int, ...], ...]


def _rebuild(shares: list[shamir.Share], t: int) -> bytes | None:
    unique = {s.x: s for s in shares}
    if len(unique) < t:
        return None
    try:
        return shamir.combine(list(unique.values())[:t], t)
    except SecAggError:
        return None


def exposure(
    config: Any,
    log: AdversaryLog,
    clients: Mapping[int, Any],
    colluders: Iterable[int],
    updates: Mapping[int, np.ndarray],
    *,
    weights: Mapping[int, int] | None = None,
) -> Exposure:
    """Rebuild what the adversary's view allows; see :class:`Exposure`.

    ``clients`` are the real client sessions (their seeds are the ground truth
    that rebuilt secrets are checked against; colluders' held shares are read
    through :meth:`SecAggClient.colluder_view`). ``updates`` are the real
    float updates, to check an unmasked sum by decoding it.
    """
    colluders = frozenset(colluders)
    honest = [u for u in config.client_ids if u not in colluders]
    t = config.threshold
    b_shares: dict[int, list[shamir.Share]] = {u: [] for u in config.client_ids}
    s_shares: dict[int, list[shamir.Share]] = {u: [] for u in config.client_ids}
    for msg in cast(dict[int, m.UnmaskShares], log.received[Stage.UNMASK]).values():
        for v, blob in msg.self_mask_shares.items():
            b_shares[v].append(shamir.Share.from_bytes(blob))
        for v, blob in msg.mask_key_shares.items():
            s_shares[v].append(shamir.Share.from_bytes(blob))
    for c in colluders:
        for v, (b_share, s_share) in clients[c].colluder_view().items():
            b_shares[v].append(b_share)
            s_shares[v].append(s_share)
    adverts = dict(cast(dict[int, m.AdvertiseKeys], log.received[Stage.ADVERTISE_KEYS]))

    b_known: dict[int, bytes] = {}
    s_known: dict[int, bytes] = {}
    for u in honest:
        truth_b, truth_s = clients[u].colluder_view_seeds()
        b = _rebuild(b_shares[u], t)
        if b is not None and b == truth_b:
            b_known[u] = b
        s = _rebuild(s_shares[u], t)
        if s is not None and s == truth_s:
            s_known[u] = s
    for c in colluders:
        b_known[c], s_known[c] = clients[c].colluder_view_seeds()

    inputs = cast(dict[int, m.MaskedInput], log.received[Stage.MASKED_INPUT])
    masked = {u: msg.masked for u, msg in inputs.items()}

    def removable(u: int, v: int) -> bool:
        return u in s_known or v in s_known

    # Honest inputs joined by a pairwise mask the adversary cannot remove must be
    # unmasked together; a group touching an absent honest input, or one whose
    # self mask it cannot remove, cannot be unmasked at all.
    parent = {u: u for u in honest}

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    # PRG(s_uv) is in y_u when u held v's shares; in y_u + y_v it cancels only when v
    # held u's too. A mask the adversary can neither cancel nor remove blocks u.
    def mutual(u: int, v: int) -> bool:
        return u in log.delivered.get(v, ()) and v in log.delivered.get(u, ())

    lone: set[int] = set()
    for u in honest:
        if u not in masked:
            continue
        for v in log.delivered.get(u, ()):
            if v == u or v in colluders or removable(u, v):
                continue
            if mutual(u, v) and v in parent:
                parent[find(u)] = find(v)
            else:
                lone.add(u)
    groups: dict[int, list[int]] = {}
    for u in honest:
        groups.setdefault(find(u), []).append(u)
    blocked = {
        root
        for root, members in groups.items()
        if any(u not in masked or u not in b_known or u in lone for u in members)
    }

    unmasked: list[tuple[int, ...]] = []
    for root, members in groups.items():
        if root in blocked:
            continue
        members = sorted(members)
        group = set(members)
        pair_seeds = []
        for u in members:
            for v in sorted(log.delivered.get(u, set()) - {u}):
                if v in group and mutual(u, v):
                    continue
                key_owner, peer = (u, v) if u in s_known else (v, u)
                seed = kex.agree(
                    kex.generate_keypair(s_known[key_owner]),
                    adverts[peer].s_public,
                    context=mask_context(config, u, v),
                )
                pair_seeds.append((seed, pair_sign(u, v)))
        total = unmask_sum(
            [masked[u] for u in members],
            bits=config.bits,
            self_seeds=[b_known[u] for u in members],
            pair_seeds=pair_seeds,
        )
        try:
            vector, _ = config.encoder.decode_sum(total)
        except SecAggError:  # masks left in: not a sum of encodings
            continue
        w = weights or {}
        expected = sum(w.get(u, 1) * np.asarray(updates[u], dtype=np.float64) for u in members)
        bound = config.encoder.precision * max(w.values(), default=1) * len(members) * 2 + 1e-9
        if np.allclose(vector, expected, atol=bound):
            unmasked.append(tuple(members))
    both = frozenset(u for u in honest if u in b_known and u in s_known)
    smallest = min((len(s) for s in unmasked), default=None)
    return Exposure(both, smallest, tuple(sorted(unmasked)))
