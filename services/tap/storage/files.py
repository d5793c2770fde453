"""Job results and stored uploads on disk: ``<results_dir>/<job_id>/``.

Async jobs may run long after the creating request, so inline (``param:``) uploads are
saved beside the job and read when it runs; the result file is written there too and
served by ``/async/{id}/results/result`` until the job's destruction time.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

__all__ = ["ResultFiles"]

_SAFE = re.compile(r"^[A-Za-z0-9_]+$")


class ResultFiles:
    """Paths of one job's files, created on demand."""

    def __init__(self, *, root: Path) -> None:
        self.root = root

    def job_dir(self, job_id: str) -> Path:
        if not _SAFE.match(job_id):
            raise ValueError(f"bad job id {job_id!r}")
        return self.root / job_id

    def result_path(self, job_id: str, extension: str) -> Path:
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"result.{extension}"

    def save_upload(self, job_id: str, name: str, data: bytes) -> Path:
        if not _SAFE.match(name):
            raise ValueError(f"bad upload name {name!r}")
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"upload_{name}"
        path.write_bytes(data)
        return path

    def upload_path(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / f"upload_{name}"

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
