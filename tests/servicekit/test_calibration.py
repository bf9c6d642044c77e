"""servicekit.calibration: the one reliability diagram and ECE (ten equal-width bins)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servicekit.calibration import RELIABILITY_BINS, bin_index, expected_calibration_error, reliability


def test_expected_calibration_error() -> None:
    assert expected_calibration_error([0.9] * 10, [1] * 9 + [0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.9] * 10, [0] * 10) == pytest.approx(0.9)
    assert expected_calibration_error([], []) == 0.0
    # numpy arrays and booleans read the same as lists of numbers.
    assert expected_calibration_error(np.array([0.9] * 10), np.array([True] * 9 + [False])) == pytest.approx(0.0)


def test_bins_by_the_edges_as_written_with_one_in_the_last_bin() -> None:
    assert RELIABILITY_BINS == 10
    # Just below 0.9 (0.8999999999999999): int(confidence * 10) would put it in the 0.9 bin.
    assert bin_index(math.nextafter(0.9, 0.0)) == 8
    assert [bin_index(c) for c in (0.0, 0.1, 0.3, 0.9, 1.0)] == [0, 1, 3, 9, 9]
    diagram = reliability([0.05, 0.1, 0.95, 1.0, 1.0], [1, 0, 1, 0, 1])
    assert [(b.lower, b.upper) for b in diagram.bins] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert [b.count for b in diagram.bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert [b.count for b in diagram.filled] == [1, 1, 3]
    assert diagram.bins[9].accuracy == pytest.approx(2 / 3)
    assert diagram.ece == pytest.approx((0.95 + 0.1 + 0.95) / 5)


def test_confidences_and_outcomes_pair_up() -> None:
    with pytest.raises(ValueError, match="2 confidences but 1 outcomes"):
        reliability([0.5, 0.6], [1])
