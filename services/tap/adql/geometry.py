"""Sky geometry for the embedded (DuckDB) back end, which has no spatial extension.

Shapes are DALI arrays in degrees, told apart by length: a point is ``[ra, dec]``, a
circle ``[ra, dec, radius]``, a polygon ``[ra1, dec1, ra2, dec2, ...]`` (three or more
vertices, edges are great-circle arcs). The functions here are exact spherical geometry
on unit vectors; the DuckDB UDFs (:mod:`.duckdb_functions`) call them, and the translator
uses :func:`cone_ranges` to turn a constant circle into HEALPix index ranges at
translation time.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import numpy as np

from pachon.core.catalog.model import HPX_DEPTH

__all__ = [
    "angular_distance",
    "area",
    "centroid",
    "cone_ranges",
    "contains",
    "crossmatch_depth",
    "intersects",
    "parse_stcs",
    "polygon_ranges",
    "shape_kind",
]

Vec = tuple[float, float, float]


def shape_kind(shape: Sequence[float] | None) -> str | None:
    """``point``, ``circle`` or ``polygon`` from a DALI array's length (None if invalid)."""
    if shape is None:
        return None
    size = len(shape)
    if size == 2:
        return "point"
    if size == 3:
        return "circle"
    if size >= 6 and size % 2 == 0:
        return "polygon"
    return None


def _vec(ra: float, dec: float) -> Vec:
    a, d = math.radians(ra), math.radians(dec)
    return (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))


def _dot(a: Vec, b: Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec, b: Vec) -> Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a: Vec) -> float:
    return math.sqrt(_dot(a, a))


def _angle(a: Vec, b: Vec) -> float:
    """Angle between unit vectors in radians, accurate at all separations (atan2 form)."""
    return math.atan2(_norm(_cross(a, b)), _dot(a, b))


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine, as the SQL the translator writes)."""
    d1, d2 = math.radians(dec1), math.radians(dec2)
    h = (
        math.sin((d2 - d1) / 2) ** 2
        + math.cos(d1) * math.cos(d2) * math.sin(math.radians(ra2 - ra1) / 2) ** 2
    )
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def _vertices(poly: Sequence[float]) -> list[Vec]:
    return [_vec(poly[i], poly[i + 1]) for i in range(0, len(poly), 2)]


def _point_in_polygon(p: Vec, verts: list[Vec]) -> bool:
    """Winding test: the signed angles subtended at p by the edges sum to ±2π inside.

    Seen from the antipode of the interior the edges also wind once, with the opposite
    sign, so the sign must match the winding seen from the vertices' mean direction
    (inside any polygon smaller than a hemisphere).
    """
    total = _winding(p, verts)
    if total is None:
        return True
    if abs(total) <= math.pi:
        return False
    s = (sum(v[0] for v in verts), sum(v[1] for v in verts), sum(v[2] for v in verts))
    norm = _norm(s)
    if norm == 0:
        return False
    reference = _winding((s[0] / norm, s[1] / norm, s[2] / norm), verts)
    return reference is None or (reference > 0) == (total > 0)


def _winding(p: Vec, verts: list[Vec]) -> float | None:
    """Sum of the signed angles of the edges seen from p (None when p is a vertex)."""
    total = 0.0
    for i, a in enumerate(verts):
        b = verts[(i + 1) % len(verts)]
        # Project onto the tangent plane at p and measure the signed angle a→b.
        ta = _cross(_cross(p, a), p)
        tb = _cross(_cross(p, b), p)
        if _norm(ta) < 1e-15 or _norm(tb) < 1e-15:
            return None
        total += math.atan2(_dot(p, _cross(ta, tb)), _dot(ta, tb))
    return total


def _arc_distance(p: Vec, a: Vec, b: Vec) -> float:
    """Angular distance (radians) from p to the great-circle arc a–b."""
    n = _cross(a, b)
    nn = _norm(n)
    if nn < 1e-15:
        return _angle(p, a)
    n = (n[0] / nn, n[1] / nn, n[2] / nn)
    # Foot of p on the great circle; it lies on the arc if it is between a and b.
    s = _dot(p, n)
    foot = (p[0] - s * n[0], p[1] - s * n[1], p[2] - s * n[2])
    fn = _norm(foot)
    if fn > 1e-15:
        foot = (foot[0] / fn, foot[1] / fn, foot[2] / fn)
        if _dot(_cross(a, foot), n) >= 0 and _dot(_cross(foot, b), n) >= 0:
            return abs(math.asin(max(-1.0, min(1.0, s))))
    return min(_angle(p, a), _angle(p, b))


def _arcs_cross(a1: Vec, a2: Vec, b1: Vec, b2: Vec) -> bool:
    n1, n2 = _cross(a1, a2), _cross(b1, b2)
    x = _cross(n1, n2)
    if _norm(x) < 1e-15:
        return False
    for cand in (x, (-x[0], -x[1], -x[2])):
        on_a = _dot(_cross(a1, cand), n1) >= 0 and _dot(_cross(cand, a2), n1) >= 0
        on_b = _dot(_cross(b1, cand), n2) >= 0 and _dot(_cross(cand, b2), n2) >= 0
        if on_a and on_b:
            return True
    return False


def _edges(verts: list[Vec]) -> list[tuple[Vec, Vec]]:
    return [(verts[i], verts[(i + 1) % len(verts)]) for i in range(len(verts))]


def contains(outer: Sequence[float] | None, inner: Sequence[float] | None) -> int | None:
    """ADQL ``CONTAINS(inner, outer)`` with the arguments in reading order: 1 if outer ⊇ inner."""
    ko, ki = shape_kind(outer), shape_kind(inner)
    if ko is None or ki is None or outer is None or inner is None:
        return None
    if ki == "point":
        p = _vec(inner[0], inner[1])
        if ko == "point":
            return int(_angle(p, _vec(outer[0], outer[1])) == 0.0)
        if ko == "circle":
            return int(math.degrees(_angle(p, _vec(outer[0], outer[1]))) <= outer[2])
        return int(_point_in_polygon(p, _vertices(outer)))
    if ki == "circle":
        c = _vec(inner[0], inner[1])
        r = math.radians(inner[2])
        if ko == "point":
            return int(r == 0 and _angle(c, _vec(outer[0], outer[1])) == 0)
        if ko == "circle":
            return int(_angle(c, _vec(outer[0], outer[1])) + r <= math.radians(outer[2]) + 1e-15)
        verts = _vertices(outer)
        if not _point_in_polygon(c, verts):
            return 0
        return int(all(_arc_distance(c, a, b) >= r for a, b in _edges(verts)))
    # inner polygon
    verts = _vertices(inner)
    if ko == "point":
        return 0
    if ko == "circle":
        oc, rr = _vec(outer[0], outer[1]), math.radians(outer[2])
        return int(all(_angle(v, oc) <= rr for v in verts))
    overts = _vertices(outer)
    if not all(_point_in_polygon(v, overts) for v in verts):
        return 0
    return int(not any(_arcs_cross(a, b, c, d) for a, b in _edges(verts) for c, d in _edges(overts)))


def intersects(a: Sequence[float] | None, b: Sequence[float] | None) -> int | None:
    """ADQL ``INTERSECTS(a, b)``: 1 if the shapes share at least one point."""
    ka, kb = shape_kind(a), shape_kind(b)
    if ka is None or kb is None or a is None or b is None:
        return None
    if ka == "point":
        return contains(b, a)
    if kb == "point":
        return contains(a, b)
    if ka == "circle" and kb == "circle":
        return int(
            _angle(_vec(a[0], a[1]), _vec(b[0], b[1])) <= math.radians(a[2]) + math.radians(b[2]) + 1e-15
        )
    if ka == "circle" or kb == "circle":
        circ, poly = (a, b) if ka == "circle" else (b, a)
        c, r = _vec(circ[0], circ[1]), math.radians(circ[2])
        verts = _vertices(poly)
        if _point_in_polygon(c, verts):
            return 1
        return int(any(_arc_distance(c, p, q) <= r for p, q in _edges(verts)))
    va, vb = _vertices(a), _vertices(b)
    if any(_point_in_polygon(v, vb) for v in va) or any(_point_in_polygon(v, va) for v in vb):
        return 1
    return int(any(_arcs_cross(p, q, s, t) for p, q in _edges(va) for s, t in _edges(vb)))


def area(shape: Sequence[float] | None) -> float | None:
    """Area in square degrees (0 for a point)."""
    kind = shape_kind(shape)
    if kind is None or shape is None:
        return None
    sr2deg = (180.0 / math.pi) ** 2
    if kind == "point":
        return 0.0
    if kind == "circle":
        return 2 * math.pi * (1 - math.cos(math.radians(shape[2]))) * sr2deg
    verts = _vertices(shape)
    # Sum of the triangles (v0, vi, vi+1) by the Van Oosterom–Strackee formula.
    total = 0.0
    v0 = verts[0]
    for i in range(1, len(verts) - 1):
        a, b = verts[i], verts[i + 1]
        num = _dot(v0, _cross(a, b))
        den = 1 + _dot(v0, a) + _dot(a, b) + _dot(b, v0)
        total += 2 * math.atan2(num, den)
    result = abs(total)
    if result > 2 * math.pi:
        result = 4 * math.pi - result
    return result * sr2deg


def centroid(shape: Sequence[float] | None) -> list[float] | None:
    """Centre as ``[ra, dec]``: a circle's centre, a polygon's normalised vertex-vector mean."""
    kind = shape_kind(shape)
    if kind is None or shape is None:
        return None
    if kind in ("point", "circle"):
        return [float(shape[0]), float(shape[1])]
    verts = _vertices(shape)
    s = (sum(v[0] for v in verts), sum(v[1] for v in verts), sum(v[2] for v in verts))
    norm = _norm(s)
    if norm == 0:
        return None
    ra = math.degrees(math.atan2(s[1], s[0])) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, s[2] / norm))))
    return [ra, dec]


# ------------------------------------------------------------------ HEALPix ranges


def _merge(cells: np.ndarray, depth: int) -> list[tuple[int, int]]:
    shift = 2 * (HPX_DEPTH - depth)
    ranges: list[tuple[int, int]] = []
    for cell in np.unique(cells.astype(np.int64)):
        lo, hi = int(cell) << shift, ((int(cell) + 1) << shift) - 1
        if ranges and ranges[-1][1] + 1 >= lo:
            ranges[-1] = (ranges[-1][0], max(hi, ranges[-1][1]))
        else:
            ranges.append((lo, hi))
    return ranges


def _cover_depth(radius_deg: float) -> int:
    """Depth whose cells are about a quarter of the radius: a few dozen ranges at most."""
    if radius_deg <= 0:
        return HPX_DEPTH
    depth = math.floor(math.log2(58.6 / radius_deg)) + 2
    return max(0, min(HPX_DEPTH, depth))


def cone_ranges(ra: float, dec: float, radius_deg: float) -> list[tuple[int, int]] | None:
    """Inclusive ranges of ``pachon_hpx`` values (depth HPX_DEPTH) covering the cone.

    None when the cone is too large for ranges to help (then only the exact test runs).
    """
    if not (math.isfinite(ra) and math.isfinite(dec) and math.isfinite(radius_deg)):
        return None
    if radius_deg >= 60 or radius_deg < 0 or abs(dec) > 90:
        return None
    return list(_cone_ranges_cached(round(ra % 360.0, 12), round(dec, 12), round(radius_deg, 12)))


@functools.lru_cache(maxsize=4096)
def _cone_ranges_cached(ra: float, dec: float, radius_deg: float) -> tuple[tuple[int, int], ...]:
    # The Rust core of cdshealpix directly: the astropy wrappers cost milliseconds per call.
    from cdshealpix import cdshealpix as core

    depth = _cover_depth(radius_deg)
    radius = max(radius_deg, 1e-9)
    ipix, _, _ = core.cone_search(
        np.uint8(depth),
        np.uint8(2),
        np.float64(math.radians(ra)),
        np.float64(math.radians(dec)),
        np.float64(math.radians(radius)),
        True,
    )
    return tuple(_coarsen(_merge(np.asarray(ipix), depth), 48))


def polygon_ranges(vertices: Sequence[float]) -> list[tuple[int, int]] | None:
    """Inclusive ``pachon_hpx`` ranges covering a polygon (None if it cannot be covered)."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix import nested

    ras = np.asarray(vertices[0::2], dtype=float) % 360.0
    decs = np.asarray(vertices[1::2], dtype=float)
    if not (np.all(np.isfinite(ras)) and np.all(np.isfinite(decs)) and np.all(np.abs(decs) <= 90)):
        return None
    size = max(angular_distance(ras[0], decs[0], float(r), float(d)) for r, d in zip(ras, decs, strict=True))
    depth = _cover_depth(max(size / 2, 1e-6))
    try:
        ipix, _, _ = nested.polygon_search(Longitude(ras * u.deg), Latitude(decs * u.deg), depth, flat=True)
    except Exception:
        return None
    return _coarsen(_merge(np.asarray(ipix), depth), 48)


def _coarsen(ranges: list[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """Merge the closest neighbouring ranges until at most ``most`` remain (a superset)."""
    while len(ranges) > most:
        gaps = [ranges[i + 1][0] - ranges[i][1] for i in range(len(ranges) - 1)]
        i = int(np.argmin(gaps))
        ranges[i : i + 2] = [(ranges[i][0], ranges[i + 1][1])]
    return ranges


def crossmatch_depth(radius_deg: float) -> int | None:
    """Deepest HEALPix depth whose cells are wider than ``radius_deg`` (None if too large).

    The nine cells around a point's cell then hold every point within the radius, so a
    crossmatch becomes an equality join on cell numbers plus an exact refine.
    """
    if not math.isfinite(radius_deg) or radius_deg < 0:
        return None
    for depth in range(HPX_DEPTH, -1, -1):
        # 58.6°/2^depth is the mean cell size; a third of it bounds the narrowest cell width.
        if 58.6 / 2**depth / 3.0 >= radius_deg:
            return depth
    return None


# ------------------------------------------------------------------ STC-S


_FRAMES = {
    "ICRS",
    "FK4",
    "FK5",
    "J2000",
    "B1950",
    "GALACTIC",
    "ECLIPTIC",
    "UNKNOWNFRAME",
    "GEOCENTER",
    "BARYCENTER",
    "HELIOCENTER",
    "TOPOCENTER",
    "LSR",
    "SPHERICAL2",
    "CARTESIAN2",
}


def parse_stcs(text: str) -> tuple[str, list[float]]:
    """Parse a simple STC-S region (``Position``, ``Circle``, ``Box``, ``Polygon``).

    Returns the kind (``point``/``circle``/``polygon``) and the DALI array; a box becomes
    its four-corner polygon. Raises ValueError for anything else (unions, intersections,
    ``NOT``), which the translator reports as unsupported.
    """
    words = re.split(r"\s+", text.strip())
    if not words or not words[0]:
        raise ValueError("empty region")
    shape = words[0].upper()
    rest = [w for w in words[1:] if w.upper() not in _FRAMES]
    try:
        nums = [float(w) for w in rest]
    except ValueError:
        raise ValueError(f"unsupported STC-S region {text!r} (only Position, Circle, Box, Polygon)") from None
    if shape == "POSITION" and len(nums) == 2:
        return "point", nums
    if shape == "CIRCLE" and len(nums) == 3:
        return "circle", nums
    if shape == "BOX" and len(nums) == 4:
        return "polygon", box_polygon(*nums)
    if shape == "POLYGON" and len(nums) >= 6 and len(nums) % 2 == 0:
        return "polygon", nums
    raise ValueError(f"unsupported STC-S region {text!r} (only Position, Circle, Box, Polygon)")


def box_polygon(ra: float, dec: float, width: float, height: float) -> list[float]:
    """The four corners of an ADQL BOX (centre, full width and height in degrees)."""
    hw, hh = width / 2, height / 2
    return [ra - hw, dec - hh, ra - hw, dec + hh, ra + hw, dec + hh, ra + hw, dec - hh]
