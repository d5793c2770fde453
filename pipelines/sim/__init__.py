"""Survey simulator: sky model, cadence, instrument and images, with known truth.

Public API::

    from pachon.pipelines.sim import simulate, plot_visit, preset, SimConfig, build_survey

``simulate(repo, "tiny", seed=1)`` writes raws, flats, a reference catalog and truth
tables into a Butler repo; ``plot_visit(repo, exposure, detector, "out.png")`` shows a
visit with its truth overlaid. See :mod:`pachon.pipelines.sim.run` for the products.
"""

from pachon.pipelines.sim.config import PRESETS, CameraConfig, SimConfig, preset
from pachon.pipelines.sim.run import EXTRA_DATASET_TYPES, SimulationSummary, Survey, build_survey, simulate

__all__ = [
    "EXTRA_DATASET_TYPES",
    "PRESETS",
    "CameraConfig",
    "SimConfig",
    "SimulationSummary",
    "Survey",
    "build_survey",
    "plot_visit",
    "preset",
    "simulate",
]


def __getattr__(name: str) -> object:
    if name == "plot_visit":  # matplotlib only when plotting
        from pachon.pipelines.sim.plot import plot_visit

        return plot_visit
    raise AttributeError(name)
