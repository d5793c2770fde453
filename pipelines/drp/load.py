"""Load a release's DP1 tables into the catalog, with a provenance table, idempotently.

The release becomes catalog schema ``<release>`` (its own DuckDB file in the embedded default):
``create_schema("dp1", name=release, replace=True)`` creates (or empties) the Felis tables, and
``load_table`` fills the columns we compute. Re-running replaces the release's rows; other
releases are other files and stay queryable. ``<release>.Provenance`` (key/value rows: code
version, configuration, input repo and RUN collection, time) records how the release was made and
is described in TAP_SCHEMA like every table. A running TAP service sees the new release after a
reload (``CatalogDatabase.refresh``), without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from astropy.table import Table

from pachon._version import __version__
from pachon.core.catalog import open_catalog
from pachon.pipelines.drp.config import DrpConfig

__all__ = ["catalog_url_for", "load_release"]


def catalog_url_for(repo_path: str | Path, catalog_url: str | None = None) -> str:
    """The catalog a release of ``repo_path`` goes to: explicit, else the settings', else ``<repo>/catalog/``."""
    if catalog_url:
        return catalog_url
    try:
        from pachon.core.settings import get_settings

        configured = get_settings().catalog_url
    except Exception:  # invalid settings must not stop a pipeline that was given a repo
        configured = None
    return configured or f"duckdb:///{Path(repo_path).resolve() / 'catalog'}/"


def _arrow(table: Table, drop: tuple[str, ...] = ()) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for name in table.colnames:
        if name in drop:
            continue
        arr = np.asarray(table[name])
        if arr.dtype.kind == "U":
            cols[name] = pa.array(arr.astype(object), pa.string())
        elif arr.dtype.kind == "f":
            cols[name] = pa.array(arr, from_pandas=True)  # NaN → NULL: "not measured", as in Rubin's tables
        else:
            cols[name] = pa.array(arr)
    return pa.table(cols)


def load_release(
    repo_path: str | Path,
    release: str,
    objects: Table,
    sources: Table,
    forced: Table,
    visits: Table,
    ccd_visits: Table,
    *,
    config: DrpConfig,
    catalog_url: str | None = None,
    coadd_patches: Table | None = None,
) -> str:
    """Create/replace schema ``release`` and load Object, Source, ForcedSource, Visit, CcdVisit, CoaddPatches, Provenance."""
    url = catalog_url_for(repo_path, catalog_url)
    cat = open_catalog(url, read_only=False)
    try:
        cat.create_schema("dp1", name=release, replace=True)
        cat.load_table(_arrow(objects), f"{release}.Object")
        cat.load_table(_arrow(sources, drop=("objectId",)), f"{release}.Source")
        cat.load_table(_arrow(forced, drop=("midpointMjdTai",)), f"{release}.ForcedSource")
        cat.load_table(_arrow(visits), f"{release}.Visit")
        cat.load_table(_arrow(ccd_visits), f"{release}.CcdVisit")
        if coadd_patches is not None and len(coadd_patches):
            cat.load_table(_arrow(coadd_patches), f"{release}.CoaddPatches")
        prov = {
            "release": release,
            "code_version": __version__,
            "input_repo": str(Path(repo_path).resolve()),
            "butler_run": f"Pachon/runs/{release}",
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "config_json": config.model_dump_json(),
            "objects_from": "multi-band detection on the deep coadds (sep, multi-threshold deblending), "
            "astrometry joined from the multi-visit solution",
            "counts": json.dumps(
                {
                    "Object": len(objects),
                    "Source": len(sources),
                    "ForcedSource": len(forced),
                    "Visit": len(visits),
                }
            ),
        }
        cat.load_table(
            pa.table({"key": list(prov), "value": list(prov.values())}),
            f"{release}.Provenance",
            columns_meta={
                "key": {"description": "provenance item"},
                "value": {"description": "its value (JSON for structured items)"},
            },
            description=f"How release {release} was produced: code version, configuration, inputs, time.",
            replace=True,
        )
        cat.refresh()
    finally:
        cat.close()
    return url
