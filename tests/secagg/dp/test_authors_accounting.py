"""The accountant against the DDGauss/Skellam authors' own code (google-research/federated).

``tests/vectors/ddgauss_authors_accounting.json`` holds ε values computed by
running the authors' ``distributed_dp/accounting_utils.py`` (provenance in the
file). Their RDP bound is the quantity our ``accountant="rdp"`` computes, so
the two must agree to floating-point noise; their heuristic scale must be
``plan_ddp``'s scale. The tight PLD route is checked against dp-accounting's
PLD for the continuous Gaussian at the same noise: never below it, barely above.
"""

from __future__ import annotations

from typing import Any

import pytest

from secagg.dp import ddgauss_epsilon, plan_ddp, skellam_epsilon
from tests.vectors import load

pytest.importorskip("dp_accounting")
VECTORS = load("ddgauss_authors_accounting")
KEYS = ("n_clients", "sampling_rate", "steps", "delta", "dim", "l2_clip", "noise_multiplier", "beta", "k", "bits")


def _ours(case: dict[str, Any], **options: Any) -> float:
    fn = ddgauss_epsilon if case["mechanism"] == "ddgauss" else skellam_epsilon
    return fn(**{k: case[k] for k in KEYS}, **options)


@pytest.mark.parametrize("case", VECTORS["rdp"], ids=lambda c: c["name"])
def test_rdp_accountant_matches_the_authors(case: dict[str, Any]) -> None:
    eps = _ours(case, accountant="rdp", pld_floor=False)
    assert eps == pytest.approx(case["epsilon"], rel=VECTORS["rel_tol"])


@pytest.mark.parametrize("case", VECTORS["rdp"], ids=lambda c: c["name"])
def test_scale_matches_the_authors_heuristic(case: dict[str, Any]) -> None:
    plan_keys = ("n_clients", "dim", "l2_clip", "noise_multiplier", "bits", "beta", "k")
    plan = plan_ddp(mechanism=case["mechanism"], **{k: case[k] for k in plan_keys})
    assert plan.dim == case["dim"]  # the vectors use power-of-two dimensions: no padding
    assert plan.scale == pytest.approx(case["scale"], rel=VECTORS["rel_tol"])


@pytest.mark.parametrize("mechanism", ["ddgauss", "skellam"])
def test_tight_accountant_sits_just_above_the_gaussian_pld(mechanism: str) -> None:
    (ref,) = VECTORS["gaussian_pld"]
    (case,) = [c for c in VECTORS["rdp"] if c["name"] == f"record_like_{mechanism}_32"]
    assert case["noise_multiplier"] == ref["noise_multiplier"] and case["steps"] == ref["steps"]
    eps = _ours(case, accountant="pld", pld_floor=False)
    assert ref["epsilon"] <= eps <= ref["epsilon"] + ref["abs_tol"]
    assert eps < case["epsilon"]  # and tighter than the authors' RDP bound at the same point
