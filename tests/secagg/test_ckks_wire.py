"""CKKS wire size: ``CkksParams.bytes_per_param`` matches the bytes a client
really uploads (serialized ciphertexts and their tags) for a long update."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tenseal")

from secagg import ckks as C  # noqa: E402

PARAMS = {"real": C.choose_ckks_params(10), "packed": C.choose_ckks_params(10, 2e-4, allow_coarse=True)}
MAC_KEY = bytes(32)


@pytest.mark.parametrize("mode", sorted(PARAMS))
def test_bytes_per_param_matches_the_serialized_upload(mode: str) -> None:
    params = PARAMS[mode]
    holder = C.CkksKeyHolder(params)
    length = 2 * C.SLOTS * max(1, params.values_per_slot) - 1  # two full ciphertexts with the weight
    update = np.random.default_rng(0).uniform(-params.clip, params.clip, length)
    wire = [C.tag_chunk(MAC_KEY, b"chunk %d" % i, blob)
            for i, blob in enumerate(holder.encrypt(C.encode_update(params, update, 1)))]
    assert len(wire) == params.n_chunks(length)
    measured = sum(map(len, wire)) / length
    # Headers, the tag and the weight slot add well under 1 % at two ciphertexts.
    assert params.bytes_per_param <= measured <= 1.01 * params.bytes_per_param, (measured, params.bytes_per_param)
    assert all(len(blob) - C.TAG_BYTES <= C.MAX_CIPHERTEXT_BYTES for blob in wire)


def test_a_summed_ciphertext_is_no_larger_than_a_fresh_one() -> None:
    params = PARAMS["real"]
    holder = C.CkksKeyHolder(params)
    server = C.CkksServerContext(params, holder.server_context_bytes())
    length = C.SLOTS - 1
    fresh = [list(holder.encrypt(C.encode_update(params, np.full(length, 0.1), 1))) for _ in range(3)]
    acc = C.Accumulator(server, length)
    for chunks in fresh:
        acc.add(chunks)
    summed = acc.result()
    assert len(summed) == 1 and len(summed[0]) <= max(len(c[0]) for c in fresh)
