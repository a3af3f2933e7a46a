"""The shared session core: header checks before bodies, decode limits from the
config, dropping or aborting on bad input, stage tables, and a fuzz harness run
against the plaintext protocol on both sides."""

from __future__ import annotations

import dataclasses
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import fuzz, sim
from protocols import messages as m
from protocols import session as session_module
from protocols.plaintext import InputRequest, PlainInput, PlaintextClient, PlaintextConfig, PlaintextServer
from protocols.session import (
    ABORTED,
    DONE,
    AggregateResult,
    BadInputPolicy,
    Binding,
    ClientCore,
    ServerCore,
    Stage,
    StageSpec,
)
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, ConfigError, DecodeError, ProtocolError

N, DIM = 4, 6
SESSION = bytes(range(16))


def plaintext_round(session_id: bytes = SESSION, *, min_survivors: int = 2, n: int = N, dim: int = DIM):
    config = PlaintextConfig(tuple(range(n)), dim, FixedPointEncoder(1.0, 32, n), min_survivors=min_survivors,
                             session_id=session_id)
    rng = np.random.default_rng(0)
    clients = {u: PlaintextClient(config, u, rng.uniform(-1, 1, dim)) for u in range(n)}
    return PlaintextServer(config), clients


def replies(server, clients):
    outbox = server.start()
    return outbox, {u: clients[u].handle(msg.to_bytes()).to_bytes() for u, msg in outbox.items()}


def huge_plain_input(header: m.Header, words: int) -> bytes:
    return header.to_bytes(PlainInput.KIND) + struct.pack("<BQ", 4, words) + bytes(4 * words)


def no_decode(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the body was decoded")

    monkeypatch.setattr(session_module, "decode", refuse)


# ---------------------------------------------------------------- header before body


@pytest.mark.parametrize("change", [dict(stage=Stage.SHARE_KEYS), dict(sender=2), dict(round=7),
                                    dict(protocol=m.PROTOCOL_IDS["secagg"]), dict(receiver=1)])
def test_wrong_header_with_a_huge_body_is_rejected_without_decoding(change, monkeypatch):
    server, clients = plaintext_round()
    replies(server, clients)
    header = dataclasses.replace(m.decode_header(clients[1].header(Stage.MASKED_INPUT).to_bytes(65))[1], **change)
    data = huge_plain_input(header, 2_000_000)  # 8 MB body
    before = server.snapshot()
    no_decode(monkeypatch)
    tracemalloc.start()
    with pytest.raises(ProtocolError) as info:
        server.receive(1, data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    assert info.value.client_id == 1
    assert server.snapshot() == before


def test_encrypted_shares_with_500k_empty_entries_is_refused_at_the_header(monkeypatch):
    server, clients = plaintext_round()
    replies(server, clients)
    header = m.Header(m.PROTOCOL_IDS["plaintext"], SESSION, 0, Stage.MASKED_INPUT, 1, m.SERVER_ID)
    body = struct.pack("<I", 500_000) + b"".join(struct.pack("<II", i, 0) for i in range(500_000))
    data = header.to_bytes(m.EncryptedShares.KIND) + body
    no_decode(monkeypatch)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ProtocolError, match="expected PlainInput"):
        server.receive(1, data)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * len(data) + (1 << 20) and peak < 1 << 20
    assert elapsed < 0.5


def test_the_servers_cap_is_one_vector_message_derived_from_the_config():
    server, _ = plaintext_round()
    assert server.limits.max_bytes == m.HEADER_BYTES + m.ARRAY_PREFIX_BYTES + 4 * (DIM + 1)
    assert server.limits.max_bytes < 1 << 10  # not the 4 GiB of a bare decode()


def test_an_oversized_vector_is_refused_before_decoding_and_drops_its_sender():
    server, clients = plaintext_round()
    replies(server, clients)
    header = clients[1].header(Stage.MASKED_INPUT)
    with pytest.raises(DecodeError, match="size limit") as info:
        server.receive(1, huge_plain_input(header, 1_000_000))
    assert info.value.client_id == 1 and info.value.sender_dropped
    assert 1 in server.errors and 1 not in server.expected


# ---------------------------------------------------------------- plaintext on the core


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_plaintext_accepts_bytes_bytearray_and_memoryview(wrap):
    server, clients = plaintext_round()
    outbox = server.start()
    for u, msg in outbox.items():
        reply = clients[u].handle(wrap(msg.to_bytes()))
        server.receive(u, wrap(reply.to_bytes()))
    assert server.close_stage() == {} and server.state is DONE
    assert server.result().survivors == list(range(N))


def test_plaintext_through_the_core_matches_the_simulator():
    ups = [np.full(5, i, dtype=float) for i in range(4)]
    res = sim.run_plaintext(ups, dropouts={2: "share_keys"}, seed=1)
    np.testing.assert_allclose(res.aggregate, [4.0] * 5, atol=1e-6)
    assert res.survivors == [0, 1, 3] and res.dropped == [2]


def test_duplicate_unknown_and_misaddressed_replies_leave_the_state_unchanged():
    server, clients = plaintext_round()
    _, sent = replies(server, clients)
    server.receive(0, sent[0])
    before = server.snapshot()
    with pytest.raises(ProtocolError, match="duplicate"):
        server.receive(0, sent[0])
    with pytest.raises(ProtocolError, match="unknown sender"):
        server.receive(99, sent[1])
    with pytest.raises(ProtocolError, match="sender"):
        server.receive(2, sent[1])
    with pytest.raises(ProtocolError) as info:
        server.receive(1, object())
    assert info.value.local
    assert server.snapshot() == before


def test_a_bad_body_drops_its_sender_and_the_round_completes_without_it():
    server, clients = plaintext_round()
    _, sent = replies(server, clients)
    bad = PlainInput(clients[1].header(Stage.MASKED_INPUT), np.zeros(DIM, np.uint32)).to_bytes()
    with pytest.raises(DecodeError) as info:
        server.receive(1, bad)
    assert info.value.client_id == 1 and info.value.stage is Stage.MASKED_INPUT and info.value.sender_dropped
    with pytest.raises(ProtocolError, match="dropped earlier"):
        server.receive(1, sent[1])  # the honest reply comes too late: the sender is out
    for u in (0, 2, 3):
        server.receive(u, sent[u])
    server.close_stage()
    assert server.result().survivors == [0, 2, 3] and server.result().dropped == [1]


def test_dropping_below_min_survivors_aborts_at_once():
    server, clients = plaintext_round(min_survivors=N)
    replies(server, clients)
    with pytest.raises(DecodeError):
        server.receive(2, b"SAGG" + bytes(40))  # bad version: a header failure, state unchanged
    assert server.state is Stage.MASKED_INPUT
    truncated = PlainInput(clients[2].header(Stage.MASKED_INPUT), np.zeros(DIM + 1, np.uint32)).to_bytes()[:-1]
    with pytest.raises(DecodeError) as info:
        server.receive(2, truncated)
    assert info.value.client_id == 2
    assert server.state is ABORTED
    assert server.abort_reason.dropped == {"masked_input": (2,)}
    assert server.close_stage() == {}
    with pytest.raises(AbortError):
        server.result()


def test_reject_policy_keeps_the_sender_who_may_retry():
    server, clients = plaintext_round()
    server.on_bad_input = BadInputPolicy.REJECT
    _, sent = replies(server, clients)
    before = server.snapshot()
    with pytest.raises(DecodeError) as info:
        server.receive(1, sent[1][:-1])
    assert info.value.client_id == 1 and not info.value.sender_dropped
    assert server.snapshot() == before
    server.receive(1, sent[1])


def test_client_rejects_stray_messages_but_aborts_on_a_bad_body():
    server, clients = plaintext_round()
    outbox = server.start()
    with pytest.raises(ProtocolError):  # addressed to client 1
        clients[0].handle(outbox[1].to_bytes())
    assert clients[0].state is Stage.MASKED_INPUT
    with pytest.raises(DecodeError):
        clients[0].handle(outbox[0].to_bytes() + b"x")  # right header, trailing garbage
    assert clients[0].state is ABORTED and isinstance(clients[0].error, DecodeError)
    clients[1].handle(outbox[1].to_bytes())
    with pytest.raises(ProtocolError, match="over"):
        clients[1].handle(outbox[1].to_bytes())
    assert clients[1].state is DONE


# ---------------------------------------------------------------- a two-stage protocol on the core

BINDING = Binding.of("plaintext", SESSION, 3)
LIMITS = m.DecodeLimits.for_round(clients=N, dim=DIM, entry_bytes=64)


class TwoStageServer(ServerCore):
    """Keys, then inputs; ``fail_close`` makes the second close raise."""

    def __init__(self, *, fail_close: bool = False, forward: bool = True):
        self.fail_close, self.forward = fail_close, forward
        super().__init__(BINDING, range(N), {
            Stage.ADVERTISE_KEYS: StageSpec(m.AdvertiseKeys, self._keys, Stage.MASKED_INPUT, close=self._ask),
            Stage.MASKED_INPUT: StageSpec(m.MaskedInput, self._input, DONE, close=self._sum, needed=2),
        }, opening=lambda: {u: m.AdvertiseKeysRequest(self.header(Stage.ADVERTISE_KEYS, u)) for u in range(N)},
            min_survivors=1, limits=LIMITS)

    def _keys(self, u, msg):
        if len(msg.c_public) != 32:
            raise DecodeError("keys are 32 bytes", client_id=u)
        return msg.c_public

    def _ask(self, accepted):
        if not self.forward:
            return {}
        return {u: m.SharesDelivery(self.header(Stage.MASKED_INPUT, u), {}) for u in accepted}

    def _input(self, u, msg):
        return msg.masked

    def _sum(self, accepted):
        if self.fail_close:
            raise DecodeError("inconsistent inputs")
        total = sum(accepted.values())
        return AggregateResult(total.astype(float), sorted(accepted), [])


class TwoStageClient(ClientCore):
    def __init__(self, u, *, skip_keys: bool = False):
        super().__init__(BINDING, u, {
            Stage.ADVERTISE_KEYS: StageSpec(m.AdvertiseKeysRequest, self._advertise, Stage.MASKED_INPUT,
                                            skippable=skip_keys),
            Stage.MASKED_INPUT: StageSpec(m.SharesDelivery, self._send, DONE),
        }, limits=LIMITS)

    def _advertise(self, msg):
        return m.AdvertiseKeys(self.header(Stage.ADVERTISE_KEYS), bytes(32), bytes(32), b"")

    def _send(self, msg):
        if msg.ciphertexts:
            raise ProtocolError("unexpected shares")
        return m.MaskedInput(self.header(Stage.MASKED_INPUT), np.full(DIM + 1, self.client_id, np.uint32))


def run_two_stage(server, clients, silent=()):
    outbox = server.start()
    while server.state not in (DONE, ABORTED):
        for u, msg in outbox.items():
            if u not in silent:
                server.receive(u, clients[u].handle(msg.to_bytes()).to_bytes())
        outbox = server.close_stage()
    return server


def test_a_table_driven_protocol_runs_its_stages_in_order():
    server = run_two_stage(TwoStageServer(), {u: TwoStageClient(u) for u in range(N)})
    assert server.result().aggregate.tolist() == [6.0] * (DIM + 1)


def test_a_stage_below_its_needed_count_aborts_and_records_who_vanished():
    server = run_two_stage(TwoStageServer(), {u: TwoStageClient(u) for u in range(N)}, silent={0, 1, 2})
    assert server.state is ABORTED
    reason = server.abort_reason
    assert (reason.stage, reason.needed, reason.got) == (Stage.MASKED_INPUT, 2, 1)


def test_an_error_in_close_aborts_the_round_and_is_raised():
    server = TwoStageServer(fail_close=True)
    with pytest.raises(DecodeError):
        run_two_stage(server, {u: TwoStageClient(u) for u in range(N)})
    assert server.state is ABORTED and server.close_stage() == {}


def test_a_stage_without_recipients_aborts_instead_of_waiting():
    server = TwoStageServer(forward=False)
    run_two_stage(server, {u: TwoStageClient(u) for u in range(N)})
    assert server.state is ABORTED and server.abort_reason.got == 0


def test_a_client_skips_only_stages_marked_skippable():
    server = TwoStageServer()
    server.start()
    late = m.SharesDelivery(server.header(Stage.MASKED_INPUT, 0), {}).to_bytes()
    strict = TwoStageClient(0)
    with pytest.raises(ProtocolError, match="expected AdvertiseKeysRequest"):
        strict.handle(late)
    assert strict.state is Stage.ADVERTISE_KEYS
    lenient = TwoStageClient(0, skip_keys=True)
    assert isinstance(lenient.handle(late), m.MaskedInput) and lenient.state is DONE


def test_a_client_handler_error_aborts_the_client():
    client = TwoStageClient(0, skip_keys=True)
    shares = m.SharesDelivery(BINDING.header(Stage.MASKED_INPUT, m.SERVER_ID, 0), {1: b"x"})
    with pytest.raises(ProtocolError):
        client.handle(shares)
    assert client.state is ABORTED and isinstance(client.error, ProtocolError)


def test_stage_tables_are_validated():
    with pytest.raises(ConfigError):
        ClientCore(BINDING, 0, {Stage.UNMASK: StageSpec(m.UnmaskRequest, print, Stage.CONSISTENCY)}, limits=LIMITS)
    with pytest.raises(ConfigError):  # a server stage without close()
        ServerCore(BINDING, [0], {Stage.UNMASK: StageSpec(m.UnmaskShares, print, DONE)}, opening=dict,
                   min_survivors=1, limits=LIMITS)
    with pytest.raises(ConfigError):
        Binding.of("no-such-protocol", SESSION, 0)


# ---------------------------------------------------------------- registry


def test_register_protocol_refuses_a_duplicate_name_unless_replacing():
    spec = sim._spec("plaintext")
    with pytest.raises(ConfigError, match="already registered"):
        sim.register_protocol(dataclasses.replace(spec, client=TwoStageClient))
    assert sim._spec("plaintext") is spec
    sim.register_protocol(spec, replace=True)
    assert sim._spec("plaintext") is spec


# ---------------------------------------------------------------- fuzzing

PLAINTEXT = fuzz.FuzzTarget("plaintext", plaintext_round)
PLAINTEXT_ALL_NEEDED = fuzz.FuzzTarget("plaintext, all needed", lambda sid: plaintext_round(sid, min_survivors=N))


@settings(max_examples=100)
@given(st.data())
def test_plaintext_server_survives_fuzzing(data):
    fuzz.check_server(PLAINTEXT, data)


@settings(max_examples=40)
@given(st.data())
def test_plaintext_server_needing_everyone_survives_fuzzing(data):
    fuzz.check_server(PLAINTEXT_ALL_NEEDED, data)


@settings(max_examples=100)
@given(st.data())
def test_plaintext_client_survives_fuzzing(data):
    fuzz.check_client(PLAINTEXT, data)
