"""The parent process of template building and real/bogus training stays small (issue 5, ``small``).

On the ``small`` preset the CLI process was OOM-killed at 7.6 GB: it gathered every calibrated image
of a template band (36 × 50 MB) and all 42 coadded patches before writing them. These checks catch
that at ``tiny`` scale by looking at what the per-detector tasks send back to the parent.
"""

from __future__ import annotations

import gc
import pickle
import shutil
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table


def test_template_build_ships_no_images_to_the_parent(tiny_repo: Path, tmp_path: Path) -> None:
    from pachon.core.image import Exposure
    from pachon.pipelines.prompt.pipeline import build_templates

    path = tmp_path / "repo"
    shutil.copytree(tiny_repo, path)
    sizes: dict[str, list[int]] = {}
    patches_alive_at_once: list[int] = []
    alive: list[weakref.ref[Exposure]] = []

    def recording_map(func: Callable[..., Any], *iterables: Iterable[Any]) -> Iterator[Any]:
        name = getattr(func, "__name__", "?")
        for result in map(func, *iterables):
            sizes.setdefault(name, []).append(len(pickle.dumps(result, protocol=5)))
            if name == "coadd_patch":
                gc.collect()
                patches_alive_at_once.append(1 + sum(r() is not None for r in alive))
                alive.append(weakref.ref(result[1]))
            yield result
            del result

    report = build_templates(path, map_fn=recording_map)
    assert report.patches and all(report.patches.values()), report.failures
    # a calibrated 1k tiny detector is ~12 MB: what comes back must be a handle, not the image
    assert sizes["calibrate_for_template"] and max(sizes["calibrate_for_template"]) < 200_000
    # each template patch is written as soon as it arrives, not collected
    assert len(patches_alive_at_once) == sum(len(p) for p in report.patches.values())
    assert max(patches_alive_at_once) == 1
    assert not (path / ".scratch").exists()  # calibrated inputs spilled there are removed


def test_training_job_returns_a_compact_feature_table(processed_tiny_repo: Path) -> None:
    from pachon.pipelines.prompt.config import PromptConfig
    from pachon.pipelines.prompt.pipeline import list_exposures, open_repo
    from pachon.pipelines.prompt.training import _training_job

    repo = open_repo(str(processed_tiny_repo))
    stored = repo.get("real_bogus_model", collections="Pachon/templates")
    visit = int(stored["training_visits"][0])
    exposure = next(e for e in list_exposures(repo) if e.id == visit)
    result = _training_job((str(processed_tiny_repo), exposure, 0, PromptConfig().model_dump_json(), 17))
    assert isinstance(result, Table), result
    assert len(result) and "rb_label" in result.colnames
    # one scalar per source and column: no stamps, images or injected-fake tables ride along
    assert all(np.asarray(result[c]).ndim == 1 for c in result.colnames)
    assert all(np.asarray(result[c]).dtype != object for c in result.colnames)
    assert not result.meta
    assert len(pickle.dumps(result, protocol=5)) < 2_000 * len(result) + 50_000
