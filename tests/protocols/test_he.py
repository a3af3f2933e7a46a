"""HE aggregation sessions: agreement with the plaintext baseline, dropouts,
aborts, and typed errors for misbehaving parties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import AbortError, DecodeError, IntegrityError, ProtocolError

pytest.importorskip("phe")
pytest.importorskip("gmpy2")
pytest.importorskip("tenseal")

from protocols import he, sim  # noqa: E402
from protocols import messages as m  # noqa: E402
from protocols.session import DONE, Stage  # noqa: E402

SCHEMES = list(he.SCHEMES)


@pytest.fixture(scope="module", autouse=True)
def small_keys():
    he.register(key_bits=512, threshold_key_bits=256)  # insecure sizes, fast tests
    yield
    he.register()


def _updates(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, d) for _ in range(n)]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_agrees_with_plaintext_bit_for_bit(scheme):
    ups = _updates(5, 257)
    base = sim.run_plaintext(ups, seed=3)
    res = sim.run(scheme, ups, seed=3)
    assert np.array_equal(res.raw_sum, base.raw_sum)
    # documented precision: one quantisation step per client (stochastic rounding)
    assert np.max(np.abs(res.aggregate - np.sum(ups, axis=0))) <= 5 * sim.default_encoder(ups).precision
    assert res.survivors == [0, 1, 2, 3, 4] and res.dropped == []


@settings(max_examples=6)
@given(scheme=st.sampled_from(SCHEMES), n=st.integers(3, 6), d=st.integers(1, 40),
       weights=st.lists(st.integers(1, 9), min_size=6, max_size=6), seed=st.integers(0, 2**16))
def test_weighted_mean_agrees_with_plaintext(scheme, n, d, weights, seed):
    ups = _updates(n, d, seed)
    ws = weights[:n]
    base = sim.run_plaintext(ups, weights=ws, seed=seed)
    res = sim.run(scheme, ups, weights=ws, seed=seed)
    assert np.array_equal(res.raw_sum, base.raw_sum)
    assert res.weight_sum == sum(ws)
    expected = sum(w * u for w, u in zip(ws, ups)) / sum(ws)
    assert np.allclose(res.aggregate, expected, atol=1e-6)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dropout_before_input_is_excluded(scheme):
    ups = _updates(5, 30)
    res = sim.run(scheme, ups, dropouts={3: Stage.MASKED_INPUT}, seed=1)
    base = sim.run_plaintext(ups, dropouts={3: Stage.MASKED_INPUT}, seed=1)
    assert res.survivors == [0, 1, 2, 4] and res.dropped == [3]
    assert np.array_equal(res.raw_sum, base.raw_sum)


@pytest.mark.parametrize("scheme", ["paillier", "paillier-threshold"])
def test_djn_pools_agree_with_plaintext(scheme):
    ups = _updates(3, 40)
    enc = sim.default_encoder(ups)
    cfg = he.HeConfig((0, 1, 2), 40, enc, scheme, key_bits=256 if "threshold" in scheme else 512,
                      pool_method="djn")
    rng = lambda i: np.random.Generator(np.random.PCG64([4, i]))  # noqa: E731
    res = sim.drive(he.HeServer(cfg), {i: he.HeClient(cfg, i, ups[i], rng=rng(i)) for i in range(3)})
    assert np.array_equal(res.raw_sum, sim.run_plaintext(ups, seed=4).raw_sum)


def test_threshold_tolerates_n_minus_t_dropouts_at_decryption():
    ups = _updates(5, 20)
    # t = 3 of 5: two parties may vanish after sending their input
    res = sim.run("paillier-threshold", ups, threshold=3, dropouts={1: "unmask", 4: "unmask"}, seed=2)
    assert np.array_equal(res.raw_sum, sim.run_plaintext(ups, seed=2).raw_sum)


def test_threshold_aborts_below_t_partial_decryptions():
    ups = _updates(5, 20)
    with pytest.raises(AbortError) as err:
        sim.run("paillier-threshold", ups, threshold=4, dropouts={1: "unmask", 4: "unmask"})
    assert err.value.stage is Stage.UNMASK and err.value.needed == 4 and err.value.got == 3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_aborts_when_the_key_holder_drops(scheme):
    with pytest.raises(AbortError) as err:
        sim.run(scheme, _updates(4, 5), dropouts={0: Stage.ADVERTISE_KEYS})
    assert err.value.stage is Stage.ADVERTISE_KEYS


def test_aborts_below_min_survivors():
    with pytest.raises(AbortError) as err:
        sim.run("paillier", _updates(4, 5), min_survivors=4, dropouts={2: "masked_input"})
    assert err.value.needed == 4 and err.value.got == 3


def _session(scheme, n=4, d=6, **kw):
    ups = _updates(n, d)
    enc = sim.default_encoder(ups)
    cfg = he.HeConfig(tuple(range(n)), d, enc, scheme, key_bits=256 if "threshold" in scheme else 512, **kw)
    server = he.HeServer(cfg)
    clients = {i: he.HeClient(cfg, i, ups[i]) for i in range(n)}
    return cfg, server, clients


def _step(server, clients, outbox, skip=()):
    replies = {}
    for cid, msg in outbox.items():
        reply = clients[cid].handle(msg.to_bytes())
        if reply is not None and cid not in skip:
            replies[cid] = reply
            server.receive(cid, reply.to_bytes())
    return replies


def test_server_rejects_wrong_stage_duplicate_and_unknown_sender():
    cfg, server, clients = _session("paillier")
    replies = _step(server, clients, server.start())
    with pytest.raises(ProtocolError):
        server.receive(0, replies[0].to_bytes())  # duplicate
    with pytest.raises(ProtocolError) as err:
        server.receive(99, replies[0].to_bytes())  # unknown sender
    assert err.value.client_id == 99
    with pytest.raises(ProtocolError):
        server.receive(1, replies[0].to_bytes())  # another client's message
    with pytest.raises(DecodeError):
        server.receive(1, b"garbage")
    out = server.close_stage()
    with pytest.raises(ProtocolError):
        server.receive(1, replies[1].to_bytes())  # advertise after its stage closed
    with pytest.raises(ProtocolError):  # a client refuses a replayed earlier-stage message
        clients[0].handle(server.start()[0].to_bytes())
    assert list(out) == [cfg.key_holder]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tampered_input_is_an_integrity_error(scheme):
    cfg, server, clients = _session(scheme)
    _step(server, clients, server.start())
    _step(server, clients, server.close_stage())
    outbox = server.close_stage()
    reply = clients[1].handle(outbox[1].to_bytes())
    chunks = dict(reply.chunks)
    blob = bytearray(chunks[0])
    blob[len(blob) // 2] ^= 1
    chunks[0] = bytes(blob)
    with pytest.raises(IntegrityError) as err:
        server.receive(1, he.HeInput(reply.header, chunks, reply.tag).to_bytes())
    assert err.value.client_id == 1
    server.receive(1, reply.to_bytes())  # the genuine message is still accepted


def test_bad_partial_decryption_is_attributed():
    cfg, server, clients = _session("paillier-threshold", n=4, threshold=2)
    _step(server, clients, server.start())
    _step(server, clients, server.close_stage())
    _step(server, clients, server.close_stage())
    outbox = server.close_stage()
    assert server.state is Stage.UNMASK
    good = {u: clients[u].handle(msg.to_bytes()) for u, msg in outbox.items()}
    vals = he.unpack_ints(good[2].values)
    vals[0] = vals[0] * 4 % (cfg_n := server._public.n) ** 2
    forged = he.HePartial(good[2].header, he.pack_ints(*vals), good[2].proof)
    with pytest.raises(IntegrityError) as err:
        server.receive(2, forged.to_bytes())
    assert err.value.client_id == 2 and err.value.party == 3 and cfg_n
    for u in (0, 3):
        server.receive(u, good[u].to_bytes())
    server.close_stage()
    assert server.state is DONE
    assert server.result().survivors == [0, 1, 2, 3]


def test_ckks_server_refuses_a_context_with_the_secret_key():
    cfg, server, clients = _session("ckks")
    from secagg import ckks

    holder = ckks.CkksKeyHolder(server.scheme.params)
    with pytest.raises(IntegrityError):
        server.scheme.load_public(holder.secret_bytes())
    server_ctx = server.scheme.load_public(holder.server_context_bytes())
    assert not server_ctx.has_secret_key


def test_messages_round_trip_canonically():
    cfg, server, clients = _session("ckks", n=3, d=3)
    for msg in server.start().values():
        assert m.decode(msg.to_bytes()) == msg


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_default_2048_bit_session_agrees_with_plaintext(scheme):
    he.register()  # production key sizes
    try:
        ups = _updates(4, 3000)
        res = sim.run(scheme, ups, weights=[1, 2, 3, 4], seed=9)
        assert np.array_equal(res.raw_sum, sim.run_plaintext(ups, weights=[1, 2, 3, 4], seed=9).raw_sum)
    finally:
        he.register(key_bits=512, threshold_key_bits=256)
