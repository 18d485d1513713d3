"""What pytheus 0.6 gave a per-value backend to read, kept as a small documented surface.

A per-value backend is created as ``backend_class(config, metric, histogram_bucket=...)``. The
``metric`` it gets has ``name`` and ``_labels`` (the series' label values, default labels
included), and ``metric._collector`` has the attributes below, spelled as in pytheus 0.6.
Backends published for 0.6 (``pytheus-backend-rs``) read exactly these; nothing else of the
metric objects is promised to a backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytheus.desc import MetricDesc


class LegacyCollector:
    """Mixed into the metric family (``metric._collector``)."""

    __slots__ = ()
    desc: MetricDesc

    @property
    def _default_labels(self) -> Mapping[str, str]:
        return dict(self.desc.default_labels)

    @property
    def _default_labels_count(self) -> int:
        return len(self.desc.default_labels)

    @property
    def _required_labels(self) -> list[str] | None:
        """Every label name of the family (default labels included), or None."""
        return list(self.desc.label_names) or None

    @property
    def _metric(self) -> LegacyCollector:
        return self  # 0.6 read ``collector._metric._upper_bounds``

    @property
    def _upper_bounds(self) -> list[float]:
        """A histogram's bucket bounds, ``inf`` last (empty for other types)."""
        return list(self.desc.upper_bounds)
