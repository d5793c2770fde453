"""Deterministic IDs: packing round-trips, kinds never collide, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from pachon.pipelines.prompt.ids import KINDS, ccd_visit_id, pack_ids, unpack_id


def test_round_trip_and_determinism() -> None:
    ids = pack_ids(20270114001, 3, np.arange(10), kind=KINDS["dia_source"])
    assert ids.dtype == np.int64
    assert np.array_equal(ids, pack_ids(20270114001, 3, np.arange(10), kind=KINDS["dia_source"]))
    assert unpack_id(int(ids[7])) == (20270114001, 3, KINDS["dia_source"], 7)
    assert ccd_visit_id(20270114001, 3) == 20270114001003


def test_kinds_and_detectors_do_not_collide() -> None:
    a = set(pack_ids(20270114001, 3, np.arange(1000), kind=0).tolist())
    b = set(pack_ids(20270114001, 3, np.arange(1000), kind=1).tolist())
    c = set(pack_ids(20270114001, 4, np.arange(1000), kind=0).tolist())
    assert not (a & b) and not (a & c) and not (b & c)


def test_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="row index"):
        pack_ids(1, 0, np.array([2**15]))
    with pytest.raises(ValueError, match="detector"):
        ccd_visit_id(1, 1000)
