"""Metric front-ends: the objects instrumented code calls."""

from pytheus.metrics._base import Labels, _Metric
from pytheus.metrics._custom import CustomCollector
from pytheus.metrics.counter import Counter
from pytheus.metrics.gauge import Gauge
from pytheus.metrics.histogram import Histogram
from pytheus.metrics.summary import Summary

__all__ = ["Counter", "CustomCollector", "Gauge", "Histogram", "Labels", "Summary", "_Metric"]
