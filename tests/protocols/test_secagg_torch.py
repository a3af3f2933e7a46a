"""SecAgg rounds where some clients hand in torch tensors (encoded and masked on
their device) and others numpy arrays: with dropouts, the aggregate equals the
plaintext sum of the survivors' inputs exactly (inputs on the quantisation grid,
so rounding is deterministic), and the wire messages are the usual numpy words."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from protocols import Stage, sim
from protocols.config import SecAggConfig
from protocols.secagg import SecAggClient, SecAggServer
from secagg.encoding import FixedPointEncoder
from secagg.errors import ConfigError

torch = pytest.importorskip("torch")

SCALE = 2.0**8  # power of two: grid points m / SCALE are exact in every float dtype used
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _round(bits: int, neighbors: int | None, device: str, seed: int, make_server=SecAggServer) -> None:
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
    result = sim.drive(make_server(config), clients, dropouts)
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


class _TwinUnmask:
    """Proxy server for sim.drive: at the last deadline it deep-copies the server
    (all masked inputs and unmask shares received), unmasks the copy with the
    torch backend and the original with numpy, so both unmask the very same round."""

    def __init__(self, server: SecAggServer) -> None:
        self.server = server
        self.twin_result = None

    def __getattr__(self, name):
        return getattr(self.server, name)

    def close_stage(self):
        if self.server.state is Stage.UNMASK:
            twin = copy.deepcopy(self.server)
            twin.backend, twin.device = "torch", "cpu"
            twin.close_stage()
            self.twin_result = twin.result()
        return self.server.close_stage()


@pytest.mark.parametrize("bits,neighbors", [(32, None), (20, 6), (48, 6), (64, None)])
def test_server_torch_unmasking_equals_numpy_unmasking_with_dropouts(bits, neighbors):
    n, dim = 9, 37
    rng = np.random.default_rng(100 + bits)  # simulation data only
    updates = rng.uniform(-1, 1, size=(n, dim))
    encoder = FixedPointEncoder(1.0, bits, n, max_weight=3)
    config = SecAggConfig(tuple(range(n)), threshold=5 if neighbors is None else 4, dim=dim,
                          encoder=encoder, neighbors=neighbors, weighted=True, graph_seed=bytes(32))
    clients = {i: SecAggClient(config, i, updates[i], weight=1 + i % 3, rng=np.random.default_rng(i)) for i in range(n)}
    # 2 and 5 shared keys and then dropped: their pairwise masks must be removed;
    # 7 dropped after sending its masked input: a survivor whose self mask is rebuilt.
    dropouts = {2: Stage.MASKED_INPUT, 5: Stage.MASKED_INPUT, 7: Stage.UNMASK}
    proxy = _TwinUnmask(SecAggServer(config))
    result = sim.drive(proxy, clients, dropouts)
    twin = proxy.twin_result
    assert result.extras["rebuilt_mask_keys"] == 2 == twin.extras["rebuilt_mask_keys"]
    assert 7 in result.survivors and result.survivors == twin.survivors
    assert twin.raw_sum.dtype == result.raw_sum.dtype
    assert twin.raw_sum.tobytes() == result.raw_sum.tobytes()
    assert twin.aggregate.tobytes() == result.aggregate.tobytes()
    assert twin.weight_sum == result.weight_sum == sum(1 + i % 3 for i in result.survivors)


def test_server_torch_backend_runs_a_whole_round_exactly():
    # Mixed torch/numpy clients, dropouts at three stages, 32 and 48 bits (the limb path).
    for bits, neighbors in [(32, None), (48, 6)]:
        _round(bits, neighbors, "cpu", seed=bits + 7,
               make_server=lambda config: SecAggServer(config, backend="torch", device="cpu"))


def test_server_backend_is_validated_before_the_round():
    encoder = FixedPointEncoder(1.0, 32, 3)
    config = SecAggConfig((0, 1, 2), threshold=2, dim=4, encoder=encoder)
    with pytest.raises(ConfigError):
        SecAggServer(config, backend="cuda")
    with pytest.raises(ConfigError):
        SecAggServer(config, device="cpu")  # a device without the torch backend is a caller bug
    assert SecAggServer(config).backend == "numpy"


def test_client_masks_its_numpy_encoding_in_place():
    encoder = FixedPointEncoder(1.0, 32, 3)
    config = SecAggConfig((0, 1, 2), threshold=2, dim=1000, encoder=encoder)
    clients = {i: SecAggClient(config, i, np.full(1000, 0.25 * i)) for i in range(3)}
    buffers = {i: clients[i]._encoded for i in range(3)}
    # Driven by hand: sim.drive serialises replies, and the check is on the reply object.
    server = SecAggServer(config)
    outbox = server.start()
    for _ in range(2):  # advertise keys, share keys
        for cid, msg in outbox.items():
            server.receive(cid, clients[cid].handle(msg.to_bytes()).to_bytes())
        outbox = server.close_stage()
    for cid, msg in outbox.items():
        reply = clients[cid].handle(msg.to_bytes())
        assert reply.masked is buffers[cid]  # the encoding itself, now masked: no second vector
        assert clients[cid]._encoded is None
