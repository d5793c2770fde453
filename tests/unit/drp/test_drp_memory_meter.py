"""The release driver's per-step memory meter sees its own process and its worker children."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = "import time, numpy as np; a = np.ones(300 * 2**20 // 8); print('ready', flush=True); time.sleep(3)"

# Run in a fresh interpreter: inside the test session the pytest process has other children (session
# fixtures' servers and Dask workers), and the meter rightly counts them too.
METER = f"""
import json, subprocess, sys, time
from pachon.pipelines.drp.run import _MemoryMeter

with _MemoryMeter(interval=0.05) as meter:
    meter.take()
    proc = subprocess.Popen([sys.executable, "-c", {CHILD!r}], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        tree, child = meter.take()
    finally:
        proc.kill()
        proc.wait()
    # a sample may have read the child's memory just before the kill and land after it: let it land,
    # close that period, and judge a period that began with the child gone
    time.sleep(0.2)
    meter.take()
    time.sleep(0.2)
    tree_after, child_after = meter.take()
print(json.dumps([tree, child, tree_after, child_after]))
"""


def test_memory_meter_reports_a_child_peak_then_resets() -> None:
    out = subprocess.run(
        [sys.executable, "-c", METER], capture_output=True, text=True, timeout=60, check=True
    )
    tree, child, tree_after, child_after = json.loads(out.stdout.strip().splitlines()[-1])
    assert child >= 300, child  # the 300 MiB array, resident because it was written
    assert tree >= child
    assert child_after < 300 <= child  # the child is gone: the next period does not keep its peak
    assert tree_after > 0  # this process itself
