"""choose_params against known answers from outside: the semi-honest
(CURIOUS_SERVER) and semi-malicious rows of Google FCP's
``fcp/secagg/server/graph_parameter_finder_test.cc`` for n <= 1000.

FCP's conventions (``graph_parameter_finder.cc``): k neighbours drawn from the
n clients, of which floor(a n) are adversarial; a semi-honest server breaks a
client with t adversarial neighbours, a semi-malicious one with 2t - k. Ours
(``protocols.config.colluder_quota``): k neighbours plus the client itself hold
shares, t colluders break a semi-honest round, 2t - (k + 1) a malicious one.

Ours must never be less secure: under the binomial model (each neighbour
adversarial with probability a), our per-neighbourhood break probability is at
most FCP's at its (degree, threshold). A ConfigError (no parameters meet our
bounds) refuses the round, which is more secure.
"""

from __future__ import annotations

import math

import pytest

from protocols.config import binomial_tail, choose_params, hypergeometric_tail
from secagg.errors import ConfigError

CURIOUS, SEMI_MALICIOUS = "CURIOUS_SERVER", "SEMI_MALICIOUS_SERVER"
FCP_SECURITY_BITS_PER_EVENT = 41  # FCP splits 2^-40 over two bad events

# (n, adversarial rate, dropout rate, adversary class, expected degree, expected threshold)
FCP_ROWS = [
    (100, 0.45, 0.45, CURIOUS, 92, 46),
    (1000, 0.45, 0.45, CURIOUS, 822, 417),
    (10, 0.33, 0.33, CURIOUS, 8, 4),
    (100, 0.33, 0.33, CURIOUS, 68, 34),
    (1000, 0.33, 0.33, CURIOUS, 286, 150),
    (100, 0.3, 0.3, SEMI_MALICIOUS, 92, 62),
    (1000, 0.3, 0.3, SEMI_MALICIOUS, 872, 584),
    (10, 0.05, 0.33, CURIOUS, 4, 2),
    (100, 0.05, 0.33, CURIOUS, 28, 6),
    (1000, 0.05, 0.33, CURIOUS, 72, 24),
    (10, 0.05, 0.33, SEMI_MALICIOUS, 8, 5),
    (100, 0.05, 0.33, SEMI_MALICIOUS, 72, 39),
    (1000, 0.05, 0.33, SEMI_MALICIOUS, 398, 223),
    (10, 0.33, 0.05, CURIOUS, 4, 4),
    (100, 0.33, 0.05, CURIOUS, 34, 29),
    (1000, 0.33, 0.05, CURIOUS, 78, 60),
    (10, 0.33, 0.05, SEMI_MALICIOUS, 4, 4),
    (100, 0.33, 0.05, SEMI_MALICIOUS, 42, 37),
    (1000, 0.33, 0.05, SEMI_MALICIOUS, 132, 109),
]


def _fcp_quota(k: int, t: int, adversary: str) -> int:
    return t if adversary == CURIOUS else 2 * t - k


def _our_quota(k: int, t: int, active: bool) -> int:
    """Colluders among k neighbours that break a client whose secrets k + 1 holders share (written out
    here rather than taken from the code under test)."""
    return 2 * t - (k + 1) if active else t


def _row_id(row) -> str:
    n, a, d, adversary, k, t = row
    return f"n{n}-a{a}-d{d}-{adversary.split('_')[0].lower()}"


# choose_params scans every degree: minutes per row at n = 1000.
ROWS = [pytest.param(*row, id=_row_id(row), marks=[pytest.mark.slow] if row[0] > 100 else []) for row in FCP_ROWS]


@pytest.mark.parametrize(("n", "a", "d", "adversary", "k_fcp", "t_fcp"), ROWS)
def test_choose_params_is_never_less_secure_than_fcp(n, a, d, adversary, k_fcp, t_fcp) -> None:
    active = adversary == SEMI_MALICIOUS
    fcp = binomial_tail(k_fcp, a, _fcp_quota(k_fcp, t_fcp, adversary))
    try:
        ours = choose_params(n, dropout_rate=d, corrupt_rate=a, active=active)
    except ConfigError:
        return  # refused: no round runs, which is more secure than FCP's parameters
    k, t = ours.neighbors, ours.threshold
    assert 2 * t > k + 1, "our threshold must be a strict majority of the k + 1 share holders"
    mine = binomial_tail(k, a, _our_quota(k, t, active))
    assert mine <= fcp * (1 + 1e-9), (
        f"choose_params(n={n}) gave k={k}, t={t}: per-neighbourhood break probability {mine:.3g} "
        f"exceeds FCP's {fcp:.3g} at k={k_fcp}, t={t_fcp}"
    )


@pytest.mark.parametrize(("n", "a", "d", "adversary", "k_fcp", "t_fcp"), [pytest.param(*r, id=_row_id(r)) for r in FCP_ROWS])
def test_fcp_rows_meet_fcp_bound_as_transcribed(n, a, d, adversary, k_fcp, t_fcp) -> None:
    # Checks our reading of FCP's conventions: with floor(a n) adversaries among n, a union bound over
    # the n clients of P[hypergeometric >= quota] is at most 2^-41.
    adversaries = math.floor((a + 1e-14) * n)
    assert k_fcp % 2 == 0 and k_fcp < n - 1
    quota = _fcp_quota(k_fcp, t_fcp, adversary)
    assert n * hypergeometric_tail(n, adversaries, k_fcp, quota) <= 2.0 ** -FCP_SECURITY_BITS_PER_EVENT
    # One threshold less would not meet it (t is FCP's smallest secure threshold), unless t hit FCP's floor of 2.
    if t_fcp > 2:
        lower = _fcp_quota(k_fcp, t_fcp - 1, adversary)
        assert n * hypergeometric_tail(n, adversaries, k_fcp, lower) > 2.0 ** -FCP_SECURITY_BITS_PER_EVENT or lower <= 0
