"""Tile-compressed Exposure files: what is exact stays exact, what is quantized stays within its step.

The lossy default quantizes the image at σ/16 (σ = √median variance) and the variance at
median/1024 with SUBTRACTIVE_DITHER_2; the mask, WCS and metadata must come back unchanged,
NaNs stay NaN, zeros stay zero, old plain files still read, and cutouts of a compressed image
are valid FITS with the right WCS.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, Cutout2D
from astropy.time import Time
from astropy.wcs import WCS, Sip
from lsst.daf.butler import Butler

from pachon.core.formatters import compression_for
from pachon.core.image import (
    LOSSLESS_COMPRESSION,
    LOSSY_COMPRESSION,
    Exposure,
    FitsCompression,
    ImageFormatError,
    read_fits,
    read_fits_cutout,
    read_fits_header,
    write_fits,
)
from pachon.core.repo import DataRepository, DetectorSpec, ExposureSpec

SKY_VAR = 900.0  # σ = 30 nJy


def _step(exp: Exposure) -> float:
    """The image's quantization step: √(median variance over positive pixels) / 16."""
    var = exp.variance
    return float(np.sqrt(np.median(var[np.isfinite(var) & (var > 0)]))) / 16


def _wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [160.5, 120.25]
    wcs.wcs.cd = [[-5.55e-5, 1.0e-7], [2.0e-7, 5.55e-5]]
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], b[0, 2] = 2.1e-7, 1.7e-7
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def _exposure(seed: int = 0, shape: tuple[int, int] = (240, 320)) -> Exposure:
    """A difference-image-like exposure: noise, a few bright sources, NaNs, exact zeros, mask bits."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, SKY_VAR**0.5, shape).astype(np.float32)
    data[50:53, 60:63] += 5e4  # a bright star: far above σ, still quantized with the same step
    data[100, :] = np.nan  # a dead row
    data[:, :10] = 0.0  # no data: exact zeros
    var = (SKY_VAR + np.abs(data) * 0.5).astype(np.float32)
    var[100, :] = np.nan
    var[:, :10] = 0.0
    exp = Exposure(data, unit="nJy", wcs=_wcs(), meta={"EXPTIME": 30.0, "BAND": "r", "VISIT": 2027031500007})
    exp.variance = var
    exp.set_mask_plane("NO_DATA", data == 0.0)
    exp.set_mask_plane("BAD", np.isnan(data))
    exp.set_mask_plane("SAT", data > 4e4)
    exp.set_mask_plane("STREAK", np.eye(*shape, dtype=bool))
    return exp


def _assert_header_same(a: Exposure, b: Exposure) -> None:
    assert b.unit == a.unit
    for key in ("EXPTIME", "BAND", "VISIT"):
        assert b.meta[key] == a.meta[key]
    x, y = np.meshgrid(np.linspace(0, 319, 5), np.linspace(0, 239, 4))
    assert b.wcs.sip is not None
    assert np.array_equal(np.array(a.wcs.all_pix2world(x, y, 0)), np.array(b.wcs.all_pix2world(x, y, 0)))


def test_lossy_round_trip_within_the_step(tmp_path) -> None:
    exp = _exposure()
    write_fits(exp, tmp_path / "c.fits", LOSSY_COMPRESSION)
    back = read_fits(tmp_path / "c.fits")
    assert back.mask.dtype == np.int32 and np.array_equal(back.mask, exp.mask)
    assert np.array_equal(np.isnan(back.data), np.isnan(exp.data))
    assert np.array_equal(np.isnan(back.variance), np.isnan(exp.variance))
    zeros = exp.data == 0.0
    assert np.all(back.data[zeros] == 0.0) and np.all(back.variance[exp.variance == 0.0] == 0.0)
    ok = np.isfinite(exp.data) & ~zeros
    step = _step(exp)
    err = (back.data - exp.data)[ok].astype(np.float64)
    assert np.abs(err).max() <= 0.5 * step * 1.001
    # uniform rounding error: rms = step/√12, unbiased (dithered), so really quantized at σ/16
    assert err.std() == pytest.approx(step / np.sqrt(12), rel=0.03)
    assert abs(err.mean()) < 5 * step / np.sqrt(12 * err.size)
    assert back.data[51, 61] == pytest.approx(exp.data[51, 61], abs=0.5 * step * 1.001)
    var_ok = np.isfinite(exp.variance) & (exp.variance > 0)
    var_step = float(np.median(exp.variance[var_ok])) / 1024
    assert np.abs(back.variance - exp.variance)[var_ok].max() <= 0.5 * var_step * 1.001
    _assert_header_same(exp, back)


def test_compressed_file_layout_and_size(tmp_path) -> None:
    exp = _exposure(1)
    write_fits(exp, tmp_path / "plain.fits")
    write_fits(exp, tmp_path / "c.fits", LOSSY_COMPRESSION)
    assert (tmp_path / "c.fits").stat().st_size < 0.3 * (tmp_path / "plain.fits").stat().st_size
    with fits.open(tmp_path / "c.fits", disable_image_compression=True) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "IMAGE", "MASK", "UNCERT"]
        assert hdul[0].data is None
        for name in ("IMAGE", "MASK", "UNCERT"):
            assert hdul[name].header["ZCMPTYPE"] == "RICE_1"
        assert hdul["IMAGE"].header["ZQUANTIZ"] == "SUBTRACTIVE_DITHER_2"
        assert "ZQUANTIZ" not in hdul["MASK"].header  # integers: lossless
        assert hdul["MASK"].header["ZBITPIX"] == 32
        for name in ("IMAGE", "MASK", "UNCERT"):  # bands of 16 whole rows
            assert (hdul[name].header["ZTILE1"], hdul[name].header["ZTILE2"]) == (320, 16)
    with fits.open(tmp_path / "c.fits") as hdul:
        # every plane carries the WCS (DS9 shows coordinates on the mask and variance too)
        for name in ("IMAGE", "MASK", "UNCERT"):
            assert WCS(hdul[name].header).wcs.ctype[0].startswith("RA---TAN")


def test_same_pixels_give_the_same_file(tmp_path) -> None:
    """The dither seed comes from the pixels' checksum, not the clock: re-runs write identical files."""
    exp = _exposure(2)
    write_fits(exp, tmp_path / "a.fits", LOSSY_COMPRESSION)
    write_fits(exp.copy(), tmp_path / "b.fits", LOSSY_COMPRESSION)
    assert (tmp_path / "a.fits").read_bytes() == (tmp_path / "b.fits").read_bytes()


def test_lossless_compression_is_bit_exact(tmp_path) -> None:
    exp = _exposure(3)
    write_fits(exp, tmp_path / "l.fits", LOSSLESS_COMPRESSION)
    back = read_fits(tmp_path / "l.fits")
    assert np.array_equal(back.data, exp.data, equal_nan=True)
    assert np.array_equal(back.variance, exp.variance, equal_nan=True)
    assert np.array_equal(back.mask, exp.mask)
    _assert_header_same(exp, back)


def test_old_plain_files_still_read(tmp_path) -> None:
    """A file in the layout Pachón wrote before compression (image in PRIMARY), made by astropy alone."""
    exp = _exposure(4)
    header = fits.Header({"EXPTIME": 30.0, "BAND": "r", "VISIT": 2027031500007, "BUNIT": "nJy"})
    header.extend(exp.wcs.to_header(relax=True))
    fits.HDUList(
        [
            fits.PrimaryHDU(exp.data, header=header),
            fits.ImageHDU(exp.mask, name="MASK"),
            fits.ImageHDU(exp.variance, header=fits.Header({"UTYPE": "VarianceUncertainty"}), name="UNCERT"),
        ]
    ).writeto(tmp_path / "old.fits")
    back = read_fits(tmp_path / "old.fits")
    assert np.array_equal(back.data, exp.data, equal_nan=True) and np.array_equal(back.mask, exp.mask)
    _assert_header_same(exp, back)
    wcs, meta = read_fits_header(tmp_path / "old.fits")
    assert wcs is not None and meta["BAND"] == "r"


def test_readers_outside_pachon_open_compressed_files(tmp_path) -> None:
    exp = _exposure(5)
    write_fits(exp, tmp_path / "c.fits", LOSSY_COMPRESSION)
    ccd = CCDData.read(tmp_path / "c.fits", hdu="IMAGE")
    assert ccd.unit == exp.unit and ccd.wcs.sip is not None
    assert np.allclose(ccd.data, exp.data, rtol=0, atol=0.5 * _step(exp) * 1.001, equal_nan=True)
    assert np.allclose(ccd.uncertainty.array[:, 10:], exp.variance[:, 10:], rtol=1e-3, equal_nan=True)
    assert fits.getdata(tmp_path / "c.fits", "MASK").dtype.kind == "i"
    # and from bytes, as a service that holds the file in memory would
    back = read_fits((tmp_path / "c.fits").read_bytes())
    assert np.array_equal(back.mask, exp.mask)


def test_cutout_of_a_compressed_image_is_valid_fits_with_the_right_wcs(tmp_path) -> None:
    """SODA-style: decompress only the rows of the cutout (``.section``), write a plain FITS stamp."""
    exp = _exposure(6)
    write_fits(exp, tmp_path / "c.fits", LOSSY_COMPRESSION)
    with fits.open(tmp_path / "c.fits") as hdul:
        hdu = hdul["IMAGE"]
        wcs = WCS(hdu.header)
        y0, y1, x0, x1 = 40, 70, 50, 90
        pixels = hdu.section[y0:y1, x0:x1]
        cut = Cutout2D(hdu.data, (70, 55), (30, 40), wcs=wcs)
    assert np.array_equal(pixels, cut.data)
    stamp = io.BytesIO()
    fits.PrimaryHDU(cut.data, header=cut.wcs.to_header(relax=True)).writeto(stamp, output_verify="exception")
    with fits.open(io.BytesIO(stamp.getvalue())) as out:
        out.verify("exception")
        stamp_wcs = WCS(out[0].header)
        assert np.array_equal(out[0].data, pixels)
    ra, dec = exp.wcs.all_pix2world(x0 + 7.0, y0 + 11.0, 0)
    ra2, dec2 = stamp_wcs.all_pix2world(7.0, 11.0, 0)
    assert abs(ra - ra2) < 1e-9 and abs(dec - dec2) < 1e-9


@pytest.mark.parametrize("compression", [None, LOSSY_COMPRESSION], ids=["plain", "lossy"])
def test_read_fits_cutout_reads_the_window_with_a_shifted_wcs(tmp_path, compression) -> None:
    exp = _exposure(10)
    write_fits(exp, tmp_path / "c.fits", compression)
    full = read_fits(tmp_path / "c.fits")
    cut = read_fits_cutout(tmp_path / "c.fits", slice(90, 130), slice(300, 400))  # clipped at x = 320
    assert cut.data.shape == (40, 20)
    assert np.array_equal(cut.data, full.data[90:130, 300:320], equal_nan=True)
    assert np.array_equal(cut.mask, full.mask[90:130, 300:320])
    assert np.array_equal(cut.variance, full.variance[90:130, 300:320], equal_nan=True)
    sky_cut = np.array(cut.wcs.all_pix2world(5.0, 7.0, 0))
    sky_full = np.array(full.wcs.all_pix2world(305.0, 97.0, 0))
    assert np.allclose(sky_cut, sky_full, rtol=0, atol=1e-10)
    assert cut.meta["BAND"] == "r" and cut.unit == exp.unit
    with pytest.raises(ImageFormatError, match="holds no pixel"):
        read_fits_cutout(tmp_path / "c.fits", slice(500, 600), slice(0, 10))


def test_without_a_usable_variance_the_image_uses_the_tile_noise(tmp_path) -> None:
    exp = _exposure(7)
    exp.variance = None
    write_fits(exp, tmp_path / "nv.fits", LOSSY_COMPRESSION)
    back = read_fits(tmp_path / "nv.fits")
    assert back.variance is None and np.array_equal(back.mask, exp.mask)
    ok = np.isfinite(exp.data)
    # fpack's per-tile noise estimate / 16 for the step: still a fraction of σ
    assert np.abs(back.data - exp.data)[ok].max() < 0.1 * SKY_VAR**0.5
    zero_var = _exposure(8)
    zero_var.variance = np.zeros_like(zero_var.data)
    write_fits(zero_var, tmp_path / "zv.fits", LOSSY_COMPRESSION)
    assert np.array_equal(read_fits(tmp_path / "zv.fits").variance, zero_var.variance)


def test_bad_settings_and_files_say_what_is_wrong(tmp_path) -> None:
    with pytest.raises(ValueError, match="positive number"):
        FitsCompression(image_quantize=0)
    with pytest.raises(ValueError, match="RICE_1"):
        FitsCompression(algorithm="HCOMPRESS_1")
    with pytest.raises(ValueError, match="lossless"):
        compression_for("visit_image", {"compression": "tiny"})
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((2, 2)), name="OTHER")]).writeto(
        tmp_path / "x.fits"
    )
    with pytest.raises(ImageFormatError, match="no IMAGE extension"):
        read_fits(tmp_path / "x.fits")


def test_compression_by_dataset_type() -> None:
    for name in ("visit_image", "difference_image", "template_coadd", "deep_coadd"):
        assert compression_for(name) is LOSSY_COMPRESSION
    assert compression_for("raw") is None and compression_for("flat") is None
    assert compression_for("visit_image", {"compression": "lossless"}) is LOSSLESS_COMPRESSION
    assert compression_for("visit_image", {"compression": "none"}) is None


def test_butler_writes_processed_images_compressed_and_raws_plain(tmp_path) -> None:
    DataRepository.create(tmp_path / "repo")
    repo = DataRepository.open(tmp_path / "repo", writeable=True)
    repo.register_detectors([DetectorSpec(id=3, name="S03")])
    visit = 2027031500007
    repo.register_exposure(
        ExposureSpec(
            id=visit, day_obs=20270315, band="i", start=Time("2027-03-16T04:00:00", scale="tai"),
            exposure_time=30.0, ra=150.1, dec=2.2, airmass=1.1, seq_num=7,
        )
    )  # fmt: skip
    exp = _exposure(9)
    run = "Pachon/runs/test"
    repo.put(exp, "visit_image", visit=visit, detector=3, run=run)
    repo.put(exp, "raw", exposure=visit, detector=3)
    butler = Butler.from_config(str(tmp_path / "repo"), collections=[run, "Pachon/raw/all"])
    ids = {"instrument": "Pachon", "detector": 3}
    uri = butler.getURI("visit_image", visit=visit, **ids)
    with fits.open(uri.ospath) as hdul:
        assert isinstance(hdul["IMAGE"], fits.CompImageHDU)
    with fits.open(butler.getURI("raw", exposure=visit, **ids).ospath) as hdul:
        assert hdul[0].data is not None and not any(isinstance(h, fits.CompImageHDU) for h in hdul)
    assert np.array_equal(butler.get("raw", exposure=visit, **ids).data, exp.data, equal_nan=True)
    back = butler.get("visit_image", visit=visit, **ids)
    assert np.array_equal(back.mask, exp.mask)
    wcs = butler.get("visit_image.wcs", visit=visit, **ids)
    assert np.array_equal(wcs.all_pix2world(5, 5, 0), exp.wcs.all_pix2world(5, 5, 0))
    assert butler.get("visit_image.metadata", visit=visit, **ids)["BAND"] == "r"
    assert np.array_equal(butler.get("visit_image.mask", visit=visit, **ids), exp.mask)
    image = butler.get("visit_image.image", visit=visit, **ids)
    assert np.array_equal(image, back.data, equal_nan=True)
    assert np.array_equal(
        butler.get("visit_image.variance", visit=visit, **ids), back.variance, equal_nan=True
    )
