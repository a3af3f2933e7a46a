"""Sans-I/O secure-aggregation protocols: the safe layer most users touch.

>>> from protocols import sim
>>> result = sim.run("secagg+", updates, dropouts={3: "share_keys"})  # doctest: +SKIP
"""

from . import sim
from .config import SecAggConfig, SecAggParams, choose_params
from .plaintext import PlaintextClient, PlaintextConfig, PlaintextServer
from .secagg import SecAggClient, SecAggServer
from .session import (
    ABORTED,
    DONE,
    AbortReason,
    AggregateResult,
    ClientSession,
    ServerSession,
    SessionState,
    Stage,
    as_stage,
)

__all__ = [
    "Stage",
    "SessionState",
    "DONE",
    "ABORTED",
    "as_stage",
    "AbortReason",
    "AggregateResult",
    "ServerSession",
    "ClientSession",
    "SecAggConfig",
    "SecAggParams",
    "choose_params",
    "SecAggServer",
    "SecAggClient",
    "PlaintextConfig",
    "PlaintextServer",
    "PlaintextClient",
    "sim",
]
