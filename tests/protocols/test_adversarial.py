"""A misbehaving server, a tampering network and replays each end in a typed
error or a refusal, never in a leak or a wrong sum."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import DONE, Stage
from protocols import messages as m
from protocols.config import SecAggConfig
from protocols.secagg import SecAggClient, SecAggServer
from secagg import kex
from secagg.encoding import FixedPointEncoder
from secagg.errors import DecodeError, IntegrityError, ProtocolError, SecAggError

N, DIM = 6, 16


def make_round(*, active: bool = False, neighbors: int | None = None, threshold: int = 4, round_: int = 0,
               session_id: bytes | None = None):
    identities = {i: kex.generate_identity() for i in range(N)}
    kwargs = {} if session_id is None else {"session_id": session_id}
    config = SecAggConfig(tuple(range(N)), threshold, DIM, FixedPointEncoder(1.0, 32, N), neighbors=neighbors,
                          active_security=active, identities={i: k.public_bytes for i, k in identities.items()},
                          round=round_, max_corrupt=0 if active else None, **kwargs)
    rng = np.random.default_rng(0)
    updates = rng.uniform(-1, 1, size=(N, DIM))
    clients = {i: SecAggClient(config, i, updates[i], identity=identities[i]) for i in range(N)}
    return config, SecAggServer(config), clients, updates


def step(server, clients, outbox, skip=()):
    """Deliver one stage; return the replies (as messages) and the next outbox."""
    replies = {}
    for cid, msg in outbox.items():
        if cid in skip:
            continue
        reply = clients[cid].handle(msg.to_bytes())
        if reply is not None:
            replies[cid] = reply
            server.receive(cid, reply.to_bytes())
    return replies, server.close_stage()


def advance_to(stage, **kwargs):
    config, server, clients, updates = make_round(**kwargs)
    outbox = server.start()
    history = {}
    while server.state is not stage:
        current = server.state
        replies, outbox = step(server, clients, outbox)
        history[current] = replies
    return config, server, clients, updates, outbox, history


def test_server_asking_for_both_shares_of_a_peer_is_refused():
    config, server, clients, _, outbox, _ = advance_to(Stage.UNMASK)
    msg = outbox[1]
    victim = msg.survivors[0]
    evil = dataclasses.replace(msg, dropped=tuple(sorted(set(msg.dropped) | {victim})))
    with pytest.raises(IntegrityError) as info:
        clients[1].handle(evil.to_bytes())
    assert info.value.client_id == victim
    assert not clients[1].revealed_mask_key and not clients[1].revealed_self_mask


def test_server_claiming_a_live_client_dropped_cannot_get_its_own_mask_key():
    config, server, clients, _, outbox, _ = advance_to(Stage.UNMASK)
    msg = outbox[1]
    evil = dataclasses.replace(msg, survivors=tuple(v for v in msg.survivors if v != 1), dropped=(1,))
    with pytest.raises(IntegrityError):
        clients[1].handle(evil.to_bytes())
    assert not clients[1].revealed_mask_key


def test_client_never_reveals_both_shares_across_two_requests():
    config, server, clients, _, outbox, _ = advance_to(Stage.UNMASK)
    msg = outbox[2]
    clients[2].handle(msg.to_bytes())
    flipped = dataclasses.replace(msg, survivors=(), dropped=msg.survivors)
    with pytest.raises(ProtocolError):
        clients[2].handle(flipped.to_bytes())
    assert not (clients[2].revealed_self_mask & clients[2].revealed_mask_key)


def test_equivocating_survivor_sets_are_detected_in_active_mode():
    config, server, clients, _, outbox, _ = advance_to(Stage.CONSISTENCY, active=True)
    # The server shows client 0 a set without client 5, and the others the true set.
    lie = dataclasses.replace(outbox[0], survivors=tuple(u for u in outbox[0].survivors if u != 5))
    sig0 = clients[0].handle(lie.to_bytes())
    sigs = {0: sig0.signature}
    for u in range(1, N):
        sigs[u] = clients[u].handle(outbox[u].to_bytes()).signature
    # Client 1 is asked to unmask, with client 0's signature on the other set.
    request = m.UnmaskRequest(
        m.Header(m.PROTOCOL_IDS["secagg"], config.session_id, config.round, Stage.UNMASK, m.SERVER_ID, 1),
        survivors=tuple(u for u in outbox[1].survivors if u != 1), dropped=(), signatures=sigs,
    )
    with pytest.raises(IntegrityError):
        clients[1].handle(request.to_bytes())
    # ...and the honest server refuses client 0's signature over the lie.
    with pytest.raises(IntegrityError):
        server.receive(0, sig0.to_bytes())


def test_unmask_request_contradicting_the_signed_set_is_refused():
    config, server, clients, _, outbox, _ = advance_to(Stage.CONSISTENCY, active=True)
    for u in range(N):
        server.receive(u, clients[u].handle(outbox[u].to_bytes()).to_bytes())
    unmask = server.close_stage()
    msg = unmask[3]
    moved = msg.survivors[0]
    evil = dataclasses.replace(msg, survivors=msg.survivors[1:], dropped=tuple(sorted((*msg.dropped, moved))))
    with pytest.raises(IntegrityError):
        clients[3].handle(evil.to_bytes())


def test_tampered_share_ciphertext_is_rejected():
    config, server, clients, _, outbox, _ = advance_to(Stage.MASKED_INPUT)
    msg = outbox[0]
    sender = next(iter(msg.ciphertexts))
    blob = bytearray(msg.ciphertexts[sender])
    blob[-1] ^= 1
    evil = dataclasses.replace(msg, ciphertexts={**msg.ciphertexts, sender: bytes(blob)})
    with pytest.raises(IntegrityError):
        clients[0].handle(evil.to_bytes())


def test_share_ciphertext_redirected_to_another_client_is_rejected():
    config, server, clients, _, outbox, _ = advance_to(Stage.MASKED_INPUT)
    to_0, to_1 = outbox[0].ciphertexts, outbox[1].ciphertexts
    sender = next(v for v in to_0 if v in to_1 and v not in (0, 1))
    evil = dataclasses.replace(outbox[0], ciphertexts={**to_0, sender: to_1[sender]})
    with pytest.raises(IntegrityError):
        clients[0].handle(evil.to_bytes())


def test_message_replayed_from_another_round_is_rejected():
    session = bytes(16)
    _, old_server, old_clients, _, old_outbox, old_history = advance_to(Stage.MASKED_INPUT, session_id=session)
    config, server, clients, _ = make_round(round_=1, session_id=session)
    outbox = server.start()
    replayed = old_history[Stage.ADVERTISE_KEYS][0]
    with pytest.raises(ProtocolError):
        server.receive(0, replayed.to_bytes())
    with pytest.raises(ProtocolError):
        clients[0].handle(old_outbox[0].to_bytes())


def test_duplicate_unknown_and_wrong_stage_messages_are_rejected():
    config, server, clients, _ = make_round()
    outbox = server.start()
    reply = clients[0].handle(outbox[0].to_bytes())
    server.receive(0, reply.to_bytes())
    with pytest.raises(ProtocolError, match="duplicate"):
        server.receive(0, reply.to_bytes())
    with pytest.raises(ProtocolError, match="unknown sender"):
        server.receive(99, reply.to_bytes())
    with pytest.raises(ProtocolError):  # client 1's reply presented as client 2's
        server.receive(2, clients[1].handle(outbox[1].to_bytes()).to_bytes())
    wrong_stage = m.MaskedInput(dataclasses.replace(reply.header, stage=Stage.MASKED_INPUT, sender=3),
                                np.zeros(DIM + 1, np.uint32))
    with pytest.raises(ProtocolError):
        server.receive(3, wrong_stage.to_bytes())
    with pytest.raises(ProtocolError):  # a client handed a stage it is not at
        clients[4].handle(m.SharesDelivery(dataclasses.replace(outbox[4].header, stage=Stage.MASKED_INPUT), {}).to_bytes())


@pytest.mark.parametrize("length", [DIM, DIM + 2, 0, 10 * DIM])
def test_truncated_or_oversized_masked_vector_drops_its_sender(length):
    config, server, clients, _, outbox, _ = advance_to(Stage.MASKED_INPUT)
    reply = clients[0].handle(outbox[0].to_bytes())
    evil = dataclasses.replace(reply, masked=np.zeros(length, dtype=np.uint32))
    with pytest.raises(DecodeError) as info:
        server.receive(0, evil.to_bytes())
    assert info.value.client_id == 0 and info.value.sender_dropped
    with pytest.raises(ProtocolError, match="not part of this stage"):  # dropped: no second try
        server.receive(0, reply.to_bytes())
    config, server, clients, _, outbox, _ = advance_to(Stage.MASKED_INPUT)
    reply = clients[0].handle(outbox[0].to_bytes())
    wrong_width = dataclasses.replace(reply, masked=reply.masked.astype(np.uint64))
    with pytest.raises(DecodeError) as info:
        server.receive(0, wrong_width.to_bytes())
    assert info.value.client_id == 0


def test_a_bad_body_drops_its_sender_and_the_round_completes_without_it():
    """Header errors (another round, a stranger) leave the state unchanged; a
    body that fails to decode or validate drops its sender, named in the error,
    and the round goes on with the others."""
    config, server, clients, updates = make_round()
    outbox = server.start()
    liar = 5
    while server.state is not DONE:
        for cid, msg in outbox.items():
            reply = clients[cid].handle(msg.to_bytes())
            data = reply.to_bytes()
            replay = dataclasses.replace(reply, header=dataclasses.replace(reply.header, round=7)).to_bytes()
            with pytest.raises(ProtocolError):
                server.receive(cid, replay)  # another round: refused, nothing recorded
            if cid == liar and server.state is Stage.MASKED_INPUT:
                with pytest.raises(SecAggError) as info:
                    server.receive(cid, data[:-1])  # truncated body: the sender is dropped
                assert info.value.client_id == liar
                continue
            server.receive(cid, data)
        outbox = server.close_stage()
    result = server.result()
    assert liar not in result.survivors and liar in server.errors
    np.testing.assert_allclose(result.aggregate, np.delete(updates, liar, axis=0).sum(0), atol=1e-5)


@settings(max_examples=150)
@given(st.binary(max_size=600))
def test_fuzzed_bytes_into_the_decoder_give_a_message_or_decode_error(data):
    try:
        msg = m.decode(data)
    except DecodeError:
        return
    assert m.encode(msg) == data  # canonical: anything accepted re-encodes identically
    assert b"".join(m.encode_parts(msg)) == data  # the scatter-gather form is the same bytes


def test_encode_parts_views_a_large_vector_without_copying():
    masked = np.arange(1000, dtype=np.uint32)
    header = m.Header(1, bytes(16), 0, Stage.MASKED_INPUT, 3, m.SERVER_ID)
    msg = m.MaskedInput(header, masked)
    parts = m.encode_parts(msg)
    assert b"".join(parts) == m.encode(msg)
    views = [p for p in parts if isinstance(p, memoryview) and p.nbytes == masked.nbytes]
    assert len(views) == 1 and np.shares_memory(np.frombuffer(views[0], dtype=np.uint32), masked)
    assert np.array_equal(m.decode(b"".join(parts)).masked, masked)


@settings(max_examples=150)
@given(st.data())
def test_mutated_real_messages_decode_or_raise_decode_error(data):
    config, server, clients, _ = make_round()
    outbox = server.start()
    reply = clients[0].handle(outbox[0].to_bytes()).to_bytes()
    pos = data.draw(st.integers(0, len(reply) - 1))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if mutation == "flip":
        mutated = reply[:pos] + bytes([reply[pos] ^ data.draw(st.integers(1, 255))]) + reply[pos + 1:]
    elif mutation == "truncate":
        mutated = reply[:pos]
    else:
        mutated = reply + data.draw(st.binary(min_size=1, max_size=8))
    try:
        server.receive(0, mutated)  # accepted (e.g. a flipped key byte) or a typed error:
    except SecAggError as exc:  # any other exception fails the test
        assert 0 not in server._inbox[Stage.ADVERTISE_KEYS]  # a rejected message is not kept
        assert exc.client_id == 0 or exc.local  # and the error names its sender
