"""Configuration of prompt processing: one pydantic model per step, gathered in :class:`PromptConfig`.

Each step function takes its own small config model, so the data-release pipeline can reuse
a step (``run_isr``, ``characterize``, ``fit_astrometry``…) with its own settings, and a
run's full configuration can be written beside its outputs as provenance (``model_dump_json``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AssociationConfig",
    "AstrometryConfig",
    "CharacterizeConfig",
    "DiaConfig",
    "IsrConfig",
    "PhotoCalConfig",
    "PromptConfig",
    "SubtractConfig",
    "TemplateConfig",
]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IsrConfig(_Config):
    """Instrument signature removal."""

    overscan_columns: int = Field(
        default=32,
        description="overscan width at the right edge, used only when the raw has no BIASSEC keyword",
    )
    overscan_fit_order: int = Field(default=1, description="polynomial order of the row-wise overscan fit")
    default_gain: float = Field(default=1.0, description="e-/ADU when the raw has no GAIN keyword")
    default_read_noise: float = Field(default=5.0, description="e- rms when the raw has no RDNOISE keyword")
    default_saturation: float = Field(default=60000.0, description="ADU when the raw has no SATURATE keyword")
    bad_column_sigma: float = Field(
        default=8.0, description="a column whose median deviates this much is BAD"
    )
    cosmic_rays: bool = True
    cr_sigclip: float = Field(
        default=5.0, description="cosmic-ray detection limit in sigma (find_cosmic_rays)"
    )


class CharacterizeConfig(_Config):
    """Background, detection, PSF model and measurement on a calibrated (ISR) image."""

    background_box: int = 128
    background_filter: int = 3
    illumination_box: int = Field(
        default=64,
        description="mesh (px) of the sky-based flat-field (illumination) correction applied before the "
        "background; 0 turns it off",
    )
    illumination_order: int = Field(
        default=1, description="polynomial order of the sky itself across one detector (the rest is the flat)"
    )
    detect_threshold: float = Field(default=5.0, description="detection threshold in matched-filter sigma")
    min_area: int = 5
    psf_stamp: int = Field(default=25, description="PSF stamp size in pixels (odd)")
    psf_max_stars: int = 150
    psf_min_snr: float = 80.0
    psf_min_stars_spatial: int = Field(
        default=40, description="PSF stars needed for a PSF model linear in position (else constant)"
    )
    aperture_radius: float = Field(default=12.0, description="radius of the ap12Flux aperture in pixels")


class AstrometryConfig(_Config):
    """Match to the reference catalog and fit a TAN-SIP WCS."""

    max_offset_arcsec: float = Field(default=30.0, description="largest pointing error searched for")
    match_radius_arcsec: float = Field(
        default=0.6, description="final matching radius after the offset solve"
    )
    sip_degree: int = 3
    refit_distortion: bool = Field(
        default=True,
        description="refit the SIP distortion when there are enough matches (4 per term); otherwise keep "
        "the nominal WCS's distortion and fit pointing, rotation and scale only",
    )
    min_matches: int = Field(default=3, description="fewer than 8 matches fit shift + rotation only")
    min_votes: int = Field(
        default=3, description="pairs agreeing on the pointing offset (chance coincidences give ≤ 1 here)"
    )
    max_sources: int = 400
    max_rms_mas: float = Field(default=200.0, description="a fit worse than this fails the detector")
    clip_sigma: float = 3.0


class PhotoCalConfig(_Config):
    """Zero point from reference stars."""

    min_stars: int = 3
    min_snr: float = 20.0
    clip_sigma: float = 3.0


class TemplateConfig(_Config):
    """Template coadds built from the best-seeing early visits."""

    max_visits: int = Field(default=6, description="visits per band combined into a template")
    early_fraction: float = Field(
        default=0.6, description="choose among the first fraction of visits in time"
    )
    max_seeing_ratio: float = Field(
        default=1.3, description="inputs with seeing worse than this × the best candidate's are left out"
    )
    pixel_scale_arcsec: float = 0.2
    patch_size: int = Field(default=2048, description="patch side in pixels")
    skymap: str = "pachon_field"


class SubtractConfig(_Config):
    """Alard–Lupton PSF-matched image subtraction."""

    kernel_size: int = Field(default=21, description="kernel side in pixels (odd)")
    basis_sigmas: tuple[float, ...] = Field(
        default=(0.7, 1.5, 3.0), description="Gaussian widths, in template PSF σ"
    )
    basis_degrees: tuple[int, ...] = Field(
        default=(2, 2, 2),
        description="polynomial degree per Gaussian (18 bases; (4, 2, 2) gave no better noise)",
    )
    spatial_order: int = Field(default=1, description="polynomial order of the kernel's spatial variation")
    min_stamps_spatial: int = Field(
        default=40, description="with fewer clean stamps the kernel is fitted constant over the detector"
    )
    background_order: int = 1
    max_stamps: int = 200
    stamp_size: int = 31
    clip_sigma: float = 3.0


class DiaConfig(_Config):
    """DIA source detection and measurement on the difference image."""

    threshold: float = Field(default=5.0, description="detection threshold in PSF (matched-filter) sigma")
    min_area: int = 3
    dipole_ratio: float = Field(
        default=0.3, description="min |neg|/pos flux ratio of a footprint to flag a dipole"
    )
    real_bogus_threshold: float = Field(
        default=0.5, description="reliability below which a DiaSource is dropped"
    )
    cutout_size: int = 31


class AssociationConfig(_Config):
    """DiaSource → DiaObject association in the APDB."""

    radius_arcsec: float = 1.0
    history_days: float = Field(default=365.0, description="DiaSource history in alerts and summaries")


class PromptConfig(_Config):
    """Everything prompt processing is configured by; written beside each night's outputs."""

    isr: IsrConfig = Field(default_factory=lambda: IsrConfig())
    characterize: CharacterizeConfig = Field(default_factory=CharacterizeConfig)
    astrometry: AstrometryConfig = Field(default_factory=AstrometryConfig)
    photocal: PhotoCalConfig = Field(default_factory=PhotoCalConfig)
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    subtract: SubtractConfig = Field(default_factory=SubtractConfig)
    dia: DiaConfig = Field(default_factory=DiaConfig)
    association: AssociationConfig = Field(default_factory=AssociationConfig)
