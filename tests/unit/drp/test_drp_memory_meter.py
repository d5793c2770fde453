"""The release driver's per-step memory meter sees its own process and its worker children."""

from __future__ import annotations

import subprocess
import sys
import time

from pachon.pipelines.drp.run import _MemoryMeter

CHILD = "import time, numpy as np; a = np.ones(300 * 2**20 // 8); print('ready', flush=True); time.sleep(3)"


def test_memory_meter_reports_a_child_peak_then_resets() -> None:
    with _MemoryMeter(interval=0.05) as meter:
        meter.take()
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
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
    assert child >= 300, child  # the 300 MiB array, resident because it was written
    assert tree >= child
    assert child_after < 300 <= child  # the child is gone: the next period does not keep its peak
    assert tree_after > 0  # this process itself
