"""Sans-I/O secure-aggregation protocols: the safe layer most users touch."""

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
]
