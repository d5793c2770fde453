#!/usr/bin/env python3
"""Run every benchmark of the project and print where each one's figures went.

Each area keeps its benchmarks in ``benchmarks/<area>/``; a benchmark is a script named
``bench_*.py`` (or ``run_bench.sh``) that prints its figures. This runner executes them
one after another (they are sized for this 2-core machine and bounded in time), so that
``make bench`` reproduces ``benchmarks/RESULTS.md``. Pass area names to run only those:
``python benchmarks/run_all.py tap sim``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(areas: list[str]) -> list[Path]:
    found: list[Path] = []
    for area in sorted(p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if areas and area.name not in areas:
            continue
        found.extend(sorted(area.glob("bench_*.py")))
        found.extend(sorted(area.glob("run_bench.sh")))
    return found


def main(argv: list[str]) -> int:
    failures = 0
    for script in scripts(argv):
        command = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
        print(f"\n=== {script.relative_to(HERE.parent)} ===", flush=True)
        start = time.monotonic()
        result = subprocess.run(command, check=False)
        print(f"--- exit {result.returncode} after {time.monotonic() - start:.0f} s", flush=True)
        failures += result.returncode != 0
    print(
        f"\n{failures} benchmark(s) failed" if failures else "\nall benchmarks ran; see benchmarks/RESULTS.md"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
