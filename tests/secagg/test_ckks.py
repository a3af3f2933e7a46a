"""Tests for secagg.ckks: the server context cannot decrypt, parameter choice
refuses imprecise settings, error bounds hold, tampering is caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError, DecodeError, IntegrityError

pytest.importorskip("tenseal")

from secagg import ckks as C  # noqa: E402

PRECISE = C.choose_ckks_params(10)
COARSE = C.choose_ckks_params(10, 2e-4, allow_coarse=True)


@pytest.fixture(scope="module", params=[PRECISE, COARSE], ids=["real", "packed"])
def holder(request):
    return C.CkksKeyHolder(request.param)


def _aggregate(holder, updates, weights):
    p = holder.params
    server = C.CkksServerContext(p, holder.server_context_bytes())
    acc = C.Accumulator(server, updates[0].size)
    for u, w in zip(updates, weights):
        acc.add(list(holder.encrypt(C.encode_update(p, u, w))))
    slots = holder.decrypt(acc.result(), acc.sizes)
    return C.decode_sum(p, slots, updates[0].size, len(updates))


def test_params_modes_and_sizes():
    assert not PRECISE.packed and PRECISE.bytes_per_param == 32.0
    assert PRECISE.error_bound <= 1e-6
    assert COARSE.packed and COARSE.values_per_slot == 2 and COARSE.bytes_per_param == 16.0
    assert COARSE.error_bound <= 2e-4


def test_choose_params_refuses_unsafe_settings():
    with pytest.raises(ConfigError):
        C.choose_ckks_params(10, 1e-4)  # coarser than 1e-6 needs allow_coarse
    with pytest.raises(ConfigError):
        C.choose_ckks_params(10, 1e-12)  # no setting is that precise
    with pytest.raises(ConfigError):
        C.choose_ckks_params(0)
    with pytest.raises(ConfigError):
        C.choose_ckks_params(10, clip=2.0**20)  # the sum could wrap the modulus


def test_server_context_has_no_secret_key_and_cannot_decrypt(holder):
    server = C.CkksServerContext(holder.params, holder.server_context_bytes())
    assert not server.has_secret_key
    blob = next(holder.encrypt(np.ones(3)))
    with pytest.raises(ConfigError):
        server.decrypt(blob, 3)
    with pytest.raises(IntegrityError):  # a context carrying the secret key is refused
        C.CkksServerContext(holder.params, holder.secret_bytes())


@settings(max_examples=10)
@given(data=st.data(), n=st.integers(1, 10), length=st.integers(1, 2 * C.SLOTS + 5))
def test_sum_within_stated_error(holder, data, n, length):
    p = holder.params
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    updates = [rng.uniform(-p.clip, p.clip, length) for _ in range(n)]
    if data.draw(st.booleans()):  # worst case at the clip bound
        updates = [np.full(length, p.clip * (-1) ** k) for k in range(n)]
    weights = [1] * n
    total, weight_sum = _aggregate(holder, updates, weights)
    assert np.max(np.abs(total - np.sum(updates, axis=0))) <= p.error_bound
    assert abs(weight_sum - n) <= 1e-6


def test_weights_are_a_protected_slot():
    p = C.choose_ckks_params(4, 1e-6, max_weight=50)
    holder = C.CkksKeyHolder(p)
    rng = np.random.default_rng(3)
    updates = [rng.uniform(-1, 1, 10) for _ in range(4)]
    weights = [3, 50, 1, 7]
    total, weight_sum = _aggregate(holder, updates, weights)
    assert round(weight_sum) == 61
    assert np.allclose(total, sum(w * u for w, u in zip(weights, updates)), atol=p.error_bound)
    with pytest.raises(ConfigError):
        C.encode_update(p, updates[0], 51)
    with pytest.raises(ConfigError):
        C.encode_update(p, np.array([1.5]), 1)


def test_tampered_or_truncated_chunks_never_give_a_silent_sum(holder):
    p = holder.params
    server = C.CkksServerContext(p, holder.server_context_bytes())
    key, ad = b"k" * 32, b"session-1|round-0|client-3|chunk-0"
    blob = next(holder.encrypt(C.encode_update(p, np.zeros(5))))
    tagged = C.tag_chunk(key, ad, blob)
    assert C.open_chunk(key, ad, tagged) == blob
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(tagged), 40):
        bad = bytearray(tagged)
        bad[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(IntegrityError):
            C.open_chunk(key, ad, bytes(bad))
    with pytest.raises(IntegrityError):
        C.open_chunk(key, b"another chunk", tagged)
    with pytest.raises(DecodeError):
        C.open_chunk(key, ad, tagged[:10])
    # without a tag, truncation and garbage are DecodeErrors, never crashes
    size = p.n_slots(5)
    for cut in (0, 1, 100, len(blob) // 2, len(blob) - 1):
        with pytest.raises(DecodeError):
            server.load(blob[:cut], size)
    with pytest.raises(DecodeError):
        server.load(bytes(rng.integers(0, 256, 5000, dtype=np.uint8)), size)
    with pytest.raises(DecodeError):
        server.load(blob, size + 1)


def test_packed_decoder_rejects_non_integer_slots():
    slots = C.encode_update(COARSE, np.zeros(4))
    C.decode_sum(COARSE, slots, 4, 1)
    with pytest.raises(IntegrityError):
        C.decode_sum(COARSE, slots + 0.5, 4, 1)
    with pytest.raises(IntegrityError):
        C.decode_sum(COARSE, slots * 3, 4, 1)


def test_encrypt_streams_one_chunk_at_a_time(holder):
    gen = holder.encrypt(np.zeros(10 * C.SLOTS))
    assert len(next(gen)) < 2 * C.SLOTS * 8 * 2 + 4096  # one ciphertext, not the whole vector
