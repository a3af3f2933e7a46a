"""HE sessions on the session core: the generic fuzz harness (protocols.fuzz)
against paillier, paillier-threshold and ckks on both sides, decode limits
from the config, header checks before bodies, and regressions (a threshold
round with an out-of-range plaintext ends ABORTED through close_stage;
memoryview input is accepted)."""

from __future__ import annotations

import dataclasses
import secrets
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import kex
from secagg.errors import AbortError, DecodeError, IntegrityError, OverflowRiskError, ProtocolError

pytest.importorskip("phe")
pytest.importorskip("gmpy2")
pytest.importorskip("tenseal")

from protocols import fuzz, he, sim  # noqa: E402
from protocols import messages as m  # noqa: E402
from protocols import session as session_module  # noqa: E402
from protocols.session import ABORTED, DONE, Stage  # noqa: E402
from secagg import ckks, paillier  # noqa: E402

N, DIM = 3, 4
#: Insecure sizes, fast tests: 256-bit moduli for both Paillier schemes.
KEY_BITS = 256
IDENTITIES = {u: kex.generate_identity() for u in range(N)}
UPDATES = [np.random.default_rng(u).uniform(-1, 1, DIM) for u in range(N)]
ENCODER = sim.default_encoder(UPDATES)
FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def cached_keys():
    """One HE key per scheme and party list, dealt once, and its CKKS contexts
    deserialized once: key generation (a threshold key's safe primes above
    all) and context loading would dominate every example. Only the exact
    bytes dealt here are cached; any other bytes take the real path."""
    generate, cache = he.HeScheme.generate, {}
    load_secret, load_server = ckks.CkksKeyHolder.from_secret_bytes, ckks.CkksServerContext
    contexts: dict[bytes, object] = {}

    def cached(self, parties):
        key = (self.config.scheme, self.config.key_bits, self.config.threshold, tuple(parties))
        if key not in cache:
            cache[key] = generate(self, parties)
            if self.config.scheme == "ckks":
                public, secrets_ = cache[key]
                contexts[public] = contexts[next(iter(secrets_.values()))] = None
        return cache[key]

    def once(load):
        def run(params, data, *args, **kwargs):
            if data not in contexts:
                return load(params, data, *args, **kwargs)
            if contexts[data] is None:
                contexts[data] = load(params, data, *args, **kwargs)
            return contexts[data]
        return run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(he.HeScheme, "generate", cached)
        patch.setattr(ckks.CkksKeyHolder, "from_secret_bytes", once(load_secret))
        patch.setattr(ckks, "CkksServerContext", once(load_server))
        yield


def config(scheme: str, session_id: bytes = bytes(16), *, signed: bool = True, **kw) -> he.HeConfig:
    identities = {u: k.public_bytes for u, k in IDENTITIES.items()} if signed else None
    return he.HeConfig(tuple(range(N)), DIM, ENCODER, scheme, key_bits=KEY_BITS, session_id=session_id,
                       identities=identities, **kw)


def make_round(scheme: str, session_id: bytes = bytes(16), **kw):
    cfg = config(scheme, session_id, **kw)
    identity = IDENTITIES if cfg.identities is not None else {}
    clients = {u: he.HeClient(cfg, u, UPDATES[u], identity=identity.get(u)) for u in range(N)}
    return he.HeServer(cfg), clients


TARGETS = {scheme: fuzz.FuzzTarget(scheme, lambda sid, scheme=scheme: make_round(scheme, sid),
                                   native_memory=scheme == "ckks")
           for scheme in he.SCHEMES}


# ---------------------------------------------------------------- the fuzz harness
@pytest.mark.parametrize("scheme", he.SCHEMES)
@settings(max_examples=100, **FUZZ_SETTINGS)
@given(data=st.data())
def test_server_survives_fuzzing(scheme, data):
    fuzz.check_server(TARGETS[scheme], data)


@pytest.mark.parametrize("scheme", he.SCHEMES)
@settings(max_examples=100, **FUZZ_SETTINGS)
@given(data=st.data())
def test_client_survives_fuzzing(scheme, data):
    fuzz.check_client(TARGETS[scheme], data)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", he.SCHEMES)
@settings(max_examples=1000, **FUZZ_SETTINGS)
@given(data=st.data())
def test_server_survives_long_fuzzing(scheme, data):
    fuzz.check_server(TARGETS[scheme], data)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", he.SCHEMES)
@settings(max_examples=1000, **FUZZ_SETTINGS)
@given(data=st.data())
def test_client_survives_long_fuzzing(scheme, data):
    fuzz.check_client(TARGETS[scheme], data)


# ---------------------------------------------------------------- helpers
def replies_at(server, clients, stage):
    """Drive an honest round until the server is at ``stage``; return that
    stage's honest replies as bytes (undelivered)."""
    outbox = server.start()
    while server.state is not stage:
        for u, msg in outbox.items():
            reply = clients[u].handle(msg.to_bytes())
            if reply is not None:
                server.receive(u, reply.to_bytes())
        outbox = server.close_stage()
    return {u: r.to_bytes() for u, msg in outbox.items() if (r := clients[u].handle(msg.to_bytes())) is not None}


def close_until_over(server):
    for _ in range(len(server.stages) + 1):
        if server.state in (DONE, ABORTED):
            break
        server.close_stage()  # must never raise for what clients sent
    assert server.state in (DONE, ABORTED)


class Forger:
    """A client that encrypts plaintext ``forge(pk)`` in place of its first ciphertext."""

    def __init__(self, inner, forge):
        self.inner, self.forge = inner, forge

    def handle(self, data):
        reply = self.inner.handle(data)
        if isinstance(reply, he.HeInput):
            pk = self.inner.scheme.paillier_key(self.inner._public)
            cts = paillier.ciphertexts_from_bytes(pk, reply.chunks[0])
            noise = paillier.obfuscator(pk, secrets.randbelow(pk.n - 2) + 1)
            chunks = {0: paillier.ciphertexts_to_bytes(pk, [paillier.encrypt_raw(pk, self.forge(pk), noise),
                                                            *cts[1:]])}
            reply = he.HeInput(reply.header, chunks, he.chunk_mac(self.inner._mac_key(), reply.header.aad(), chunks))
        return reply


def drive(server, clients):
    outbox = server.start()
    while server.state not in (DONE, ABORTED):
        for u, msg in outbox.items():
            reply = clients[u].handle(msg.to_bytes())
            if reply is not None:
                server.receive(u, reply.to_bytes())
        outbox = server.close_stage()
    return server


# ---------------------------------------------------------------- regressions
@pytest.mark.parametrize("forge", ["above_the_slots", "minus_one"])
def test_threshold_out_of_range_plaintext_ends_aborted_through_close_stage(forge):
    """Was: close_stage raised IntegrityError and left the server at UNMASK."""
    server, clients = make_round("paillier-threshold", signed=False)
    plan = server.scheme.plan
    value = {"above_the_slots": lambda pk: 1 << (plan.slots * plan.slot_bits),
             "minus_one": lambda pk: pk.n - 1}[forge]
    clients[1] = Forger(clients[1], value)
    server = drive(server, clients)
    assert server.state is ABORTED and server.abort_reason.stage is Stage.UNMASK
    assert "outside its bound" in server.abort_reason.detail or "out of range" in server.abort_reason.detail
    assert server.close_stage() == {}
    with pytest.raises(AbortError):
        server.result()


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_any_failure_while_closing_a_stage_aborts_instead_of_raising(scheme, monkeypatch):
    """Even a ConfigError (a caller-bug type) from computing on client data
    ends the round ABORTED: close_stage never raises it at the driver."""
    server, clients = make_round(scheme, signed=False)
    replies = replies_at(server, clients, Stage.UNMASK)
    for u, data in replies.items():
        server.receive(u, data)

    def overflow(*args, **kwargs):
        raise OverflowRiskError("value outside the signed range of the ring")

    monkeypatch.setattr(type(ENCODER), "decode_sum", overflow)
    assert server.close_stage() == {}
    assert server.state is ABORTED and "OverflowRiskError" in server.abort_reason.detail


@pytest.mark.parametrize("scheme", he.SCHEMES)
@pytest.mark.parametrize("wrap", [memoryview, bytearray, lambda b: memoryview(bytearray(b))])
def test_memoryview_and_bytearray_messages_are_accepted_on_both_sides(scheme, wrap):
    server, clients = make_round(scheme)
    outbox = server.start()
    while server.state not in (DONE, ABORTED):
        for u, msg in outbox.items():
            reply = clients[u].handle(wrap(msg.to_bytes()))
            server.receive(u, wrap(reply.to_bytes()))
        outbox = server.close_stage()
    result = server.result()
    assert result.survivors == list(range(N))
    assert np.max(np.abs(result.aggregate - np.sum(UPDATES, axis=0))) <= N * ENCODER.precision


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_client_aborts_on_error(scheme):
    server, clients = make_round(scheme)
    request = server.start()[1]
    with pytest.raises(DecodeError):
        clients[1].handle(request.to_bytes()[:-1])  # truncated body
    assert clients[1].state is ABORTED and isinstance(clients[1].error, DecodeError)
    with pytest.raises(ProtocolError, match="session is over"):
        clients[1].handle(request.to_bytes())


# ---------------------------------------------------------------- limits and header checks
@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_decode_limits_are_derived_from_the_config(scheme):
    small, _ = make_round(scheme)
    large = he.HeServer(dataclasses.replace(config(scheme), dim=20_000))
    for server in (small, large):
        for stage, spec in server.stages.items():
            assert spec.limits is not None and spec.limits.max_bytes < 1 << 22, stage  # never 4 GiB
    assert small.stages[Stage.MASKED_INPUT].limits.max_bytes < large.stages[Stage.MASKED_INPUT].limits.max_bytes


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_honest_messages_fit_the_limits_with_little_slack(scheme):
    server, clients = make_round(scheme)
    replies = replies_at(server, clients, Stage.MASKED_INPUT)
    limit = server.stages[Stage.MASKED_INPUT].limits.max_bytes
    assert all(len(r) <= limit for r in replies.values())
    assert limit <= 3 * max(len(r) for r in replies.values()) + 4096


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_an_oversized_input_is_refused_before_decoding_and_drops_its_sender(scheme):
    server, clients = make_round(scheme)
    replies = replies_at(server, clients, Stage.MASKED_INPUT)
    limit = server.stages[Stage.MASKED_INPUT].limits.max_bytes
    kind, header = m.decode_header(replies[1])
    huge = header.to_bytes(kind) + struct.pack("<I", 1) + struct.pack("<II", 0, limit) + bytes(limit)
    with pytest.raises(DecodeError, match="size limit") as info:
        server.receive(1, huge)
    assert info.value.client_id == 1 and info.value.sender_dropped and 1 not in server.expected
    for u in (0, 2):
        server.receive(u, replies[u])
    close_until_over(server)


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_wrong_stage_with_a_huge_body_is_refused_at_the_header(scheme, monkeypatch):
    server, clients = make_round(scheme)
    replies = replies_at(server, clients, Stage.MASKED_INPUT)
    _, header = m.decode_header(replies[1])
    stale = dataclasses.replace(header, stage=Stage.ADVERTISE_KEYS).to_bytes(he.HeInput.KIND) + bytes(8 << 20)
    before = server.snapshot()

    def refuse(*args, **kwargs):
        raise AssertionError("the body was decoded")

    monkeypatch.setattr(session_module, "decode", refuse)
    tracemalloc.start()
    with pytest.raises(ProtocolError) as info:
        server.receive(1, stale)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20 and info.value.client_id == 1 and server.snapshot() == before


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_a_bad_tag_leaves_the_state_unchanged_but_a_tagged_bad_input_drops_its_sender(scheme):
    server, clients = make_round(scheme, signed=False)
    replies = replies_at(server, clients, Stage.MASKED_INPUT)
    genuine = m.decode(replies[1])
    before = server.snapshot()
    with pytest.raises(IntegrityError) as info:
        server.receive(1, dataclasses.replace(genuine, tag=bytes(32)).to_bytes())
    assert info.value.client_id == 1 and not info.value.sender_dropped and server.snapshot() == before
    header = m.decode(replies[2]).header
    chunks = {0: m.decode(replies[2]).chunks[0][:-1]}  # well tagged (the client's own upload), malformed
    bad = he.HeInput(header, chunks, he.chunk_mac(clients[2]._mac_key(), header.aad(), chunks))
    with pytest.raises(DecodeError) as info:
        server.receive(2, bad.to_bytes())
    assert info.value.client_id == 2 and info.value.sender_dropped and 2 in server.errors
    server.receive(1, replies[1])
    server.receive(0, replies[0])
    close_until_over(server)
    if server.state is DONE:
        assert server.result().dropped == [2]


@pytest.mark.parametrize("scheme", he.SCHEMES)
def test_a_malformed_key_delivery_aborts_at_once(scheme):
    """The key holder is the only party of SHARE_KEYS: once it is dropped the
    server has nothing to wait for, so the round is ABORTED without a close."""
    server, clients = make_round(scheme)
    replies = replies_at(server, clients, Stage.SHARE_KEYS)
    holder = server.config.key_holder
    delivery = m.decode(replies[holder])
    bad = dataclasses.replace(delivery, sealed={u: s for u, s in delivery.sealed.items() if u != 2})
    with pytest.raises(DecodeError) as info:
        server.receive(holder, bad.to_bytes())
    assert info.value.client_id == holder and server.state is ABORTED
    assert server.abort_reason.stage is Stage.SHARE_KEYS
