#!/usr/bin/env python3
"""Tile-compressed FITS for Pachón's images: bytes, write/read time, and the effect on measurements.

Two parts (machine: 2 cores, 24 GiB; the load average is printed beside every time):

``sizes`` — for each input image (a 2k×2k ``visit_image`` made by calibrating one raw of a repo, and
any FITS files given with ``--files``): bytes and write/read wall and CPU seconds for the plain
layout (what Pachón wrote before), lossless compression (GZIP_2 shuffled floats), and the lossy
default (:data:`pachon.core.image.LOSSY_COMPRESSION`: image quantized at σ/16, variance at
median/1024, RICE_1, SUBTRACTIVE_DITHER_2), with the quantization error measured in units of σ.
A raw (int-valued float ADU with overscan) is timed plain, as ``pachon simulate`` writes it.

``measure`` — on a repo with templates (e.g. the ``tiny`` test repo): runs prompt processing's
per-detector steps on N detector-visits, then repeats DIA detection and measurement on the
difference and visit images after a lossy write/read round trip, and PSF photometry of the visit's
sources on the visit image before/after. Reports matched DIA sources, the ones that appear or vanish
(with their SNR), and Δflux/σ for DIA and direct PSF fluxes (median, rms, max).

Usage::

    python benchmarks/core/bench_fits_compression.py sizes --repo /work/small/repo [--files F.fits ...]
    python benchmarks/core/bench_fits_compression.py measure --repo TINY_REPO [--detector-visits 24]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pachon.core.image import (
    LOSSLESS_COMPRESSION,
    LOSSY_COMPRESSION,
    Exposure,
    FitsCompression,
    read_fits,
    write_fits,
)

LAYOUTS: dict[str, FitsCompression | None] = {
    "plain": None,
    "lossless": LOSSLESS_COMPRESSION,
    "lossy": LOSSY_COMPRESSION,
}


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best-of-``repeat`` wall and CPU seconds (the machine is shared; the minimum is the cost)."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), out


def size_and_time(name: str, exposure: Exposure, workdir: Path, repeat: int = 3) -> list[dict[str, Any]]:
    """One row per layout: bytes, write/read seconds, quantization error in σ."""
    rows = []
    var = exposure.variance
    sigma = float(np.sqrt(np.median(var[np.isfinite(var) & (var > 0)]))) if var is not None else float("nan")
    for layout, compression in LAYOUTS.items():
        path = workdir / f"{name}-{layout}.fits"
        w_wall, w_cpu, _ = _timed(lambda p=path, c=compression: write_fits(exposure, p, c), repeat)  # type: ignore[misc]
        r_wall, r_cpu, back = _timed(lambda p=path: read_fits(p), repeat)  # type: ignore[misc]
        err = np.asarray(back.data, np.float64) - np.asarray(exposure.data, np.float64)
        err = err[np.isfinite(err)]
        row = {
            "image": name,
            "shape": list(np.shape(exposure.data)),
            "layout": layout,
            "MB": path.stat().st_size / 1e6,
            "write_s": w_wall,
            "write_cpu_s": w_cpu,
            "read_s": r_wall,
            "read_cpu_s": r_cpu,
            "mask_exact": bool(np.array_equal(back.mask, exposure.mask)),
            "err_rms_sigma": float(err.std() / sigma) if err.size else 0.0,
            "err_max_sigma": float(np.abs(err).max() / sigma) if err.size else 0.0,
            "err_mean_sigma": float(err.mean() / sigma) if err.size else 0.0,
            "load": _load(),
        }
        rows.append(row)
        path.unlink()
    return rows


def _calibrated_2k(repo: str) -> tuple[Exposure, Exposure]:
    """A real 2k×2k visit_image (ISR + calibration of the repo's first raw) and that raw."""
    from pachon.pipelines.prompt.config import PromptConfig
    from pachon.pipelines.prompt.pipeline import calibrate_from_repo, detectors_of, list_exposures, open_repo

    r = open_repo(repo)
    exposure = list_exposures(r)[-1]
    detector = detectors_of(r, exposure.id)[0]
    raw = r.get("raw", exposure=exposure.id, detector=detector)
    cal, _ = calibrate_from_repo(repo, exposure, detector, PromptConfig())
    return cal.visit_image, raw


def run_sizes(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        if args.repo:
            visit_image, raw = _calibrated_2k(args.repo)
            rows += size_and_time("visit_image_2k", visit_image, work, args.repeat)
            # the raw is written plain, as the simulator does: its cost is what `pachon simulate` pays
            rows += [r for r in size_and_time("raw_2k", raw, work, args.repeat) if r["layout"] == "plain"]
        for f in args.files:
            rows += size_and_time(Path(f).stem[:40], read_fits(f), work, args.repeat)
    for r in rows:
        print(
            f"{r['image']:42s} {r['layout']:8s} {r['MB']:7.2f} MB  write {r['write_s']:.3f} s "
            f"(cpu {r['write_cpu_s']:.3f})  read {r['read_s']:.3f} s (cpu {r['read_cpu_s']:.3f})  "
            f"err rms {r['err_rms_sigma']:.4f}σ max {r['err_max_sigma']:.4f}σ mean {r['err_mean_sigma']:+.1e}σ  "
            f"mask exact {r['mask_exact']}  load {r['load']}"
        )
    return rows


def _round_trip(exposure: Exposure, path: Path) -> Exposure:
    write_fits(exposure, path, LOSSY_COMPRESSION)
    return read_fits(path)


def _match(a: Any, b: Any, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of rows of tables ``a``, ``b`` whose (x, y) agree within ``radius`` pixels."""
    from scipy.spatial import cKDTree

    if not len(a) or not len(b):
        return np.zeros(0, int), np.zeros(0, int)
    tree = cKDTree(np.c_[np.asarray(b["x"]), np.asarray(b["y"])])
    dist, idx = tree.query(np.c_[np.asarray(a["x"]), np.asarray(a["y"])], distance_upper_bound=radius)
    ok = np.isfinite(dist)
    return np.flatnonzero(ok), idx[ok]


def run_measure(args: argparse.Namespace) -> dict[str, Any]:
    from pachon.pipelines.prompt import dia as dia_mod
    from pachon.pipelines.prompt.config import PromptConfig
    from pachon.pipelines.prompt.measure import psf_photometry
    from pachon.pipelines.prompt.pipeline import (
        calibrate_from_repo,
        detectors_of,
        list_exposures,
        open_repo,
        process_detector,
    )

    config = PromptConfig()
    repo = open_repo(args.repo)
    pairs = [(e, d) for e in list_exposures(repo)[::-1] for d in detectors_of(repo, e.id)]
    dia_dflux: list[float] = []
    src_dflux: list[float] = []
    lost: list[float] = []
    gained: list[float] = []
    n_before = n_after = done = 0
    bytes_plain = bytes_lossy = 0
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        for exposure, detector in pairs:
            if done >= args.detector_visits:
                break
            out = process_detector(
                args.repo, exposure, detector, config.model_dump_json(), keep_template=True
            )
            if not out.ok:
                print(f"{exposure.id}/{detector}: {out.step}: {out.reason}")
                continue
            done += 1
            sci, diff, tmpl, psf = out.visit_image, out.difference, out.template, out.psf
            assert sci is not None and diff is not None and tmpl is not None and psf is not None
            sci_q, diff_q = _round_trip(sci, work / "s.fits"), _round_trip(diff, work / "d.fits")
            bytes_lossy += (work / "s.fits").stat().st_size + (work / "d.fits").stat().st_size
            write_fits(sci, work / "p.fits")
            bytes_plain += 2 * (work / "p.fits").stat().st_size
            before = dia_mod.detect_dia_sources(
                diff.copy(), sci, tmpl, psf, direct_sources=out.sources, config=config.dia
            )
            after = dia_mod.detect_dia_sources(
                diff_q, sci_q, tmpl, psf, direct_sources=out.sources, config=config.dia
            )
            n_before, n_after = n_before + len(before), n_after + len(after)
            ia, ib = _match(before, after)
            f0, f1 = np.asarray(before["psfFlux"])[ia], np.asarray(after["psfFlux"])[ib]
            e0 = np.asarray(before["psfFluxErr"])[ia]
            dia_dflux += list((f1 - f0) / e0)
            lost += list(np.asarray(before["snr"])[np.setdiff1d(np.arange(len(before)), ia)])
            gained += list(np.asarray(after["snr"])[np.setdiff1d(np.arange(len(after)), ib)])
            # direct-image PSF photometry of the visit's sources, with the calibration's PSF
            cal, _ = calibrate_from_repo(args.repo, exposure, detector, config)
            x, y = np.asarray(cal.sources["x"], float), np.asarray(cal.sources["y"], float)
            results = []
            for img in (sci, sci_q):
                bad = (np.asarray(img.mask) & dia_mod._UNUSABLE) != 0
                results.append(
                    psf_photometry(
                        np.asarray(img.data),
                        np.asarray(img.variance),
                        bad,
                        cal.psf,
                        x,
                        y,
                        pixel_weights=False,
                    )
                )
            p0, p1 = results
            ok = np.isfinite(p0["flux"]) & np.isfinite(p1["flux"]) & (np.asarray(p0["fluxErr"]) > 0)
            src_dflux += list(
                (np.asarray(p1["flux"])[ok] - np.asarray(p0["flux"])[ok]) / np.asarray(p0["fluxErr"])[ok]
            )
            print(
                f"{exposure.id}/{detector}: DIA {len(before)} → {len(after)} (matched {len(ia)}), "
                f"sources {int(ok.sum())}, load {_load()}",
                flush=True,
            )

    def stats(v: list[float]) -> dict[str, float]:
        a = np.asarray(v, float)
        if not a.size:
            return {"n": 0}
        return {
            "n": int(a.size),
            "median": float(np.median(a)),
            "mean": float(a.mean()),
            "rms": float(np.sqrt(np.mean(a**2))),
            "max_abs": float(np.abs(a).max()),
        }

    summary = {
        "detector_visits": done,
        "dia_before": n_before,
        "dia_after": n_after,
        "dia_lost_snr": sorted(round(float(s), 2) for s in lost),
        "dia_gained_snr": sorted(round(float(s), 2) for s in gained),
        "dia_dflux_over_err": stats(dia_dflux),
        "source_dflux_over_err": stats(src_dflux),
        "MB_per_detector_visit_plain": bytes_plain / max(done, 1) / 1e6,
        "MB_per_detector_visit_lossy": bytes_lossy / max(done, 1) / 1e6,
        "load": _load(),
    }
    print(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sizes", help="bytes and write/read time per layout")
    s.add_argument("--repo", help="a repo with raws (a 2k×2k detector is calibrated from its last visit)")
    s.add_argument("--files", nargs="*", default=[], help="more Exposure FITS files to measure")
    s.add_argument("--repeat", type=int, default=3)
    m = sub.add_parser("measure", help="effect of the lossy round trip on DIA and PSF photometry")
    m.add_argument("--repo", required=True, help="a repo with templates (e.g. the tiny test repo)")
    m.add_argument("--detector-visits", type=int, default=24)
    for p in (s, m):
        p.add_argument("--workdir", default=None, help="where temporary files go (default: system temp)")
        p.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    result: Any = run_sizes(args) if args.what == "sizes" else run_measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
