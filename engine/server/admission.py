"""Fair sharing of the server: caps on calls and streams per connection, and idle streams ended.

A gRPC worker thread serves one call at a time, and an open ``DecideStream`` holds its thread
for as long as the stream lives, also while the client sends nothing or does not read the
replies. So one client could take every worker with idle streams, or fill gRPC's queue with
open calls, and lock everyone else out. Here:

- at most ``limits.max_streams`` streams are open at once (kept below the worker count, so unary
  calls always find a thread), and at most ``limits.max_streams_per_connection`` of them on one
  connection;
- at most ``limits.max_calls_per_connection`` calls run at once on one connection;
- a stream that waits longer than ``limits.stream_idle_seconds`` for the client, either for its
  next message or for it to take a reply, is ended with UNAVAILABLE by a watchdog thread.

A call over a cap is answered UNAVAILABLE at once (retryable: back off and try again). A
connection is what gRPC reports as the peer (address and port of the client's connection).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from engine.config import Limits
from engine.errors import Overloaded

log = logging.getLogger("anstoss.server")

_WAITING_FOR_CLIENT = ("reading", "writing")


class StreamWatch:
    """What one stream is doing, for the watchdog: reading (waiting for the client's next
    message), writing (waiting for the client to take a reply), working (on our side) or
    ended (by the watchdog). Changes happen under the admission lock, so a message that
    arrives just as the watchdog ends the stream is dropped, never decided unanswered."""

    __slots__ = ("context", "lock", "since", "state")

    def __init__(self, context: grpc.ServicerContext, now: float, lock: threading.Lock) -> None:
        self.context = context
        self.lock = lock
        self.state = "working"
        self.since = now

    def _move(self, state: str, now: float) -> bool:
        """Enter `state` unless the watchdog ended the stream; False when it did."""
        with self.lock:
            if self.state == "ended":
                return False
            self.state, self.since = state, now
            return True

    def track(self, requests: Iterator[Any], clock: Callable[[], float]) -> Iterator[Any]:
        """The request iterator, marking the time spent waiting for each message."""
        while self._move("reading", clock()):
            try:
                message = next(requests)
            except (StopIteration, grpc.RpcError):  # the client ended, or the call is over
                return
            if not self._move("working", clock()):
                return
            yield message

    def writing(self, now: float) -> None:
        self._move("writing", now)

    def working(self, now: float) -> None:
        self._move("working", now)


class Admission:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._streams: Counter[str] = Counter()
        self._open: set[StreamWatch] = set()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(
            target=self._watch, name="anstoss-stream-watchdog", daemon=True
        )
        self._watchdog.start()

    @contextlib.contextmanager
    def call(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Admit one call of the connection, or raise Overloaded."""
        peer = context.peer()
        cap = self.limits.max_calls_per_connection
        with self._lock:
            if self._calls[peer] >= cap:
                raise Overloaded(
                    f"{cap} calls are already running on this connection"
                    " (limits.max_calls_per_connection); retry later"
                )
            self._calls[peer] += 1
        try:
            yield
        finally:
            with self._lock:
                self._calls[peer] -= 1
                if not self._calls[peer]:
                    del self._calls[peer]

    @contextlib.contextmanager
    def stream(self, context: grpc.ServicerContext) -> Iterator[StreamWatch]:
        """Admit one stream of the connection, or raise Overloaded; watched while open."""
        peer = context.peer()
        limits = self.limits
        with self._lock:
            if self._streams[peer] >= limits.max_streams_per_connection:
                raise Overloaded(
                    f"{limits.max_streams_per_connection} streams are already open on this"
                    " connection (limits.max_streams_per_connection); retry later"
                )
            if len(self._open) >= limits.max_streams:
                raise Overloaded(
                    f"{limits.max_streams} streams are open (limits.max_streams); retry later"
                )
            self._streams[peer] += 1
            watch = StreamWatch(context, self.clock(), self._lock)
            self._open.add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._open.discard(watch)
                self._streams[peer] -= 1
                if not self._streams[peer]:
                    del self._streams[peer]

    def open_streams(self) -> int:
        with self._lock:
            return len(self._open)

    def _watch(self) -> None:
        idle = self.limits.stream_idle_seconds
        while not self._stop.wait(min(1.0, idle / 4)):
            now = self.clock()
            with self._lock:  # found stale and marked ended in one step (see StreamWatch)
                stale = [
                    (w, w.state)
                    for w in self._open
                    if w.state in _WAITING_FOR_CLIENT and now - w.since > idle
                ]
                for watch, _ in stale:
                    watch.state = "ended"  # still counted until its handler returns
            for watch, state in stale:
                what = "sent nothing" if state == "reading" else "took no reply"
                log.info("ending a stream of %s: it %s for %g s", watch.context.peer(), what, idle)
                end_call(
                    watch.context,
                    grpc.StatusCode.UNAVAILABLE,
                    f"stream ended: the client {what} for {idle:g} s"
                    " (limits.stream_idle_seconds); open a new stream",
                )

    def close(self) -> None:
        self._stop.set()
        self._watchdog.join(timeout=5)


def end_call(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with a status; this unblocks a handler waiting for the
    client. gRPC's public `cancel()` can only say CANCELLED, so the status is set on the core
    call when the binding exposes it."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        from grpc import _common

        call.cancel(_common.STATUS_CODE_TO_CYGRPC_STATUS_CODE[code], details)  # type: ignore[union-attr]
    except Exception:  # another binding version: fall back to the public call
        context.cancel()
