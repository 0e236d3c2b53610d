"""`anstoss` command line. Each subcommand imports only what it needs (serving never loads
MLflow or the simulator)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.usage import UsageError, at_least, output_file, port

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from engine.config import load_config
    from engine.server.app import open_engine, serve_forever, start_server

    if args.port_file:
        output_file(args.port_file, "--port-file")
    config = load_config(args.config)
    if args.replay:
        config = config.replace(time=dataclasses.replace(config.time, mode="replay"))
    engine = open_engine(config, args.data_dir)
    reload = None
    if args.model:
        from cli.models import ModelFile

        model = ModelFile(engine, Path(args.model), args.model_arm)
        try:
            model.load_if_new()
        except BaseException:
            engine.close()
            raise
        reload = model.reload
    running = start_server(engine, args.host, args.port, args.workers)

    def ready(port: int) -> None:
        if args.port_file:
            tmp = Path(str(args.port_file) + ".tmp")
            tmp.write_text(str(port))
            tmp.replace(args.port_file)  # atomic: a reader never sees a half-written port
        print(f"anstoss serving on {args.host}:{port} (data dir {args.data_dir})", flush=True)

    serve_forever(running, on_ready=ready, on_reload=reload)
    # Everything acknowledged is committed and the store is closed. A worker thread still
    # blocked on a vanished client must not keep the process alive (the interpreter would
    # join it at exit), so leave now.
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)


def _simulate(args: argparse.Namespace) -> int:
    from cli.simulate import run_simulation

    return run_simulation(args)


def _calibrate(args: argparse.Namespace) -> int:
    from cli.simulate import run_calibration

    return run_calibration(args)


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import run_demo

    return run_demo(Path(args.out), args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anstoss",
        description="Next-best-action decision engine for customer communication.",
    )
    log_help = f"how much to log on stderr (default: {DEFAULT_LOG_LEVEL})"
    parser.add_argument("--log-level", default=DEFAULT_LOG_LEVEL, choices=LOG_LEVELS, help=log_help)
    # Every subcommand takes --log-level too, without a default of its own: a value given
    # after the subcommand wins, else the top-level one (or its default) stays.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS, help=log_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve DecisionService over gRPC",
        description="Serve anstoss.v1.DecisionService (plus grpc.health.v1 and reflection).",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=port, default=50051, help="port; 0 = any free one (default: %(default)s)"
    )
    serve.add_argument(
        "--data-dir", default="data", help="directory of the SQLite store (default: %(default)s)"
    )
    serve.add_argument("--config", help="engine config TOML (default: the shipped one)")
    serve.add_argument("--model", help="VW model file for the bandit arm; SIGHUP reloads it")
    serve.add_argument(
        "--model-arm", default="bandit", help="arm that serves --model (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=at_least(1),
        default=32,
        help="RPC worker threads (default: %(default)s)",
    )
    serve.add_argument("--port-file", help="write the bound port to this file once serving")
    serve.add_argument(
        "--replay",
        action="store_true",
        help="replay mode: request times move freely instead of staying within"
        " time.max_ahead_seconds of the wall clock (for `anstoss simulate --via` and backfills)",
    )
    serve.set_defaults(func=_serve)

    simulate = sub.add_parser(
        "simulate",
        parents=[common],
        help="simulate new customers under a policy (or calibrate a scenario: simulate calibrate)",
        description="Simulate a cohort of new customers after their first purchase; the engine "
        "decides the touches in-process or, with --via, through a running `anstoss serve`.",
    )
    simulate.add_argument("--scenario", help="scenario TOML (default: the shipped one)")
    simulate.add_argument(
        "--policy",
        default="chain",
        choices=["chain", "bandit", "random", "none", "oracle", "experiment"],
        help="who decides: one policy for everyone, or the arms of the experiment "
        "(--config, or the server's with --via) (default: %(default)s)",
    )
    simulate.add_argument(
        "--customers",
        type=at_least(1),
        default=10_000,
        help="new customers (default: %(default)s)",
    )
    simulate.add_argument(
        "--days",
        type=at_least(1),
        default=365,
        help="days simulated per customer (default: %(default)s)",
    )
    simulate.add_argument(
        "--seed",
        type=at_least(0),
        default=0,
        help="seed of the simulated world (the engine's own seed is in its config)"
        " (default: %(default)s)",
    )
    simulate.add_argument(
        "--out", help="write summary.json and Parquet files of customers, decisions, events here"
    )
    simulate.add_argument(
        "--via",
        metavar="HOST:PORT",
        help="decide through this running anstoss server (start it with `anstoss serve"
        " --replay`: simulated time runs ahead of the wall clock)",
    )
    simulate.add_argument(
        "--config", help="engine config TOML for in-process runs (default: the shipped one)"
    )
    simulate.add_argument(
        "--truth", action="store_true", help="log every decision's true action values and regret"
    )
    simulate.add_argument("--quiet", action="store_true", help="no progress bar")
    simulate.set_defaults(func=_simulate)
    simulate_sub = simulate.add_subparsers(dest="simulate_command", metavar="[calibrate]")
    calibrate = simulate_sub.add_parser(
        "calibrate",
        parents=[common],
        help="fit the no-marketing behaviour to a transaction log and check it on a holdout",
        description="Fit the purchase core (Pareto/NBD), the follow-up burst and the spend model "
        "on the first W weeks of a purchase log, simulate the rest, and compare.",
    )
    calibrate.add_argument(
        "--transactions", required=True, help="purchase log: customer, date, amount per row"
    )
    calibrate.add_argument(
        "--calibration-weeks",
        type=at_least(1),
        required=True,
        help="weeks fitted; the rest is the holdout",
    )
    calibrate.add_argument(
        "--columns",
        help="where the fields are: customer=1,date=2,amount=4 (1-based positions) or header names",
    )
    calibrate.add_argument(
        "--skip-bad-rows", action="store_true", help="report malformed rows and go on"
    )
    calibrate.add_argument(
        "--scenario", dest="base_scenario", help="scenario to take everything else from"
    )
    calibrate.add_argument(
        "--seed",
        type=at_least(0),
        default=0,
        help="seed of the holdout simulation (default: %(default)s)",
    )
    calibrate.add_argument(
        "--out", required=True, help="directory for the fitted scenario and calibration.json"
    )
    calibrate.add_argument("--quiet", action="store_true", help="no progress bar")
    calibrate.set_defaults(func=_calibrate)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="start a server and run a scripted channel-system session against it",
        description="Start `anstoss serve` on a free port and play a short scripted session.",
    )
    demo.add_argument(
        "--out", default="demo-output", help="output directory (default: %(default)s)"
    )
    demo.add_argument("--config", help="engine config TOML (default: the shipped one)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    from engine.errors import AnstossError

    command = " ".join(c for c in (args.command, getattr(args, "simulate_command", None)) if c)
    try:
        return int(args.func(args) or 0)
    except (AnstossError, UsageError) as exc:
        print(f"anstoss {command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file the command cannot read or write (a full disk, a missing permission).
        logging.getLogger("anstoss").debug("file error", exc_info=True)
        print(f"anstoss {command}: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
