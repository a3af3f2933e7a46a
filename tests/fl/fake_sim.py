"""A tiny stand-in for ``protocols.sim`` with ``run_plaintext`` semantics, for
the fl tests only (never imported by the product): it quantises each weighted
update to a fixed-point grid, sums the survivors' integers and decodes. Tests
use it where they check the trainer rather than the protocols (fast, and
independent of the protocol code).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from protocols.session import AggregateResult
from secagg.errors import AbortError

PRECISION = 2.0**-20
LOST_STAGES = ("advertise_keys", "share_keys", "masked_input")  # the input never arrives


def run_plaintext(updates: Any, *, weights=None, dropouts=None, threshold=None, neighbors=None, seed=None,
                  active_security=False, encoder=None, min_survivors=None) -> AggregateResult:
    ups = [np.asarray(u, np.float64) for u in updates]
    ws = list(weights) if weights is not None else [1] * len(ups)
    drops = {int(i): str(s) for i, s in (dropouts or {}).items()}
    survivors = [i for i in range(len(ups)) if drops.get(i) not in LOST_STAGES]
    if len(survivors) < (min_survivors or 1):
        raise AbortError("too few survivors", needed=min_survivors, got=len(survivors))
    total = sum(np.round(ws[i] * ups[i] / PRECISION).astype(np.int64) for i in survivors)
    wsum = sum(ws[i] for i in survivors)
    d = ups[0].size
    return AggregateResult(aggregate=total * PRECISION / wsum, survivors=survivors,
                           dropped=sorted(set(range(len(ups))) - set(survivors)), weight_sum=float(wsum),
                           weighted=weights is not None,
                           bytes_up={i: 4 * (d + 1) for i in survivors}, bytes_down={i: 0 for i in range(len(ups))})


def run(protocol: str, updates: Any, **kwargs: Any) -> AggregateResult:
    return run_plaintext(updates, **kwargs)
