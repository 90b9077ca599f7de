"""The packed rows' numpy type reads big-endian fields without length words."""

from __future__ import annotations

import struct

import numpy as np

from ubi.store import packed


def test_record_type_views_packed_rows() -> None:
    rows = [(3, 0.5, 7, 8), (1, -2.0, 9, 10)]
    data = b"".join(struct.pack(">id", s, n) + struct.pack(">ii", a, b) for s, n, a, b in rows)
    records = np.frombuffer(data, dtype=packed.record_type([("s", ">i4"), ("n", ">f8")],
                                                           ("c", ">i4", 2)))
    assert records["s"].tolist() == [3, 1]
    assert records["n"].tolist() == [0.5, -2.0]
    assert records["c"].tolist() == [[7, 8], [9, 10]]
