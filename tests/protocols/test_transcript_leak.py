"""The server's transcript carries no client's plaintext encoding, and one
masked vector alone looks uniform."""

from __future__ import annotations

import numpy as np

from protocols import DONE, Stage
from protocols.config import SecAggConfig
from protocols.secagg import SecAggClient, SecAggServer
from secagg.encoding import FixedPointEncoder
from secagg.errors import SecAggError

N, DIM = 4, 20000
WINDOW = 16  # words per search string: 64 bytes, never a chance match in a few hundred kB
SEEDS = [100 + i for i in range(N)]


def _round():
    encoder = FixedPointEncoder(1.0, 32, N)
    config = SecAggConfig(tuple(range(N)), 3, DIM, encoder)
    updates = np.full((N, DIM), 0.5)  # a very non-uniform input
    server = SecAggServer(config)
    # The rng drives only stochastic rounding: the same seed reproduces each client's encoding exactly.
    clients = {i: SecAggClient(config, i, updates[i], rng=np.random.default_rng(SEEDS[i])) for i in range(N)}
    references = [encoder.encode(updates[i], rng=np.random.default_rng(SEEDS[i])) for i in range(N)]
    outbox, transcript = server.start(), []
    while server.state is not DONE:
        for cid, msg in outbox.items():
            transcript.append(msg.to_bytes())
            reply = clients[cid].handle(msg.to_bytes())
            transcript.append(reply.to_bytes())
            server.receive(cid, transcript[-1])
        try:
            outbox = server.close_stage()
        except SecAggError:
            break  # the transcript so far is what the server saw; the caller checks the result
    return server, references, transcript


def test_transcript_contains_no_plaintext_encoding() -> None:
    server, references, transcript = _round()
    wire = b"".join(transcript)
    for ref in references:
        for start in range(0, DIM - WINDOW, DIM // 8):
            needle = ref[start:start + WINDOW].tobytes()
            assert needle not in wire, f"plaintext words {start}..{start + WINDOW} of a client's encoding are on the wire"
    # The search strings are exactly what the clients encoded: their modular sum is the unmasked sum.
    assert server.state is DONE
    total = np.sum([r.astype(np.uint64) for r in references], axis=0) % (1 << 32)
    assert np.array_equal(server.result().raw_sum.astype(np.uint64), total)


def test_one_masked_vector_alone_looks_uniform() -> None:
    server, _, _ = _round()
    assert server.state is DONE
    masked = server._inbox[Stage.MASKED_INPUT][0].masked
    counts = np.bincount(masked.view(np.uint8), minlength=256)
    expected = masked.nbytes / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 400  # 255 degrees of freedom: p < 1e-7 only above ~400
