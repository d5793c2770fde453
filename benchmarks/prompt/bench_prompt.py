#!/usr/bin/env python3
"""Prompt processing speed per 4k×4k detector on one core: raw → alerts serialized.

A synthetic 4096² raw (``pachon.pipelines.prompt.testing``: ~20k stars, overscan, flat, cosmic
rays, saturation, SIP distortion, 10″ pointing error) with 60 injected transients is processed with
the production steps: ISR, characterize, astrometry, photometric calibration, template warp,
Alard–Lupton subtraction, DIA detection and measurement, then one alert per DiaSource built with
cutouts and serialized to Avro with Confluent framing (``pachon.core.alerts``). The template (a
coadd of two better-seeing visits) is built beforehand and not timed, as in operations.
APDB association is visit-level and not included. Prints per-step wall *and* CPU seconds
(``time.process_time``: the machine is shared, so wall time depends on the load, which is
printed too) and their p50 over ``--repeats`` runs. Machine: 2 cores, 24 GiB; one process,
``OMP/OPENBLAS/MKL`` single-threaded (one core). ``--profile FILE`` writes a cProfile of the runs.

Usage: python benchmarks/prompt/bench_prompt.py [--size 4096] [--repeats 3] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import warnings

import numpy as np
from astropy.table import Table
from astropy.time import Time

warnings.simplefilter("ignore")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", default=None, help="write a cProfile of the timed runs here")
    args = parser.parse_args()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    from pachon.pipelines.prompt.calibrate import calibrate_detector
    from pachon.pipelines.prompt.coadd import CoaddInput, coadd
    from pachon.pipelines.prompt.dia import detect_dia_sources
    from pachon.pipelines.prompt.ids import pack_ids
    from pachon.pipelines.prompt.subtract import subtract
    from pachon.pipelines.prompt.testing import make_field, make_visit
    from pachon.pipelines.prompt.warp import warp_exposure

    n = args.size
    scale = (n / 1024) ** 2
    field = make_field(nx=n, ny=n, n_stars=int(1500 * scale), seed=1)
    ref = field.refcat()
    t0 = time.perf_counter()
    inputs = []
    for k, seeing in enumerate((0.62, 0.66)):
        v = make_visit(
            field, seed=50 + k, seeing_arcsec=seeing, mjd=60900.0 + k, n_cosmic_rays=int(30 * scale)
        )
        cal = calibrate_detector(
            v.raw, refcat=ref, band="r", epoch=Time(60900.0 + k, format="mjd"), flat=v.flat
        )
        inputs.append(CoaddInput(cal.visit_image, cal.psf.fwhm, cal.psf))
    template = coadd(inputs, inputs[0].exposure.wcs, (n, n))
    print(f"setup (2 template visits + coadd, not timed below): {time.perf_counter() - t0:.1f} s")

    try:
        from pachon.core.alerts import build_alert, encode_alert, make_cutouts
    except ImportError:
        build_alert = None  # type: ignore[assignment]

    totals = []
    cpu_totals = []
    per_step: dict[str, list[tuple[float, float]]] = {}
    sizes: list[int] = []
    load_start = os.getloadavg()[0]
    for rep in range(args.repeats):
        rng = np.random.default_rng(100 + rep)
        px, py = rng.uniform(40, n - 40, 60), rng.uniform(40, n - 40, 60)
        ra, dec = inputs[0].exposure.wcs.all_pix2world(px, py, 0)
        tr = Table({"ra": ra, "dec": dec, "mag": rng.uniform(19.0, 22.0, 60)})
        sim = make_visit(
            field,
            seed=200 + rep,
            seeing_arcsec=0.85,
            mjd=61000.0,
            transients=tr,
            n_cosmic_rays=int(30 * scale),
        )
        steps: dict[str, float] = {}
        cpu: dict[str, float] = {}
        if profiler is not None:
            profiler.enable()
        start, cpu_start = time.perf_counter(), time.process_time()
        cal = calibrate_detector(
            sim.raw,
            refcat=ref,
            band="r",
            epoch=Time(61000.0, format="mjd"),
            flat=sim.flat,
            visit=1,
            detector=0,
        )
        steps.update(cal.timings)
        cpu.update(cal.cpu_timings)
        t, c = time.perf_counter(), time.process_time()
        warped = warp_exposure(template, cal.visit_image.wcs, (n, n))
        steps["template_warp"], cpu["template_warp"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        s = cal.sources
        snr = np.asarray(s["psfFlux"]) / np.asarray(s["psfFluxErr"])
        sel = (snr > 10) & ~np.asarray(s["pixelFlags_saturated"])
        order = np.argsort(-snr[sel])
        res = subtract(
            cal.visit_image, warped, cal.psf, np.asarray(s["x"])[sel][order], np.asarray(s["y"])[sel][order]
        )
        steps["subtract"], cpu["subtract"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        dia = detect_dia_sources(res.difference, cal.visit_image, warped, res.psf, direct_sources=s)
        dia["diaSourceId"] = pack_ids(1, 0, np.arange(len(dia)), kind=1)
        steps["detect_dia"], cpu["detect_dia"] = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        n_alerts = 0
        if build_alert is not None:
            d, v = res.difference, cal.visit_image
            for row in dia:
                r = {c: row[c] for c in dia.colnames if not c.startswith("rb_")}
                r.update(
                    visit=1, detector=0, diaObjectId=int(row["diaSourceId"]), midpointMjdTai=61000.0, band="r"
                )
                r["timeProcessedMjdTai"] = 61000.0
                cut = make_cutouts(float(row["x"]), float(row["y"]),
                                   difference=(np.asarray(d.data), np.asarray(d.variance), d.wcs),
                                   science=(np.asarray(v.data), np.asarray(v.variance), v.wcs),
                                   template=(np.asarray(warped.data), np.asarray(warped.variance), warped.wcs))  # fmt: skip
                try:
                    payload = encode_alert(build_alert(r, cutouts=cut))
                    sizes.append(len(payload))
                    n_alerts += 1
                except Exception as exc:  # report, do not hide
                    print(f"  alert build failed: {exc}")
                    break
        steps["alerts"], cpu["alerts"] = time.perf_counter() - t, time.process_time() - c
        total, cpu_total = time.perf_counter() - start, time.process_time() - cpu_start
        if profiler is not None:
            profiler.disable()
        totals.append(total)
        cpu_totals.append(cpu_total)
        for k, v in steps.items():
            per_step.setdefault(k, []).append((v, cpu.get(k, float("nan"))))
        print(f"run {rep}: wall {total:.1f} s, CPU {cpu_total:.1f} s, load {os.getloadavg()[0]:.1f}; {len(s)} sources, "
              f"{len(dia)} DiaSources, {n_alerts} alerts; "
              + ", ".join(f"{k} {v:.2f}/{cpu.get(k, float('nan')):.2f}" for k, v in steps.items()))  # fmt: skip
    print(
        f"\nper step, p50 over {args.repeats} runs (load average {load_start:.1f} → {os.getloadavg()[0]:.1f}):"
    )
    print(f"| {'step':<14} | wall s | CPU s |")
    print(f"|{'-' * 16}|--------|-------|")
    for k, vals in per_step.items():
        w = statistics.median(v[0] for v in vals)
        c_ = statistics.median(v[1] for v in vals)
        print(f"| {k:<14} | {w:6.2f} | {c_:5.2f} |")
    wall50, cpu50 = statistics.median(totals), statistics.median(cpu_totals)
    print(f"| {'total':<14} | {wall50:6.2f} | {cpu50:5.2f} |")
    print(f"p50 raw→alerts serialized per {n}×{n} detector, one core: wall {wall50:.1f} s, CPU {cpu50:.1f} s")
    # whole detectors per core within 60 s (a detector is not split across cores), at the CPU rate
    per_core = max(int(60.0 // cpu50), 1) if cpu50 <= 60 else 0
    need = f"{-(-189 // per_core)}" if per_core else "more than 189 (a detector alone exceeds 60 s)"
    print(f"cores for a 189-detector visit in 60 s at this CPU rate: {need} ({per_core} detectors per core)")
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"cProfile written to {args.profile}")
    if sizes:
        print(
            f"alert packet size: median {np.median(sizes) / 1024:.1f} KiB, p95 {np.percentile(sizes, 95) / 1024:.1f} KiB"
        )


if __name__ == "__main__":
    main()
