"""Metric front-ends: the objects instrumented code calls."""

from pytheus.metrics._base import Labels, _Metric
from pytheus.metrics._custom import CustomCollector
from pytheus.metrics.counter import Counter
from pytheus.metrics.gauge import Gauge
from pytheus.metrics.histogram import Histogram
from pytheus.metrics.info import Info
from pytheus.metrics.stateset import Enum
from pytheus.metrics.summary import Summary

__all__ = [
    "Counter", "CustomCollector", "Enum", "Gauge", "Histogram", "Info", "Labels", "Summary",
    "_Metric",
]  # fmt: skip
