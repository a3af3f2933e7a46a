"""HE sessions against active adversaries: key substitution in the key
ceremony, malformed Paillier ciphertexts, out-of-range plaintexts, colluding
clients, and a client that must abort cleanly."""

from __future__ import annotations

import dataclasses
import secrets

import numpy as np
import pytest

from secagg import aead, kex
from secagg.errors import (AbortError, ConfigError, DecodeError, IntegrityError, ProtocolError, SecAggError,
                           ThresholdError)

pytest.importorskip("phe")
pytest.importorskip("gmpy2")
pytest.importorskip("tenseal")

from protocols import he, sim  # noqa: E402
from protocols import messages as m  # noqa: E402
from protocols.session import ABORTED, DONE, Stage  # noqa: E402
from protocols.testing_he import KeySubstitutionServer  # noqa: E402
from secagg import paillier  # noqa: E402
from secagg import paillier_threshold as T  # noqa: E402

SCHEMES = list(he.SCHEMES)
SIGNATURE_MODES = ["keep", "strip", "own"]


@pytest.fixture(scope="module", autouse=True)
def small_keys():
    he.register(key_bits=512, threshold_key_bits=256)  # insecure sizes, fast tests
    yield
    he.register()


def _updates(n, d, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, d) for _ in range(n)]


def _round(scheme, n=4, d=6, *, signed=True, **kw):
    """Config, updates and honest clients (with identities when ``signed``)."""
    ups = _updates(n, d)
    keys = {i: kex.generate_identity() for i in range(n)} if signed else {}
    cfg = he.HeConfig(tuple(range(n)), d, sim.default_encoder(ups), scheme,
                      key_bits=256 if "threshold" in scheme else 512,
                      identities={i: k.public_bytes for i, k in keys.items()} if signed else None, **kw)
    clients = {i: he.HeClient(cfg, i, ups[i], identity=keys.get(i)) for i in range(n)}
    return cfg, ups, clients


def _drive(server, clients):
    """Like ``sim.drive``, but a message the server rejects is dropped (as a
    transport would) and recorded, instead of ending the run.

    Returns (result or the AbortError, {client: error}, {client: server-side rejection})."""
    client_errors, rejected, silent = {}, {}, set()
    outbox = server.start()
    while server.state not in (DONE, ABORTED):
        for cid, msg in outbox.items():
            if cid in silent:
                continue
            try:
                reply = clients[cid].handle(msg.to_bytes())
            except SecAggError as exc:
                client_errors[cid], reply = exc, None
                silent.add(cid)
            if reply is None:
                continue
            try:
                server.receive(cid, reply.to_bytes())
            except SecAggError as exc:
                rejected[cid] = exc
        outbox = server.close_stage()
    try:
        return server.result(), client_errors, rejected
    except AbortError as exc:
        return exc, client_errors, rejected


class _InputForger:
    """A malicious client: honest except that its input carries ``forge(pk, cts)``
    (valid tag: it is the client's own upload)."""

    def __init__(self, inner, forge):
        self.inner, self.forge = inner, forge

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def handle(self, data):
        reply = self.inner.handle(data)
        if isinstance(reply, he.HeInput):
            c = self.inner.config
            pk = self.inner._public.paillier if c.scheme == "paillier-threshold" else self.inner._public
            cts = paillier.ciphertexts_from_bytes(pk, reply.chunks[0])
            chunks = {0: paillier.ciphertexts_to_bytes(pk, self.forge(pk, cts))}
            tag = he.chunk_mac(self.inner._mac_key(), reply.header.aad(), chunks)
            reply = he.HeInput(reply.header, chunks, tag)
        return reply


def _encrypt(pk, plaintext):
    r = secrets.randbelow(pk.n - 2) + 1
    return paillier.encrypt_raw(pk, plaintext, paillier.obfuscator(pk, r))


# ------------------------------------------------------------------ configuration: collusion bounds
@pytest.mark.parametrize("scheme", ["paillier", "ckks"])
def test_shared_key_schemes_are_refused_when_a_client_may_collude(scheme):
    ups = _updates(4, 3)
    with pytest.raises(ConfigError) as err:
        he.HeConfig((0, 1, 2, 3), 3, sim.default_encoder(ups), scheme, max_corrupt=1)
    assert "paillier-threshold" in str(err.value) and err.value.max_corrupt == 1
    he.HeConfig((0, 1, 2, 3), 3, sim.default_encoder(ups), scheme, max_corrupt=0)  # semi-honest clients: fine


@pytest.mark.parametrize("n,max_corrupt,threshold", [(5, 2, 2), (5, 3, 3), (7, 1, 1), (3, 2, 1)])
def test_threshold_at_or_below_max_corrupt_is_refused_naming_the_smallest_safe_t(n, max_corrupt, threshold):
    ups = _updates(n, 3)
    with pytest.raises(ConfigError) as err:
        he.HeConfig(tuple(range(n)), 3, sim.default_encoder(ups), "paillier-threshold", threshold=threshold,
                    max_corrupt=max_corrupt)
    assert err.value.needed == max_corrupt + 1 and err.value.got == threshold
    assert f"threshold >= {max_corrupt + 1}" in str(err.value)
    ok = he.HeConfig(tuple(range(n)), 3, sim.default_encoder(ups), "paillier-threshold",
                     threshold=max_corrupt + 1, max_corrupt=max_corrupt)
    assert ok.threshold > ok.max_corrupt


def test_default_threshold_rises_above_max_corrupt_and_impossible_bounds_are_refused():
    enc = sim.default_encoder(_updates(5, 3))
    assert he.HeConfig(tuple(range(5)), 3, enc, "paillier-threshold").threshold == 3
    assert he.HeConfig(tuple(range(5)), 3, enc, "paillier-threshold", max_corrupt=3).threshold == 4
    for bad in (5, -1):
        with pytest.raises(ConfigError):
            he.HeConfig(tuple(range(5)), 3, enc, "paillier-threshold", max_corrupt=bad)


def test_max_corrupt_colluding_clients_cannot_decrypt_an_input_together():
    cfg, ups, clients = _round("paillier-threshold", n=5, signed=False, max_corrupt=2)
    assert cfg.threshold == 3
    result, errors, _ = _drive(he.HeServer(cfg), clients)
    assert not errors and np.allclose(result.aggregate, np.sum(ups, axis=0), atol=1e-3)
    # Clients 1 and 2 pool their shares to decrypt client 3's input (what a
    # server colluding with them would try): 2 < t partial decryptions.
    pub = clients[1]._public
    cts = paillier.encrypt_packed(pub.paillier, paillier.PackingPlan(5, cfg.bound, 256), clients[3]._ints,
                                  _pool(pub.paillier, 2))
    partials = [T.partial_decrypt(pub, clients[u]._secret, cts) for u in (1, 2)]
    with pytest.raises(ThresholdError) as err:
        T.combine(pub, cts, partials)
    assert err.value.needed == 3 and err.value.got == 2


def _pool(pk, count):
    pool = paillier.NoisePool(pk)
    pool.fill(count)
    return pool


# ------------------------------------------------------------------ signed key ceremony
@pytest.mark.parametrize("scheme", SCHEMES)
def test_signed_ceremony_agrees_with_plaintext(scheme):
    ups = _updates(4, 30)
    res = sim.run(scheme, ups, seed=5, active_security=True)
    assert np.array_equal(res.raw_sum, sim.run_plaintext(ups, seed=5).raw_sum)
    assert not res.extras["client_errors"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("signature", SIGNATURE_MODES)
def test_key_substitution_is_refused_by_every_honest_client(scheme, signature):
    cfg, ups, clients = _round(scheme)
    adversary = KeySubstitutionServer(he.HeServer(cfg), "substitute_key", signature=signature)
    outcome, errors, _ = _drive(adversary, clients)
    assert isinstance(outcome, AbortError)
    assert sorted(errors) == sorted(cfg.client_ids)  # every client, the key holder included
    for u, err in errors.items():
        assert isinstance(err, IntegrityError) and err.client_id == cfg.key_holder
        assert clients[u].state is ABORTED and clients[u].error is err
    assert adversary.inputs == [] and adversary.stolen == {}  # no ciphertext under the server's key


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("signature", SIGNATURE_MODES)
def test_advert_substitution_is_refused_by_the_key_holder(scheme, signature):
    cfg, ups, clients = _round(scheme)
    adversary = KeySubstitutionServer(he.HeServer(cfg), "substitute_advert", signature=signature)
    outcome, errors, _ = _drive(adversary, clients)
    assert isinstance(outcome, AbortError) and outcome.stage is Stage.SHARE_KEYS
    assert list(errors) == [cfg.key_holder]
    assert isinstance(errors[cfg.key_holder], IntegrityError)
    assert errors[cfg.key_holder].client_id == adversary.victim
    assert adversary.stolen_secrets == {} and adversary.stolen == {}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_without_identities_key_substitution_reveals_every_update(scheme):
    """Documents the unsigned ceremony (``identities=None``): a malicious
    server that substitutes the HE key reads every client's update."""
    cfg, ups, clients = _round(scheme, signed=False)
    adversary = KeySubstitutionServer(he.HeServer(cfg), "substitute_key")
    outcome, errors, _ = _drive(adversary, clients)
    assert not errors and sorted(adversary.stolen) == list(cfg.client_ids)
    for u, (vector, weight) in adversary.stolen.items():
        assert weight == 1 and np.max(np.abs(vector - ups[u])) <= cfg.encoder.precision


@pytest.mark.parametrize("scheme", SCHEMES)
def test_without_identities_advert_substitution_steals_the_victims_secret(scheme):
    """Documents the unsigned ceremony: the server poses as one client to the
    key holder. With a shared key it then reads every update while the round
    completes normally; in threshold Paillier it gets the victim's share."""
    cfg, ups, clients = _round(scheme, signed=False)
    adversary = KeySubstitutionServer(he.HeServer(cfg), "substitute_advert")
    result, errors, _ = _drive(adversary, clients)
    assert not errors and list(adversary.stolen_secrets) == [adversary.victim]
    assert result.survivors == list(cfg.client_ids)  # the round completes as if nothing happened
    assert np.max(np.abs(result.aggregate - np.sum(ups, axis=0))) <= len(ups) * cfg.encoder.precision
    if scheme == "paillier-threshold":
        assert adversary.stolen == {}
    else:
        assert sorted(adversary.stolen) == list(cfg.client_ids)
        for u, (vector, _) in adversary.stolen.items():
            assert np.max(np.abs(vector - ups[u])) <= cfg.encoder.precision


def _flip(blob):
    out = bytearray(blob)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("field", ["public_key", "holder_public", "parties", "signature"])
def test_any_change_to_the_signed_key_forward_is_refused(scheme, field):
    cfg, ups, clients = _round(scheme)
    server, adverts, forwards = _to_forwards(cfg, clients)
    fwd = forwards[1]
    changed = {"public_key": _flip(fwd.public_key), "holder_public": kex.generate_keypair().public_bytes,
               "parties": tuple(u for u in fwd.parties if u != 2), "signature": _flip(fwd.signature)}[field]
    with pytest.raises(IntegrityError) as err:
        clients[1].handle(dataclasses.replace(fwd, **{field: changed}).to_bytes())
    assert err.value.client_id == cfg.key_holder and clients[1].state is ABORTED
    assert clients[2].handle(forwards[2].to_bytes()) is not None  # the genuine forward is accepted


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_signed_key_from_another_session_is_refused(scheme):
    """The signature binds session and round: a server cannot replay a key
    ceremony whose secrets it learnt (or chose) in another session."""
    cfg, ups, clients = _round(scheme)
    identities = {i: clients[i].identity for i in clients}
    _, _, old_forwards = _to_forwards(cfg, clients)
    for new_cfg in (dataclasses.replace(cfg, session_id=secrets.token_bytes(16)), dataclasses.replace(cfg, round=1)):
        fresh = {i: he.HeClient(new_cfg, i, ups[i], identity=identities[i]) for i in clients}
        _, _, forwards = _to_forwards(new_cfg, fresh)
        old = old_forwards[1]
        replayed = dataclasses.replace(forwards[1], public_key=old.public_key, holder_public=old.holder_public,
                                       sealed=old.sealed, signature=old.signature)
        with pytest.raises(IntegrityError) as err:
            fresh[1].handle(replayed.to_bytes())
        assert err.value.client_id == cfg.key_holder


def test_sim_registration_passes_max_corrupt_and_refuses_shared_keys():
    try:
        he.register(key_bits=512, threshold_key_bits=256, max_corrupt=1)
        with pytest.raises(ConfigError):
            sim.run("paillier", _updates(3, 4))
        res = sim.run("paillier-threshold", _updates(3, 4), seed=1, active_security=True)
        assert res.survivors == [0, 1, 2]
    finally:
        he.register(key_bits=512, threshold_key_bits=256)


def test_server_refuses_an_advert_whose_signature_does_not_verify_naming_its_sender():
    cfg, ups, clients = _round("paillier")
    server = he.HeServer(cfg)
    request = server.start()[2]
    advert = clients[2].handle(request.to_bytes())
    forged = dataclasses.replace(advert, public=kex.generate_keypair().public_bytes)
    with pytest.raises(IntegrityError) as err:
        server.receive(2, forged.to_bytes())
    assert err.value.client_id == 2
    server.receive(2, advert.to_bytes())  # the genuine advert is still accepted


def test_identities_must_match_and_be_given():
    cfg, ups, clients = _round("paillier")
    with pytest.raises(ConfigError):
        he.HeClient(cfg, 0, ups[0])  # identities configured, no identity key
    with pytest.raises(ConfigError):
        he.HeClient(cfg, 0, ups[0], identity=kex.generate_identity())
    with pytest.raises(ConfigError):
        he.HeConfig((0, 1), 3, cfg.encoder, "paillier", identities={0: b"x" * 32})


# ------------------------------------------------------------------ malformed Paillier ciphertexts
@pytest.mark.parametrize("scheme", ["paillier", "paillier-threshold"])
@pytest.mark.parametrize("bad", ["n", "multiple_of_n", "zero"])
def test_non_unit_ciphertext_is_rejected_at_receipt_naming_its_sender(scheme, bad):
    cfg, ups, clients = _round(scheme, signed=False)
    forge = {"n": lambda pk, cts: [pk.n, *cts[1:]],
             "multiple_of_n": lambda pk, cts: [*cts[:-1], 3 * pk.n],
             "zero": lambda pk, cts: [0, *cts[1:]]}[bad]
    clients[1] = _InputForger(clients[1], forge)
    result, errors, rejected = _drive(he.HeServer(cfg), clients)
    assert list(rejected) == [1] and rejected[1].client_id == 1
    assert isinstance(rejected[1], (IntegrityError, DecodeError))
    assert not errors  # no honest party is blamed, nobody aborts
    assert result.survivors == [0, 2, 3]
    expected = ups[0] + ups[2] + ups[3]
    assert np.max(np.abs(result.aggregate - expected)) <= 3 * cfg.encoder.precision  # one step per client


@pytest.mark.parametrize("scheme", ["paillier", "paillier-threshold"])
@pytest.mark.parametrize("plaintext", ["above_the_slots", "minus_one"])
def test_out_of_range_plaintext_aborts_instead_of_a_wrong_sum(scheme, plaintext):
    """A unit ciphertext of a plaintext outside the packing range cannot be
    attributed without range proofs, but the round must not return a sum."""
    cfg, ups, clients = _round(scheme, signed=False)
    plan = he.HeScheme(cfg).plan

    def forge(pk, cts):
        m_bad = 1 << (plan.slots * plan.slot_bits) if plaintext == "above_the_slots" else pk.n - 1
        return [_encrypt(pk, m_bad), *cts[1:]]
    clients[1] = _InputForger(clients[1], forge)
    outcome, errors, rejected = _drive(he.HeServer(cfg), clients)
    assert not rejected  # a unit in range: nothing to see at receipt
    assert isinstance(outcome, AbortError) and outcome.stage is Stage.UNMASK


# ------------------------------------------------------------------ the client aborts cleanly
def _to_forwards(cfg, clients):
    server = he.HeServer(cfg)
    adverts = {u: clients[u].handle(msg.to_bytes()) for u, msg in server.start().items()}
    for u, a in adverts.items():
        server.receive(u, a.to_bytes())
    out = server.close_stage()
    holder = cfg.key_holder
    server.receive(holder, clients[holder].handle(out[holder].to_bytes()).to_bytes())
    return server, adverts, server.close_stage()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_client_aborts_on_a_key_it_opens_but_cannot_parse_and_then_refuses_a_decrypt_request(scheme):
    cfg, ups, clients = _round(scheme, signed=False)
    server, adverts, forwards = _to_forwards(cfg, clients)
    fake = kex.generate_keypair()
    ctx = cfg.context(b"key-delivery", cfg.key_holder, 1)
    sealed = aead.seal(kex.agree(fake, adverts[1].public, context=ctx), b"\x00\x00\x00\x02junk", aad=ctx)
    forged = dataclasses.replace(forwards[1], holder_public=fake.public_bytes, sealed=sealed)
    with pytest.raises(DecodeError):
        clients[1].handle(forged.to_bytes())
    assert clients[1].state is ABORTED and isinstance(clients[1].error, DecodeError)
    h = m.Header(cfg.protocol_id, cfg.session_id, cfg.round, Stage.UNMASK, m.SERVER_ID, 1)
    chunks = {0: b"\x01" * 64}
    request = he.HeDecryptRequest(h, chunks, he.chunk_mac(clients[1]._mac_key(), h.aad(), chunks), (0, 1, 2, 3))
    with pytest.raises(ProtocolError) as err:
        clients[1].handle(request.to_bytes())
    assert "session is over" in str(err.value)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_decrypt_request_before_the_key_forward_is_a_protocol_error(scheme):
    cfg, ups, clients = _round(scheme, signed=False)
    server = he.HeServer(cfg)
    clients[2].handle(server.start()[2].to_bytes())
    h = m.Header(cfg.protocol_id, cfg.session_id, cfg.round, Stage.UNMASK, m.SERVER_ID, 2)
    chunks = {0: b"\x01" * 64}
    request = he.HeDecryptRequest(h, chunks, he.chunk_mac(clients[2]._mac_key(), h.aad(), chunks), (0, 1, 2, 3))
    with pytest.raises(ProtocolError):
        clients[2].handle(request.to_bytes())
    assert clients[2].state is ABORTED


# ------------------------------------------------------------------ torch half-precision updates
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_torch_updates_are_accepted_and_exact(dtype):
    torch = pytest.importorskip("torch")
    d = 16
    ups = [np.round(u * 64) / 64 for u in _updates(3, d)]  # exactly representable in bf16 and fp16
    enc = sim.default_encoder(ups)
    cfg = he.HeConfig((0, 1, 2), d, enc, "paillier", key_bits=512)
    rng = lambda i: np.random.Generator(np.random.PCG64([7, i]))  # noqa: E731
    tensors = {i: he.HeClient(cfg, i, torch.tensor(ups[i], dtype=getattr(torch, dtype)), rng=rng(i)) for i in range(3)}
    arrays = {i: he.HeClient(cfg, i, ups[i].astype(np.float32), rng=rng(i)) for i in range(3)}
    assert all(np.array_equal(tensors[i]._ints, arrays[i]._ints) for i in range(3))
    res = sim.drive(he.HeServer(cfg), tensors)
    assert np.allclose(res.aggregate, np.sum(ups, axis=0), atol=3 * enc.precision)


@pytest.mark.parametrize("scheme", ["paillier", "paillier-threshold"])
def test_in_range_forged_plaintext_is_not_detected(scheme):
    """Documents the limit: without range proofs a client can add up to the
    slot headroom beyond its own bound (here +2·bound to its first value), and
    nothing detects it; only plaintexts that overflow the packing abort."""
    cfg, ups, clients = _round(scheme, signed=False)
    clients[1] = _InputForger(clients[1], lambda pk, cts: [paillier.add(pk, cts[0], _encrypt(pk, 2 * cfg.bound)),
                                                           *cts[1:]])
    result, errors, rejected = _drive(he.HeServer(cfg), clients)
    assert not errors and not rejected and result.survivors == [0, 1, 2, 3]
    shift = result.aggregate - np.sum(ups, axis=0)
    assert abs(shift[0] - 2 * cfg.bound / cfg.encoder.scale) <= 4 * cfg.encoder.precision
    assert np.max(np.abs(shift[1:])) <= 4 * cfg.encoder.precision
