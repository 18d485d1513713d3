"""Histogram bucket bounds spaced evenly or geometrically.

Example::

    from pytheus.buckets import exponential_buckets, linear_buckets
    from pytheus.metrics import Histogram

    linear_buckets(0.5, 0.5, 4)         # (0.5, 1.0, 1.5, 2.0)
    exponential_buckets(0.001, 10, 4)   # (0.001, 0.01, 0.1, 1.0)
    latency = Histogram("job_seconds", "Job run time.", buckets=exponential_buckets(0.01, 2, 12))

The ``+Inf`` bucket is not included: histograms add it themselves. Bad arguments raise
:class:`~pytheus.exceptions.BucketException` naming the function and the argument.
"""

from __future__ import annotations

import math
import numbers

from pytheus.exceptions import BucketException


def linear_buckets(start: float, width: float, count: int) -> tuple[float, ...]:
    """``count`` bounds: ``start``, ``start + width``, ... ``start + (count - 1) * width``.

    Example::

        linear_buckets(10, 5, 3)   # (10.0, 15.0, 20.0)
        linear_buckets(-1, 1, 3)   # (-1.0, 0.0, 1.0)
    """
    function = "linear_buckets"
    start = _finite(function, "start", start)
    width = _finite(function, "width", width)
    count = _count(function, count)
    if width <= 0:
        raise BucketException(f"{function}: width must be > 0, got {width!r}")
    return _checked(function, tuple(start + index * width for index in range(count)))


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` bounds: ``start``, ``start * factor``, ... ``start * factor ** (count - 1)``.

    Example::

        exponential_buckets(1, 2, 4)       # (1.0, 2.0, 4.0, 8.0)
        exponential_buckets(0.25, 4, 3)    # (0.25, 1.0, 4.0)
    """
    function = "exponential_buckets"
    start = _finite(function, "start", start)
    factor = _finite(function, "factor", factor)
    count = _count(function, count)
    if start <= 0:
        raise BucketException(f"{function}: start must be > 0, got {start!r}")
    if factor <= 1:
        raise BucketException(f"{function}: factor must be > 1, got {factor!r}")
    try:
        bounds = tuple(start * factor**index for index in range(count))
    except OverflowError:  # float ** raises where * would give inf
        bounds = (math.inf,)
    return _checked(function, bounds)


def _finite(function: str, argument: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BucketException(f"{function}: {argument} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise BucketException(f"{function}: {argument} must be finite, got {number!r}")
    return number


def _count(function: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BucketException(f"{function}: count must be an integer, got {value!r}")
    if value < 1:
        raise BucketException(f"{function}: count must be >= 1, got {value!r}")
    return int(value)


def _checked(function: str, bounds: tuple[float, ...]) -> tuple[float, ...]:
    """Refuse bounds that floating point made infinite or equal (huge counts, tiny steps)."""
    if not math.isfinite(bounds[-1]):
        raise BucketException(
            f"{function}: the last bound overflows to infinity; use a smaller count"
        )
    for lower, upper in zip(bounds, bounds[1:]):
        if not lower < upper:
            raise BucketException(
                f"{function}: the step is too small for floating point: {upper!r} follows "
                f"{lower!r}; use a larger width/factor or a smaller start"
            )
    return bounds
