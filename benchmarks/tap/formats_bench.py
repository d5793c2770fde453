"""Encoding speed of the TAP result writers on the bench ``object`` table shape.

Columns as in ``../shared/bench/gen_catalog.py``'s object table: objectid (long), ra/dec
(double), g/r/i (float), flags (int), with 1 % nulls in the magnitudes. For each format and
row count the script encodes the rows (in 65,536-row batches, as the query service
streams them) several times and reports the median wall time and the output rate; the
``rows→arrow`` line times :func:`rows_to_batches` (DB-API tuples to Arrow, the PostgreSQL path).

Run::

    .venv/bin/python benchmarks/tap/formats_bench.py            # 1k, 7,830, 10k, 100k rows
    .venv/bin/python benchmarks/tap/formats_bench.py --rows 100000 --repeat 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa

from pachon.core.catalog.model import ColumnInfo
from pachon.services.tap.formats import OUTPUT_FORMATS, rows_to_batches

COLUMNS = [
    ColumnInfo("objectid", "long", ucd="meta.id;meta.main"),
    ColumnInfo("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main"),
    ColumnInfo("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main"),
    ColumnInfo("g", "float", unit="mag", ucd="phot.mag;em.opt.B"),
    ColumnInfo("r", "float", unit="mag", ucd="phot.mag;em.opt.R"),
    ColumnInfo("i", "float", unit="mag", ucd="phot.mag;em.opt.I"),
    ColumnInfo("flags", "int", ucd="meta.code"),
]
BATCH_ROWS = 65_536


def make_batches(rows: int, seed: int = 1) -> list[pa.RecordBatch]:
    rng = np.random.default_rng(seed)
    mags = [rng.normal(22, 1.5, rows).astype(np.float32) for _ in range(3)]
    masks = [rng.random(rows) < 0.01 for _ in range(3)]
    table = pa.table(
        {
            "objectid": pa.array(np.arange(rows, dtype=np.int64) + 10**15),
            "ra": pa.array(rng.uniform(0, 360, rows)),
            "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, rows)))),
            "g": pa.array(mags[0], mask=masks[0]),
            "r": pa.array(mags[1], mask=masks[1]),
            "i": pa.array(mags[2], mask=masks[2]),
            "flags": pa.array(rng.integers(0, 1 << 16, rows, dtype=np.int32)),
        }
    )
    return table.to_batches(max_chunksize=BATCH_ROWS)


def measure(fmt_name: str, batches: list[pa.RecordBatch], repeat: int) -> tuple[float, int]:
    fmt = next(f for f in OUTPUT_FORMATS if f.name == fmt_name)
    times = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        size = sum(len(chunk) for chunk in fmt.write(COLUMNS, batches, status=lambda: ("OK", None)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def measure_rows(batches: list[pa.RecordBatch], repeat: int) -> float:
    """Median seconds to turn DB-API tuples (the PostgreSQL path) back into Arrow batches."""
    rows = [tuple(r.values()) for b in batches for r in b.to_pylist()]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _batch in rows_to_batches(rows, COLUMNS, BATCH_ROWS):
            pass
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, action="append", help="row counts (repeatable)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    counts = args.rows or [1_000, 7_830, 10_000, 100_000]
    print(f"{'format':<12}{'rows':>9}{'ms':>10}{'MB':>9}{'MB/s':>9}{'Mrows/s':>9}")
    for rows in counts:
        batches = make_batches(rows)
        for fmt in OUTPUT_FORMATS:
            seconds, size = measure(fmt.name, batches, args.repeat)
            print(
                f"{fmt.name:<12}{rows:>9}{seconds * 1e3:>10.2f}{size / 1e6:>9.2f}"
                f"{size / 1e6 / seconds:>9.0f}{rows / 1e6 / seconds:>9.2f}"
            )
        seconds = measure_rows(batches, max(1, args.repeat // 2))
        print(f"{'rows→arrow':<12}{rows:>9}{seconds * 1e3:>10.2f}{'':>9}{'':>9}{rows / 1e6 / seconds:>9.2f}")


if __name__ == "__main__":
    main()
