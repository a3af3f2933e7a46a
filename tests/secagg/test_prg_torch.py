"""The torch ChaCha20 backend is bit-identical to secagg.prg (and so to `cryptography`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError
from secagg.prg import expand, keystream
from tests.vectors import load

torch = pytest.importorskip("torch")

from secagg.prg_torch import (  # noqa: E402  (after the importorskip)
    ARITHS,
    MAX_COUNTER,
    expand_torch,
    keystream_torch,
    to_numpy,
    words_to_numpy,
)

# Eager torch on the CPU issues ~500 kernels per ChaCha20 call; keep examples modest.
TORCH_EXAMPLES = 40

keys = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=12, max_size=12)
seeds = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))
counters = st.one_of(
    st.integers(0, MAX_COUNTER),
    st.integers(MAX_COUNTER - 40, MAX_COUNTER),  # the 32-bit counter limit and just past it
    st.integers(2**31 - 40, 2**31 + 40),  # the int32 sign boundary of the counter word
)


def _blocks(n_words: int) -> int:
    return -(-n_words // 16)


@pytest.mark.parametrize("arith", ARITHS)
def test_rfc8439_block_vectors(arith: str) -> None:
    for case in load("chacha20_rfc8439")["blocks"]:
        words = keystream_torch(
            bytes.fromhex(case["key"]), bytes.fromhex(case["nonce"]), case["counter"], 16, arith=arith
        )
        assert to_numpy(words, 32).tobytes() == bytes.fromhex(case["keystream"])


@settings(max_examples=TORCH_EXAMPLES)
@given(key=keys, nonce=nonces, counter=counters, n_words=st.integers(0, 700), arith=st.sampled_from(ARITHS))
def test_keystream_matches_cpu_or_both_reject(key: bytes, nonce: bytes, counter: int, n_words: int, arith: str) -> None:
    if counter + max(_blocks(n_words), 1) - 1 > MAX_COUNTER:
        with pytest.raises(ConfigError):
            keystream(key, nonce, counter, n_words)
        with pytest.raises(ConfigError):
            keystream_torch(key, nonce, counter, n_words, arith=arith)
        return
    reference = keystream(key, nonce, counter, n_words)
    wide = keystream_torch(key, nonce, counter, n_words, arith=arith)
    assert wide.dtype == torch.int64 and wide.shape == (n_words,)
    assert np.array_equal(to_numpy(wide, 32), reference)
    narrow = keystream_torch(key, nonce, counter, n_words, arith=arith, dtype=torch.int32)
    assert np.array_equal(words_to_numpy(narrow), reference)


@settings(max_examples=TORCH_EXAMPLES)
@given(
    seed=seeds,
    length=st.integers(0, 300),
    bits=st.integers(1, 64),
    offset=st.one_of(st.integers(0, 40), st.integers(0, 10**6)),
    arith=st.sampled_from(ARITHS),
)
def test_expand_matches_cpu(seed: bytes, length: int, bits: int, offset: int, arith: str) -> None:
    values = expand_torch(seed, length, bits, offset=offset, arith=arith)
    assert values.dtype == torch.int64
    got = to_numpy(values, bits)
    want = expand(seed, length, bits, offset=offset)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)


def test_multi_call_streams_cross_the_kernel_batch_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    import secagg.prg_torch as prg_torch

    monkeypatch.setattr(prg_torch, "_CPU_BLOCKS_PER_CALL", 7)  # force several kernel calls
    key, nonce = bytes(range(32)), bytes(range(12))
    assert np.array_equal(to_numpy(keystream_torch(key, nonce, 2**31 - 20, 16 * 50 + 3), 32),
                          keystream(key, nonce, 2**31 - 20, 16 * 50 + 3))


@pytest.mark.parametrize("arith", ARITHS)
def test_word_by_word_kernel_matches_when_run_eagerly(arith: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The formulation that torch.compile fuses, checked without the ~90 s compile."""
    import secagg.prg_torch as prg_torch

    monkeypatch.setattr(prg_torch, "_kernel", lambda device, compile: prg_torch._make_block_words(torch))
    key, nonce = bytes(range(1, 33)), bytes(range(12))
    got = keystream_torch(key, nonce, 2**31 - 2, 16 * 9 + 1, arith=arith)
    assert np.array_equal(to_numpy(got, 32), keystream(key, nonce, 2**31 - 2, 16 * 9 + 1))


@pytest.mark.parametrize(
    "call",
    [
        lambda: keystream_torch(bytes(31), bytes(12), 0, 16),
        lambda: keystream_torch(bytes(32), bytes(11), 0, 16),
        lambda: keystream_torch("x" * 32, bytes(12), 0, 16),
        lambda: keystream_torch(bytes(32), bytes(12), -1, 16),
        lambda: keystream_torch(bytes(32), bytes(12), 2**32, 1),
        lambda: keystream_torch(bytes(32), bytes(12), MAX_COUNTER, 17),
        lambda: keystream_torch(bytes(32), bytes(12), 0, -1),
        lambda: keystream_torch(bytes(32), bytes(12), 0, 16, arith="uint32"),
        lambda: keystream_torch(bytes(32), bytes(12), 0, 16, dtype=torch.float32),
        lambda: keystream_torch(bytes(32), bytes(12), 0, 16, kernel="cuda"),
        lambda: keystream_torch(bytes(32), bytes(12), 0, 16, kernel="triton"),  # CPU tensor
        lambda: keystream_torch(bytes(32), bytes(12), 0, 16, kernel="eager", compile=False),
        lambda: expand_torch(bytes(16), 4, kernel="triton"),
        lambda: expand_torch(bytes(15), 4),
        lambda: expand_torch(bytes(16), 4, bits=0),
        lambda: expand_torch(bytes(16), 4, bits=65),
        lambda: expand_torch(bytes(16), 4, bits=True),
        lambda: expand_torch(bytes(16), -1),
        lambda: expand_torch(bytes(16), 4, offset=-1),
        lambda: to_numpy(torch.zeros(3, dtype=torch.int32), 32),
        lambda: words_to_numpy(torch.zeros(3, dtype=torch.int64)),
    ],
)
def test_bad_arguments_raise_config_error(call) -> None:
    with pytest.raises(ConfigError):
        call()


@pytest.mark.slow
def test_compiled_cpu_kernel_matches() -> None:
    """torch.compile on the CPU (inductor; ~90 s to build on 2 cores)."""
    key, nonce = bytes(range(32)), bytes(range(12))
    for arith in ARITHS:
        got = keystream_torch(key, nonce, 2**31 - 3, 16 * 1000 + 5, arith=arith, compile=True)
        assert np.array_equal(to_numpy(got, 32), keystream(key, nonce, 2**31 - 3, 16 * 1000 + 5))


def test_eager_kernel_is_the_cpu_default_and_triton_the_cuda_default() -> None:
    import secagg.prg_torch as prg_torch

    cpu = torch.device("cpu")
    assert prg_torch._choose_kernel(cpu, "int32", None, None) == "eager"
    assert prg_torch._choose_kernel(cpu, "int32", True, None) == "compiled"
    want = "triton" if prg_torch._prg_triton().triton_available() else "compiled"
    assert prg_torch._choose_kernel(torch.device("cuda"), "int32", None, None) == want
    assert prg_torch._choose_kernel(torch.device("cuda"), "int64", None, None) == "compiled"


CUDA_KERNELS = [("int32", "eager"), ("int32", "compiled"), ("int32", "triton"), ("int64", "eager"), ("int64", "compiled")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arith,kernel", CUDA_KERNELS)
def test_cuda_keystream_bit_identical(arith: str, kernel: str) -> None:
    rng = np.random.default_rng(9)  # test-only simulation seed for keys and sizes
    # Include a request longer than one CUDA kernel batch (2**22 blocks), odd lengths
    # and a counter that ends at the last block RFC 8439 allows.
    cases = [(n, int(rng.integers(0, 2**31))) for n in (1, 15, 16 * 1000 + 7, 16 * (1 << 22) + 9)]
    cases.append((16 * 300 + 5, MAX_COUNTER - 300))
    for n_words, counter in cases:
        key, nonce = rng.bytes(32), rng.bytes(12)
        got = keystream_torch(key, nonce, counter, n_words, device="cuda", arith=arith, kernel=kernel)
        assert got.device.type == "cuda"
        assert np.array_equal(to_numpy(got, 32), keystream(key, nonce, counter, n_words))
    for bits in (1, 31, 32, 33, 64):
        seed = rng.bytes(16)
        got = expand_torch(seed, 10_001, bits, offset=12_345, device="cuda", arith=arith, kernel=kernel)
        assert np.array_equal(to_numpy(got, bits), expand(seed, 10_001, bits, offset=12_345))
