"""SecAgg client secrets: fresh self-mask seeds, never both shares of one client,
and no unmasking for a survivor set below max(t, min_survivors)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocols import DONE, Stage, sim
from protocols import messages as m
from protocols.config import SecAggConfig
from protocols.secagg import SecAggClient, SecAggServer
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError
from secagg.masking import apply_masks

N, DIM = 6, 8


def _config(n: int = N, *, threshold: int = 4, neighbors: int | None = None, min_survivors: int | None = None):
    return SecAggConfig(tuple(range(n)), threshold, DIM, FixedPointEncoder(1.0, 32, n), neighbors=neighbors,
                        min_survivors=min_survivors)


class _Recorder:
    """An honest client whose replies are kept, as the server would see them."""

    def __init__(self, inner: SecAggClient) -> None:
        self.inner, self.replies = inner, []

    def handle(self, data: bytes) -> m.Message | None:
        reply = self.inner.handle(data)
        if reply is not None:
            self.replies.append(reply)
        return reply


def _round(config: SecAggConfig, drop_at: dict[int, Stage] | None = None):
    """Drive one round; the result (None if it aborted) and the recording clients."""
    rng = np.random.default_rng(0)
    clients = {u: _Recorder(SecAggClient(config, u, rng.uniform(-1, 1, DIM))) for u in config.client_ids}
    try:
        result = sim.drive(SecAggServer(config), clients, drop_at)
    except AbortError:
        result = None  # the properties below are about what the clients sent, whatever the server made of it
    return result, clients


def _replies(clients, kind):
    return {u: [r for r in c.replies if isinstance(r, kind)] for u, c in clients.items()}


def test_self_mask_seeds_are_fresh_per_client_and_round() -> None:
    config = _config()
    seeds = []
    for _ in range(2):
        result, clients = _round(config)
        assert result is not None
        seeds += [c.inner.colluder_view_seeds()[0] for c in clients.values()]
    assert all(len(s) == 32 for s in seeds)
    assert len(set(seeds)) == len(seeds), "two self-mask seeds coincide"
    assert bytes(32) not in seeds


def test_masked_input_is_not_unmasked_by_a_guessable_self_mask() -> None:
    # n = 2: y_0 + y_1 = x_0 + x_1 + PRG(b_0) + PRG(b_1) (the pairwise masks cancel). Removing a
    # self mask from a guessable seed must not reveal the sum: only the Shamir shares may.
    config = _config(2, threshold=2)
    server = SecAggServer(config)
    clients = {u: SecAggClient(config, u, np.full(DIM, 0.25)) for u in (0, 1)}
    outbox = server.start()
    while server.state is not Stage.UNMASK:
        for u, msg in outbox.items():
            server.receive(u, clients[u].handle(msg.to_bytes()).to_bytes())
        outbox = server.close_stage()
    masked = [server._inbox[Stage.MASKED_INPUT][u].masked for u in (0, 1)]
    total = (masked[0].astype(np.uint64) + masked[1]) % (1 << 32)
    for guess in (bytes(32), b"\xff" * 32):
        strip = apply_masks(np.zeros(DIM + 1, dtype=np.uint32), bits=32, self_seed=guess, pair_seeds=[])
        guessed = (total + 2 * ((1 << 32) - strip.astype(np.uint64))) % (1 << 32)
        assert int(guessed[-1]) != 2, "the weight sum leaked without any share"


@pytest.mark.parametrize("drop_at", [{}, {1: Stage.MASKED_INPUT}, {1: Stage.MASKED_INPUT, 4: Stage.MASKED_INPUT}])
def test_no_client_reveals_both_shares_of_anyone(drop_at) -> None:
    result, clients = _round(_config(), drop_at)
    survivors = set(range(N)) - set(drop_at)  # everyone else sent a masked input
    assert result is None or set(result.survivors) == survivors
    revealed_b: set[int] = set()
    revealed_s: set[int] = set()
    for u, replies in _replies(clients, m.UnmaskShares).items():
        for reply in replies:
            b, s = set(reply.self_mask_shares), set(reply.mask_key_shares)
            assert not b & s, f"client {u} revealed both shares of {b & s}"
            assert b <= survivors and not s & survivors, f"client {u} revealed a survivor's mask-key share"
            revealed_b |= b
            revealed_s |= s
    assert not revealed_b & revealed_s, "the server collected both shares of one client"
    assert revealed_s == set(drop_at)


def _at_unmask(config: SecAggConfig):
    """Clients after an honest masked-input stage, and the server's honest unmask requests."""
    server = SecAggServer(config)
    clients = {u: SecAggClient(config, u, np.full(DIM, 0.1)) for u in config.client_ids}
    outbox = server.start()
    while server.state is not Stage.UNMASK:
        for u, msg in outbox.items():
            server.receive(u, clients[u].handle(msg.to_bytes()).to_bytes())
        outbox = server.close_stage()
    return clients, outbox


@pytest.mark.parametrize(("threshold", "min_survivors", "shown"), [(4, None, 3), (4, 6, 5), (4, 6, 4)])
def test_client_refuses_a_survivor_set_below_max_threshold_min_survivors(threshold, min_survivors, shown) -> None:
    config = _config(threshold=threshold, min_survivors=min_survivors)
    needed = max(threshold, config.min_survivors)
    assert shown < needed
    clients, outbox = _at_unmask(config)
    u = 0
    survivors = tuple(range(shown))  # includes u
    dropped = tuple(v for v in config.client_ids if v not in survivors)  # they sent masked inputs
    forged = dataclasses.replace(outbox[u], survivors=survivors, dropped=dropped)
    with pytest.raises(AbortError) as info:
        clients[u].handle(forged.to_bytes())
    assert info.value.fields.get("needed") == needed and info.value.fields.get("got") == shown
    assert clients[u].state is not DONE and not clients[u].revealed_mask_key


def test_client_unmasks_a_survivor_set_of_exactly_the_needed_size() -> None:
    config = _config(threshold=4, min_survivors=5)
    clients, outbox = _at_unmask(config)
    survivors = tuple(range(5))
    forged = dataclasses.replace(outbox[0], survivors=survivors, dropped=(5,))
    reply = clients[0].handle(forged.to_bytes())
    assert set(reply.mask_key_shares) == {5} and set(reply.self_mask_shares) == set(survivors)
