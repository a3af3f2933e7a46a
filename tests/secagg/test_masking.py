"""Streaming mask arithmetic: masks cancel, chunking is invisible, backends agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ConfigError
from secagg.masking import apply_masks, masked_sum, remove_masks, unmask_sum
from secagg.prg import expand

torch = pytest.importorskip("torch")

TORCH_EXAMPLES = 30  # eager torch ChaCha20 on the CPU costs ~5 ms per call

seeds = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))


def _dtype(bits: int) -> type[np.unsignedinteger]:
    return np.uint32 if bits <= 32 else np.uint64


def _vector(draw: st.DrawFn, bits: int, d: int) -> np.ndarray:
    values = draw(st.lists(st.integers(0, 2**bits - 1), min_size=d, max_size=d))
    return np.array(values, dtype=_dtype(bits))


def _reference(x: np.ndarray, bits: int, terms: list[tuple[bytes, int]], offset: int = 0) -> np.ndarray:
    """Exact big-integer formula: (x + Σ sign·expand(seed)) mod 2**bits."""
    total = [int(v) for v in x]
    for seed, sign in terms:
        for i, word in enumerate(expand(seed, len(x), bits, offset=offset)):
            total[i] += sign * int(word)
    return np.array([v % 2**bits for v in total], dtype=_dtype(bits))


def _pair_seeds(party: int, n: int, pairwise: dict[tuple[int, int], bytes]) -> list[tuple[bytes, int]]:
    # Bonawitz et al. 2017 §4: + for u < v, - for u > v, so each pair cancels.
    return [(pairwise[min(party, v), max(party, v)], 1 if party < v else -1) for v in range(n) if v != party]


@st.composite
def rounds(draw: st.DrawFn, max_parties: int = 5, max_d: int = 120) -> tuple:
    n = draw(st.integers(2, max_parties))
    bits = draw(st.integers(1, 64))
    d = draw(st.integers(0, max_d))
    xs = [_vector(draw, bits, d) for _ in range(n)]
    self_seeds = [draw(seeds) for _ in range(n)]
    pairwise = {(u, v): draw(seeds) for u in range(n) for v in range(u + 1, n)}
    return n, bits, xs, self_seeds, pairwise


@given(round_=rounds(), chunk=st.integers(1, 200))
def test_masks_cancel_in_the_sum(round_: tuple, chunk: int) -> None:
    n, bits, xs, self_seeds, pairwise = round_
    masked = [
        apply_masks(xs[u], bits=bits, self_seed=self_seeds[u], pair_seeds=_pair_seeds(u, n, pairwise), chunk=chunk)
        for u in range(n)
    ]
    total = masked_sum(masked, bits=bits)
    unmasked = remove_masks(total, bits=bits, self_seeds=self_seeds, pair_seeds=[], chunk=chunk)
    assert unmasked.dtype == _dtype(bits)
    assert np.array_equal(unmasked, masked_sum(xs, bits=bits))


def _dropout_round(round_: tuple, data: st.DataObject) -> tuple[list[int], list[np.ndarray], dict]:
    """Draw the dropped clients; return survivors, their masked inputs (read-only, as
    decoded from the wire) and the server's unmasking keywords: survivors' self seeds
    and the dropped clients' pairwise seeds with the sign each survivor used."""
    n, bits, xs, self_seeds, pairwise = round_
    dropped = data.draw(st.sets(st.integers(0, n - 1), max_size=n - 1))
    survivors = [u for u in range(n) if u not in dropped]
    masked = []
    for u in survivors:
        y = apply_masks(xs[u], bits=bits, self_seed=self_seeds[u], pair_seeds=_pair_seeds(u, n, pairwise))
        y.flags.writeable = False
        masked.append(y)
    leftover = [(pairwise[min(u, v), max(u, v)], 1 if u < v else -1) for u in survivors for v in dropped]
    return survivors, masked, dict(bits=bits, self_seeds=[self_seeds[u] for u in survivors], pair_seeds=leftover)


@settings(max_examples=50)
@given(round_=rounds(max_parties=6), data=st.data())
def test_dropped_clients_pairwise_masks_are_removed(round_: tuple, data: st.DataObject) -> None:
    bits, xs = round_[1], round_[2]
    survivors, masked, kwargs = _dropout_round(round_, data)
    result = remove_masks(masked_sum(masked, bits=bits), **kwargs)
    assert np.array_equal(result, masked_sum([xs[u] for u in survivors], bits=bits))


@settings(max_examples=TORCH_EXAMPLES)
@given(round_=rounds(max_parties=4, max_d=60), data=st.data())
def test_mixed_torch_and_numpy_clients_give_the_exact_sum(round_: tuple, data: st.DataObject) -> None:
    n, bits, xs, self_seeds, pairwise = round_
    masked = []
    for u in range(n):
        kind = data.draw(st.sampled_from(["numpy", "torch-backend", "tensor"] if bits < 64 else ["numpy", "torch-backend"]))
        encoded = torch.from_numpy(xs[u].astype(np.int64)) if kind == "tensor" else xs[u]
        backend = "numpy" if kind == "numpy" else "auto" if kind == "tensor" else "torch"
        chunk = data.draw(st.integers(16, 64))
        masked.append(apply_masks(encoded, bits=bits, self_seed=self_seeds[u],
                                  pair_seeds=_pair_seeds(u, n, pairwise), chunk=chunk, backend=backend))
    total = remove_masks(masked_sum(masked, bits=bits), bits=bits, self_seeds=self_seeds, pair_seeds=[])
    assert np.array_equal(total, masked_sum(xs, bits=bits))


@given(data=st.data(), bits=st.integers(1, 64), d=st.integers(0, 150))
def test_apply_masks_is_the_formula_and_chunking_invariant(data: st.DataObject, bits: int, d: int) -> None:
    x = _vector(data.draw, bits, d)
    terms = [(data.draw(seeds), 1)] + [(data.draw(seeds), data.draw(st.sampled_from([1, -1]))) for _ in range(2)]
    offset = data.draw(st.one_of(st.integers(0, 40), st.integers(0, 10**7)))
    want = _reference(x, bits, terms, offset)
    for chunk in (data.draw(st.integers(1, 40)), 1 << 20):
        got = apply_masks(x, bits=bits, self_seed=terms[0][0], pair_seeds=terms[1:], offset=offset, chunk=chunk)
        assert got.dtype == want.dtype and np.array_equal(got, want)


@given(data=st.data(), bits=st.integers(1, 64), d=st.integers(1, 150))
def test_masking_a_slice_with_offset_matches_the_whole(data: st.DataObject, bits: int, d: int) -> None:
    x = _vector(data.draw, bits, d)
    cut = data.draw(st.integers(0, d))
    seed, pair = data.draw(seeds), (data.draw(seeds), -1)
    whole = apply_masks(x, bits=bits, self_seed=seed, pair_seeds=[pair])
    head = apply_masks(x[:cut], bits=bits, self_seed=seed, pair_seeds=[pair])
    tail = apply_masks(x[cut:], bits=bits, self_seed=seed, pair_seeds=[pair], offset=cut, chunk=7)
    assert np.array_equal(np.concatenate([head, tail]), whole)


@settings(max_examples=TORCH_EXAMPLES)
@given(data=st.data(), bits=st.integers(1, 64), d=st.integers(0, 80))
def test_torch_backend_equals_numpy_backend(data: st.DataObject, bits: int, d: int) -> None:
    x = _vector(data.draw, bits, d)
    pairs = [(data.draw(seeds), 1), (data.draw(seeds), -1)]
    offset = data.draw(st.integers(0, 10**6))
    chunk = data.draw(st.integers(8, 100))
    self_seed = data.draw(st.none() | seeds)
    kwargs = dict(bits=bits, self_seed=self_seed, pair_seeds=pairs, offset=offset, chunk=chunk)
    assert np.array_equal(apply_masks(x, backend="torch", **kwargs), apply_masks(x, backend="numpy", **kwargs))


@settings(max_examples=50)
@given(round_=rounds(max_parties=3))
def test_remove_masks_inverts_apply_masks(round_: tuple) -> None:
    _, bits, xs, self_seeds, pairwise = round_
    pairs = [(seed, 1) for seed in pairwise.values()]
    masked = apply_masks(xs[0], bits=bits, self_seed=self_seeds[0], pair_seeds=pairs)
    before = masked.copy()
    assert np.array_equal(remove_masks(masked, bits=bits, self_seeds=[self_seeds[0]], pair_seeds=pairs), xs[0])
    assert np.array_equal(masked, before)  # input left untouched


@given(data=st.data(), bits=st.integers(1, 64), d=st.integers(0, 150))
def test_masking_in_place_gives_the_same_words_as_a_copy(data: st.DataObject, bits: int, d: int) -> None:
    x = _vector(data.draw, bits, d)
    self_seed = data.draw(st.none() | seeds)
    pairs = [(data.draw(seeds), data.draw(st.sampled_from([1, -1]))) for _ in range(data.draw(st.integers(0, 3)))]
    kwargs = dict(bits=bits, self_seed=self_seed, pair_seeds=pairs,
                  offset=data.draw(st.integers(0, 10**6)), chunk=data.draw(st.integers(1, 200)))
    copied = apply_masks(x, **kwargs)
    buffer = x.copy()
    masked = apply_masks(buffer, out=buffer, **kwargs)
    assert masked is buffer
    assert masked.dtype == copied.dtype and masked.tobytes() == copied.tobytes()


@settings(max_examples=TORCH_EXAMPLES)
@given(data=st.data(), bits=st.integers(1, 64), d=st.integers(0, 80))
def test_torch_backend_masks_in_place_like_numpy(data: st.DataObject, bits: int, d: int) -> None:
    x = _vector(data.draw, bits, d)
    kwargs = dict(bits=bits, self_seed=data.draw(seeds), pair_seeds=[(data.draw(seeds), -1)],
                  chunk=data.draw(st.integers(8, 100)))
    buffer = x.copy()
    got = apply_masks(buffer, out=buffer, backend="torch", **kwargs)
    assert got is buffer and np.array_equal(got, apply_masks(x, backend="numpy", **kwargs))


def test_a_cpu_tensor_over_the_output_buffer_is_masked_in_place() -> None:
    buffer = np.arange(1000, dtype=np.uint32) * np.uint32(2_000_000)  # < 2**31: valid as int32 too
    want = apply_masks(buffer, bits=32, self_seed=bytes(16), pair_seeds=[(bytes(range(16)), -1)])
    tensor = torch.from_numpy(buffer.view(np.int32))  # the same words, as int32 patterns
    got = apply_masks(tensor, bits=32, self_seed=bytes(16), pair_seeds=[(bytes(range(16)), -1)], out=buffer, chunk=64)
    assert got is buffer and np.array_equal(got, want)


@settings(max_examples=50)
@given(round_=rounds(max_parties=6), data=st.data())
def test_unmask_sum_is_remove_masks_of_masked_sum(round_: tuple, data: st.DataObject) -> None:
    bits, xs = round_[1], round_[2]
    survivors, masked, kwargs = _dropout_round(round_, data)  # inputs read-only: left untouched
    want = masked_sum([xs[u] for u in survivors], bits=bits)
    chunk = data.draw(st.integers(1, 200))
    assert np.array_equal(unmask_sum(masked, chunk=chunk, **kwargs), want)
    assert np.array_equal(remove_masks(masked_sum(masked, bits=bits), **kwargs), want)


@settings(max_examples=TORCH_EXAMPLES)
@given(round_=rounds(max_parties=4, max_d=60), data=st.data())
def test_unmask_sum_torch_backend_equals_numpy_backend(round_: tuple, data: st.DataObject) -> None:
    bits, xs = round_[1], round_[2]
    survivors, masked, kwargs = _dropout_round(round_, data)
    got = unmask_sum(masked, backend="torch", device="cpu", chunk=data.draw(st.integers(4, 64)), **kwargs)
    assert got.dtype == _dtype(bits)
    assert np.array_equal(got, unmask_sum(masked, backend="numpy", **kwargs))
    assert np.array_equal(got, masked_sum([xs[u] for u in survivors], bits=bits))


def test_accepts_any_integer_dtype_and_torch_dtypes() -> None:
    x = np.arange(50, dtype=np.int64)
    want = apply_masks(x.astype(np.uint32), bits=8, self_seed=bytes(16), pair_seeds=[])
    for dtype in (np.uint8, np.int16, np.int32, np.uint64):
        assert np.array_equal(apply_masks(x.astype(dtype), bits=8, self_seed=bytes(16), pair_seeds=[]), want)
    for tdtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        t = torch.arange(50).to(tdtype)
        assert np.array_equal(apply_masks(t, bits=8, self_seed=bytes(16), pair_seeds=[]), want)
        assert torch.equal(t, torch.arange(50).to(tdtype))  # the caller's tensor is untouched
        assert np.array_equal(apply_masks(t, bits=8, self_seed=bytes(16), pair_seeds=[], backend="numpy"), want)


def test_masked_sum_mixes_dtypes_exactly() -> None:
    big = np.array([2**64 - 1, 2**63, 5], dtype=np.uint64)
    small = np.array([1, 2**62, 2**40], dtype=np.int64)
    want = [(int(a) + int(b)) % 2**64 for a, b in zip(big, small)]
    assert masked_sum([big, small], bits=64).tolist() == want
    assert masked_sum(iter([small, big]), bits=64).tolist() == want


vec = np.arange(4, dtype=np.uint32)


def _overlapping_out() -> None:
    buffer = np.arange(8, dtype=np.uint32)
    apply_masks(buffer[:4], bits=8, self_seed=None, pair_seeds=[], out=buffer[2:6])  # shifted alias


@pytest.mark.parametrize(
    "call",
    [
        lambda: apply_masks(vec, bits=0, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(vec, bits=65, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(vec, bits=True, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(vec, bits=1, self_seed=bytes(16), pair_seeds=[]),  # 2 and 3 do not fit
        lambda: apply_masks(vec.astype(np.float32), bits=8, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(np.array([-1, 2]), bits=8, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(vec.reshape(2, 2), bits=8, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(list(vec), bits=8, self_seed=bytes(16), pair_seeds=[]),
        lambda: apply_masks(vec, bits=8, self_seed=bytes(15), pair_seeds=[]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[(bytes(8), 1)]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[(bytes(16), 0)]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[(bytes(16), True)]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[(bytes(16), 1.0)]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[bytes(16)]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], backend="cuda"),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], chunk=0),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], offset=-1),
        lambda: apply_masks(vec, bits=32, self_seed=bytes(16), pair_seeds=[], offset=2**36),
        lambda: apply_masks(torch.tensor([0.5]), bits=8, self_seed=None, pair_seeds=[]),
        lambda: apply_masks(torch.tensor([300]), bits=8, self_seed=None, pair_seeds=[]),
        lambda: apply_masks(torch.tensor([-3]), bits=8, self_seed=None, pair_seeds=[]),
        lambda: remove_masks(vec, bits=8, self_seeds=[bytes(7)], pair_seeds=[]),
        lambda: remove_masks(vec.astype(np.float64), bits=8, self_seeds=[], pair_seeds=[]),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], out=np.empty(4, np.uint64)),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], out=np.empty(3, np.uint32)),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], out=list(vec)),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], out=np.frombuffer(bytes(16), np.uint32)),
        lambda: apply_masks(vec, bits=8, self_seed=None, pair_seeds=[], out=np.empty(8, np.uint32)[::2]),
        lambda: _overlapping_out(),
        lambda: unmask_sum([], bits=8, self_seeds=[], pair_seeds=[]),
        lambda: unmask_sum([vec, vec[:3]], bits=8, self_seeds=[], pair_seeds=[]),
        lambda: unmask_sum([vec, vec.astype(np.float32)], bits=8, self_seeds=[], pair_seeds=[]),
        lambda: unmask_sum([vec], bits=8, self_seeds=[], pair_seeds=[], backend="gpu"),
        lambda: masked_sum([], bits=8),
        lambda: masked_sum([vec, vec[:3]], bits=8),
        lambda: masked_sum([vec], bits=1),
    ],
)
def test_bad_input_raises_config_error(call) -> None:
    with pytest.raises(ConfigError):
        call()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("bits", [16, 32, 40, 63])
def test_cuda_clients_and_cpu_clients_cancel(bits: int) -> None:
    rng = np.random.default_rng(bits)  # test-only simulation seed
    n, d = 4, 300_001
    xs = [rng.integers(0, 2**bits, d, dtype=np.int64) for _ in range(n)]
    self_seeds = [rng.bytes(16) for _ in range(n)]
    pairwise = {(u, v): rng.bytes(16) for u in range(n) for v in range(u + 1, n)}
    masked = []
    for u in range(n):
        encoded = torch.from_numpy(xs[u]).cuda() if u % 2 else xs[u]
        masked.append(apply_masks(encoded, bits=bits, self_seed=self_seeds[u],
                                  pair_seeds=_pair_seeds(u, n, pairwise), chunk=1 << 16))
    total = remove_masks(masked_sum(masked, bits=bits), bits=bits, self_seeds=self_seeds, pair_seeds=[])
    assert np.array_equal(total, masked_sum(xs, bits=bits))
