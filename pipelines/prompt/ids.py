"""Deterministic IDs packed from visit, detector and a per-detector index.

``ccdVisitId = visit·1000 + detector`` (DP1's convention for CcdVisit), and row IDs
(``sourceId``, ``diaSourceId``, new ``diaObjectId``) = ``ccdVisitId · 2¹⁷ + index``: a re-run of a
detector reproduces every ID, so writing its rows twice replaces them instead of duplicating them.
Visits from the simulator are ≤ 2³⁵, which leaves the packed value inside a signed 64-bit integer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INDEX_BITS", "KINDS", "ccd_visit_id", "pack_ids", "unpack_id"]

INDEX_BITS = 17
_MAX_CCD_VISIT = 2 ** (63 - INDEX_BITS)


def ccd_visit_id(visit: int, detector: int) -> int:
    """``visit·1000 + detector``; detectors are < 1000 (the instrument's ``detector_max``)."""
    if not 0 <= detector < 1000:
        raise ValueError(f"detector {detector} outside 0–999")
    value = int(visit) * 1000 + int(detector)
    if value >= _MAX_CCD_VISIT:
        raise ValueError(f"visit {visit} too large to pack into 64-bit IDs")
    return value


KIND_BITS = 2
KINDS = {"source": 0, "dia_source": 1, "dia_forced_source": 2}


def pack_ids(visit: int, detector: int, index: np.ndarray | int, *, kind: int = 0) -> np.ndarray:
    """IDs for rows ``index`` of one detector-visit; ``kind`` (0–3, :data:`KINDS`) separates ID spaces.

    The top two index bits hold the kind, so a ``sourceId``, a ``diaSourceId`` and a
    ``diaForcedSourceId`` of the same row number differ.
    """
    idx = np.asarray(index, dtype=np.int64)
    limit = 2 ** (INDEX_BITS - KIND_BITS)
    if np.any(idx < 0) or np.any(idx >= limit):
        raise ValueError(f"row index out of range for packing (max {limit - 1} rows per detector-visit)")
    if not 0 <= kind < 2**KIND_BITS:
        raise ValueError(f"kind {kind} outside 0–{2**KIND_BITS - 1}")
    base = np.int64(ccd_visit_id(visit, detector)) * np.int64(2**INDEX_BITS)
    return np.asarray(base + np.int64(kind) * np.int64(limit) + idx)


def unpack_id(value: int) -> tuple[int, int, int, int]:
    """Inverse of :func:`pack_ids`: (visit, detector, kind, index)."""
    ccd, rest = divmod(int(value), 2**INDEX_BITS)
    kind, index = divmod(rest, 2 ** (INDEX_BITS - KIND_BITS))
    visit, detector = divmod(ccd, 1000)
    return visit, detector, kind, index
