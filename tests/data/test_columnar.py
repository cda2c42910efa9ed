"""Vectorised column operations of the validator, on hand-computed cases."""

import numpy as np
import pyarrow as pa
import pytest

from ppm.data import columnar


def _same_partition(codes, expected):
    """Equal values get equal codes and different values different codes."""
    codes, expected = np.asarray(codes), np.asarray(expected)
    assert (codes[:, None] == codes[None, :]).tolist() == \
        (expected[:, None] == expected[None, :]).tolist()


@pytest.mark.parametrize("chunks, expected", [
    ([["b", "a"], ["a", None, "c", None]], [0, 1, 1, 2, 3, 2]),     # strings across chunks
    ([[7, -3], [7, 10**12]], [0, 1, 0, 2]),                        # ints too wide to shift
    ([[5, 3], [5, 9]], [0, 1, 0, 2]),                              # ints shifted to 0
    ([[5, None], [5, 3]], [0, 1, 0, 2]),                           # ints with nulls
])
def test_codes(chunks, expected):
    codes = columnar.codes(pa.chunked_array([pa.array(c) for c in chunks]))
    assert codes.dtype == np.int64 and (codes >= 0).all()
    _same_partition(codes, expected)


def test_duplicated_and_pairs():
    request = np.array([0, 0, 1, 1, 0])
    item = np.array([4, 5, 4, 4, 4])
    assert columnar.duplicated(columnar.pair_keys(request, item)).tolist() == \
        [True, False, True, True, True]
    assert columnar.duplicated(np.array([], np.int64)).tolist() == []


def test_conflicting():
    groups = np.array([0, 1, 0, 2, 1])
    values = np.array([9, 3, 9, 4, 8])
    assert columnar.conflicting(groups, values).tolist() == [False, True, False, False, True]


def test_not_in_ignores_nulls():
    values = pa.chunked_array([pa.array(["a", None, "z"], pa.large_string())])
    assert columnar.not_in(values, pa.array(["a", "b"])).tolist() == [False, False, True]
