"""Write the five research notebooks in this folder and execute them in place.

``make notebooks`` (``python notebooks/make_notebooks.py``) rebuilds every
notebook from the cells below, runs it in a kernel on this interpreter and
writes it back with its outputs and figures; ``--no-execute`` writes the cells
only, and naming notebooks (``04``) rebuilds just those. Outputs are
normalised so that a re-run changes only what it measured: consecutive stream
chunks are merged, no timing metadata or cell ids are kept, and figures are
small PNGs (72 dpi, optimised). ``tests/test_notebooks.py`` re-executes each
notebook and checks that its outputs keep the committed structure
(:func:`output_structure`). Every figure a notebook shows is measured when it
runs; nothing here hard-codes a result.

Sizes: ``SECAGG_NOTEBOOK_QUICK=1`` (the default, what CI sets and what the
committed outputs use) keeps the notebooks to a few minutes in all on 2 cores;
``SECAGG_NOTEBOOK_QUICK=0`` measures more points and seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbclient
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

__all__ = ["NOTEBOOKS", "write_all", "kernel_environment", "execute", "normalise", "output_structure"]

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600  # per cell; the slowest (record-level DP training) takes a few minutes on a loaded machine
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": KERNEL_NAME}

SETUP = """\
import os
import time

import numpy as np
import matplotlib.pyplot as plt
%matplotlib inline
# Small PNGs (72 dpi, optimised, no version stamp): the notebooks are committed with their figures.
%config InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "dpi": 72, "pil_kwargs": {"optimize": True}}

# SECAGG_NOTEBOOK_QUICK=1 (default, CI): small sizes, < 60 s on 2 cores. Set it to 0 for more points.
QUICK = os.environ.get("SECAGG_NOTEBOOK_QUICK", "1") == "1"
rng = np.random.default_rng(0)  # simulation data only: keys, seeds and masks always come from the OS CSPRNG
print("quick mode" if QUICK else "full mode")"""


def _nb(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, text in cells:
        cell = new_markdown_cell(text) if kind == "md" else new_code_cell(text)
        cell.pop("id", None)  # stable diffs: no random cell ids
        nb.cells.append(cell)
    nb.nbformat_minor = 4  # ids are optional before 4.5
    return nb


# ---------------------------------------------------------------------------------------- 01
QUICKSTART = [
    ("md", """\
# 01 · Secure aggregation in ten lines

Ten clients (say, hospitals) each hold a model update. The server should learn the **sum** and nothing
else. This notebook

1. runs one SecAgg+ round with two dropouts in ten lines (`protocols.sim.run`),
2. drives a round by hand, as a transport would, to look at the **masked vector the server receives**
   next to the client's true update,
3. compares the aggregate with the plaintext sum, coordinate by coordinate."""),
    ("code", SETUP),
    ("md", """\
## Ten lines

Client 3 vanishes before sharing its keys, so its update is lost; client 7 vanishes at the unmasking
stage, after it had sent its masked input, so it is still summed (its neighbours' shares recover its
self-mask seed). `run_plaintext` is the insecure baseline with the same fixed-point encoding and the same
seed: the modular sums agree bit for bit, so SecAgg+ adds no error of its own."""),
    ("code", """\
from protocols import Stage, sim

n, dim = 10, 1000
updates = rng.uniform(-1, 1, size=(n, dim))
result = sim.run("secagg+", updates, dropouts={3: Stage.SHARE_KEYS, 7: "unmask"}, seed=0)
baseline = sim.run_plaintext(updates, dropouts={3: Stage.SHARE_KEYS, 7: "unmask"}, seed=0)
true_sum = updates[result.survivors].sum(0)

print("survivors:", result.survivors, "  dropped:", result.dropped)
print("max |aggregate - float sum| =", np.abs(result.aggregate - true_sum).max())
print("modular sum identical to the plaintext baseline:", np.array_equal(result.raw_sum, baseline.raw_sum))
print("bytes up per client (mean):", round(np.mean(list(result.bytes_up.values()))), "for", dim, "values")"""),
    ("md", """\
## What the server sees

The protocols are sans-I/O state machines: a transport moves bytes between `SecAggServer` and
`SecAggClient` and calls `close_stage()` at each deadline. Here the "transport" is a loop, and it keeps a
copy of every `MaskedInput` message, decoded from the bytes that crossed the wire. This round uses the
complete graph (classic SecAgg, threshold t = 6) and an encoder with step 1e-4 and clip 1."""),
    ("code", """\
from protocols import ABORTED, DONE, SecAggClient, SecAggConfig, SecAggServer
from protocols import messages
from secagg.encoding import FixedPointEncoder

encoder = FixedPointEncoder.for_precision(1.0, 1e-4, max_clients=n)
config = SecAggConfig(client_ids=tuple(range(n)), threshold=6, dim=dim, encoder=encoder)
server = SecAggServer(config)
clients = {i: SecAggClient(config, i, updates[i]) for i in range(n)}
on_the_wire = {}  # client id -> the masked vector the server received
outbox = server.start()
while server.state not in (DONE, ABORTED):
    for cid, msg in outbox.items():
        reply = clients[cid].handle(msg.to_bytes())
        if reply is not None:
            data = reply.to_bytes()
            if isinstance(reply, messages.MaskedInput):
                on_the_wire[cid] = messages.decode(data).masked
            server.receive(cid, data)
    outbox = server.close_stage()
by_hand = server.result()

modulus = 2 ** config.bits
masked0 = on_the_wire[0].astype(np.float64)
encoded0 = encoder.encode(updates[0]).astype(np.float64)  # what client 0 would send without masks
print(f"ring Z_2^{config.bits}; masked vector: {on_the_wire[0].dtype}, length {on_the_wire[0].size} "
      "(the update, then the weight slot)")
print("correlation(true update, masked vector) =", round(np.corrcoef(updates[0], masked0[:dim])[0, 1], 4))
print("max |aggregate - float sum| =", np.abs(by_hand.aggregate - updates.sum(0)).max(),
      " encoder step:", encoder.precision)"""),
    ("code", """\
fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
shown = 120
ax[0].plot(updates[0][:shown], ".-", lw=0.8, label="true update $x_0$")
ax[0].set(title="client 0: true update", xlabel="coordinate", ylabel="value")
ax[1].plot(masked0[:shown] / modulus, ".-", lw=0.8, color="C3")
ax[1].set(title="client 0: masked vector the server receives", xlabel="coordinate",
          ylabel=f"$y_0$ / 2^{config.bits}")
bins = np.linspace(0, 1, 41)
ax[2].hist(np.concatenate([v[:dim] for v in on_the_wire.values()]) / modulus, bins=bins, alpha=0.7,
           color="C3", label="masked inputs (all clients)")
ax[2].hist(np.concatenate([encoder.encode(u)[:dim] for u in updates]) / modulus, bins=bins, alpha=0.6,
           color="C0", label="unmasked encodings")
ax[2].set(title="values in the ring", xlabel=f"value / 2^{config.bits}", ylabel="count", yscale="log")
ax[2].legend(fontsize=8)
fig.tight_layout()"""),
    ("md", """\
Without masks the encodings sit next to 0 and next to 2^bits (small negative values wrap); the masked
inputs fill the ring evenly and do not track the update. Only their sum, in which the pairwise masks cancel
and the self-masks are removed, carries information."""),
    ("code", """\
fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
exact = updates.sum(0)
ax[0].scatter(exact, by_hand.aggregate, s=4)
lim = np.abs(exact).max()
ax[0].plot([-lim, lim], [-lim, lim], "k--", lw=0.7)
ax[0].set(title="aggregate vs plaintext sum", xlabel="Σ x_i (float64)", ylabel="SecAgg aggregate")
err = by_hand.aggregate - exact
ax[1].hist(err / encoder.precision, bins=40)
ax[1].set(title="error of the aggregate", xlabel="error / encoder step", ylabel="coordinates")
fig.tight_layout()
print(f"|error| ≤ {np.abs(err).max():.2e}: {np.abs(err).max() / encoder.precision:.2f} steps "
      f"(stochastic rounding of {n} clients, each under one step)")"""),
]

# ---------------------------------------------------------------------------------------- 02
DROPOUTS = [
    ("md", """\
# 02 · Dropouts and threat models

SecAgg+ replaces SecAgg's complete graph by a random k-regular graph: each client shares keys with k
neighbours and a threshold t of them must survive to unmask it. `protocols.choose_params(n, dropout_rate,
corrupt_rate)` picks the smallest k, and a t, such that the round is secure except with probability 2^-40
(no honest client has t corrupt neighbours, the honest survivors stay connected) and correct except with
probability 2^-20 (no survivor loses more than k - t neighbours).

This notebook plots k and t against n for a few threat models, then **measures** what a client and the
server pay for SecAgg and SecAgg+, and what dropouts cost the server."""),
    ("code", SETUP),
    ("code", """\
from protocols import choose_params
from secagg.errors import ConfigError

# (dropout_rate, corrupt_rate); high rates make the search long (k runs to ~200), so they are full-mode only
threat_models = [(0.05, 0.05), (0.10, 0.05), (0.20, 0.10)] + ([] if QUICK else [(0.30, 0.10)])
ns = [20, 50, 100, 200, 500, 1000, 2000] + ([] if QUICK else [5000, 10000])
params = {}
for dr, cr in threat_models:
    for n in ns:
        try:
            params[dr, cr, n] = choose_params(n, dropout_rate=dr, corrupt_rate=cr)
        except ConfigError:
            params[dr, cr, n] = None  # even the complete graph cannot meet both bounds

print(f"{'dropout':>8} {'corrupt':>8} " + " ".join(f"{n:>10}" for n in ns))
for dr, cr in threat_models:
    row = [params[dr, cr, n] for n in ns]
    print(f"{dr:>8} {cr:>8} " + " ".join(f"{f'k={p.neighbors},t={p.threshold}' if p else 'infeasible':>10}"
                                         for p in row))"""),
    ("code", """\
fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
for i, (dr, cr) in enumerate(threat_models):
    pts = [(n, params[dr, cr, n]) for n in ns if params[dr, cr, n] is not None]
    xs = [n for n, _ in pts]
    label = f"drop {dr:.0%}, corrupt {cr:.0%}"
    ax[0].plot(xs, [p.neighbors for _, p in pts], "o-", color=f"C{i}", label=label)
    ax[1].plot(xs, [p.threshold for _, p in pts], "o-", color=f"C{i}", label=label)
    ax[2].plot(xs, [p.min_survivors / p.n for _, p in pts], "o-", color=f"C{i}", label=label)
ax[0].set(xscale="log", title="neighbour degree k", xlabel="clients n", ylabel="k")
ax[1].set(xscale="log", title="threshold t", xlabel="clients n", ylabel="t")
ax[2].set(xscale="log", title="min_survivors / n (round aborts below)", xlabel="clients n")
for a in ax:
    a.set_xticks(ns, [str(n) for n in ns])
    a.xaxis.set_minor_locator(plt.NullLocator())
ax[0].legend(fontsize=8)
fig.tight_layout()"""),
    ("md", """\
k grows only slowly with n: a client's cost depends on k, not on n. Small cohorts are the hard case: at
n = 20 no degree meets both bounds for any of these threat models (missing points, "infeasible" above),
not even the complete graph. There one has to accept weaker bounds (`choose_params(...,
security_bits=..., correctness_bits=...)`) or assume fewer corrupt clients.

## Measured cost per client against n

One round each, d = 1000, no dropouts. SecAgg+ uses its default degree 2⌈log2 n⌉ (`sim.run` without
`neighbors`). Bytes are what crossed the simulated wire (up + down); seconds are the time spent in each
party's state machine (one process, so this is CPU time per party, not latency)."""),
    ("code", """\
from protocols import sim


def per_party(result):
    \"\"\"(mean client bytes up+down, mean client seconds, server seconds) of one round.\"\"\"
    clients = sorted(result.bytes_up)
    traffic = np.mean([result.bytes_up[c] + result.bytes_down.get(c, 0) for c in clients])
    seconds = {}
    for stage in result.stage_seconds.values():
        for party, s in stage.items():
            seconds[party] = seconds.get(party, 0.0) + s
    client_s = np.mean([seconds.get(c, 0.0) for c in clients])
    return traffic, client_s, seconds.get("server", 0.0)

dim = 1000
n_values = [10, 20, 40, 80] if QUICK else [10, 20, 40, 80, 160]
cost = {}
for protocol in ("secagg", "secagg+"):
    for n in n_values:
        cost[protocol, n] = per_party(sim.run(protocol, rng.uniform(-1, 1, (n, dim)), seed=n))
        print(f"{protocol:8} n={n:4}: {cost[protocol, n][0] / 1e3:7.1f} kB/client "
              f"{cost[protocol, n][1] * 1e3:7.1f} ms/client  server {cost[protocol, n][2] * 1e3:7.1f} ms")"""),
    ("code", """\
fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
titles = ["traffic per client", "client CPU per round", "server CPU per round"]
units = ["kB", "ms", "ms"]
scale = [1e-3, 1e3, 1e3]
for j in range(3):
    for protocol, marker in (("secagg", "o-"), ("secagg+", "s-")):
        ax[j].plot(n_values, [cost[protocol, n][j] * scale[j] for n in n_values], marker, label=protocol)
    ax[j].set(title=titles[j], xlabel="clients n", ylabel=units[j], xscale="log", yscale="log")
    ax[j].set_xticks(n_values, [str(n) for n in n_values])
    ax[j].xaxis.set_minor_locator(plt.NullLocator())
    ax[j].legend()
fig.tight_layout()"""),
    ("md", """\
## Cost against the degree k

At fixed n, a SecAgg+ client's work and traffic grow with k (one key agreement, one pair of Shamir shares
and one pairwise mask per neighbour). The dotted lines mark the k that `choose_params` asked for above
(at n = 1000); the dashed line is a least-squares line through the measured points, extended (not
measured) to the largest k, so the cost of a threat model can be read off this plot."""),
    ("code", """\
n_fixed = 40 if QUICK else 80
ks = [4, 8, 16, 24, 32, 38] if QUICK else [4, 8, 16, 24, 32, 48, 64, 78]
by_k = {k: per_party(sim.run("secagg+", rng.uniform(-1, 1, (n_fixed, dim)), neighbors=k, seed=k)) for k in ks}

chosen = {(dr, cr): params[dr, cr, 1000].neighbors for dr, cr in threat_models if params[dr, cr, 1000]}
k_axis = np.linspace(0, max([*ks, *chosen.values()]), 50)
fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
for j, (what, unit, factor) in enumerate([("traffic per client", "kB", 1e-3), ("client CPU per round", "ms", 1e3)]):
    ys = [by_k[k][j] * factor for k in ks]
    slope, intercept = np.polyfit(ks, ys, 1)
    ax[j].plot(ks, ys, "o", label=f"measured (n = {n_fixed}, d = {dim})")
    ax[j].plot(k_axis, slope * k_axis + intercept, "--", color="C0", lw=0.8, label="linear fit, extended")
    for i, ((dr, cr), k) in enumerate(chosen.items()):
        ax[j].axvline(k, ls=":", color=f"C{i + 1}", label=f"choose_params k={k} (drop {dr:.0%}, corrupt {cr:.0%})")
    ax[j].set(title=what, xlabel="neighbour degree k", ylabel=unit)
    print(f"{what}: {slope:.3g} {unit} per neighbour + {intercept:.3g} {unit}")
ax[0].legend(fontsize=7)
fig.tight_layout()"""),
    ("md", """\
## What dropouts cost, and when the round aborts

A client that shared its keys but never sent its masked input leaves its pairwise masks in the sum. The
survivors then reveal shares of its mask key, and the server rebuilds and removes one mask per
(dropped, surviving neighbour) pair: m·(n − m) masks on the complete graph. Measured (best of 2): SecAgg,
n = 20, default threshold t = ⌊19/2⌋ + 1 = 10 of each client's 19 neighbours, with m clients dropping
before their masked input."""),
    ("code", """\
from secagg.errors import AbortError

n_drop, dim = 20, 1000
updates = rng.uniform(-1, 1, (n_drop, dim))
ms = [0, 2, 4, 6, 8, 9] if QUICK else list(range(10))
unmask_s, rebuilt = [], []
for m in ms:
    best = np.inf
    for repeat in range(2):
        res = sim.run("secagg", updates, dropouts={i: "masked_input" for i in range(m)}, seed=m)
        best = min(best, res.stage_seconds["unmask"]["server"])
    unmask_s.append(best)
    rebuilt.append(res.extras["rebuilt_mask_keys"])
    assert res.survivors == list(range(m, n_drop))

fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(ms, np.array(unmask_s) * 1e3, "o-", label="server unmask time")
ax.set(title="server unmasking vs dropouts (n = 20, d = 1000)",
       xlabel="clients dropped before masked input", ylabel="ms")
twin = ax.twinx()
twin.plot(ms, [m * (n_drop - m) for m in ms], "s--", color="C1", label="pairwise masks rebuilt, m·(n−m)")
twin.set_ylabel("masks")
fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize=8)
print("mask keys rebuilt:", dict(zip(ms, rebuilt)))

try:  # one dropout too many: fewer than t = 11 survivors
    sim.run("secagg", updates, dropouts={i: "masked_input" for i in range(10)})
except AbortError as exc:
    print(f"AbortError at {exc.stage.value}: needed {exc.needed}, got {exc.got}; dropped: {exc.dropped}")"""),
    ("md", """\
With 10 dropouts, 10 masked inputs arrive (t = 10 is met at that stage), yet the round aborts at unmasking:
a client holds no share of its own secrets, so each survivor's self-mask seed has only 9 share holders among
the survivors, one fewer than t. In practice a SecAgg round needs t + 1 survivors. The abort is a
first-class outcome with a reason (stage, needed, got, who dropped where), never a wrong sum."""),
]

# ---------------------------------------------------------------------------------------- 03
MASKING_VS_HE = [
    ("md", """\
# 03 · Masking vs homomorphic encryption

The same updates go through SecAgg+ (pairwise ChaCha20 masks), packed Paillier (2048-bit modulus, many
fixed-point values per plaintext) and CKKS (TenSEAL, integer packing), all behind the same session interface
and the same fixed-point encoder. Measured for each, as the dimension d grows (n = 5 clients):

* CPU time per client and at the server (time inside each party's state machine, one process, best of
  2 runs);
* upload bytes per parameter;
* the error of the aggregate against the float64 sum.

All three carry the encoder's integers exactly, so the error is the encoder's rounding and nothing else;
the notebook checks that the modular sums are identical bit for bit."""),
    ("code", SETUP),
    ("code", """\
from protocols import sim
import protocols.he  # registers "paillier", "paillier-threshold" and "ckks" with sim (2048-bit Paillier keys)

PROTOCOLS = ["secagg+", "paillier", "ckks"]
n = 5
dims = [256, 1024, 2048] if QUICK else [256, 1024, 4096, 8192]
REPEATS = 2

def measure(result, d):
    seconds = {}
    for stage in result.stage_seconds.values():
        for party, s in stage.items():
            seconds[party] = seconds.get(party, 0.0) + s
    clients = sorted(result.bytes_up)
    return {
        "client_s": float(np.mean([seconds.get(c, 0.0) for c in clients])),
        "client_max_s": float(max(seconds.get(c, 0.0) for c in clients)),
        "server_s": seconds.get("server", 0.0),
        "up_B_per_param": float(np.mean([result.bytes_up[c] for c in clients])) / d,
        "down_B_per_param": float(np.mean([result.bytes_down[c] for c in clients])) / d,
    }

for protocol in PROTOCOLS:  # warm-up: imports and first-call costs stay out of the measurements
    sim.run(protocol, rng.uniform(-1, 1, size=(3, 8)), seed=0)

rows = {}
for d in dims:
    updates = rng.uniform(-1, 1, size=(n, d))
    encoder = sim.default_encoder(list(updates))  # one encoder for all protocols
    plain = sim.run_plaintext(updates, encoder=encoder, seed=1)
    for protocol in PROTOCOLS:
        runs = []
        for repeat in range(REPEATS):  # best of REPEATS: the machine is shared, timings are noisy
            res = sim.run(protocol, updates, encoder=encoder, seed=1)
            runs.append(measure(res, d))
        rows[protocol, d] = {key: min(r[key] for r in runs) for key in runs[0]} | {
            "max_err": float(np.abs(res.aggregate - updates.sum(0)).max()),
            "bit_identical": bool(np.array_equal(res.raw_sum, plain.raw_sum)),
        }

print(f"{'protocol':10} {'d':>6} {'client s':>9} {'server s':>9} {'up B/param':>11} {'max error':>10} bit-identical")
for (protocol, d), r in rows.items():
    print(f"{protocol:10} {d:>6} {r['client_s']:9.3f} {r['server_s']:9.3f} {r['up_B_per_param']:11.1f} "
          f"{r['max_err']:10.2e} {r['bit_identical']}")
print("encoder step:", encoder.precision, " bits:", encoder.bits)"""),
    ("code", """\
fig, ax = plt.subplots(1, 4, figsize=(18, 3.8))
for i, protocol in enumerate(PROTOCOLS):
    style = dict(marker="os^"[i], color=f"C{i}", label=protocol)
    ax[0].plot(dims, [rows[protocol, d]["client_s"] for d in dims], **style)
    ax[1].plot(dims, [rows[protocol, d]["server_s"] for d in dims], **style)
    ax[2].plot(dims, [rows[protocol, d]["up_B_per_param"] for d in dims], **style)
ax[0].set(title="CPU per client (mean)", ylabel="s")
ax[1].set(title="server CPU", ylabel="s")
ax[2].set(title="upload per parameter", ylabel="bytes")
for a in ax[:3]:
    a.set(xscale="log", yscale="log", xlabel="dimension d")
    a.set_xticks(dims, [str(d) for d in dims])
    a.xaxis.set_minor_locator(plt.NullLocator())
    a.legend(fontsize=8)
d_max = dims[-1]
errs = [rows[p, d_max]["max_err"] / encoder.precision for p in PROTOCOLS]
ax[3].bar(PROTOCOLS, errs, color=["C0", "C1", "C2"])
ax[3].axhline(n, ls="--", color="k", lw=0.8, label="bound: n steps (one per client)")
ax[3].set(title=f"max |error| of the aggregate (d = {d_max})", ylabel="encoder steps")
ax[3].legend(fontsize=8)
fig.tight_layout()"""),
    ("md", """\
Reading the plots:

* **Time.** Masking costs a few key agreements and one ChaCha20 stream per neighbour; Paillier pays a
  modular exponentiation per packed plaintext at every client, and its "client" time includes the key
  holder's key generation and the decryptors' work. CKKS sits between them.
* **Bytes.** SecAgg+ sends about 4 bytes per parameter (one 32-bit ring element) plus a fixed key-exchange
  overhead; Paillier ciphertexts are twice the modulus, amortised over the values packed into each
  plaintext; a CKKS ciphertext has a fixed size, so its bytes per parameter fall as d fills the slots.
* **Error.** Identical across the three: the sums are equal bit for bit (`bit_identical`), so the only
  error is the fixed-point rounding shared by all of them.

Trust models differ, and the plots do not show that: with shared-key Paillier or CKKS, the server plus any
one client can decrypt every input (the trust model in `protocols/he.py`); `paillier-threshold` removes
that at the price of a dealer trusted during set-up and slower decryption."""),
]

# ---------------------------------------------------------------------------------------- 04
DP_HEART = [
    ("md", """\
# 04 · Distributed DP on Fed-Heart-Disease: a hospital or a patient as the unit

Each of the 4 hospitals adds a discrete Gaussian noise share to what it sends and only then masks it, so
the server unmasks a noisy sum through real SecAgg+ (Kairouz, Liu & Steinke 2021; with 4 clients the
SecAgg+ graph is complete). Each share is calibrated so that the honest shares the protocol insists on
(`min_survivors`) already reach the target ε; the protocol refuses to unmask fewer, and ε is recomputed
after every round from the shares actually summed. One δ = 1e-5 holds throughout this notebook.

What the guarantee protects depends on the **unit** of privacy:

* **client-level** (`dp_unit="client"`): one unit is one hospital's whole model update. The noise must hide
  an entire hospital, while the signal is the sum of just 4 clipped updates.
* **record-level** (`dp_unit="record"`): one unit is one patient. Each round is a distributed DP-SGD step:
  every hospital Poisson-samples its records, clips each record's gradient and adds one noise share to the
  sum. The noise now hides one patient among all the sampled records of all hospitals.

The notebook measures test accuracy (mean over the 4 centres, FLamby's metric) against ε for both units,
then what dropouts do to ε."""),
    ("code", SETUP),
    ("code", """\
import warnings

import torch

torch.set_num_threads(1)  # tiny logistic model: one thread is fastest and reproducible

from fl.datasets import load_dataset
from fl.trainer import TrainConfig, Trainer
from protocols.dp import DPUtilityWarning

dataset = load_dataset("heart-disease")
print([(c.name, c.n_train) for c in dataset.centres], "features:", dataset.n_features)

DELTA = 1e-5  # one δ for every run in this notebook
# "always disease": the constant classifier, the floor any useful model must beat
always_disease = float(np.mean([np.mean(c.y_test) for c in dataset.centres]))
print(f"constant 'always disease' classifier: mean centre accuracy {always_disease:.3f}")

CLIENT_ROUNDS, LOCAL_STEPS = 10, 20  # client-level: FedAvg, 20 local steps per round
RECORD_ROUNDS, SAMPLING_RATE = 100, 0.05  # record-level: one DP-SGD step per round, 5 epochs in expectation
epsilons = [1.0, 4.0, 16.0] if QUICK else [1.0, 2.0, 4.0, 8.0, 16.0, 64.0]
record_epsilons = [1.0, 4.0] if QUICK else [1.0, 2.0, 4.0, 8.0]
seeds = [1, 2] if QUICK else [1, 2, 3, 4, 5]
record_seeds = seeds[:1] if QUICK else seeds
utility_warnings = set()


def train(eps, seed, *, unit="client", dropout_rate=0.0):
    \"\"\"Train over SecAgg+ with distributed DP at (eps, DELTA); eps=None trains without DP.\"\"\"
    record = unit == "record"
    config = TrainConfig(protocol="secagg+", seed=seed, dropout_rate=dropout_rate, dp_epsilon=eps,
                         dp_delta=DELTA if eps else None, dp_unit=unit if eps else "client",
                         rounds=RECORD_ROUNDS if record else CLIENT_ROUNDS, local_steps=1 if record else LOCAL_STEPS,
                         dp_sampling_rate=SAMPLING_RATE if record and eps else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DPUtilityWarning)
        trainer = Trainer(config, dataset=dataset)
        run = trainer.run()
    utility_warnings.update(str(w.message).split(":")[0] for w in caught if w.category is DPUtilityWarning)
    return trainer, run"""),
    ("md", """\
## Client-level DP: a hospital is the unit

FedAvg over 4 hospitals, each clipping its model delta to L2 norm 0.1 before adding its noise share."""),
    ("code", """\
accuracy = {"client": {}, "record": {}}
accuracy["client"][None] = [train(None, s)[1].final["mean_centre_accuracy"] for s in seeds]
for eps in epsilons:
    accuracy["client"][eps] = [train(eps, s)[1].final["mean_centre_accuracy"] for s in seeds]
for eps, accs in accuracy["client"].items():
    print(f"client-level ε={eps!s:>5}: accuracy {np.mean(accs):.3f} ± {np.std(accs):.3f} over {len(seeds)} seeds")
for line in sorted(utility_warnings):
    print("trainer warned:", line)"""),
    ("md", """\
The trainer warns when the noise std exceeds the largest norm the clipped sum can have: with 4 hospitals the
release is then mostly noise, and the warning names record-level DP as the fix.

## Record-level DP: a patient is the unit

Each round, every hospital samples each of its records with probability q = 0.05, Opacus computes one
gradient per sampled record, the DP layer clips each to C = 1 and the hospital adds one noise share to the
sum before masking (`fl.record_dp`). The accountant counts records sampled at rate q and the honest shares
summed; the ledger gives each hospital its ε, and what its ε would be if its masked input were ever unmasked
alone (protected by its own share only)."""),
    ("code", """\
for eps in record_epsilons:
    runs = [train(eps, s, unit="record") for s in record_seeds]
    accuracy["record"][eps] = [run.final["mean_centre_accuracy"] for _, run in runs]
    trainer, run = runs[0]
    print(f"record-level ε={eps:>5}: noise multiplier z={trainer.aggregator.noise_multiplier:.2f}, "
          f"accuracy {np.mean(accuracy['record'][eps]):.3f} over {len(record_seeds)} seed(s), "
          f"ε spent {run.rounds[-1]['epsilon']:.3f}")
for name, entry in trainer.aggregator.privacy_report([c.name for c in dataset.centres]).items():
    print(f"  {name:14} ε = {entry['epsilon']:.3f} over {entry['rounds']} rounds, "
          f"{entry['epsilon_if_exposed']:.2f} if its masked input were unmasked alone")"""),
    ("code", """\
fig, ax = plt.subplots(figsize=(7, 4.2))
units = [("client", "o-", "client-level (a hospital)"), ("record", "s-", "record-level (a patient)")]
for unit, marker, label in units:
    eps_axis = [e for e in accuracy[unit] if e is not None]
    ax.errorbar(eps_axis, [np.mean(accuracy[unit][e]) for e in eps_axis],
                yerr=[np.std(accuracy[unit][e]) for e in eps_axis], fmt=marker, capsize=3, label=label)
ax.axhline(np.mean(accuracy["client"][None]), color="k", ls="--", label="SecAgg+ FedAvg without DP")
ax.axhline(always_disease, color="grey", ls=":", label="constant 'always disease'")
ax.set(xscale="log", xlabel=f"ε (δ = {DELTA:g})", ylabel="mean centre test accuracy",
       title="Fed-Heart-Disease, 4 hospitals: accuracy against ε")
ax.legend(fontsize=8)
fig.tight_layout()

print(f"{'ε':>5} {'client-level':>13} {'record-level':>13}   (no DP: {np.mean(accuracy['client'][None]):.3f}, "
      f"always disease: {always_disease:.3f})")
for eps in sorted(set(epsilons) | set(record_epsilons)):
    cells = [f"{np.mean(accuracy[u][eps]):13.3f}" if eps in accuracy[u] else f"{'–':>13}" for u in ("client", "record")]
    print(f"{eps:5g} {cells[0]} {cells[1]}")"""),
    ("md", """\
Read the table against its two reference lines. Client-level DP has to hide a whole hospital in a sum of
four clipped updates: it needs a very large ε before its model beats the constant classifier at all.
Record-level DP has to hide one patient in the sum of every sampled record's gradient, so at the same ε and δ
it stays close to the non-private model. With a handful of hospitals, record-level is the unit that keeps a useful model;
`secagg run` defaults to it. The paired comparison with Opacus' central DP-SGD on the pooled records,
over many seeds, is in the `record_dp.py` section of BENCHMARKS.md (`python bench/record_dp.py`).

## What dropouts do to ε

A synthetic cohort of 20 clients (d = 100), calibrated so that 15 shares meet the target. Each round runs
through real SecAgg+ with m clients dropping before they share keys. Fewer shares mean less noise in the
sum, so each round costs more ε; below 15 survivors the protocol aborts instead of leaking. The curves are
the accountant's `epsilon_for(n_shares)`, the dots the ε that `run_dp` reported for the rounds it ran."""),
    ("code", """\
from protocols.dp import DistributedDP, run_dp
from secagg.errors import AbortError

n_syn, d_syn, min_surv = 20, 100, 15
deltas = rng.normal(size=(n_syn, d_syn))
deltas *= 0.1 / np.linalg.norm(deltas, axis=1, keepdims=True)
shares = np.arange(10, n_syn + 1)
drops = [0, 2, 5, 6] if QUICK else [0, 1, 2, 3, 4, 5, 6]

fig, ax = plt.subplots(figsize=(6.5, 4))
curves = {}
for i, mechanism in enumerate(["ddgauss", "skellam"]):
    dp = DistributedDP(dim=d_syn, n_clients=n_syn, min_survivors=min_surv, l2_clip=0.1, noise_multiplier=1.0,
                       bits=20, mechanism=mechanism, delta=DELTA)
    curves[mechanism] = np.array([dp.epsilon_for(int(s)) for s in shares])
    ax.plot(shares, curves[mechanism], ["-", "--"][i], lw=[4, 1.5][i], alpha=[0.5, 1][i], color=f"C{i}",
            label=f"{mechanism}: accountant")
    for m in drops:
        try:
            res = run_dp("secagg+", deltas, dp, dropouts={j: "share_keys" for j in range(m)}, seed=m)
            report = res.extras["dp"]
            ax.plot(report.n_shares, report.epsilon_round, "o", color=f"C{i}", ms=7 - 2 * i)
            print(f"{mechanism:8} {m} dropped: {report.n_shares} shares, ε this round {report.epsilon_round:.3f}, "
                  f"noise variance of the sum {report.noise_variance:.3g}")
        except AbortError as exc:
            print(f"{mechanism:8} {m} dropped: aborted at {exc.stage.value} (needed {exc.needed}, got {exc.got})")
ax.axvspan(shares[0] - 0.5, min_surv - 0.5, color="grey", alpha=0.2, label="refused: round aborts")
ax.set(xlabel="noise shares in the unmasked sum", ylabel=f"ε of one round (δ = {DELTA:g})",
       title="dropout-aware accounting, n = 20, min_survivors = 15")
ax.legend(fontsize=8)
fig.tight_layout()
print("max |ε_ddgauss − ε_skellam| over the curve:", f"{np.abs(curves['ddgauss'] - curves['skellam']).max():.2g}")"""),
    ("md", """\
Both mechanisms follow the same dropout rule: each dropout removes one share of noise, so each round costs
more ε, and the round is refused below `min_survivors`. At the same noise variance the two accountants charge
different ε (the printed gap): each mechanism has its own privacy loss distribution.

### In training

The same client-level ε target (4) with a simulated dropout rate of 25 %: `min_survivors` drops from 4 to 3.
The noise multiplier z (central noise over clip) stays the same, but each share now has std z·clip/√3
instead of z·clip/√4, so that 3 shares alone meet the target. Rounds in which more than one hospital drops
before sending its input abort and spend no ε; rounds with all 4 shares carry more noise than needed and
spend less than the worst case. The realised ε therefore ends at or below the target."""),
    ("code", """\
fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
for i, rate in enumerate([0.0, 0.25]):
    trainer, run = train(4.0, seeds[0], dropout_rate=rate)
    eps_curve, last = [], 0.0
    for r in run.rounds:
        last = r.get("epsilon", last)  # an aborted round spends nothing
        eps_curve.append(last)
    rounds = [r["round"] for r in run.rounds]
    ax[0].plot(rounds, eps_curve, "o-", color=f"C{i}",
               label=f"dropout {rate:.0%} (min_survivors {trainer.aggregator.min_survivors})")
    ax[1].plot(rounds, [r["mean_centre_accuracy"] for r in run.rounds], "o-", color=f"C{i}",
               label=f"dropout {rate:.0%}")
    aborted = [r["round"] for r in run.rounds if r["aborted"]]
    shares_summed = [len(r["survivors"]) for r in run.rounds]
    print(f"dropout {rate:.0%}: noise multiplier {trainer.aggregator.noise_multiplier:.3f}, "
          f"per-share std {trainer.aggregator.dp.plan.local_stddev:.4f}, "
          f"shares per round {shares_summed}, aborted rounds {aborted}, final ε {eps_curve[-1]:.3f}")
ax[0].axhline(4.0, color="k", ls="--", lw=0.8, label="target ε")
ax[0].set(xlabel="round", ylabel="ε spent so far", title=f"client-level privacy spent (δ = {DELTA:g})")
ax[1].set(xlabel="round", ylabel="mean centre test accuracy", title="accuracy")
ax[0].legend(fontsize=8)
ax[1].legend(fontsize=8)
fig.tight_layout()"""),
]

# ---------------------------------------------------------------------------------------- 05
PROPERTY_TESTING = [
    ("md", """\
# 05 · Property-testing your own aggregator

`protocols.testing` ships the Hypothesis strategies and the property suite we run on our own SecAgg.
Anything that speaks the session interface (`make_server(config)`, `make_client(config, client_id, update,
*, weight, identity, rng)`) can be checked with one call:

```python
from protocols.testing import check_aggregator
check_aggregator(MyServer, MyClient)
```

The suite checks that (1) every round completes with the right survivors and their weighted mean, or
aborts with `AbortError`; (2) honest clients facing an `AdversarialServer` (asking for both shares,
equivocating the survivor set, replaying, tampering) refuse; (3) fuzzed bytes raise only `SecAggError`.

This notebook runs the suite on our implementation, looks at what the strategies generate, then plants two
bugs and lets the suite find them."""),
    ("code", SETUP),
    ("code", """\
from hypothesis import Phase, settings

# check_aggregator inherits Hypothesis' active profile: no example database on disk, shrinking on, and
# derandomised, so that every run of this notebook draws the same examples and finds the same failures
settings.register_profile("notebook", database=None, print_blob=False, derandomize=True,
                          phases=(Phase.explicit, Phase.generate, Phase.shrink))
settings.load_profile("notebook")

from protocols import SecAggClient, SecAggServer
from protocols.testing import check_aggregator

EXAMPLES = 10 if QUICK else 50
check_aggregator(SecAggServer, SecAggClient, max_examples=EXAMPLES, max_n=8)
print(f"our SecAgg/SecAgg+ passed 3 properties × {EXAMPLES} examples")"""),
    ("md", """\
## What the strategies generate

`round_configs` draws SecAgg and SecAgg+ configurations that are valid by construction (n, degree k, a
threshold t in (k/2, k], `min_survivors`, ring width); `dropout_schedules(n)` maps clients to the stage at
which they vanish. The cell below records 200 draws."""),
    ("code", """\
from hypothesis import given, strategies as st
from protocols import Stage
from protocols.testing import dropout_schedules, round_configs

drawn = []

@settings(max_examples=200, database=None, phases=(Phase.generate,))
@given(round_configs(max_n=12, active=None), st.data())
def record(config, data):
    schedule = data.draw(dropout_schedules(config.n))
    k = len(config.graph()[config.client_ids[0]])
    drawn.append((config.n, k, config.threshold, config.bits, config.min_survivors, config.active_security,
                  [s.value for s in schedule.values()]))

record()
n_, k_, t_, bits_, ms_, active_, stages_ = zip(*drawn)
fig, ax = plt.subplots(1, 4, figsize=(18, 3.6))
ax[0].hist(n_, bins=np.arange(2.5, 13.5), rwidth=0.85)
ax[0].set(title="clients n", xlabel="n")
ax[1].scatter(np.array(k_) + rng.uniform(-0.2, 0.2, len(k_)), np.array(t_) + rng.uniform(-0.2, 0.2, len(t_)),
              s=8, c=np.array(n_), cmap="viridis")
ax[1].set(title="threshold vs degree (colour: n)", xlabel="degree k", ylabel="threshold t")
values, counts = np.unique(bits_, return_counts=True)
ax[2].bar([str(v) for v in values], counts)
ax[2].set(title="ring width", xlabel="bits")
stage_names = [s.value for s in Stage]
dropped_at = [s for stages in stages_ for s in stages]
ax[3].bar(range(len(stage_names)), [dropped_at.count(s) for s in stage_names])
ax[3].set_xticks(range(len(stage_names)), [s.replace("_", "\\n") for s in stage_names], fontsize=8)
ax[3].set(title="dropouts by stage")
fig.tight_layout()
print(f"{sum(active_)} of {len(drawn)} configs in active (malicious-server) mode; "
      f"{sum(1 for s in stages_ if not s)} rounds without dropouts")"""),
    ("md", """\
## Two planted bugs

1. `ForgetfulClient` answers the unmask request without checking it: a server that lists a survivor as
   dropped too gets *both* shares of that client's secrets and can unmask its input (the classic SecAgg
   pitfall that Bonawitz et al. 2017 guard against in the unmasking round).
2. `UnnormalisedServer` returns the weighted *sum* instead of the weighted mean.

Each is checked with the same call. Counting the rounds the suite runs (server sessions built) shows how much
work it takes to find the bug, including the properties that passed before the failing one and the
shrinking to a small example, which is printed below the error."""),
    ("code", """\
from protocols import messages

class ForgetfulClient(SecAggClient):
    def _unmask(self, msg):  # BUG: no "survivors ∩ dropped = ∅" check
        return messages.UnmaskShares(
            self.header(Stage.UNMASK),
            {v: self._held[v][0].to_bytes() for v in sorted(msg.survivors) if v in self._held},
            {v: self._held[v][1].to_bytes() for v in sorted(msg.dropped) if v in self._held},
        )

class UnnormalisedServer(SecAggServer):
    def result(self):
        res = super().result()
        res.aggregate = res.aggregate * res.weight_sum  # BUG: sum instead of mean
        return res

found = {}
for name, server_cls, client_cls in [("ForgetfulClient", SecAggServer, ForgetfulClient),
                                     ("UnnormalisedServer", UnnormalisedServer, SecAggClient)]:
    rounds = [0]

    def make_server(config, _cls=server_cls):
        rounds[0] += 1
        return _cls(config)

    t0 = time.perf_counter()
    try:
        check_aggregator(make_server, client_cls, max_examples=50, max_n=8)
        outcome = "NOT FOUND"
    except (AssertionError, ExceptionGroup) as exc:
        # several distinct failures come as a group; Hypothesis attaches each shrunk example as a note
        first = exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc
        example = next((note for note in getattr(first, "__notes__", []) if "test case" in note), "")
        outcome = str(first).splitlines()[0] + "\\n" + "\\n".join(example.splitlines()[:24])
    found[name] = (rounds[0], time.perf_counter() - t0)
    print(f"=== {name}: {rounds[0]} rounds, {found[name][1]:.1f} s\\n{outcome}\\n")"""),
    ("code", """\
fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
names = list(found)
ax[0].bar(names, [found[k][0] for k in names])
ax[0].set(title="rounds run until the bug was found and shrunk", ylabel="server sessions")
ax[1].bar(names, [found[k][1] for k in names], color="C1")
ax[1].set(title="time to a minimal failing example", ylabel="s")
fig.tight_layout()"""),
    ("md", """\
## Writing your own property with the shipped strategies

The strategies compose with any Hypothesis test. Here: for any valid encoder (`secagg.testing.encoders`,
any width from the smallest safe one to 64 bits), any update vectors within the clip
(`secagg.testing.update_vectors`) and any single dropout, SecAgg+ returns the plaintext baseline's modular
sum bit for bit."""),
    ("code", """\
from protocols import sim
from secagg.testing import encoders, update_vectors

N_CLIENTS = 6

@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(enc=encoders(max_clients=N_CLIENTS, clip=1.0, max_weight=1, norm="linf"),
       data=st.data())
def secagg_plus_equals_plaintext(enc, data):
    updates = [data.draw(update_vectors(dim=8, max_abs=1.0, dtype=np.float64)) for _ in range(N_CLIENTS)]
    dropouts = data.draw(dropout_schedules(N_CLIENTS, max_dropped=1))
    secure = sim.run("secagg+", updates, encoder=enc, neighbors=4, threshold=3, dropouts=dropouts, seed=7)
    plain = sim.run_plaintext(updates, encoder=enc, dropouts=dropouts, seed=7)
    assert secure.survivors == plain.survivors
    assert np.array_equal(secure.raw_sum, plain.raw_sum)

secagg_plus_equals_plaintext()
print(f"held for {EXAMPLES} examples")"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_dropouts_and_threat_models.ipynb": DROPOUTS,
    "03_masking_vs_homomorphic.ipynb": MASKING_VS_HE,
    "04_distributed_dp_on_heart_disease.ipynb": DP_HEART,
    "05_property_testing_your_aggregator.ipynb": PROPERTY_TESTING,
}


def write_all(folder: Path = HERE, names: list[str] | None = None) -> list[Path]:
    """Write the notebooks (all, or those whose file name starts with one of ``names``)
    into ``folder`` with empty outputs; return the paths."""
    paths = []
    for name, cells in NOTEBOOKS.items():
        if names and not any(name.startswith(prefix) for prefix in names):
            continue
        nb = _nb(cells)
        nbformat.validate(nb)
        path = folder / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


@contextmanager
def kernel_environment(python: str = sys.executable) -> Iterator[None]:
    """A ``python3`` kernelspec for ``python`` first on ``JUPYTER_PATH`` (so a system-wide
    spec cannot pick another environment), quick mode unless the caller set
    ``SECAGG_NOTEBOOK_QUICK``, and Hypothesis' storage in a temporary directory."""
    keys = ("JUPYTER_PATH", "SECAGG_NOTEBOOK_QUICK", "MPLBACKEND", "HYPOTHESIS_STORAGE_DIRECTORY")
    saved = {key: os.environ.get(key) for key in keys}
    with tempfile.TemporaryDirectory(prefix="secagg-jupyter-") as root:
        spec_dir = Path(root) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": argv, "display_name": KERNELSPEC["display_name"], "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        os.environ["JUPYTER_PATH"] = os.pathsep.join([root, *filter(None, [saved["JUPYTER_PATH"]])])
        os.environ.setdefault("SECAGG_NOTEBOOK_QUICK", "1")
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(Path(root) / "hypothesis")  # nothing written here
        os.environ.pop("MPLBACKEND", None)  # the notebooks choose the inline backend themselves
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def execute(nb: nbformat.NotebookNode, *, timeout: int = CELL_TIMEOUT_S) -> nbformat.NotebookNode:
    """Run every cell of ``nb`` in place (inside :func:`kernel_environment`), with ``notebooks/``
    as the working directory, and :func:`normalise` the result. A cell that raises
    raises ``nbclient.exceptions.CellExecutionError``."""
    client = nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    return normalise(nb)


def normalise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep only what a reader needs: merged stream chunks, no timing or transient fields, fixed metadata."""
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.pop("id", None)
        if cell.cell_type != "code":
            continue
        merged: list[nbformat.NotebookNode] = []
        for out in cell.outputs:
            out.pop("transient", None)
            last = merged[-1] if merged else None
            if out.output_type == "stream" and last is not None and last.output_type == "stream" and (
                last.name == out.name
            ):
                last.text += out.text
            else:
                merged.append(out)
        cell.outputs = merged
    nb.nbformat_minor = 4  # ids are optional before 4.5
    return nb


def output_structure(nb: nbformat.NotebookNode) -> list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
    """What each code cell shows, without the values: the streams it wrote (sorted, since
    stdout and stderr may interleave either way) and, in order, the MIME types of each
    figure or result. An error output is listed as ``("error", ename)``."""
    shape = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        streams = sorted({out.name for out in cell.outputs if out.output_type == "stream"})
        rich = tuple(
            ("error", out.ename) if out.output_type == "error" else (out.output_type, *sorted(out.get("data", {})))
            for out in cell.outputs
            if out.output_type != "stream"
        )
        shape.append((tuple(streams), rich))
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to rebuild, by file-name prefix (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the cells only, without outputs")
    args = parser.parse_args(argv)
    paths = write_all(names=args.names)
    if not paths:
        parser.error(f"no notebook starts with {args.names}")
    if args.no_execute:
        for path in paths:
            print(path)
        return 0
    with kernel_environment():
        for path in paths:
            nb = execute(nbformat.read(path, as_version=4))
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"{path} ({path.stat().st_size / 1e3:.0f} kB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
