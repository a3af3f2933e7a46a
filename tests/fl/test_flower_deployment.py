"""Our workflow on a real Flower deployment: one ``flower-superlink`` and five
``flower-supernode`` processes on 127.0.0.1 (insecure mode, loopback only).

1. A ServerApp using :class:`fl.flower.SecAggFitWorkflow` runs 2 rounds on a
   synthetic update; the global model matches the same app run in process
   (``InProcessGrid``) and the plaintext FedAvg, within quantisation.
2. One round with active security: every SuperNode pins the roster and its
   own identity key (node config ``secagg-roster``, ``secagg-identity``,
   ``secagg-max-corrupt=1``), the ServerApp the same roster; the round runs
   the signed identify step and the consistency stage and gives the FedAvg.
3. A new run pauses every node at MASKED_INPUT; one SuperNode is SIGKILLed by
   PID (with its SuperExec and ClientApp children) mid-round. The round
   completes from the four survivors (their FedAvg), or aborts with our
   typed reason.

Every process starts in its own process group and is killed with its group at
the end (fixture finaliser, ``atexit``, and a watchdog process that acts if the
test process itself dies); every wait is bounded. Slow (minutes on a 2-core machine): ``pytest -m slow``.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

pytestmark = pytest.mark.slow

N_NODES = 5
BIN = Path(sys.executable).parent
START_TIMEOUT = 240.0  # s: SuperLink/SuperNodes start and register (imports are slow on a busy machine)
RUN_TIMEOUT = 900.0  # s: one `flwr run` (a ClientApp process is spawned per message)

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "secaggdeploytest"
version = "1.0.0"
description = "secagg deployment test app"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "secagg"

[tool.flwr.app.components]
serverapp = "secagg_deploy_app:server_app"
clientapp = "secagg_deploy_app:client_app"

[tool.flwr.app.config]
num-server-rounds = 2
out-dir = ""
pause-stage = ""
pause-seconds = 0.0
timeout-first = 300.0
timeout-stage = 180.0
active = false
roster = ""
max-corrupt = 0
"""

APP = '''\
"""Flower app for tests/fl/test_flower_deployment.py: synthetic updates, our SecAgg."""
import json
import time
from pathlib import Path

import numpy as np
import flwr.compat.common.recorddict_compat as compat
from flwr.client import ClientApp, NumPyClient
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow

from fl.flower import STATUS_KEY, SecAggFitWorkflow, message_stage, secagg_mod

N_NODES = 5
SHAPES = [(30, 4), (6,)]
CLIP = 4.0
MAX_WEIGHT = 50


def local_delta(partition, rnd):
    rng = np.random.default_rng(100 * rnd + partition)
    return [rng.uniform(-1, 1, s).astype(np.float32) for s in SHAPES]


def weight(partition):
    return 3 + partition


def initial():
    return [np.full(s, 0.5, np.float32) for s in SHAPES]


class Client(NumPyClient):
    def __init__(self, partition):
        self.partition = partition

    def fit(self, parameters, config):
        deltas = local_delta(self.partition, int(config["round"]))
        return [p + u for p, u in zip(parameters, deltas)], weight(self.partition), {}


def pause_mod(msg, ctx, call_next):
    """Marks and pauses the node at run-config pause-stage (so a test can kill it mid-round)."""
    cfg = ctx.run_config
    stage = message_stage(msg.content)
    if stage and stage == cfg.get("pause-stage") and cfg.get("out-dir"):
        Path(cfg["out-dir"], f"{stage}-{ctx.node_config['partition-id']}.started").touch()
        time.sleep(float(cfg["pause-seconds"]))
    return call_next(msg, ctx)


client_app = ClientApp(
    client_fn=lambda ctx: Client(int(ctx.node_config["partition-id"])).to_client(), mods=[pause_mod, secagg_mod]
)


def train(grid, context, rounds, timeouts, active=False, roster=None, max_corrupt=None):
    strategy = FedAvg(
        fraction_fit=1.0, min_fit_clients=N_NODES, min_available_clients=N_NODES, fraction_evaluate=0.0,
        initial_parameters=ndarrays_to_parameters(initial()), on_fit_config_fn=lambda r: {"round": r},
    )
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    if active:  # complete graph, n = 5, c = 1: 2t - n > c needs t >= 4
        workflow = SecAggFitWorkflow(neighbors=None, threshold=4, clip=CLIP, max_weight=MAX_WEIGHT, timeouts=timeouts,
                                     roster=roster, active_security=True, max_corrupt=max_corrupt)
    else:
        workflow = SecAggFitWorkflow(neighbors=None, threshold=3, clip=CLIP, max_weight=MAX_WEIGHT, timeouts=timeouts)
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
    params = compat.arrayrecord_to_parameters(legacy.state.array_records["parameters"], keep_input=True)
    return {
        "model": [a.tolist() for a in parameters_to_ndarrays(params)],
        "status": dict(legacy.state.config_records[STATUS_KEY]),
        "rounds": [
            {"ok": o.ok, "survivors": o.survivors, "reason": o.reason(), "dropped_at": o.dropped_at,
             "errors": o.errors, "stages": sorted(o.stage_seconds)}
            for o in workflow.outcomes
        ],
    }


server_app = ServerApp()


@server_app.main()
def main(grid, context):
    cfg = context.run_config
    timeouts = {s: float(cfg["timeout-stage"]) for s in ("share_keys", "masked_input", "unmask")}
    timeouts["advertise_keys"] = float(cfg["timeout-first"])
    active = bool(cfg["active"])
    result = train(grid, context, int(cfg["num-server-rounds"]), timeouts, active=active,
                   roster=str(cfg["roster"]) if active else None, max_corrupt=int(cfg["max-corrupt"]) if active else None)
    Path(cfg["out-dir"], "result.json").write_text(json.dumps(result))
'''


# ----------------------------------------------------------------- processes


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _is_flower(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"flwr" in cmd or b"flower" in cmd


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, timeout: float, what: str, poll: float = 0.5):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# Runs beside the test process, in its own session: when the test process is gone
# (even SIGKILLed, where atexit never runs) it SIGKILLs every process group
# listed in the file, one pgid a line. argv: test pid, pgid file.
WATCHDOG = """
import os, signal, sys, time
parent, path = int(sys.argv[1]), sys.argv[2]
while os.getppid() == parent:
    time.sleep(1.0)
try:
    pgids = {int(x) for x in open(path).read().split()}
except OSError:
    pgids = set()
for pgid in pgids:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Cluster:
    """One SuperLink and ``n`` SuperNodes on loopback.

    Each process starts in its own session (``start_new_session``), so its
    process group holds it and the SuperExec / ClientApp processes it spawns.
    :meth:`close` SIGKILLs every group and every descendant PID seen; it runs
    from the fixture's finaliser, from ``atexit``, and, if the test process
    dies without either, from a watchdog process that outlives it.
    """

    def __init__(self, root: Path, n: int, node_config: dict[int, dict[str, object]] | None = None) -> None:
        self.root, self.n = root, n
        self.node_config = node_config or {}
        self.home = root / "flwr-home"
        self.home.mkdir()
        self.port = _free_port()
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        self.env = dict(os.environ, FLWR_HOME=str(self.home), PYTHONUNBUFFERED="1",
                        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        self.procs: list[subprocess.Popen] = []
        self.supernodes: list[subprocess.Popen] = []
        self.seen: set[int] = set()  # every descendant PID observed, for cleanup
        self.pgid_file = root / "pgids"
        self.pgid_file.write_text("")
        self.closed = False
        atexit.register(self.close)
        self.watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self.pgid_file)],
                                         start_new_session=True, stdin=subprocess.DEVNULL)

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        with open(self.root / log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.root,
                                    start_new_session=True)
        self.procs.append(proc)
        with open(self.pgid_file, "a") as f:  # the session leader's pid is its group id
            f.write(f"{proc.pid}\n")
        return proc

    def start(self) -> None:
        self.superlink = self._spawn(
            [str(BIN / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
             "--port", str(self.port)], "superlink.log")
        _wait(self._link_up, START_TIMEOUT, "the SuperLink to listen")
        for i in range(self.n):
            self.supernodes.append(self._spawn(
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                 "--port", str(_free_port()), "--node-config", self._node_config(i)], f"supernode{i}.log"))
        _wait(lambda: self._log("superlink.log").count("Activated node_id") >= self.n, START_TIMEOUT,
              "all SuperNodes to register")

    def _node_config(self, i: int) -> str:
        extra = self.node_config.get(i, {})
        return " ".join([f"partition-id={i}"] + [f"{k}={json.dumps(v)}" for k, v in extra.items()])

    def _link_up(self) -> bool:
        assert self.superlink.poll() is None, self._log("superlink.log")[-2000:]
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _log(self, name: str) -> str:
        return (self.root / name).read_bytes().decode(errors="replace")

    def track(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.seen.update(_tree(proc.pid))

    def flwr_run(self, app: Path, out: Path, **config: object) -> subprocess.Popen:
        overrides = " ".join(f"{k}={json.dumps(v)}" for k, v in {"out-dir": str(out), **config}.items())
        return self._spawn([str(BIN / "flwr"), "run", str(app), "deploy", "--stream", "--run-config", overrides],
                           f"run-{len(self.procs)}.log")

    def kill_supernode(self, i: int) -> list[int]:
        """SIGKILL SuperNode ``i`` and its children (its SuperExec and ClientApp): its group and its tree."""
        pids = _tree(self.supernodes[i].pid)
        _killpg(self.supernodes[i].pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.supernodes[i].wait(timeout=30)
        return pids

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.track()
        for proc in self.procs:
            _killpg(proc.pid)
        for pid in sorted(self.seen - {p.pid for p in self.procs}):
            if _is_flower(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        self.watchdog.kill()
        self.watchdog.wait(timeout=30)
        atexit.unregister(self.close)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    """One identity key per SuperNode (OS CSPRNG), each in its own file, and the roster file all pin."""
    from secagg import kex

    keys = {i: kex.generate_identity() for i in range(N_NODES)}
    roster = tmp_path / "roster.txt"
    roster.write_text("".join(f"partition-{i} {k.public_bytes.hex()}\n" for i, k in keys.items()))
    node_config: dict[int, dict[str, object]] = {}
    for i, key in keys.items():
        path = tmp_path / f"identity-{i}.key"
        path.write_bytes(key.private_bytes)
        node_config[i] = {"secagg-roster": str(roster), "secagg-identity": str(path), "secagg-max-corrupt": 1}
    return {"roster": roster, "node_config": node_config}


@pytest.fixture
def cluster(tmp_path: Path, pki: dict, request: pytest.FixtureRequest):  # noqa: ANN201
    c = Cluster(tmp_path, N_NODES, pki["node_config"])
    request.addfinalizer(c.close)  # also runs when start() or the test fails; close() is idempotent
    c.start()
    yield c
    c.close()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "secagg_deploy_app.py").write_text(APP)
    return app


def _finish(cluster: Cluster, run: subprocess.Popen, out: Path) -> dict:
    def done() -> bool:
        cluster.track()
        return (out / "result.json").exists() or run.poll() is not None

    _wait(done, RUN_TIMEOUT, "the ServerApp to finish")
    _wait(lambda: (out / "result.json").exists(), 30.0, "result.json")
    return json.loads((out / "result.json").read_text())


def _load_app(app_dir: Path):  # noqa: ANN202
    sys.path.insert(0, str(app_dir))
    try:
        return importlib.import_module("secagg_deploy_app")
    finally:
        sys.path.remove(str(app_dir))


def _fedavg(app, partitions: list[int], model: list[np.ndarray], rnd: int) -> list[np.ndarray]:  # noqa: ANN001
    w = np.array([app.weight(p) for p in partitions], dtype=np.float64)
    out = []
    for layer in range(len(app.SHAPES)):
        local = np.stack([model[layer] + app.local_delta(p, rnd)[layer] for p in partitions]).astype(np.float64)
        out.append((np.tensordot(w, local, axes=1) / w.sum()).astype(np.float32))
    return out


def _step(app) -> float:  # noqa: ANN001
    from secagg.encoding import FixedPointEncoder

    return FixedPointEncoder(app.CLIP, 32, app.N_NODES, max_weight=app.MAX_WEIGHT).precision


def test_deployment_matches_in_process_runs_active_and_survives_a_killed_supernode(
    cluster: Cluster, app_dir: Path, pki: dict
) -> None:
    from flwr.app import Context, RecordDict

    from fl.flower import InProcessGrid

    app = _load_app(app_dir)
    tol = 3 * _step(app) + 1e-6  # per round one quantisation step, plus float32 storage

    # 1. Two rounds on the real deployment, and the same app in process.
    out1 = cluster.root / "out1"
    out1.mkdir()
    deployed = _finish(cluster, cluster.flwr_run(app_dir, out1), out1)
    assert [r["ok"] for r in deployed["rounds"]] == [True, True], deployed["rounds"]
    grid = InProcessGrid(app.client_app, range(1, N_NODES + 1),
                         node_configs={i: {"partition-id": i - 1} for i in range(1, N_NODES + 1)})
    in_process = app.train(grid, Context(1, 0, {}, RecordDict(), {}), 2, 60.0)
    expected = app.initial()
    for rnd in (1, 2):
        expected = _fedavg(app, list(range(N_NODES)), expected, rnd)
    for got, ref, want in zip(deployed["model"], in_process["model"], expected):
        assert np.max(np.abs(np.asarray(got) - np.asarray(ref))) <= 2 * tol
        assert np.max(np.abs(np.asarray(got) - want)) <= tol

    # 2. One active round: signed identify step, signed adverts, consistency check (t = 4, c = 1).
    out_active = cluster.root / "out-active"
    out_active.mkdir()
    active = _finish(cluster, cluster.flwr_run(app_dir, out_active, **{
        "num-server-rounds": 1, "active": True, "roster": str(pki["roster"]), "max-corrupt": 1}), out_active)
    (round_active,) = active["rounds"]
    assert round_active["ok"], round_active
    assert len(round_active["survivors"]) == N_NODES
    assert "consistency" in round_active["stages"], round_active["stages"]
    for got, want in zip(active["model"], _fedavg(app, list(range(N_NODES)), app.initial(), 1)):
        assert np.max(np.abs(np.asarray(got) - want)) <= tol

    # 3. Kill one SuperNode while every node sits in MASKED_INPUT.
    out2 = cluster.root / "out2"
    out2.mkdir()
    run = cluster.flwr_run(app_dir, out2, **{"num-server-rounds": 1, "pause-stage": "masked_input",
                                            "pause-seconds": 8.0, "timeout-stage": 90.0})
    _wait(lambda: (cluster.track(), (out2 / "masked_input-0.started").exists())[1], RUN_TIMEOUT,
          "node 0 to reach masked_input", poll=0.1)
    killed = cluster.kill_supernode(0)
    _wait(lambda: all(not _alive(pid) for pid in killed), 30.0, "the killed SuperNode's processes to exit")
    result = _finish(cluster, run, out2)
    (outcome,) = result["rounds"]
    print("killed-node round:", {k: outcome[k] for k in ("ok", "dropped_at", "reason")})  # shown with -s
    if outcome["ok"]:
        assert len(outcome["survivors"]) == N_NODES - 1
        assert sum(len(v) for v in outcome["dropped_at"].values()) == 1
        assert list(outcome["dropped_at"]) == ["masked_input"]
        expected = _fedavg(app, list(range(1, N_NODES)), app.initial(), 1)
        for got, want in zip(result["model"], expected):
            assert np.max(np.abs(np.asarray(got) - want)) <= tol
    else:
        assert outcome["reason"].startswith("AbortError: round aborted at")
        assert result["status"]["status"] == "aborted"
        for got, want in zip(result["model"], app.initial()):
            np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), want)


RAY_CLIENTS = 50
RAY_DIM = 1_000
RAY_CRASH = {3: "share_keys", 17: "advertise_keys", 30: "masked_input"}  # partition -> stage it crashes at


def test_ray_simulation_50_clients_with_crashes_at_three_stages() -> None:
    """Flower's Ray simulation engine, 50 virtual clients, SecAgg+ (k=8, t=5):
    ClientApps that crash at advertise_keys, share_keys and masked_input are
    dropouts; the model is the FedAvg of the 47 survivors."""
    pytest.importorskip("ray")
    import flwr.compat.common.recorddict_compat as compat
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow
    from flwr.simulation import run_simulation

    from fl.flower import SecAggFitWorkflow, message_stage, secagg_mod
    from protocols import Stage
    from secagg.encoding import FixedPointEncoder

    order = [s.value for s in Stage]

    def update(p: int) -> np.ndarray:
        return np.random.default_rng(p).uniform(-1, 1, RAY_DIM).astype(np.float32)

    def weight(p: int) -> int:
        return 1 + p % 5

    class Client(NumPyClient):
        def __init__(self, p: int) -> None:
            self.p = p

        def fit(self, parameters, config):  # noqa: ANN001, ANN201
            return [update(self.p)], weight(self.p), {}

    def crash_mod(msg, ctx, call_next):  # noqa: ANN001, ANN202
        stage, p = message_stage(msg.content), int(ctx.node_config["partition-id"])
        if stage and p in RAY_CRASH and order.index(stage) >= order.index(RAY_CRASH[p]):
            raise RuntimeError("simulated SuperNode crash")
        return call_next(msg, ctx)

    client_app = ClientApp(client_fn=lambda ctx: Client(int(ctx.node_config["partition-id"])).to_client(),
                           mods=[crash_mod, secagg_mod])
    server_app = ServerApp()
    out: dict = {}

    @server_app.main()
    def main(grid, context):  # noqa: ANN001, ANN202
        strategy = FedAvg(fraction_fit=1.0, min_fit_clients=RAY_CLIENTS, min_available_clients=RAY_CLIENTS,
                          fraction_evaluate=0.0, initial_parameters=ndarrays_to_parameters([np.zeros(RAY_DIM, np.float32)]))
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)
        workflow = SecAggFitWorkflow(neighbors=8, threshold=5, clip=1.0, max_weight=10, timeouts=300)
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
        out["outcome"] = workflow.outcomes[0]
        params = compat.arrayrecord_to_parameters(legacy.state.array_records["parameters"], keep_input=True)
        out["model"] = parameters_to_ndarrays(params)[0]

    run_simulation(server_app, client_app, num_supernodes=RAY_CLIENTS, backend_config={"client_resources": {"num_cpus": 1}})
    outcome = out["outcome"]
    assert outcome.ok, outcome.reason()
    assert len(outcome.survivors) == RAY_CLIENTS - len(RAY_CRASH)
    assert sorted(outcome.dropped_at) == sorted(set(RAY_CRASH.values()))
    assert all(len(v) == 1 for v in outcome.dropped_at.values())
    alive = [p for p in range(RAY_CLIENTS) if p not in RAY_CRASH]
    w = np.array([weight(p) for p in alive], dtype=np.float64)
    expected = np.tensordot(w, np.stack([update(p) for p in alive]).astype(np.float64), axes=1) / w.sum()
    step = FixedPointEncoder(1.0, 32, RAY_CLIENTS, max_weight=10).precision
    assert np.max(np.abs(out["model"] - expected)) <= step + 1e-6
