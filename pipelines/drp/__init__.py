"""Data release processing: single-visit calibration, global astrometry with proper motion and parallax,
ubercal photometry, deep coadds, multi-band detection and measurement on the coadds, forced
photometry and DP1 catalogs loaded into the catalog layer.

Entry point: :func:`run_release` (CLI ``pachon drp run``).
"""

from pachon.pipelines.drp.config import DrpConfig
from pachon.pipelines.drp.run import DrpReport, release_run, run_release

__all__ = ["DrpConfig", "DrpReport", "release_run", "run_release"]
