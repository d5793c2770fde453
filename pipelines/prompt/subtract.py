"""Alard–Lupton PSF-matched image subtraction with a spatially varying kernel.

Why Alard–Lupton rather than ZOGY here: the simulator's PSF varies across a detector (optics), and
AL's kernel, a sum of Gaussian×polynomial basis functions whose coefficients are polynomials in
position, follows that variation directly; ZOGY needs an accurate PSF model of *both* images and
assumes it constant per region. The cost is one FFT convolution of the template per basis function
(31 here; ≈ 0.1 s each at 1k², ≈ 0.4 s at 4k² on this machine) plus a small least-squares solve on
stamps around bright stars. The measured result on simulated visits is reported by the tests and
benchmarks (difference-image noise within a few percent of the propagated variance).

When the science image is *sharper* than the template (convolving the template would have to
deconvolve), the science image is first convolved with a Gaussian so its PSF is ~10 % broader than
the template's ("pre-convolution"), and its variance plane is convolved with the square of that
Gaussian; the matching then proceeds as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy import fft as sfft
from scipy import ndimage

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.config import SubtractConfig
from pachon.pipelines.prompt.psf import PsfModel, _measure_fwhm, spline_shift

__all__ = ["SubtractionError", "SubtractionResult", "basis_kernels", "measure_template_fwhm", "subtract"]

_UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])


class SubtractionError(RuntimeError):
    """The kernel could not be fitted (too few stamps, no overlap with the template)."""


@dataclass
class SubtractionResult:
    """The difference image, the PSF it carries and fit diagnostics."""

    difference: Exposure
    psf: PsfModel
    kernel_sum: float
    n_stamps: int
    stamp_chi2: float
    preconvolved: bool
    template_fwhm: float
    science_fwhm: float
    template_share: np.ndarray | None = None
    """Per pixel, the template's part of the difference variance (K²⊗template variance / variance)."""


def basis_kernels(size: int, sigmas: tuple[float, ...], degrees: tuple[int, ...]) -> np.ndarray:
    """Alard–Lupton basis: Gaussians × polynomials x^i y^j (i + j ≤ degree), each of unit max |value|.

    The first kernel (narrowest Gaussian, degree 0) has unit sum; the others are made zero-sum by
    subtracting a multiple of it, so the photometric scale lives in one coefficient (as in ip_diffim).
    """
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    kernels = []
    for sigma, degree in zip(sigmas, degrees, strict=True):
        g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        for i in range(degree + 1):
            for j in range(degree + 1 - i):
                k = g * (xx / half) ** i * (yy / half) ** j
                kernels.append(k)
    basis = np.array(kernels)
    basis[0] /= basis[0].sum()
    for k in range(1, len(basis)):
        basis[k] -= basis[k].sum() * basis[0]
        m = np.abs(basis[k]).max()
        if m > 0:
            basis[k] /= m
    return basis


def _fft_convolve_many(image: np.ndarray, kernels: np.ndarray) -> list[np.ndarray]:
    """Convolve one image with many small kernels (same-size output), sharing the image's FFT."""
    ny, nx = image.shape
    ks = kernels.shape[-1]
    half = ks // 2
    shape = (sfft.next_fast_len(ny + ks, real=True), sfft.next_fast_len(nx + ks, real=True))
    fimg = sfft.rfft2(image.astype(np.float32), s=shape)
    out = []
    for k in kernels:
        fk = sfft.rfft2(k.astype(np.float32), s=shape)
        conv = sfft.irfft2(fimg * fk, s=shape)
        out.append(np.ascontiguousarray(conv[half : half + ny, half : half + nx], dtype=np.float32))
    return out


def _stamp_convolver(kernels: np.ndarray, half_stamp: int) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """``f(image, yc, xc)``: ``image ⊗ k`` on the stamp centred at (yc, xc), raveled, for each kernel k.

    The values :func:`_fft_convolve_many` gives there (the stamp and its kernel-wide border lie
    inside the image), from a small FFT of the stamp alone; the kernels' FFTs are made once.
    """
    ks = kernels.shape[-1]
    half = ks // 2
    side = 2 * half_stamp + 1
    n = side + 2 * half + ks - 1
    shape = (sfft.next_fast_len(n, real=True), sfft.next_fast_len(n, real=True))
    fk = sfft.rfft2(kernels, s=shape, axes=(-2, -1))
    lo = 2 * half  # the "valid" part: outputs whose kernel footprint lies inside the cut

    def at(image: np.ndarray, yc: int, xc: int) -> np.ndarray:
        r = half_stamp + half
        cut = np.asarray(image[yc - r : yc + r + 1, xc - r : xc + r + 1], dtype=np.float64)
        full = sfft.irfft2(sfft.rfft2(cut, s=shape)[None] * fk, s=shape, axes=(-2, -1))
        return full[:, lo : lo + side, lo : lo + side].reshape(len(kernels), -1)

    return at


def _gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return g / g.sum()


def measure_template_fwhm(
    template: np.ndarray, bad: np.ndarray, x: np.ndarray, y: np.ndarray, size: int = 25
) -> float:
    """FWHM of the template's PSF from a stack of stamps at the given star positions."""
    half = size // 2
    ny, nx = template.shape
    stamps = []
    for xc, yc in zip(x, y, strict=True):
        ix, iy = round(xc), round(yc)
        if ix - half < 0 or iy - half < 0 or ix + half >= nx or iy + half >= ny:
            continue
        sl = (slice(iy - half, iy + half + 1), slice(ix - half, ix + half + 1))
        if bad[sl].any():
            continue
        st = spline_shift(template[sl], iy - yc, ix - xc, mode="nearest")  # = ndimage.shift, 2× faster
        if st.sum() > 0:
            stamps.append(st / st.sum())
    if len(stamps) < 3:
        raise SubtractionError(f"only {len(stamps)} usable template star stamps to measure its PSF")
    return _measure_fwhm(np.median(stamps, axis=0))


def subtract(
    science: Exposure,
    template: Exposure,
    science_psf: PsfModel,
    stars_x: np.ndarray,
    stars_y: np.ndarray,
    *,
    config: SubtractConfig | None = None,
) -> SubtractionResult:
    """Subtract a template (already warped onto the science grid, same flux unit) from a science image.

    Parameters
    ----------
    science, template
        Exposures on the same pixel grid with variance planes.
    science_psf
        The science image's PSF model (the difference image inherits it).
    stars_x, stars_y
        Candidate kernel stamps: bright, unsaturated, isolated stars on the science image.

    Returns
    -------
    SubtractionResult
        ``difference`` has image = science′ − K⊗template − background, variance = var(science′) +
        K²⊗var(template) (K at the detector centre) and mask = union of both masks.
    """
    config = config or SubtractConfig()
    sci = np.asarray(science.data, dtype=np.float32)
    sci_var = np.asarray(science.variance, dtype=np.float32)
    tmp_bad = (np.asarray(template.mask) & _UNUSABLE) != 0
    sci_bad = (np.asarray(science.mask) & _UNUSABLE) != 0
    tmp = np.where(tmp_bad, 0.0, np.asarray(template.data, dtype=np.float32)).astype(np.float32)
    tmp_var = np.where(tmp_bad, 0.0, np.asarray(template.variance, dtype=np.float32)).astype(np.float32)
    if tmp_bad.mean() > 0.9:
        raise SubtractionError(f"the template covers only {1 - tmp_bad.mean():.0%} of the detector")
    ny, nx = sci.shape
    ks = config.kernel_size
    half = ks // 2

    fwhm_t = measure_template_fwhm(tmp, tmp_bad | sci_bad, stars_x, stars_y, size=science_psf.size)
    fwhm_s = science_psf.fwhm
    sig_t, sig_s = fwhm_t / 2.3548, fwhm_s / 2.3548
    preconvolved = False
    pre_sigma = 0.0
    psf = science_psf
    if sig_s < 1.1 * sig_t:
        pre_sigma = float(np.sqrt(max((1.15 * sig_t) ** 2 - sig_s**2, 0.5**2)))
        g = _gaussian_kernel(pre_sigma, ks)
        sci, sci_var = _fft_convolve_many(sci, g[None])[0], _fft_convolve_many(sci_var, (g**2)[None])[0]
        comps = np.array([ndimage.convolve(c, g, mode="constant") for c in science_psf.components])
        psf = PsfModel(components=comps, shape=science_psf.shape, fwhm=0.0, n_stars=science_psf.n_stars)
        psf.fwhm = _measure_fwhm(psf.image())
        sig_s = psf.fwhm / 2.3548
        preconvolved = True
    sig_match = float(np.sqrt(max(sig_s**2 - sig_t**2, 0.3**2)))
    sigmas = tuple(max(0.4, s * sig_match) for s in config.basis_sigmas)
    basis = basis_kernels(ks, sigmas, config.basis_degrees)
    # the fit needs T⊗B_k only on the kernel stamps (computed there); the model needs one full-image
    # convolution per spatial term, with the fitted kernel (see below), not one per basis kernel

    # stamps around the kernel-candidate stars
    sh = config.stamp_size // 2
    margin = sh + half
    good = (stars_x > margin) & (stars_x < nx - 1 - margin) & (stars_y > margin) & (stars_y < ny - 1 - margin)
    xs = np.round(stars_x[good]).astype(int)[: config.max_stamps]
    ys = np.round(stars_y[good]).astype(int)[: config.max_stamps]
    either_bad = tmp_bad | sci_bad
    usable = [
        i
        for i in range(len(xs))
        if not either_bad[ys[i] - margin : ys[i] + margin + 1, xs[i] - margin : xs[i] + margin + 1].any()
    ]
    if len(usable) < 5:
        raise SubtractionError(
            f"only {len(usable)} clean kernel stamps (need ≥ 5); the detector may be mostly masked"
        )
    xs, ys = xs[usable], ys[usable]
    nb = len(basis)
    order = config.spatial_order if len(xs) >= config.min_stamps_spatial else 0
    powers = [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    bg_powers = [
        (i, j) for i in range(config.background_order + 1) for j in range(config.background_order + 1 - i)
    ]

    def uv(x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return 2 * np.asarray(x, float) / (nx - 1) - 1, 2 * np.asarray(y, float) / (ny - 1) - 1

    npar = nb * len(powers) + len(bg_powers)
    stamp_rows = []
    conv_at = _stamp_convolver(basis, sh)
    for x0, y0 in zip(xs, ys, strict=True):
        sl = (slice(y0 - sh, y0 + sh + 1), slice(x0 - sh, x0 + sh + 1))
        py, px = np.mgrid[sl]
        u, v = uv(px.ravel(), py.ravel())
        cols = []
        for cv in conv_at(tmp, y0, x0):
            for i, j in powers:
                cols.append(cv * u**i * v**j)
        for i, j in bg_powers:
            cols.append(u**i * v**j)
        a = np.column_stack(cols)
        b = sci[sl].ravel().astype(float)
        w = 1.0 / np.maximum(sci_var[sl].ravel() + tmp_var[sl].ravel(), 1e-12)
        stamp_rows.append((a, b, w))

    keep = np.ones(len(stamp_rows), dtype=bool)
    coeffs: np.ndarray = np.zeros(npar)
    chi2 = np.zeros(len(stamp_rows))
    for _ in range(4):
        ata = np.zeros((npar, npar))
        atb = np.zeros(npar)
        for k, (a, b, w) in enumerate(stamp_rows):
            if keep[k]:
                aw = a * w[:, None]
                ata += a.T @ aw
                atb += aw.T @ b
        coeffs = np.linalg.lstsq(ata, atb, rcond=1e-12)[0]
        for k, (a, b, w) in enumerate(stamp_rows):
            chi2[k] = float((((b - a @ coeffs) ** 2) * w).mean())
        med = np.median(chi2[keep])
        mad = 1.4826 * np.median(np.abs(chi2[keep] - med)) + 1e-9
        new = chi2 < med + config.clip_sigma * mad
        if (new == keep).all() or new.sum() < 5:
            break
        keep = new

    # apply: D = I − Σ_p u^i v^j T⊗(Σ_k c_kp B_k) − bg(u, v): convolution is linear, so one
    # full-image convolution per spatial term p (3) instead of one per basis kernel (31)
    u_row, v_col = uv(np.arange(nx), np.arange(ny))
    polys = {
        (i, j): (u_row[None, :] ** i * v_col[:, None] ** j).astype(np.float32)
        for (i, j) in set(powers) | set(bg_powers)
        if (i, j) != (0, 0)
    }
    n_pow = len(powers)
    spatial_kernels = np.array(
        [np.tensordot(coeffs[p : nb * n_pow : n_pow], basis, axes=1) for p in range(n_pow)]
    )
    model = np.zeros((ny, nx), dtype=np.float32)
    for (i, j), conv_p in zip(powers, _fft_convolve_many(tmp, spatial_kernels), strict=True):
        model += conv_p if (i, j) == (0, 0) else polys[(i, j)] * conv_p
    idx = nb * n_pow
    for i, j in bg_powers:
        model += np.float32(coeffs[idx]) * (polys[(i, j)] if (i, j) != (0, 0) else np.float32(1.0))
        idx += 1
    diff = (sci - model).astype(np.float32)

    # kernel at the centre, for the variance propagation and the photometric scale
    kc = np.zeros((ks, ks))
    idx = 0
    for b_k in basis:
        for i, j in powers:
            kc += coeffs[idx] * b_k * (0.0**i if i else 1.0) * (0.0**j if j else 1.0)
            idx += 1
    tmp_part = _fft_convolve_many(tmp_var, (kc**2)[None])[0]
    var = sci_var + tmp_part
    share = np.clip(tmp_part / np.maximum(var, 1e-30), 0.0, 1.0).astype(np.float32)
    del tmp_part

    mask = np.asarray(science.mask) | np.asarray(template.mask)
    conv_bad = ndimage.binary_dilation(tmp_bad, iterations=half) if tmp_bad.any() else tmp_bad
    mask[conv_bad] |= 1 << MASK_PLANES["NO_DATA"]
    edge = np.zeros((ny, nx), dtype=bool)
    edge[:half, :] = edge[-half:, :] = edge[:, :half] = edge[:, -half:] = True
    mask[edge] |= (1 << MASK_PLANES["EDGE"]) | (1 << MASK_PLANES["NO_DATA"])
    mask &= ~np.int32((1 << MASK_PLANES["DETECTED"]) | (1 << MASK_PLANES["DETECTED_NEGATIVE"]))
    diff[(mask & (1 << MASK_PLANES["NO_DATA"])) != 0] = 0.0

    meta = science.header_copy()
    meta["DIFKSUM"] = (float(kc.sum()), "kernel sum at the detector centre (template to science scale)")
    meta["DIFNSTMP"] = (int(keep.sum()), "kernel stamps used")
    meta["DIFCHI2"] = (float(np.mean(chi2[keep])), "mean stamp chi2 per pixel")
    meta["DIFPRECV"] = (preconvolved, "science pre-convolved (sharper than template)")
    meta["DIFPRESG"] = (pre_sigma, "sigma (px) of the science pre-convolution Gaussian")
    meta["TMPLFWHM"] = (fwhm_t, "template PSF FWHM (pixels)")
    meta["PSF_FWHM"] = (psf.fwhm, "difference image PSF FWHM (pixels)")
    result = Exposure(diff, unit=science.unit, mask=mask, wcs=science.wcs, meta=meta)
    result.variance = var.astype(np.float32)
    return SubtractionResult(
        difference=result,
        psf=psf,
        kernel_sum=float(kc.sum()),
        n_stamps=int(keep.sum()),
        stamp_chi2=float(np.mean(chi2[keep])),
        preconvolved=preconvolved,
        template_fwhm=fwhm_t,
        science_fwhm=fwhm_s,
        template_share=share,
    )


def stamp_table(result: SubtractionResult) -> Table:
    """A one-row summary of a subtraction, for the per-visit metrics."""
    return Table(
        {
            "kernel_sum": [result.kernel_sum],
            "n_stamps": [result.n_stamps],
            "stamp_chi2": [result.stamp_chi2],
            "preconvolved": [result.preconvolved],
            "template_fwhm": [result.template_fwhm],
            "science_fwhm": [result.science_fwhm],
        }
    )
