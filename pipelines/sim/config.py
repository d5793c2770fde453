"""Simulation configuration: the camera, the field, the survey length and the sky densities.

One pydantic model, :class:`SimConfig`, holds everything that decides what a run produces;
with the seed it is the run's complete provenance (it is written into the repo as
``sim_config``). The three presets are the sizes the project uses:

``tiny``
    4 detectors of 1024×1024 at 0.2″/px in a row (≈14′×3.4′, so star pairs 5′ apart exist
    for AM1), 20 visits over three years. Runs in every test session and in ``make demo``.
``small``
    9 detectors of 2048×2048 at 0.2″/px spread over a ≈1°×1° footprint (3×3 grid, 25′ pitch,
    so AM2's 20′ pairs exist), 24 visits. A fuller demo; ≈8 GB of raws, ≈4.5 CPU-minutes.
``medium``
    4 full 4096×4096 detectors at 0.2″/px (2×2, ≈27′ across), 30 visits. For benchmarks;
    ≈16 GB of raws.

Why not a contiguous square degree for ``small``: the raw format stores float32 pixels and
an int32 mask (8 bytes/px), so a filled degree at 0.2″/px would be ≈2.6 GB *per visit*.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["PRESETS", "CameraConfig", "SimConfig", "preset"]

BANDS = ("u", "g", "r", "i", "z", "y")


class CameraConfig(BaseModel):
    """Focal plane: a regular grid of identical detectors sharing one tangent plane."""

    nx: int = Field(default=1024, description="imaging columns per detector (overscan comes on top)")
    ny: int = Field(default=1024, description="imaging rows per detector")
    n_col: int = Field(default=4, description="detectors along x (east-west) in the grid")
    n_row: int = Field(default=1, description="detectors along y (north-south)")
    pitch_x_px: float = Field(default=1064.0, description="detector centre spacing along x, in pixels")
    pitch_y_px: float = Field(default=1064.0, description="detector centre spacing along y, in pixels")
    pixel_scale: float = Field(default=0.2, description="arcsec per pixel at the boresight")
    overscan: int = Field(default=32, description="overscan columns appended at the right of each row")
    distortion: float = Field(
        default=5.0e-3,
        description="radial optical distortion: fractional scale change at 1° from the boresight",
    )

    @property
    def n_detectors(self) -> int:
        return self.n_col * self.n_row

    def detector_offset_px(self, detector: int) -> tuple[float, float]:
        """Focal-plane position (px, from the boresight) of a detector's centre."""
        col, row = detector % self.n_col, detector // self.n_col
        return (
            (col - (self.n_col - 1) / 2.0) * self.pitch_x_px,
            (row - (self.n_row - 1) / 2.0) * self.pitch_y_px,
        )

    @property
    def field_width_arcmin(self) -> float:
        return ((self.n_col - 1) * self.pitch_x_px + self.nx) * self.pixel_scale / 60.0

    @property
    def field_height_arcmin(self) -> float:
        return ((self.n_row - 1) * self.pitch_y_px + self.ny) * self.pixel_scale / 60.0


class SimConfig(BaseModel):
    """Everything (besides the seed) that determines a simulated survey."""

    name: str = "tiny"
    camera: CameraConfig = Field(default_factory=CameraConfig)
    ra: float = Field(default=180.0, description="field centre, deg (on the ecliptic, b≈+60°)")
    dec: float = Field(default=0.5, description="field centre, deg")
    n_visits: int = Field(
        default=20, description="approximate number of visits (the scheduler fills nights in pairs)"
    )
    years: int = Field(default=3, description="survey length in years (≥3 so proper motions are measurable)")
    start_year: int = 2027
    bands: tuple[str, ...] = ("g", "r", "i")
    exposure_time: float = 30.0
    dither_arcsec: float = Field(default=30.0, description="maximum pointing dither about the field centre")
    star_density: float = Field(default=40000.0, description="stars per deg² brighter than r=25.5")
    galaxy_density: float = Field(default=30000.0, description="galaxies per deg² brighter than r=25")
    star_mag_range: tuple[float, float] = (14.5, 25.5)
    galaxy_mag_range: tuple[float, float] = (18.0, 25.0)
    high_pm_fraction: float = Field(default=0.04, description="fraction of stars with measurable motion")
    variable_fraction: float = Field(
        default=0.03, description="fraction of stars that are periodic variables"
    )
    sn_per_deg2: float = Field(default=1500.0, description="supernovae per deg² peaking during the survey")
    n_flares: int = Field(default=3, description="flaring stars (each flares during one visit)")
    n_asteroids: int = Field(default=12, description="asteroids placed to cross the field on some night")
    n_neos: int = Field(default=2, description="of which near-Earth objects")
    pointing_error_arcsec: float = Field(
        default=4.0,
        description="stated bound on the nominal WCS's error over the detector (pointing + rotation)",
    )
    jitter_mas: float = Field(default=5.0, description="rms per axis of the atmospheric astrometric jitter")
    flat_error: float = Field(
        default=0.005, description="rms of the error of the flats given to the pipeline"
    )
    cosmic_ray_rate: float = Field(default=1.5, description="cosmic rays per cm² per second (10 µm pixels)")
    refcat_mag_limit: float = Field(default=20.5, description="Gaia-like G limit of the reference catalog")

    @property
    def margin_deg(self) -> float:
        """Sky model radius beyond the focal plane (dither + rotation + bright-star halos)."""
        return self.dither_arcsec / 3600.0 + 30.0 / 3600.0

    @property
    def sky_half_width_deg(self) -> tuple[float, float]:
        cam = self.camera
        return (
            cam.field_width_arcmin / 120.0 + self.margin_deg,
            cam.field_height_arcmin / 120.0 + self.margin_deg,
        )


PresetName = Literal["tiny", "small", "medium"]

PRESETS: dict[str, SimConfig] = {
    "tiny": SimConfig(),
    "small": SimConfig(
        name="small",
        camera=CameraConfig(nx=2048, ny=2048, n_col=3, n_row=3, pitch_x_px=7500.0, pitch_y_px=7500.0),
        n_visits=24,
        bands=("g", "r", "i", "z"),
        dither_arcsec=60.0,
        n_asteroids=40,
        n_neos=4,
        n_flares=6,
    ),
    "medium": SimConfig(
        name="medium",
        camera=CameraConfig(nx=4096, ny=4096, n_col=2, n_row=2, pitch_x_px=4160.0, pitch_y_px=4160.0),
        n_visits=30,
        bands=("u", "g", "r", "i", "z", "y"),
        dither_arcsec=60.0,
        n_asteroids=40,
        n_neos=4,
        n_flares=6,
    ),
}


def preset(name: str) -> SimConfig:
    """The configuration of a named preset (a copy: callers may modify it)."""
    try:
        return PRESETS[name].model_copy(deep=True)
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
