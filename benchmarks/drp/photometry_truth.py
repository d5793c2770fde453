"""Single-visit photometry of a release against the simulator's truth: where does PA1 come from?

PA1 mixes photon noise, calibration and measurement errors. This script separates them for bright
non-variable stars of a release's ``source`` tables: each Source is matched to its truth source in the
same detector-visit (``truth_visit_sources``, within 1 px), ``Δm = m_measured − m_true`` has its
detector-visit median removed (the zero point) and each star's mean over visits removed (blends, colour),
and what is left is compared with the photon noise, per band and S/N bin, for the PSF flux and for the
12-px aperture flux. Residual covariance between stars of one detector-visit, by separation, shows
smooth visit-to-visit patterns (aperture corrections, PSF models) that the ubercal's fixed star flats
cannot remove.

This is how the session-4 PSF-model fix was found on ``small``: PSF fluxes scattered 10 mmag where the
aperture fluxes of the same stars scattered 3–4, with +30 mmag² covariance within 500 px.

Usage::

    python benchmarks/drp/photometry_truth.py --repo REPO [--release dp1] [--min-snr 100] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
from pachon.pipelines.drp.run import release_run

SNR_BINS = [100.0, 200.0, 400.0, 800.0, np.inf]


def _robust_mmag(r: pd.Series) -> float:
    a = np.asarray(r, float)
    return float(1000 * 1.4826 * np.median(np.abs(a - np.median(a)))) if len(a) else float("nan")


def matched_sources(repo: DataRepository, release: str, min_snr: float) -> pd.DataFrame:
    """Bright, unflagged Sources of non-variable truth stars, with Δm for PSF and aperture fluxes."""
    butler = repo.butler
    truth = COLLECTIONS["truth"]
    variables = set(np.asarray(butler.get("truth_variables", collections=truth)["id"], np.int64).tolist())
    frames = []
    run = release_run(release)
    refs = butler.query_datasets("source", collections=run, find_first=True, explain=False, limit=None)
    for ref in refs:
        s = butler.get(ref).to_pandas()
        if not len(s):
            continue
        exposure, detector = int(ref.dataId["visit"]), int(ref.dataId["detector"])
        t = butler.get(
            "truth_visit_sources",
            instrument=INSTRUMENT,
            exposure=exposure,
            detector=detector,
            collections=truth,
        ).to_pandas()
        t = t[(t["type"] == "star") & ~t["is_saturated"].astype(bool) & ~t["id"].isin(variables)]
        flags = np.zeros(len(s), bool)
        for c in s.columns:
            if c.startswith("pixelFlags_"):
                flags |= s[c].to_numpy(bool)
        s = s[(s["psfFlux"] / s["psfFluxErr"] > min_snr) & ~flags]
        if not len(s) or not len(t):
            continue
        dist, idx = cKDTree(np.c_[t["x"], t["y"]]).query(np.c_[s["x"], s["y"]])
        ok = dist < 1.0
        s, tt = s[ok], t.iloc[idx[ok]]
        frames.append(
            pd.DataFrame(
                {
                    "visit": exposure,
                    "detector": detector,
                    "band": s["band"].to_numpy(),
                    "x": s["x"].to_numpy(),
                    "y": s["y"].to_numpy(),
                    "snr": (s["psfFlux"] / s["psfFluxErr"]).to_numpy(),
                    "id": tt["id"].to_numpy(),
                    "psf": -2.5 * np.log10(s["psfFlux"].to_numpy() / tt["flux"].to_numpy()),
                    "ap12": -2.5 * np.log10(s["ap12Flux"].to_numpy() / tt["flux"].to_numpy()),
                }
            )
        )
    if not frames:
        raise SystemExit(f"no bright Sources of release {release!r} matched the truth; is the release run?")
    return pd.concat(frames, ignore_index=True)


def residuals(df: pd.DataFrame, column: str) -> pd.Series:
    """Δm minus its detector-visit median (zero point) and minus the star's mean (fixed offsets)."""
    r = df[column] - df.groupby(["visit", "detector"])[column].transform("median")
    return r - r.groupby([df["id"], df["band"]]).transform("mean")


def covariance_by_separation(df: pd.DataFrame, r: pd.Series, edges: list[float]) -> list[float]:
    """Mean product of two stars' residuals in one detector-visit, per separation bin (mmag²)."""
    sums = np.zeros(len(edges) - 1)
    counts = np.zeros(len(edges) - 1)
    for _, g in df.assign(r=r).groupby(["visit", "detector"]):
        if len(g) < 2:
            continue
        i, j = np.triu_indices(len(g), 1)
        x, y, w = g["x"].to_numpy(), g["y"].to_numpy(), g["r"].to_numpy()
        sep = np.hypot(x[i] - x[j], y[i] - y[j])
        k = np.digitize(sep, edges) - 1
        good = (k >= 0) & (k < len(sums))
        np.add.at(sums, k[good], (w[i] * w[j])[good])
        np.add.at(counts, k[good], 1)
    return [float(1e6 * s / c) if c else float("nan") for s, c in zip(sums, counts, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--release", default="dp1")
    parser.add_argument("--min-snr", type=float, default=100.0)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    repo = DataRepository.open(str(args.repo))
    df = matched_sources(repo, args.release, args.min_snr)
    df = df[df.groupby(["id", "band"])["id"].transform("count") >= 3].reset_index(drop=True)
    out: dict[str, object] = {"n_measurements": len(df), "n_stars": int(df["id"].nunique())}
    bins = pd.cut(df["snr"], SNR_BINS)
    photon = df.groupby(bins, observed=True)["snr"].apply(lambda s: float(1000 * np.median(1.0857 / s)))
    print(
        f"{len(df)} measurements of {df['id'].nunique()} non-variable stars (S/N > {args.min_snr:g}, ≥ 3 visits)"
    )
    print(f"{'':>10} " + " ".join(f"{b!s:>16}" for b in photon.index) + "   (robust rms, mmag)")
    print(f"{'photon':>10} " + " ".join(f"{v:16.1f}" for v in photon.to_numpy()))
    for column in ("psf", "ap12"):
        r = residuals(df, column)
        per_bin = r.groupby(bins, observed=True).apply(_robust_mmag)
        per_band = r.groupby(df["band"]).apply(_robust_mmag)
        cov = covariance_by_separation(df, r, [0, 300, 700, 1200, 5000])
        print(f"{column:>10} " + " ".join(f"{v:16.1f}" for v in per_bin.to_numpy()))
        print(f"{'':>10} per band: " + ", ".join(f"{b} {v:.1f}" for b, v in per_band.items()))
        print(f"{'':>10} covariance within a detector-visit by separation 0–300/–700/–1200/more px: "
              + ", ".join(f"{c:.1f}" for c in cov) + " mmag²")  # fmt: skip
        out[column] = {
            "robust_rms_mmag_by_snr": {str(k): v for k, v in per_bin.items()},
            "robust_rms_mmag_by_band": per_band.to_dict(),
            "covariance_mmag2_by_separation": cov,
        }
    out["photon_mmag_by_snr"] = {str(k): v for k, v in photon.items()}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
