"""Postage stamps for alerts: FITS bytes of a small image, its variance and a local TAN WCS.

Why this layout: it is what Rubin's ``packageAlerts.py`` sends (an astropy ``CCDData`` written
to FITS): the image in nJy in the primary HDU, the variance in an ``UNCERT`` extension marked
``UTYPE = 'VarianceUncertainty'``, and optionally the PSF in ``PSFIMAGE``, so that
``astropy.nddata.CCDData.read(io.BytesIO(stamp))`` in a notebook gives the stamp with its
uncertainty and WCS. The FITS bytes are assembled here card by card, byte-identical to what
``astropy.io.fits`` writes for the same HDUs (the unit tests compare them), because an alert
needs three stamps and astropy's generic header machinery cost ~6 ms per alert, more than
building and serializing the rest of the packet; the fixed cards of each stamp size are
formatted once and reused.

The WCS is a *local* TAN approximation at the stamp centre: the centre pixel's sky position
and the pixel→sky Jacobian measured there by finite differences of the full (possibly
distorted) WCS. Over ≤102 pixels the residual of a smooth distortion is far below a pixel,
and every FITS reader understands plain TAN, which SIP/TPV distortions do not guarantee.

Size: square, ``bboxSize`` clamped to 30–102 pixels as Rubin does (30 = minimum useful for
a PSF, 102 = longest trail at 10 deg/day in 30 s plus the PSF).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["MAX_SIZE", "MIN_SIZE", "Cutouts", "cutout_size", "make_cutout", "make_cutouts"]

MIN_SIZE = 30
MAX_SIZE = 102


def cutout_size(bbox_size: int | None) -> int:
    """Stamp side in pixels for a source footprint of ``bbox_size`` (clamped to 30–102)."""
    if bbox_size is None:
        return MIN_SIZE
    return int(min(MAX_SIZE, max(MIN_SIZE, int(bbox_size))))


@dataclass(frozen=True)
class Cutouts:
    """The three stamps of an alert as FITS bytes (any may be ``None``), all ``size`` pixels square."""

    difference: bytes | None
    science: bytes | None
    template: bytes | None
    size: int


def _extract(array: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """``array[y0:y0+size, x0:x0+size]`` padded with NaN where the box leaves the image."""
    out = np.full((size, size), np.nan, dtype=np.float32)
    ny, nx = array.shape
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, nx), min(y0 + size, ny)
    if xs < xe and ys < ye:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = array[ys:ye, xs:xe]
    return out


_BLOCK = 2880
_CARD = 80
_COMMENTARY = ("COMMENT", "HISTORY", "")


def _format_float(value: float) -> str:
    """A float as astropy writes it in a card: ``str`` with ``E``, the significand cut to fit 20 columns."""
    text = str(float(value)).replace("e", "E")
    if len(text) > 20:
        idx = text.find("E")
        text = text[:20] if idx < 0 else text[: 20 - (len(text) - idx)] + text[idx:]
    return text


def _card(keyword: str, value: Any, comment: str | None = None) -> str:
    """One 80-column header card, formatted exactly as ``astropy.io.fits.Card`` formats it."""
    if isinstance(value, str):
        quoted = "'" + value.replace("'", "''").ljust(8) + "'"
        text = f"{quoted:20}"
    elif isinstance(value, bool | np.bool_):
        text = f"{'T' if value else 'F':>20}"
    elif isinstance(value, int | np.integer):
        text = f"{int(value):>20d}"
    else:
        text = f"{_format_float(value):>20}"
    image = f"{keyword:8}= {text}" + (f" / {comment}" if comment else "")
    if len(image) > _CARD:  # long strings or comments: let astropy do CONTINUE/truncation
        return fits.Card(keyword, value, comment).image
    return f"{image:{_CARD}}"


def _local_tan_cards(wcs: Any, xc: float, yc: float, x0: int, y0: int) -> list[str]:
    """TAN cards tangent at pixel ``(xc, yc)`` of the full image, for a stamp whose corner is ``(x0, y0)``."""
    step = 1.0
    pix = np.array([[xc, yc], [xc + step, yc], [xc, yc + step]])
    world = np.asarray(wcs.all_pix2world(pix, 0))
    ra0, dec0 = world[0]
    # Jacobian d(ra cos dec, dec)/d(x, y) in degrees per pixel, in the tangent plane.
    dra = (world[1:, 0] - ra0 + 180.0) % 360.0 - 180.0
    cos_dec = np.cos(np.deg2rad(dec0))
    cd = np.array([[dra[0] * cos_dec, dra[1] * cos_dec], [world[1, 1] - dec0, world[2, 1] - dec0]]) / step
    # FITS pixels are 1-based: stamp pixel (xc - x0) 0-based is (xc - x0 + 1) in FITS.
    return [
        _card("WCSAXES", 2),
        _card("CTYPE1", "RA---TAN"),
        _card("CTYPE2", "DEC--TAN"),
        _card("CUNIT1", "deg"),
        _card("CUNIT2", "deg"),
        _card("CRVAL1", float(ra0)),
        _card("CRVAL2", float(dec0)),
        _card("CRPIX1", float(xc - x0 + 1.0)),
        _card("CRPIX2", float(yc - y0 + 1.0)),
        _card("CD1_1", float(cd[0, 0])),
        _card("CD1_2", float(cd[0, 1])),
        _card("CD2_1", float(cd[1, 0])),
        _card("CD2_2", float(cd[1, 1])),
        _card("RADESYS", "ICRS"),
        _card("LTV1", float(-x0)),  # stamp → parent image offset (IRAF)
        _card("LTV2", float(-y0)),
    ]


def _local_tan_header(wcs: Any, xc: float, yc: float, x0: int, y0: int) -> fits.Header:
    """The local TAN WCS of a stamp as an ``astropy.io.fits.Header`` (see :func:`_local_tan_cards`)."""
    return fits.Header.fromstring("".join(_local_tan_cards(wcs, xc, yc, x0, y0)))


def _keyword(card: str) -> str:
    return card[:8].rstrip()


def _header_block(cards: list[str]) -> bytes:
    text = "".join(cards) + f"{'END':{_CARD}}"
    return text.ljust(-(-len(text) // _BLOCK) * _BLOCK).encode("ascii")


def _data_block(array: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(array, dtype=">f4").tobytes()
    return raw + b"\0" * (-len(raw) % _BLOCK)


@functools.lru_cache(maxsize=64)
def _axes_cards(ny: int, nx: int, primary: bool) -> tuple[str, ...]:
    """The mandatory cards of a float32 image HDU (what astropy puts first), formatted once per shape."""
    if primary:
        head = [_card("SIMPLE", True, "conforms to FITS standard")]
    else:
        head = [_card("XTENSION", "IMAGE", "Image extension")]
    head += [
        _card("BITPIX", -32, "array data type"),
        _card("NAXIS", 2, "number of array dimensions"),
        _card("NAXIS1", nx),
        _card("NAXIS2", ny),
    ]
    head += (
        [_card("EXTEND", True)]
        if primary
        else [_card("PCOUNT", 0, "number of parameters"), _card("GCOUNT", 1, "number of groups")]
    )
    return tuple(head)


@functools.lru_cache(maxsize=64)
def _variance_header(size: int) -> bytes:
    """The ``UNCERT`` extension's header: the same for every stamp of one size."""
    cards = [
        *_axes_cards(size, size, False),
        _card("UTYPE", "VarianceUncertainty"),
        _card("BUNIT", "nJy2"),
        _card("EXTNAME", "UNCERT", "extension name"),
    ]
    return _header_block(cards)


def _stamp_bytes(
    image: np.ndarray,
    variance: np.ndarray,
    wcs_cards: list[str],
    x0: int,
    y0: int,
    size: int,
    *,
    psf: np.ndarray | None,
    rotpa: float | None,
    header: fits.Header | None,
) -> bytes:
    cards = [*wcs_cards]
    if header is not None:  # as Header.update: replace a keyword in place, else append
        index = {_keyword(c): i for i, c in enumerate(cards)}
        for card in header.cards:
            if card.keyword in index and card.keyword not in _COMMENTARY:
                cards[index[card.keyword]] = card.image
            else:
                index[card.keyword] = len(cards)
                cards.append(card.image)
    extra = [_card("BUNIT", "nJy")]
    if rotpa is not None:
        extra.append(_card("ROTPA", float(rotpa), "[deg] focal plane rotation on the sky"))
    for card in extra:  # as Header.__setitem__: a new keyword goes after the last non-commentary card
        keys = [_keyword(c) for c in cards]
        if _keyword(card) in keys:
            cards[keys.index(_keyword(card))] = card
        else:
            last = max((i for i, k in enumerate(keys) if k not in _COMMENTARY), default=-1)
            cards.insert(last + 1, card)
    parts = [
        _header_block([*_axes_cards(size, size, True), *cards]),
        _data_block(_extract(image, x0, y0, size)),
        _variance_header(size),
        _data_block(_extract(variance, x0, y0, size)),
    ]
    if psf is not None:
        p = np.asarray(psf, dtype=np.float32)
        if p.ndim != 2:
            raise ValueError(f"the PSF image of a cutout must be 2-d, not shape {p.shape}")
        parts.append(
            _header_block([*_axes_cards(*p.shape, False), _card("EXTNAME", "PSFIMAGE", "extension name")])
        )
        parts.append(_data_block(p))
    return b"".join(parts)


def make_cutout(
    image: np.ndarray,
    variance: np.ndarray,
    wcs: Any,
    x: float,
    y: float,
    size: int = MIN_SIZE,
    *,
    psf: np.ndarray | None = None,
    rotpa: float | None = None,
    header: fits.Header | None = None,
) -> bytes:
    """FITS bytes of a ``size``×``size`` stamp of ``image`` (in nJy) centred on pixel ``(x, y)``.

    Parameters
    ----------
    image, variance
        Full detector (or warped template) planes, calibrated to nJy and nJy².
    wcs
        ``astropy.wcs.WCS`` of the image (distortion allowed); the stamp gets a local TAN WCS.
    x, y
        0-based pixel position of the source (the DiaSource ``x``, ``y``).
    psf
        Optional PSF image written as the ``PSFIMAGE`` extension.
    rotpa
        Rotation angle of the focal plane on the sky (degrees), written as ``ROTPA``.
    header
        Extra cards for the primary header (they replace same-named WCS cards).

    Examples
    --------
    >>> stamp = make_cutout(diff.image, diff.variance, diff.wcs, src["x"], src["y"], 30)
    >>> CCDData.read(io.BytesIO(stamp)).unit
    Unit("nJy")
    """
    size = cutout_size(size)
    x0 = round(x) - size // 2
    y0 = round(y) - size // 2
    cards = _local_tan_cards(wcs, x, y, x0, y0)
    return _stamp_bytes(image, variance, cards, x0, y0, size, psf=psf, rotpa=rotpa, header=header)


def make_cutouts(
    x: float,
    y: float,
    *,
    difference: tuple[np.ndarray, np.ndarray, Any] | None,
    science: tuple[np.ndarray, np.ndarray, Any] | None,
    template: tuple[np.ndarray, np.ndarray, Any] | None,
    bbox_size: int | None = None,
    psf: np.ndarray | None = None,
    rotpa: float | None = None,
) -> Cutouts:
    """The three stamps of one DiaSource from ``(image, variance, wcs)`` triples of each plane.

    The template must be the warped template on the science pixel grid (as subtracted), so the
    same ``(x, y)`` addresses the same sky in all three.
    """
    size = cutout_size(bbox_size)
    x0 = round(x) - size // 2
    y0 = round(y) - size // 2
    wcs_cards: dict[int, list[str]] = {}  # the difference shares the science image's WCS object

    def one(planes: tuple[np.ndarray, np.ndarray, Any] | None) -> bytes | None:
        if planes is None:
            return None
        image, variance, wcs = planes
        cards = wcs_cards.get(id(wcs))
        if cards is None:
            cards = wcs_cards[id(wcs)] = _local_tan_cards(wcs, x, y, x0, y0)
        return _stamp_bytes(image, variance, cards, x0, y0, size, psf=psf, rotpa=rotpa, header=None)

    return Cutouts(difference=one(difference), science=one(science), template=one(template), size=size)
