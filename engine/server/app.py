"""Build and run the gRPC server: DecisionService, grpc.health.v1 and server reflection."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.config import EngineConfig
from engine.decide import DecisionEngine
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server._generated.anstoss.v1 import decision_pb2_grpc as pb_grpc
from engine.server.service import DecisionServicer
from engine.store.sqlite import SQLiteStore

log = logging.getLogger("anstoss.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name
DB_FILE = "anstoss.db"


def open_engine(config: EngineConfig, data_dir: str | Path) -> DecisionEngine:
    """An engine on the SQLite store in `data_dir` (created if missing)."""
    store = SQLiteStore(Path(data_dir) / DB_FILE, config.catalog, config.synchronous)
    return DecisionEngine(config, store)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    engine: DecisionEngine

    def stop(self, grace: float = 5.0) -> None:
        """Stop taking calls, drain those in flight, checkpoint models, close the store."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.engine.close()


def start_server(
    engine: DecisionEngine, host: str = "127.0.0.1", port: int = 0, workers: int = 32
) -> RunningServer:
    """Start serving on host:port (0 = any free port) and return the bound port."""
    limits = engine.config.limits
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anstoss-rpc"),
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    pb_grpc.add_DecisionServiceServicer_to_server(DecisionServicer(engine), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on %s:%d", SERVICE_NAME, host, bound)
    return RunningServer(server, bound, health_servicer, engine)


def serve_forever(
    running: RunningServer,
    on_ready: Callable[[int], None] | None = None,
    on_reload: Callable[[], None] | None = None,
) -> None:
    """Block until SIGTERM or SIGINT, then shut down gracefully; SIGHUP calls `on_reload`."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if on_reload is not None:
        signal.signal(signal.SIGHUP, lambda *_: on_reload())
    if on_ready is not None:
        on_ready(running.port)
    stop.wait()
    log.info("shutting down")
    running.stop()
