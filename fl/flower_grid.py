"""A synchronous in-process Flower :class:`Grid` for tests and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from secagg.errors import require_extra

require_extra("flwr", "flower")

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.app.error import Error  # noqa: E402
from flwr.common.constant import ErrorCode  # noqa: E402
from flwr.serverapp.grid import Grid  # noqa: E402

from .flower_wire import error_reason, message_stage  # noqa: E402

__all__ = ["InProcessGrid", "Traffic"]


@dataclass(frozen=True)
class Traffic:
    """One message and its reply through :class:`InProcessGrid`: protobuf bytes
    each way, the ClientApp's time, and the stage label (ours or Flower's)."""

    node_id: int
    stage: str | None
    down: int  # bytes to the node
    up: int  # bytes of its reply
    seconds: float
    delivered: bool  # False when the node "died" (no reply)


def _wire(content: RecordDict) -> tuple[RecordDict, int]:
    """A deep copy through Flower's protobuf encoding, and its size in bytes."""
    from flwr.common.serde import recorddict_from_proto, recorddict_to_proto

    proto = recorddict_to_proto(content)
    data = proto.SerializeToString()
    return recorddict_from_proto(type(proto).FromString(data)), len(data)


class InProcessGrid(Grid):
    """A synchronous :class:`Grid` running a ``ClientApp`` in this process (no
    Ray, no network), for tests and benchmarks.

    Every message and reply is copied through Flower's protobuf encoding, so
    nothing is shared by reference and :attr:`traffic` counts wire bytes.
    ``drop(node_id, stage_label)`` simulates a SuperNode that died: return
    ``"error"`` for the error reply a SuperLink gives for an unavailable node,
    ``"absent"`` for no reply at all (a timeout), ``None`` to deliver. A
    ClientApp that raises yields an error reply, as a SuperNode does.
    ``node_configs`` gives each node's ``Context.node_config``.
    """

    def __init__(
        self,
        client_app: Callable[..., Message],
        node_ids: Sequence[int],
        *,
        drop: Callable[[int, str | None], str | None] | None = None,
        node_configs: Mapping[int, dict[str, Any]] | None = None,
        run_id: int = 1,
    ) -> None:
        from flwr.supercore.run import Run

        try:  # messages are stamped with the process's task identity (flwr >= 1.41); a bare process sets it
            from flwr.supercore.task_identity import TaskIdentity

            if getattr(TaskIdentity, "_run_id", None) is None:
                TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, 1
        except ImportError:  # pragma: no cover - older layouts have no task identity
            pass
        self._run = Run.create_empty(run_id)
        self.client_app = client_app
        configs = node_configs or {}
        self.contexts = {
            int(i): Context(run_id, int(i), dict(configs.get(int(i), {})), RecordDict(), {}) for i in node_ids
        }
        self.drop = drop
        self.traffic: list[Traffic] = []
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            nid, md = msg.metadata.dst_node_id, msg.metadata
            content, down = _wire(msg.content)
            stage = message_stage(content)
            inbound = Message(content, nid, md.message_type, group_id=md.group_id)
            verdict = self.drop(nid, stage) if self.drop is not None else None
            start = time.perf_counter()
            reply: Message | None
            if verdict == "absent":
                reply, up = None, 0
            elif verdict == "error":
                reply, up = (
                    Message(Error(ErrorCode.NODE_UNAVAILABLE, "node unavailable (simulated)"), reply_to=inbound),
                    0,
                )
            else:
                try:
                    out = self.client_app(inbound, self.contexts[nid])
                    if out.has_error():
                        reply, up = Message(out.error, reply_to=inbound), 0
                    else:
                        copied, up = _wire(out.content)
                        reply = Message(copied, reply_to=inbound)
                except Exception as exc:  # noqa: BLE001 - a SuperNode turns any ClientApp failure into an error reply
                    reply, up = (
                        Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, error_reason(exc)), reply_to=inbound),
                        0,
                    )
            self.traffic.append(Traffic(nid, stage, down, up, time.perf_counter() - start, reply is not None))
            ids.append(mid := str(len(self.traffic)))
            if reply is not None:
                self._replies[mid] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return self.pull_messages(self.push_messages(messages))
