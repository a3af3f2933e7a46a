"""Hypothesis fuzzing of sessions built on the core (``protocols.session``).

A protocol plugs in a :class:`FuzzTarget` (a name and a factory of honest
rounds) and calls :func:`check_server` or :func:`check_client` inside a
``@given(st.data())`` test::

    TARGET = FuzzTarget("plaintext", make_plaintext_round)

    @given(st.data())
    def test_server_survives_fuzzing(data):
        check_server(TARGET, data)

Both walk a live honest round and, at every stage, interleave honest
deliveries with random, mutated, truncated, oversized, out-of-order,
duplicate, misaddressed and cross-protocol messages (:func:`hostile_message`),
as bytes, bytearray or memoryview. They assert, for every delivery:

* only :class:`SecAggError` subclasses escape;
* after a rejection the state is unchanged, or (server) the sender is dropped
  with an error naming it, or the round is ABORTED;
* tracemalloc's peak stays within ``4 × len(message) + 1 MiB`` (and, for a
  target with ``native_memory=True``, so does the growth of the process's
  peak RSS, which sees allocations of native libraries such as TenSEAL);

and that the server reaches DONE or ABORTED through ``close_stage()`` calls.
"""

from __future__ import annotations

import resource
import struct
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from hypothesis import strategies as st

from secagg.errors import AbortError, SecAggError

from . import messages as m
from .session import ABORTED, DONE, ClientCore, ServerCore, Stage

__all__ = [
    "FuzzTarget",
    "Transcript",
    "record_transcript",
    "hostile_message",
    "check_server",
    "check_client",
    "MEMORY_FACTOR",
    "MEMORY_SLACK",
]

MEMORY_FACTOR = 4  # decoding may hold the input, one copy and the decoded fields
MEMORY_SLACK = 1 << 20  # interpreter noise: exception objects, small dicts, tracebacks
_MAX_OVERSIZE = 1 << 20  # largest junk body appended; keeps an example under a few MiB
_MAX_ACTIONS = 8  # hostile deliveries per stage


@dataclass(frozen=True)
class FuzzTarget:
    """A protocol under fuzzing: ``make_round(session_id)`` returns a fresh,
    honest ``(server, {client_id: client})`` for that session id.
    ``native_memory``: also bound the growth of the peak RSS per delivery
    (for sessions whose libraries allocate outside tracemalloc's view).
    ``max_withheld``: the most honest replies the server fuzzer withholds
    over a round (default: any, each at random), so rounds that need most
    clients (``min_survivors`` near n, or SecAgg+ neighbourhoods that
    tolerate few dropouts) reach their late stages; hostile messages still
    drop their senders. ``client_focus``: the client fuzzer sends hostile
    messages at one stage per example, drawn at random, and only honest ones
    elsewhere, so a client's late stages are fuzzed as often as its first
    (a client aborts for good on its first bad body)."""

    name: str
    make_round: Callable[[bytes], tuple[ServerCore, Mapping[int, ClientCore]]]
    native_memory: bool = False
    max_withheld: int | None = None
    client_focus: bool = False


@dataclass(frozen=True)
class Transcript:
    """Every message of one honest round, as bytes: ``down`` (server to
    client) and ``up`` (client to server) entries of ``(stage, client_id, data)``."""

    down: tuple[tuple[Stage, int, bytes], ...]
    up: tuple[tuple[Stage, int, bytes], ...]


def record_transcript(target: FuzzTarget, session_id: bytes) -> Transcript:
    """Run one honest round of ``target`` and keep its messages."""
    server, clients = target.make_round(session_id)
    down: list[tuple[Stage, int, bytes]] = []
    up: list[tuple[Stage, int, bytes]] = []
    outbox = server.start()
    for _ in range(len(server.stages) + 1):
        stage = server.state
        if not isinstance(stage, Stage):
            break
        for cid, msg in outbox.items():
            data = msg.to_bytes()
            down.append((stage, cid, data))
            reply = clients[cid].handle(data)
            if reply is not None:
                up.append((stage, cid, reply.to_bytes()))
                server.receive(cid, up[-1][2])
        outbox = server.close_stage()
    return Transcript(tuple(down), tuple(up))


# ---------------------------------------------------------------- hostile messages


def _field_value(kind: m.FieldKind) -> st.SearchStrategy[Any]:
    if kind is m.FieldKind.U8:
        return st.integers(0, 0xFF)
    if kind is m.FieldKind.U32:
        return st.integers(0, 0xFFFFFFFF)
    if kind is m.FieldKind.U64:
        return st.integers(0, (1 << 64) - 1)
    if kind is m.FieldKind.BYTES:
        return st.binary(max_size=80)
    if kind is m.FieldKind.IDS:
        return st.sets(st.integers(0, 20), max_size=6).map(lambda s: tuple(sorted(s)))
    if kind is m.FieldKind.BYTES_MAP:
        return st.dictionaries(st.integers(0, 20), st.binary(max_size=40), max_size=4)
    dtype = st.sampled_from([np.uint32, np.uint64])
    return st.tuples(dtype, st.integers(0, 40)).map(lambda t: np.zeros(t[1], dtype=t[0]))


@st.composite
def _any_registered_message(draw: st.DrawFn, header: m.Header, kind: int | None = None) -> bytes:
    """A well-formed message of ``kind`` (default: any registered kind, any
    protocol's) under ``header``, with random field values."""
    classes = m.message_classes()
    if kind is None:
        kind = draw(st.sampled_from(sorted(classes)))
    cls = classes[kind]
    values = {name: draw(_field_value(fk)) for name, fk in cls.BODY}
    try:
        return cls(header=header, **values).to_bytes()  # type: ignore[call-arg]  # each kind's own fields
    except SecAggError:  # the class's own validation refused the values: send the header alone
        return header.to_bytes(kind)


@st.composite
def hostile_message(draw: st.DrawFn, honest: bytes, others: list[bytes]) -> bytes:
    """A hostile variant of ``honest`` (a valid message for the receiver's
    current stage): mutated, truncated, extended, oversized, a huge entry
    count behind the honest header, another protocol's or session's header,
    any registered kind, the expected kind with random fields, pure noise, or one of ``others`` (messages of other
    stages, parties or directions: out of order, misaddressed, reflected)."""
    kind, header = m.decode_header(honest)
    how = draw(
        st.sampled_from(
            ["flip", "truncate", "extend", "oversize", "huge_count", "rebind", "any_kind", "reshape", "noise", "other"]
        )
    )
    if how == "flip":
        pos = draw(st.integers(0, len(honest) - 1))
        return honest[:pos] + bytes([honest[pos] ^ draw(st.integers(1, 255))]) + honest[pos + 1 :]
    if how == "truncate":
        return honest[: draw(st.integers(0, len(honest) - 1))]
    if how == "extend":
        return honest + draw(st.binary(min_size=1, max_size=16))
    if how == "oversize":
        return honest + bytes(draw(st.integers(1, _MAX_OVERSIZE)))
    if how == "huge_count":  # a u32 count (entries, length or words) far beyond the body
        count = draw(st.sampled_from([500_000, 1 << 24, 0xFFFFFFFF]))
        body = struct.pack("<B", draw(st.sampled_from([4, 8]))) + struct.pack("<Q", count)
        return header.to_bytes(kind) + draw(st.sampled_from([struct.pack("<I", count), body])) + bytes(64)
    if how == "rebind":
        protocol = draw(st.sampled_from(sorted(m.PROTOCOL_IDS.values())))
        session = draw(st.sampled_from([header.session_id, bytes(16), b"\xff" * 16]))
        round_ = draw(st.sampled_from([header.round, header.round + 1]))
        stage = draw(st.sampled_from(list(Stage)))
        rebound = m.Header(protocol, session, round_, stage, header.sender, header.receiver)
        return rebound.to_bytes(kind) + honest[m.HEADER_BYTES :]
    if how == "any_kind":
        return draw(_any_registered_message(header))
    if how == "reshape":  # the expected kind and header, well formed, with random fields
        return draw(_any_registered_message(header, kind))
    if how == "noise":
        return draw(st.binary(max_size=200))
    return draw(st.sampled_from(others)) if others else honest


def _as_buffer(draw: Callable[..., Any], data: bytes) -> bytes | bytearray | memoryview:
    wrap = draw(st.sampled_from([bytes, bytearray, memoryview]))
    return wrap(data)


def _peak_rss() -> int:
    """The process's peak resident set so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _bounded(call: Callable[[], Any], size: int, native: bool = False) -> Any:
    """Run ``call`` under tracemalloc; assert its peak against ``size`` bytes
    (with ``native``, the peak RSS's growth too: it only rises past the
    earlier peak, so this bounds what the call adds on top of it)."""
    limit = MEMORY_FACTOR * size + MEMORY_SLACK
    rss_before = _peak_rss() if native else 0
    tracemalloc.start()
    try:
        return call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= limit, f"peak {peak} bytes for a {size}-byte message (limit {limit})"
        if native:
            growth = _peak_rss() - rss_before
            assert growth <= limit, f"peak RSS grew by {growth} bytes for a {size}-byte message (limit {limit})"


# ---------------------------------------------------------------- server side


def _server_delivery(server: ServerCore, cid: int, data: Any, native: bool = False) -> None:
    """Deliver and check the rejection contract."""
    before = server.snapshot()
    size = len(memoryview(data).cast("B"))
    try:
        _bounded(lambda: server.receive(cid, data), size, native)
    except SecAggError as exc:
        if server.state is ABORTED or server.snapshot() == before:
            return
        assert exc.client_id == cid and exc.sender_dropped and cid in server.errors, (
            f"rejection changed the state without dropping the sender: {exc!r}"
        )
        assert cid not in server.expected


def check_server(target: FuzzTarget, data: st.DataObject) -> None:
    """Fuzz ``target``'s server (see the module docstring for what is asserted)."""
    session_id = data.draw(st.binary(min_size=16, max_size=16), label="session_id")
    reference = record_transcript(target, session_id)
    server, clients = target.make_round(session_id)
    outbox = server.start()
    withheld = 0
    for _ in range(len(server.stages) + 1):
        stage = server.state
        if not isinstance(stage, Stage):
            break
        replies = {}
        for cid, msg in outbox.items():
            try:
                reply = clients[cid].handle(msg.to_bytes())
            except SecAggError:
                continue
            if reply is not None:
                replies[cid] = reply.to_bytes()
        others = [d for _, _, d in reference.up + reference.down] + list(replies.values())
        ids = sorted(server.client_ids)
        for _ in range(data.draw(st.integers(0, _MAX_ACTIONS), label="actions")):
            if not isinstance(server.state, Stage) or not replies:
                break
            cid = data.draw(st.sampled_from(sorted(replies)), label="about")
            honest = replies[cid]
            if data.draw(st.booleans(), label="hostile"):
                payload = data.draw(hostile_message(honest, others), label="hostile message")
            else:
                payload = honest  # honest, or a duplicate when already delivered
            sender = data.draw(st.sampled_from([cid, cid, *ids, max(ids) + 1]), label="sender")
            _server_delivery(server, sender, _as_buffer(data.draw, payload), target.native_memory)
        for cid in sorted(replies):  # the rest arrive (or are refused) as sent
            if withheld == target.max_withheld or data.draw(st.booleans(), label="deliver"):
                _server_delivery(server, cid, replies[cid], target.native_memory)
            else:
                withheld += 1
        try:
            outbox = server.close_stage()
        except SecAggError:
            assert server.state is ABORTED
            outbox = {}
    assert server.state in (DONE, ABORTED), f"{target.name}: server stuck at {server.state}"
    assert server.close_stage() == {}
    if server.state is ABORTED:
        try:
            server.result()
        except AbortError:
            return
        raise AssertionError("result() of an aborted round must raise AbortError")
    server.result()


# ---------------------------------------------------------------- client side


def _client_delivery(client: ClientCore, data: Any, native: bool = False) -> Any:
    before = client.state
    size = len(memoryview(data).cast("B"))
    try:
        return _bounded(lambda: client.handle(data), size, native)
    except SecAggError:
        assert client.state is before or client.state is ABORTED, (
            f"rejection moved the client from {before} to {client.state}"
        )
        return None


def check_client(target: FuzzTarget, data: st.DataObject) -> None:
    """Fuzz one client of ``target`` inside a live honest round."""
    session_id = data.draw(st.binary(min_size=16, max_size=16), label="session_id")
    reference = record_transcript(target, session_id)
    server, clients = target.make_round(session_id)
    victim = data.draw(st.sampled_from(sorted(clients)), label="victim")
    client = clients[victim]
    others = [d for _, _, d in reference.up + reference.down]
    focus = data.draw(st.sampled_from(list(server.stages)), label="focus") if target.client_focus else None
    outbox = server.start()
    for _ in range(len(server.stages) + 1):
        if not isinstance(server.state, Stage):
            break
        for cid, msg in outbox.items():
            raw = msg.to_bytes()
            if cid == victim:
                if focus is None:
                    actions = data.draw(st.integers(0, _MAX_ACTIONS), label="actions")
                else:
                    actions = data.draw(st.integers(1, _MAX_ACTIONS), label="actions") if server.state is focus else 0
                for _ in range(actions):
                    if client.state is ABORTED:
                        break
                    payload = data.draw(hostile_message(raw, others), label="hostile message")
                    _client_delivery(client, _as_buffer(data.draw, payload), target.native_memory)
                    if client.state is not ABORTED and client.state is not server.state:
                        break  # a hostile message was accepted: the round moved on for this client
                if client.state is not server.state:
                    continue  # aborted, or already answered
                reply = _client_delivery(client, _as_buffer(data.draw, raw), target.native_memory)
                if reply is not None and data.draw(st.booleans(), label="duplicate"):
                    _client_delivery(client, raw, target.native_memory)  # a duplicate: rejected, the state kept
            else:
                try:
                    reply = clients[cid].handle(raw)
                except SecAggError:
                    continue
            if reply is not None:
                try:
                    server.receive(cid, reply.to_bytes())
                except SecAggError:
                    pass
        try:
            outbox = server.close_stage()
        except SecAggError:
            break
