"""linear_buckets and exponential_buckets: exact values, refusals, and properties of any result."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytheus.buckets import exponential_buckets, linear_buckets
from pytheus.exceptions import BucketException, PytheusException
from pytheus.metrics import Histogram

SETTINGS = settings(max_examples=150, deadline=None)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
COUNTS = st.integers(min_value=-3, max_value=200)


def test_linear_values() -> None:
    assert linear_buckets(0.5, 0.5, 4) == (0.5, 1.0, 1.5, 2.0)
    assert linear_buckets(-1, 1, 3) == (-1.0, 0.0, 1.0)
    assert linear_buckets(10, 5, 1) == (10.0,)
    assert all(type(bound) is float for bound in linear_buckets(1, 2, 3))


def test_exponential_values() -> None:
    assert exponential_buckets(1, 2, 4) == (1.0, 2.0, 4.0, 8.0)
    assert exponential_buckets(0.25, 4, 3) == (0.25, 1.0, 4.0)
    assert exponential_buckets(100, 10, 3) == (100.0, 1000.0, 10000.0)
    assert exponential_buckets(3, 1.5, 1) == (3.0,)


@pytest.mark.parametrize(
    ("call", "arguments", "words"),
    [
        (linear_buckets, (0, 1, 0), "linear_buckets: count must be >= 1, got 0"),
        (linear_buckets, (0, 1, -2), "linear_buckets: count must be >= 1"),
        (linear_buckets, (0, 1, 2.0), "linear_buckets: count must be an integer"),
        (linear_buckets, (0, 1, True), "linear_buckets: count must be an integer"),
        (linear_buckets, (0, 0, 3), "linear_buckets: width must be > 0, got 0.0"),
        (linear_buckets, (0, -1, 3), "linear_buckets: width must be > 0"),
        (linear_buckets, (math.nan, 1, 3), "linear_buckets: start must be finite"),
        (linear_buckets, (0, math.inf, 3), "linear_buckets: width must be finite"),
        (linear_buckets, ("0", 1, 3), "linear_buckets: start must be a number"),
        (linear_buckets, (1e20, 1, 3), "linear_buckets: the step is too small"),
        (linear_buckets, (1e308, 1e308, 3), "linear_buckets: the last bound overflows"),
        (exponential_buckets, (1, 2, 0), "exponential_buckets: count must be >= 1, got 0"),
        (exponential_buckets, (0, 2, 3), "exponential_buckets: start must be > 0, got 0.0"),
        (exponential_buckets, (-1, 2, 3), "exponential_buckets: start must be > 0"),
        (exponential_buckets, (1, 1, 3), "exponential_buckets: factor must be > 1, got 1.0"),
        (exponential_buckets, (1, 0.5, 3), "exponential_buckets: factor must be > 1"),
        (exponential_buckets, (1, math.nan, 3), "exponential_buckets: factor must be finite"),
        (exponential_buckets, (1, None, 3), "exponential_buckets: factor must be a number"),
        (exponential_buckets, (1, 10, 400), "exponential_buckets: the last bound overflows"),
        (exponential_buckets, (1, 2.0, 2000), "exponential_buckets: the last bound overflows"),
        (exponential_buckets, (5e-324, 1.5, 3), "exponential_buckets: the step is too small"),
    ],
)
def test_bad_arguments_are_refused_by_name(
    call: Any, arguments: tuple[Any, ...], words: str
) -> None:
    with pytest.raises(BucketException) as raised:
        call(*arguments)
    assert words in str(raised.value)


def check_bounds(bounds: tuple[float, ...], count: int) -> None:
    assert len(bounds) == count
    assert all(math.isfinite(bound) for bound in bounds)
    assert all(lower < upper for lower, upper in zip(bounds, bounds[1:]))
    # a histogram takes them as they are, adding +Inf
    histogram = Histogram("h", "h", buckets=bounds, registry=None)
    assert histogram._collector.desc.upper_bounds == (*bounds, math.inf)


@SETTINGS
@given(start=ANY_FLOAT, width=ANY_FLOAT, count=COUNTS)
def test_linear_is_strictly_increasing_or_refused(start: float, width: float, count: int) -> None:
    try:
        bounds = linear_buckets(start, width, count)
    except PytheusException as error:
        assert isinstance(error, BucketException)
        assert str(error).startswith("linear_buckets: ")
        return
    check_bounds(bounds, count)
    assert bounds[0] == start


@SETTINGS
@given(start=ANY_FLOAT, factor=ANY_FLOAT, count=COUNTS)
def test_exponential_is_strictly_increasing_or_refused(
    start: float, factor: float, count: int
) -> None:
    try:
        bounds = exponential_buckets(start, factor, count)
    except PytheusException as error:
        assert isinstance(error, BucketException)
        assert str(error).startswith("exponential_buckets: ")
        return
    check_bounds(bounds, count)
    assert bounds[0] == start


@SETTINGS
@given(
    start=st.floats(min_value=-1e6, max_value=1e6),
    width=st.floats(min_value=1e-3, max_value=1e6),
    count=st.integers(min_value=1, max_value=200),
)
def test_reasonable_linear_arguments_always_work(start: float, width: float, count: int) -> None:
    bounds = linear_buckets(start, width, count)
    check_bounds(bounds, count)
    assert bounds[-1] == pytest.approx(start + (count - 1) * width)


@SETTINGS
@given(
    start=st.floats(min_value=1e-9, max_value=1e6),
    factor=st.floats(min_value=1.01, max_value=100),
    count=st.integers(min_value=1, max_value=60),
)
def test_reasonable_exponential_arguments_always_work(
    start: float, factor: float, count: int
) -> None:
    bounds = exponential_buckets(start, factor, count)
    check_bounds(bounds, count)
    for lower, upper in zip(bounds, bounds[1:]):
        assert upper / lower == pytest.approx(factor)
