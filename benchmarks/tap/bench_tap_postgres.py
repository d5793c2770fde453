"""The TAP benchmark on the PostgreSQL back end (pgsphere + q3c), same recipe as run_bench.sh.

Starts a throwaway PostgreSQL 15 cluster (the test suite's helper, fsync off), creates a
database with pg_sphere and q3c, and runs ``run_bench.sh`` with ``BACKEND_URL`` pointing at
it, so ingest (COPY, q3c index, CLUSTER, ANALYZE), serving and the checksums are the same
code paths as on DuckDB. The issue asks the PostgreSQL back end to at least match DaCHS
(which runs on the same PostgreSQL).

Usage: python benchmarks/tap/bench_tap_postgres.py [WORKDIR]   (default /tmp/pachon-tap-bench-pg)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.postgres import start_cluster  # noqa: E402


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pachon-tap-bench-pg")
    work.mkdir(parents=True, exist_ok=True)
    shared_cat = Path("/tmp/pachon-tap-bench/cat")
    if shared_cat.is_dir() and not (work / "cat").exists():
        shutil.copytree(shared_cat, work / "cat")  # reuse the generated files
    cluster = start_cluster()
    try:
        url = cluster.create_database("bench")
        env = dict(os.environ, BACKEND_URL=url, REINGEST="1", PORT=os.environ.get("PORT", "8092"))
        return subprocess.call([str(ROOT / "benchmarks" / "tap" / "run_bench.sh"), str(work)], env=env)
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
