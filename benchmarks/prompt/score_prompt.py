"""Score a processed repo's prompt products against the simulator's truth (issue 5's acceptance).

Usage (after ``pachon prompt templates`` and ``pachon prompt run`` on a simulated repo)::

    .venv/bin/python benchmarks/prompt/score_prompt.py --repo /work/small/prompt-repo [--json out.json]
        [--misses misses.ecsv] [--false false.ecsv] [--rescore]

``--rescore`` scores a retrained classifier (``pachon prompt train``) on the stored DiaSources
without processing the visits again.

Prints astrometric residuals vs the true WCS, the zero-point error, SN + asteroid completeness at true
SNR ≥ 10 and 5–10 (with every miss's cause, per class and SNR bin), false DIA sources per 4k detector
per visit by cause, association purity and variables recovered. See
:mod:`pachon.pipelines.prompt.scoring` for the definitions.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pachon.pipelines.prompt.scoring import (
    association_purity,
    astrometry_residuals,
    score_repo,
    variables_recovered,
    zero_point_offsets,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", required=True, help="a processed repo (templates built, visits run)")
    parser.add_argument("--rb-threshold", type=float, default=0.5)
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="re-score the stored DiaSources' features with the repo's current real/bogus model (after "
        "`pachon prompt train`) instead of their stored reliability; association figures are not redone",
    )
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--misses", help="write every scored truth object and its outcome (ECSV)")
    parser.add_argument("--false", dest="false_path", help="write the false positives (ECSV)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    model = None
    if args.rescore:
        from pachon.core.repo import DataRepository
        from pachon.pipelines.prompt.pipeline import load_rb_model
        from pachon.pipelines.prompt.realbogus import RealBogusModel

        stored = load_rb_model(DataRepository.open(args.repo))
        if stored is None:
            parser.error(
                f"{args.repo}: no real_bogus_model to re-score with; run `pachon prompt train` first"
            )
        model = RealBogusModel.from_dict(stored)
    score = score_repo(args.repo, rb_threshold=args.rb_threshold, model=model)
    print(score.summary())
    astro = astrometry_residuals(args.repo)
    zp = zero_point_offsets(args.repo)
    pure, total, n_obj, n_multi = association_purity(args.repo, score)
    var_found, var_n = variables_recovered(args.repo)
    print(
        f"WCS vs truth: median {np.median(astro):.1f} mas, p90 {np.percentile(astro, 90):.1f} mas, "
        f"rms over detector-visits {np.sqrt(np.mean(astro**2)):.1f} mas (n={len(astro)})"
    )
    print(
        f"zero point vs truth: median |Δ| {np.median(np.abs(zp)):.4f} mag, rms {np.sqrt(np.mean(zp**2)):.4f} "
        f"(n={len(zp)})"
    )
    print(
        f"association purity {pure}/{total} = {pure / max(total, 1):.3f} over {n_obj} DiaObjects ({n_multi} with >1)"
    )
    print(
        f"variables with amplitude > 0.3 mag on scored detectors: {var_n}, with a DiaObject within 1″: {var_found}"
    )
    print(f"scoring took {time.perf_counter() - t0:.1f} s")
    figures = score.to_dict() | {
        "astrometry_median_mas": float(np.median(astro)),
        "astrometry_rms_mas": float(np.sqrt(np.mean(astro**2))),
        "zero_point_median_abs_mag": float(np.median(np.abs(zp))),
        "zero_point_rms_mag": float(np.sqrt(np.mean(zp**2))),
        "association_purity": pure / max(total, 1),
        "association_sources": total,
        "variables_found": var_found,
        "variables_on_detectors": var_n,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    if args.misses:
        score.hits.write(args.misses, overwrite=True)
    if args.false_path:
        score.false.write(args.false_path, overwrite=True)


if __name__ == "__main__":
    main()
