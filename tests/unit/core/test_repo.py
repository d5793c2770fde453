"""The Butler data repository: creation is idempotent, images round-trip bit for bit, errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.time import Time
from astropy.wcs import WCS, Sip
from lsst.daf.butler import Butler

from pachon.cli.main import main
from pachon.core.image import MASK_PLANES, Exposure, read_fits, write_fits
from pachon.core.repo import BANDS, DataRepository, DetectorSpec, ExposureSpec, RepoError


def _sip_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [512.5, 480.25]
    wcs.wcs.cd = [[-5.55e-5, 1.0e-7], [2.0e-7, 5.55e-5]]
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[0, 2], a[3, 0] = 2.1e-7, -1.3e-7, 4.0e-11
    b[0, 2], b[1, 1], b[0, 3] = 1.7e-7, 3.3e-8, -2.0e-11
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def _exposure(rng: np.random.Generator) -> Exposure:
    data = rng.normal(1000.0, 30.0, (200, 300)).astype(np.float32)
    exp = Exposure(data, unit="nJy", wcs=_sip_wcs(), meta={"EXPTIME": 30.0, "BAND": "r", "AIRMASS": 1.234567})
    exp.variance = rng.uniform(800, 1200, data.shape).astype(np.float32)
    exp.set_mask_plane("SAT", data > 1080)
    exp.set_mask_plane("CR", data < 920)
    exp.set_mask_plane("BAD", np.eye(200, 300, dtype=bool))
    return exp


def _assert_same(a: Exposure, b: Exposure, image_atol: float = 0.0, variance_atol: float = 0.0) -> None:
    assert a.data.dtype == b.data.dtype and np.allclose(a.data, b.data, rtol=0, atol=image_atol)
    assert a.mask.dtype == np.int32 and np.array_equal(a.mask, b.mask)
    assert np.allclose(a.variance, b.variance, rtol=0, atol=variance_atol)
    assert a.unit == b.unit
    x, y = np.meshgrid(np.linspace(0, 299, 7), np.linspace(0, 199, 5))
    ra_a, dec_a = a.wcs.all_pix2world(x, y, 0)
    ra_b, dec_b = b.wcs.all_pix2world(x, y, 0)
    assert np.array_equal(ra_a, ra_b) and np.array_equal(dec_a, dec_b)
    assert b.wcs.sip is not None
    for key in ("EXPTIME", "BAND", "AIRMASS"):
        assert a.meta[key] == b.meta[key]


def test_fits_round_trip_is_exact(tmp_path) -> None:
    exp = _exposure(np.random.default_rng(1))
    write_fits(exp, tmp_path / "x.fits")
    _assert_same(exp, read_fits(tmp_path / "x.fits"))


def test_files_open_as_ccddata_with_wcs(tmp_path) -> None:
    exp = _exposure(np.random.default_rng(2))
    write_fits(exp, tmp_path / "x.fits")
    ccd = CCDData.read(tmp_path / "x.fits")
    assert ccd.unit == exp.unit
    assert np.array_equal(ccd.data, exp.data)
    assert ccd.wcs.sip is not None
    assert np.allclose(ccd.wcs.all_pix2world(10, 20, 0), exp.wcs.all_pix2world(10, 20, 0), atol=0, rtol=0)
    assert np.array_equal(ccd.uncertainty.array, exp.variance)


def test_mask_planes_are_independent_bits() -> None:
    exp = Exposure(np.zeros((3, 3), np.float32))
    exp.set_mask_plane("SAT", np.ones((3, 3), bool))
    exp.set_mask_plane("CR", np.eye(3, dtype=bool))
    assert exp.mask_plane("SAT").all()
    assert exp.mask_plane("CR").sum() == 3
    assert exp.mask[0, 0] == (1 << MASK_PLANES["SAT"]) | (1 << MASK_PLANES["CR"])


def test_create_is_idempotent_and_says_so(tmp_path, capsys) -> None:
    report = DataRepository.create(tmp_path / "repo")
    assert report.created_repo and report.changed
    assert "instrument Pachon" in report.registered
    again = DataRepository.create(tmp_path / "repo")
    assert not again.changed
    assert main(["repo", "create", str(tmp_path / "repo")]) == 0
    assert "nothing changed" in capsys.readouterr().out
    butler = Butler.from_config(str(tmp_path / "repo"))
    bands = {
        rec.band for rec in butler.registry.queryDimensionRecords("physical_filter", instrument="Pachon")
    }
    assert bands == set(BANDS)
    names = {dt.name for dt in butler.registry.queryDatasetTypes()}
    assert {
        "raw",
        "visit_image",
        "difference_image",
        "template_coadd",
        "deep_coadd",
        "source",
        "object",
    } <= names


def test_butler_round_trip_of_an_image(tmp_path) -> None:
    DataRepository.create(tmp_path / "repo")
    repo = DataRepository.open(tmp_path / "repo", writeable=True)
    repo.register_detectors([DetectorSpec(id=3, name="S03")])
    repo.register_exposure(
        ExposureSpec(
            id=2027031500007, day_obs=20270315, band="i", start=Time("2027-03-16T04:00:00", scale="tai"),
            exposure_time=30.0, ra=150.1, dec=2.2, airmass=1.1, seq_num=7,
        )
    )  # fmt: skip
    exp = _exposure(np.random.default_rng(3))
    repo.put(exp, "visit_image", visit=2027031500007, detector=3, run="Pachon/runs/test")
    assert repo.has("visit_image", visit=2027031500007, detector=3, run="Pachon/runs/test")
    # As a notebook would: a plain Butler with the data ID.
    butler = Butler.from_config(str(tmp_path / "repo"), collections="Pachon/runs/test")
    back = butler.get("visit_image", instrument="Pachon", visit=2027031500007, detector=3)
    assert isinstance(back, Exposure)
    # visit_image is stored tile-compressed: float planes within half a quantization step (σ/16 and
    # median variance/1024, see pachon.core.image), mask and everything else exact
    median_var = float(np.median(exp.variance))
    _assert_same(
        exp, back, image_atol=0.5001 * median_var**0.5 / 16, variance_atol=0.5001 * median_var / 1024
    )
    wcs = butler.get("visit_image.wcs", instrument="Pachon", visit=2027031500007, detector=3)
    assert np.array_equal(wcs.all_pix2world(5, 5, 0), exp.wcs.all_pix2world(5, 5, 0))
    visit = next(
        iter(butler.registry.queryDimensionRecords("visit", visit=2027031500007, instrument="Pachon"))
    )
    assert visit.physical_filter == "i_sim"


def test_bad_repo_paths(tmp_path) -> None:
    with pytest.raises(RepoError, match="no such folder"):
        DataRepository.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RepoError, match="not a Pachón data repository"):
        DataRepository.open(tmp_path / "plain")
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(RepoError, match="not empty"):
        DataRepository.create(tmp_path / "plain")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RepoError, match="not a folder"):
        DataRepository.create(tmp_path / "file")


def test_corrupt_registry_is_reported(tmp_path, capsys) -> None:
    DataRepository.create(tmp_path / "repo")
    (tmp_path / "repo" / "gen3.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RepoError, match="corrupt"):
        DataRepository.open(tmp_path / "repo")
    assert main(["repo", "info", str(tmp_path / "repo")]) == 2
    assert "corrupt" in capsys.readouterr().err
