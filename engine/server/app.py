"""Build and run the gRPC server: DecisionService, grpc.health.v1 and server reflection."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from engine.config import EngineConfig
from engine.decide import DecisionEngine
from engine.errors import ConfigError, StorageError
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.reflection import enable_reflection
from engine.server.replies import check_reply_limits
from engine.server.service import DecisionServicer
from engine.store.sqlite import SQLiteStore
from engine.timeutil import iso

log = logging.getLogger("anstoss.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name
DB_FILE = "anstoss.db"
# Spare threads beyond the stream cap, so unary calls and health checks always find a worker.
MIN_FREE_WORKERS = 4


def open_engine(config: EngineConfig, data_dir: str | Path) -> DecisionEngine:
    """An engine on the SQLite store in `data_dir` (created if missing), closing at most
    `learning.closes_per_call` due decisions per call."""
    store = SQLiteStore(Path(data_dir) / DB_FILE, config.catalog, config.synchronous)
    return DecisionEngine(config, store, close_budget=config.closes_per_call)


class CatchUp:
    """Closes due decisions between calls when more came due than one call closes (after a
    pause in traffic, say), one budget at a time, so calls keep being served meanwhile."""

    def __init__(self, engine: DecisionEngine, idle: float = 0.2, pause: float = 0.01) -> None:
        self.engine = engine
        self._idle, self._pause = idle, pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="anstoss-catch-up", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        wait = self._idle
        while not self._stop.wait(wait):
            try:
                wait = self._pause if self.engine.catch_up_step() else self._idle
            except StorageError as exc:  # a full disk, say: calls are told; back off here
                log.warning("closing due decisions in the background: %s", exc)
                wait = min(max(wait * 2, 1.0), 30.0)
            except Exception:
                log.exception("closing due decisions in the background failed")
                wait = min(max(wait * 2, 1.0), 30.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    engine: DecisionEngine
    servicer: DecisionServicer
    catch_up: CatchUp

    def stop(self, grace: float = 5.0) -> bool:
        """Stop taking calls, drain those in flight for `grace` seconds, cancel the rest,
        checkpoint models, close the store. Never waits much longer than `grace`: returns
        False when gRPC did not confirm its shutdown in time (a handler stuck on a client),
        which is safe because every acknowledged write was committed before its reply."""
        self.health.enter_graceful_shutdown()
        stopped = self.server.stop(grace).wait(grace + 2.0)
        if not stopped:
            log.warning("gRPC shutdown not confirmed within %.0f s; closing anyway", grace + 2)
        self.servicer.close()
        self.catch_up.stop()
        self.engine.close()
        return stopped


def start_server(
    engine: DecisionEngine,
    host: str = "127.0.0.1",
    port: int = 0,
    workers: int = 32,
    clock: Callable[[], float] = time.time,
) -> RunningServer:
    """Start serving on host:port (0 = any free port) and return the bound port.

    `clock` is the wall clock the live-mode time guard compares request times with.
    """
    limits = engine.config.limits
    one_connection = limits.max_calls_per_connection + limits.max_streams_per_connection
    for key, held in (
        ("max_streams", limits.max_streams),
        ("max_calls_per_connection", one_connection),
    ):
        if held + MIN_FREE_WORKERS > workers:
            raise ConfigError(
                engine.config.source,
                f"limits.{key}",
                f"{held} calls and streams held at once need at least {held + MIN_FREE_WORKERS}"
                f" worker threads (each holds one, and {MIN_FREE_WORKERS} stay free for"
                f" everyone else), got --workers {workers}",
            )
    guard = engine.config.time
    if guard.mode == "live" and engine.store.watermark > clock() + guard.max_ahead_seconds:
        raise ConfigError(
            engine.config.source,
            "time.mode",
            f"the store's event time {iso(engine.store.watermark)} is ahead of the clock (it was"
            " served in replay mode): in live mode every new decision would close at once;"
            " serve it with --replay, or use another data dir",
        )
    servicer = DecisionServicer(engine, clock)
    check_reply_limits(engine, servicer.convert)
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # Find dead peers: ping a silent connection every 60 s, drop it if no answer in 20 s;
        # let well-behaved clients ping every 10 s at most.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anstoss-rpc"),
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    server.add_generic_rpc_handlers((servicer.handlers(),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving %s on %s:%d (time mode %s)", SERVICE_NAME, host, bound, engine.config.time.mode
    )
    return RunningServer(server, bound, health_servicer, engine, servicer, CatchUp(engine))


def serve_forever(
    running: RunningServer,
    on_ready: Callable[[int], None] | None = None,
    on_reload: Callable[[], None] | None = None,
    grace: float = 5.0,
) -> bool:
    """Block until SIGTERM or SIGINT, then shut down within about `grace` seconds; SIGHUP calls
    `on_reload` (and is ignored without one). Returns what `RunningServer.stop` returns."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if on_reload is not None:
        signal.signal(signal.SIGHUP, lambda *_: on_reload())
    else:
        signal.signal(signal.SIGHUP, lambda *_: log.info("SIGHUP ignored: no --model to reload"))
    if on_ready is not None:
        on_ready(running.port)
    stop.wait()
    log.info("shutting down")
    return running.stop(grace)
