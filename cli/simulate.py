"""`anstoss simulate` and `anstoss simulate calibrate`: printing and files around the simulator."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from cli.usage import UsageError, output_dir, reachable
from engine.config import load_config


def _table(rows: list[tuple[str, Any]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title]
    for key, value in rows:
        text = f"{value:,.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {text:>14}")
    return "\n".join(lines)


SHOWN = [
    ("customers", "customers"),
    ("second purchase within 10 days", "second_purchase_rate_10d"),
    ("second purchase within 30 days", "second_purchase_rate_30d"),
    ("second purchase within 365 days", "second_purchase_rate_365d"),
    ("share of those within 10 days", "share_of_second_purchases_within_10d"),
    ("disversion rate (2+ repeats)", "disversion_rate"),
    ("active in year 2", "active_year2_share"),
    ("year-3 retention of year-2 active", "year3_retention_of_year2_active"),
    ("revenue per customer (EUR)", "revenue_per_customer"),
    ("contact cost per customer (EUR)", "contact_cost_per_customer"),
    ("net value per customer (EUR)", "net_value_per_customer"),
    ("contacts per customer", "contacts_per_customer"),
    ("unsubscribes per customer", "unsubscribes_per_customer"),
    ("true incremental value per customer", "incremental_value_per_customer"),
    ("regret per customer (EUR)", "regret_per_customer"),
]


def format_summary(summary: dict[str, Any], channels: list[str]) -> str:
    rows = [(label, summary[key]) for label, key in SHOWN if key in summary]
    rows += [
        (f"  contacts per customer: {c}", summary[f"contacts_per_customer_{c}"]) for c in channels
    ]
    text = _table(
        rows,
        f"simulation {summary.get('scenario', '')}, policy {summary.get('policy', '')}, seed {summary.get('seed', '')}",
    )
    arms = summary.get("arms", {})
    if len(arms) > 1:
        keys = [
            "customers",
            "second_purchase_rate_10d",
            "net_value_per_customer",
            "contact_cost_per_customer",
            "contacts_per_customer",
        ]
        header = "  " + f"{'arm':<12}" + "".join(f"{k[:24]:>26}" for k in keys)
        lines = ["per arm:", header]
        for arm, m in arms.items():
            lines.append(
                "  " + f"{arm:<12}" + "".join(f"{m.get(k, float('nan')):>26,.4f}" for k in keys)
            )
        text += "\n" + "\n".join(lines)
    return text


def run_simulation(args: argparse.Namespace) -> int:
    from simulator import load_scenario, simulate

    scenario = load_scenario(args.scenario)
    config = (
        load_config(args.config, policy_kinds=("bandit", "chain", "random", "none"))
        if args.config
        else None
    )
    if args.out:
        output_dir(args.out, "--out")  # before the run, not after it
    if args.via:
        reachable(args.via)
    started = time.perf_counter()
    try:
        result = simulate(
            scenario,
            policy=args.policy,
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            via=args.via,
            config=config,
            truth=args.truth,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except grpc.RpcError as exc:  # the --via server went away or refused the calls
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        name = code.name if code is not None else "an error"
        raise UsageError(f"--via {args.via}: the server answered {name}: {details}") from None
    elapsed = time.perf_counter() - started
    result.summary["seconds"] = round(elapsed, 3)
    print(format_summary(result.summary, [c.name for c in scenario.catalog.channels]))
    print(f"{args.customers * args.days / elapsed:,.0f} customer-days/s ({elapsed:.1f} s)")
    if args.out:
        for path in result.write(args.out):
            print(f"wrote {path}")
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    from simulator.calibrate import calibrate, format_calibration

    output_dir(args.out, "--out")
    report = calibrate(
        args.transactions,
        calibration_weeks=args.calibration_weeks,
        columns=args.columns,
        seed=args.seed,
        scenario=args.base_scenario,
        out=Path(args.out),
        skip_bad_rows=args.skip_bad_rows,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    print(format_calibration(report))
    print(
        json.dumps({k: report[k] for k in ("holdout_total_rel_error", "cumulative_end_rel_error")})
    )
    return 0
