"""Configuration of a data-release run: one pydantic model, written beside the outputs as provenance."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pachon.pipelines.prompt.config import PromptConfig

__all__ = ["DrpConfig"]


class DrpConfig(BaseModel):
    """Everything (besides the input repo) that decides what a release contains.

    The single-visit steps reuse prompt processing's configuration (``prompt``); the multi-visit
    steps (association, global astrometry, ubercal, forced photometry) have their own fields.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: PromptConfig = Field(default_factory=PromptConfig)
    link_radius_arcsec: float = Field(
        default=1.0,
        description="friends-of-friends linking length that groups sources of different visits into one "
        "Object; ≥ the motion of a 300 mas/yr star between consecutive visits",
    )
    min_visits: int = Field(default=3, description="sources in fewer visits do not make an Object")
    astrometry_min_visits: int = Field(
        default=6, description="fewer measurements fit position only (no proper motion or parallax)"
    )
    astrometry_iterations: int = Field(
        default=5, description="alternations of star fits and per-detector-visit corrections"
    )
    astrometry_clip: float = Field(
        default=5.0, description="sources further than this many σ from their star's fit are rejected"
    )
    astrometry_bright_snr: float = Field(default=30.0, description="stars used for offsets and noise floor")
    ubercal_min_snr: float = Field(default=30.0, description="sources used in the photometric solution")
    ubercal_clip: float = Field(default=4.0, description="sigma clipping of the ubercal residuals")
    ref_epoch_mjd: float = Field(
        default=57388.0, description="epoch of Object positions (J2016.0, the reference catalog's epoch)"
    )
    coadd_patch_size: int = Field(default=2048, description="deep_coadd patch side in pixels")
    coadd_border: int = Field(
        default=100, description="pixels each patch's coadd extends into its neighbours (patch overlap)"
    )
    detect_threshold: float = Field(
        default=5.0, description="detection threshold on the multi-band detection image, in σ of a PSF flux"
    )
    detect_min_area: int = Field(default=5, description="minimum footprint area (pixels) of a detection")
    deblend_cont: float = Field(
        default=0.005,
        description="SExtractor DEBLEND_MINCONT: flux fraction a branch needs to become a separate child",
    )
    ref_band: str = Field(default="r", description="reference band (refBand): shapes and model radii")
    join_radius_arcsec: float = Field(
        default=1.0, description="match radius of multi-visit stars (astrometry) to coadd Objects"
    )
    extendedness_threshold: float = Field(
        default=0.5,
        description="Objects whose refExtendedness exceeds this are extended (also used for the per-visit "
        "extendedness that keeps galaxies out of the astrometric and photometric solutions)",
    )
