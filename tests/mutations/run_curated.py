"""Curated mutation testing: each known-dangerous bug must be caught by a named test.

Every :class:`Mutation` names a source file, an exact snippet (which must occur
exactly once), its replacement, and the pytest selection that must kill it.
The runner copies the repository into a temporary directory (the working tree
as git lists it, or ``--source head`` for the last commit; the working tree
itself is never written), checks that each selection passes unmutated, then
applies one mutation at a time to the copy and runs its selection there.

A mutation is *killed* only when pytest exits with code 1 and reports at least
one failed test (a failing assertion, ``pytest.raises`` that did not raise, an
unexpected exception in the test body). A collection or import error (exit 2
or 4), a setup error without failures, or a timeout leaves it *survived*.

Prints a JSON summary on stdout; exits 0 when every mutation was killed, 1
when one survived, 2 when the run itself is unsound (a snippet not found
exactly once, or a selection that fails without any mutation).

Usage: ``python tests/mutations/run_curated.py [--source worktree|head]
[--only NAME ...] [--timeout S] [--jobs N] [--list]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug: ``old`` (exactly once in ``path``) becomes ``new``;
    ``tests`` (pytest arguments, relative to the repository root) must fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str

    def apply(self, source: str) -> str:
        count = source.count(self.old)
        if count != 1:
            raise LookupError(f"{self.name}: snippet found {count} times in {self.path}, expected once")
        return source.replace(self.old, self.new)


CURATED: tuple[Mutation, ...] = (
    Mutation(
        "self_mask_seed_constant",
        "protocols/secagg_client.py",
        "self._b_seed = secrets.token_bytes(SEED_BYTES)",
        "self._b_seed = bytes(SEED_BYTES)",
        ("tests/protocols/test_secagg_secrets.py",),
        "every client's self mask b_u is the same public PRG stream: the server strips it without any share",
    ),
    Mutation(
        "paillier_r_is_one",
        "secagg/paillier.py",
        "return [int((n * m + 1) * pool.take() % n2) for m in plaintexts]",
        "return [int((n * m + 1) * 1 % n2) for m in plaintexts]",
        ("tests/secagg/test_paillier_randomness.py",),
        "r = 1: encryption is deterministic and (c - 1) / n is the plaintext, no key needed",
    ),
    Mutation(
        "aead_tag_not_checked",
        "secagg/aead.py",
        "        return cipher.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], aad)\n",
        "        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n"
        "        ctr = modes.CTR(ciphertext[:NONCE_BYTES] + b'\\x00\\x00\\x00\\x02')  # GCM's first data block\n"
        "        return Cipher(algorithms.AES(key), ctr).decryptor().update(ciphertext[NONCE_BYTES:-TAG_BYTES])\n",
        ("tests/secagg/test_aead.py",),
        "GCM decrypted as plain CTR: honest ciphertexts still open, forgeries too",
    ),
    Mutation(
        "reveal_both_shares",
        "protocols/secagg_client.py",
        "mask_key_shares = {v: self._held[v][1].to_bytes() for v in sorted(dropped)}",
        "mask_key_shares = {v: self._held[v][1].to_bytes() for v in sorted(dropped | set(held_survivors))}",
        ("tests/protocols/test_secagg_secrets.py::test_no_client_reveals_both_shares_of_anyone",),
        "a client sends the mask-key share of a survivor next to its self-mask share: the server learns x_u",
    ),
    Mutation(
        "dp_noise_times_zero",
        "secagg/dp/encoder.py",
        "out[:-1] = ints + noise\n",
        "out[:-1] = ints + noise * 0\n",
        ("tests/secagg/dp/test_encoder.py",),
        "the distributed noise share is dropped: the released sum has no DP noise",
    ),
    Mutation(
        "epsilon_halved",
        "secagg/dp/accountant.py",
        "    return max(0.0, float(eps[best])), float(a[best])\n",
        "    return max(0.0, float(eps[best]) / 2), float(a[best])\n",
        ("tests/secagg/dp/test_accountant.py",),
        "the RDP-to-(ε, δ) conversion reports half the privacy loss",
    ),
    Mutation(
        "paillier_pool_element_reused",
        "secagg/paillier.py",
        "        return self._items.pop()\n",
        "        return self._items[-1]\n",
        ("tests/secagg/test_paillier_randomness.py::test_each_ciphertext_takes_one_fresh_pool_element",),
        "the same r^n obfuscates two ciphertexts: their quotient is a ratio of plaintext encodings",
    ),
    Mutation(
        "paillier_slot_one_bit_short",
        "secagg/paillier.py",
        "slot_bits = (2 * self.bound * self.n_clients).bit_length()\n",
        "slot_bits = (2 * self.bound * self.n_clients).bit_length() - 1\n",
        ("tests/secagg/test_paillier_randomness.py", "-k", "slot or extreme"),
        "the n-client sum of a slot carries into the next slot",
    ),
    Mutation(
        "sign_bit_dropped",
        "secagg/encoding.py",
        "bits = (max_clients * worst).bit_length() + 1  # +1 for the sign",
        "bits = (max_clients * worst).bit_length()",
        ("tests/secagg/test_encoding.py",),
        "the planned ring has no sign bit: a sum of negative updates wraps to a large positive one",
    ),
    Mutation(
        "aead_nonce_constant",
        "secagg/aead.py",
        "nonce = os.urandom(NONCE_BYTES)",
        "nonce = bytes(NONCE_BYTES)",
        ("tests/secagg/test_aead.py",),
        "nonce reuse under one key: the XOR of two plaintexts leaks and GHASH forgeries follow",
    ),
    Mutation(
        "graph_seed_constant",
        "protocols/config.py",
        "graph_seed: bytes = field(default_factory=lambda: os.urandom(GRAPH_SEED_BYTES))",
        "graph_seed: bytes = field(default_factory=lambda: bytes(GRAPH_SEED_BYTES))",
        ("tests/protocols/test_config_randomness.py",),
        "every round uses one public graph: colluders chosen after seeing it can surround a client",
    ),
    Mutation(
        "survivor_count_check_removed",
        "protocols/secagg_client.py",
        "        if count < needed:\n            raise AbortError(\n",
        "        if False:\n            raise AbortError(\n",
        ("tests/protocols/test_secagg_secrets.py", "-k", "survivor_set"),
        "a client unmasks for a survivor set below max(t, min_survivors): the server can isolate one input",
    ),
    # Demonstrations that the strengthened weak tests can fail.
    Mutation(
        "masking_skipped",
        "protocols/secagg_client.py",
        'self_seed=self._b_seed, pair_seeds=pair_seeds, backend="numpy"',
        'self_seed=None, pair_seeds=[], backend="numpy"',
        ("tests/protocols/test_transcript_leak.py",),
        "the client sends its plaintext encoding: the transcript-leak check must see it",
    ),
    Mutation(
        "ckks_chunks_half_full",
        "secagg/ckks.py",
        "        for start in range(0, values.size, SLOTS):\n"
        "            yield ts.ckks_vector(self._ctx, values[start:start + SLOTS]).serialize()\n",
        "        for start in range(0, values.size, SLOTS // 2):\n"
        "            yield ts.ckks_vector(self._ctx, values[start:start + SLOTS // 2]).serialize()\n",
        ("tests/secagg/test_ckks_wire.py",),
        "each ciphertext carries half the slots: twice the upload, while bytes_per_param still says 32",
    ),
    Mutation(
        "colluder_quota_overstated",
        "protocols/config.py",
        "return 2 * t - (k + 1) if active else t\n",
        "return 2 * t - (k + 1) if active else t + 10\n",
        ("tests/protocols/test_fcp_params.py",),
        "the parameter finder believes colluders need 10 more shares: it picks a smaller, weaker (k, t)",
    ),
    Mutation(
        "dp_scale_ten_percent_high",
        "secagg/dp/planning.py",
        "    return numer / denom\n",
        "    return 1.1 * numer / denom\n",
        ("tests/secagg/dp/test_encoder.py", "-k", "wrap_rate"),
        "the DP scale leaves 10 % less headroom than planned: the sum wraps about twice as often",
    ),
    Mutation(
        "layering_broken",
        "secagg/aead.py",
        "from .errors import ConfigError, IntegrityError, require_bytes\n",
        "from .errors import ConfigError, IntegrityError, require_bytes\n\n\ndef _probe():\n    from protocols import config\n",
        ("tests/test_layering.py",),
        "a function in secagg imports protocols",
    ),
)


def _sources(source: str) -> list[str]:
    if source == "head":
        return []  # git archive extracts everything
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p]


def make_copy(dest: Path, source: str) -> None:
    """A copy of the repository at ``dest``: the working tree's tracked and
    untracked-but-not-ignored files, or the tree of HEAD."""
    dest.mkdir(parents=True, exist_ok=True)
    if source == "head":
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    for rel in _sources(source):
        src = REPO / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy's packages shadow the editable install of the working tree.
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a same-size edit in the same second must not reuse a stale .pyc
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def check_isolation(copy: Path) -> None:
    """Fail unless the copy's packages are the ones its tests import."""
    code = "import secagg, protocols, fl; print(secagg.__file__, protocols.__file__, fl.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=_env(copy), capture_output=True,
                         text=True, check=True).stdout.split()
    outside = [f for f in out if not Path(f).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise RuntimeError(f"the copy imports packages from outside itself: {outside}")


def run_pytest(copy: Path, tests: Sequence[str], timeout: float) -> dict[str, object]:
    """Run ``tests`` in ``copy`` (slow tests excluded unless ``tests`` has its own ``-m``);
    return rc, failure count, first failures, and seconds."""
    report = copy / ".mutation-junit.xml"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-o", "addopts=", "--junitxml", str(report), *(() if "-m" in tests else ("-m", "not slow")), *tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": None, "failed": 0, "errors": 0, "timed_out": True, "seconds": round(time.monotonic() - start, 1)}
    failed, errors, first = 0, 0, []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            for child in case:
                if child.tag == "failure":
                    failed += 1
                    first.append(f"{case.get('classname')}::{case.get('name')}: {(child.get('message') or '')[:160]}")
                elif child.tag == "error":
                    errors += 1
    return {
        "rc": proc.returncode, "failed": failed, "errors": errors, "timed_out": False,
        "seconds": round(time.monotonic() - start, 1), "failures": first[:3],
        "tail": proc.stdout[-600:] if proc.returncode not in (0, 1) else "",
    }


def killed(result: dict[str, object]) -> bool:
    """Killed means a test failed: exit code 1 with at least one failure."""
    return result["rc"] == 1 and int(result["failed"]) > 0  # type: ignore[call-overload]


def _run_one(copy: Path, mutation: Mutation, timeout: float) -> dict[str, object]:
    target = copy / mutation.path
    original = target.read_text()
    try:
        target.write_text(mutation.apply(original))
        result = run_pytest(copy, mutation.tests, timeout)
    finally:
        target.write_text(original)
    status = "killed" if killed(result) else "survived"
    return {"name": mutation.name, "status": status, "path": mutation.path, "tests": list(mutation.tests), **result}


def run(mutations: Sequence[Mutation], *, source: str, timeout: float, jobs: int, baseline: bool) -> dict[str, object]:
    """Baseline each selection, then each mutation; the summary as a dict."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="secagg-mutations-") as tmp:
        copies = [Path(tmp) / f"copy{i}" for i in range(max(1, jobs))]
        for copy in copies:
            make_copy(copy, source)
        check_isolation(copies[0])
        stale = []
        for mutation in mutations:
            try:
                mutation.apply((copies[0] / mutation.path).read_text())
            except (LookupError, FileNotFoundError) as exc:
                stale.append(f"{mutation.name}: {exc}")
        if stale:
            return {"ok": False, "unsound": "stale mutations", "stale": stale}
        broken = {}
        if baseline:
            selections = sorted({m.tests for m in mutations})
            with ThreadPoolExecutor(len(copies)) as pool:
                results = pool.map(lambda i_sel: run_pytest(copies[i_sel[0] % len(copies)], i_sel[1], timeout),
                                   enumerate(selections))
                for sel, res in zip(selections, results):
                    if res["rc"] != 0:
                        broken[" ".join(sel)] = res
        if broken:
            return {"ok": False, "unsound": "a selection fails without any mutation", "baseline": broken}
        with ThreadPoolExecutor(len(copies)) as pool:
            # One mutation at a time per copy: worker i owns copies[i].
            chunks = [list(mutations[i::len(copies)]) for i in range(len(copies))]
            per_copy = pool.map(lambda i: [_run_one(copies[i], m, timeout) for m in chunks[i]], range(len(copies)))
            outcomes = sorted((r for rs in per_copy for r in rs), key=lambda r: [m.name for m in mutations].index(r["name"]))
    survived = [r["name"] for r in outcomes if r["status"] != "killed"]
    return {
        "ok": not survived, "source": source, "killed": len(outcomes) - len(survived), "survived": survived,
        "seconds": round(time.monotonic() - started, 1), "mutations": outcomes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("worktree", "head"), default="worktree")
    parser.add_argument("--only", nargs="*", default=None, help="run only these mutation names")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per pytest run")
    parser.add_argument("--jobs", type=int, default=1, help="copies run side by side")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of each selection")
    parser.add_argument("--list", action="store_true", help="print the curated mutations and exit")
    args = parser.parse_args(argv)
    mutations = [m for m in CURATED if args.only is None or m.name in args.only]
    if args.only and len(mutations) != len(set(args.only)):
        parser.error(f"unknown mutation name in {args.only}")
    if args.list:
        print(json.dumps([{"name": m.name, "path": m.path, "tests": m.tests, "why": m.why} for m in mutations], indent=2))
        return 0
    summary = run(mutations, source=args.source, timeout=args.timeout, jobs=args.jobs, baseline=not args.no_baseline)
    print(json.dumps(summary, indent=2))
    if "unsound" in summary:
        return 2
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
