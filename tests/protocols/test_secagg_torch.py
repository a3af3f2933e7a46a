"""SecAgg rounds where some clients hand in torch tensors (encoded and masked on
their device) and others numpy arrays: with dropouts, the aggregate equals the
plaintext sum of the survivors' inputs exactly (inputs on the quantisation grid,
so rounding is deterministic), and the wire messages are the usual numpy words."""

from __future__ import annotations

import numpy as np
import pytest

from protocols import Stage, sim
from protocols.config import SecAggConfig
from protocols.secagg import SecAggClient, SecAggServer
from secagg.encoding import FixedPointEncoder

torch = pytest.importorskip("torch")

SCALE = 2.0**8  # power of two: grid points m / SCALE are exact in every float dtype used
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _round(bits: int, neighbors: int | None, device: str, seed: int) -> None:
    n, dim = 9, 23
    rng = np.random.default_rng(seed)
    # |m| <= 2**7 keeps m / 2**8 exact in bfloat16 (8 significant bits) as well.
    ints = rng.integers(-(2**7), 2**7 + 1, size=(n, dim))
    updates = ints / SCALE
    weights = [1, 2, 4, 1, 2, 4, 1, 2, 4]  # powers of two keep x * scale * w exact
    encoder = FixedPointEncoder(1.0, bits, n, max_weight=4, scale=SCALE)
    # t = 4 of each 7-member neighbourhood survives the 3 dropouts below in any graph.
    config = SecAggConfig(tuple(range(n)), threshold=5 if neighbors is None else 4, dim=dim,
                          encoder=encoder, neighbors=neighbors, weighted=True, graph_seed=bytes(32))
    clients = {}
    for i in range(n):
        if i % 2:  # odd clients: a tensor on the device, in a rotating float dtype
            update = torch.from_numpy(updates[i]).to(device=device, dtype=DTYPES[(i // 2) % len(DTYPES)])
        else:
            update = updates[i]
        clients[i] = SecAggClient(config, i, update, weight=weights[i])
        if i % 2:
            assert clients[i]._encoded.device.type == torch.device(device).type
    dropouts = {0: Stage.SHARE_KEYS, 3: Stage.MASKED_INPUT, 6: Stage.UNMASK}
    result = sim.drive(SecAggServer(config), clients, dropouts)
    survivors = [i for i in range(n) if i not in (0, 3)]
    assert list(result.survivors) == survivors
    w = np.array(weights)[survivors]
    expected = np.concatenate([(ints[survivors] * w[:, None]).sum(0), [w.sum()]])
    raw = encoder.from_modular(np.asarray(result.raw_sum))
    np.testing.assert_array_equal(raw, expected)
    true_mean = (w[:, None] * updates[survivors]).sum(0) / w.sum()
    np.testing.assert_allclose(result.aggregate, true_mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits,neighbors", [(32, None), (20, 6), (48, 6), (63, None)])
def test_mixed_torch_and_numpy_clients_with_dropouts_cpu(bits, neighbors):
    _round(bits, neighbors, "cpu", seed=bits)


def test_tensor_update_is_encoded_on_its_device_to_the_expected_words():
    encoder = FixedPointEncoder(1.0, 32, 3, scale=SCALE)
    config = SecAggConfig((0, 1, 2), threshold=2, dim=4, encoder=encoder)
    client = SecAggClient(config, 1, torch.tensor([0.5, -0.25, 0.0, 1.0]))
    assert isinstance(client._encoded, torch.Tensor)
    assert client._encoded.tolist() == [128, 2**32 - 64, 0, 256, 1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("bits,neighbors", [(32, None), (48, 6)])
def test_mixed_torch_and_numpy_clients_with_dropouts_cuda(bits, neighbors):
    _round(bits, neighbors, "cuda", seed=bits + 1)
