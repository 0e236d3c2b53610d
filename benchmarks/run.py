"""Run every benchmark family, print the figures, write benchmarks/results.json."""

from __future__ import annotations

import sys

from benchmarks import bench_serving, bench_simulator
from benchmarks.results import RESULTS, record


def main() -> int:
    print("== serving (loopback, 2 cores shared with the load generator) ==")
    record(bench_serving.run())
    print("\n== simulator (in-process) ==")
    record(bench_simulator.run())
    print(f"\nfigures written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
