"""What a multi-process store keeps of each family's definition.

Series keys carry what values are combined by (name, type, gauge mode, label names, buckets);
a family's *description* adds what only exposition needs: its help text, its unit, an Enum's
states. Stores keep one per family (and per definition, when two versions of a program share a
store), where every process can read it, so that a process holding no metric objects
(``pytheus serve``) serves the family as the application would: with its real HELP and UNIT,
and even once all its series are gone.

The encoding is a JSON array: ``[name, type, mode, label names, buckets, help, unit, states,
quantiles, native]``: a Summary's target quantiles, and a native histogram's settings
(``NATIVE_SETTINGS``, in that order; ``null`` for a histogram with classic buckets only).
Descriptions written before they were kept have eight or nine elements.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pytheus.backends.aggregation import Family
from pytheus.desc import MetricDesc
from pytheus.native import MAX_SCHEMA, MIN_SCHEMA
from pytheus.samples import MetricType

# the options of a native histogram (``Histogram(native=True, ...)``) a description keeps
NATIVE_SETTINGS = (
    "native_schema", "native_zero_threshold", "native_max_buckets", "native_reset_seconds",
)  # fmt: skip


@dataclass(frozen=True)
class StoredDescription:
    """A family's definition as a store keeps it (``mode`` "" when unset)."""

    name: str
    type: MetricType
    mode: str
    label_names: tuple[str, ...]
    upper_bounds: tuple[float, ...]
    help: str
    unit: str
    states: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = ()
    native: tuple[tuple[str, object], ...] = ()
    """A native histogram's options (``NATIVE_SETTINGS`` with their values); () when classic."""

    @property
    def family(self) -> Family:
        """The family it describes (the :attr:`SeriesKey.family` of its series)."""
        return (self.name, self.type.value, self.mode, self.label_names, self.upper_bounds)


def encode(desc: MetricDesc) -> str:
    """The stored text of ``desc``'s description."""
    states = desc.option("states") or ()
    return json.dumps(
        [
            desc.name, desc.type.value, str(desc.option("multiprocess_mode") or ""),
            list(desc.label_names), list(desc.upper_bounds), desc.help, desc.unit,
            list(states),  # type: ignore[call-overload]
            list(desc.option("quantiles") or ()),  # type: ignore[call-overload]
            [desc.option(name) for name in NATIVE_SETTINGS] if desc.option("native") else None,
        ],
        separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip


def decode(text: str | bytes) -> StoredDescription | None:
    """A stored description, or None when it cannot be read (another version's, damaged)."""
    try:
        raw: Any = json.loads(text)
        name, kind, mode, names, bounds, help_text, unit, states, *rest = raw
        quantiles = tuple(float(q) for q in rest[0]) if rest else ()
        if not all(0 <= q <= 1 for q in quantiles):
            return None
        return StoredDescription(
            str(name), MetricType(kind), str(mode), tuple(str(n) for n in names),
            tuple(float(b) for b in bounds), str(help_text), str(unit),
            tuple(str(s) for s in states), quantiles,
            _native_settings(rest[1]) if len(rest) > 1 and rest[1] is not None else (),
        )  # fmt: skip
    except (TypeError, ValueError, OverflowError):
        return None


def _native_settings(raw: Any) -> tuple[tuple[str, object], ...]:
    """The stored settings of a native histogram (ValueError when they are not valid ones)."""
    schema, zero_threshold, max_buckets, reset_seconds = raw
    if not (_is_int(schema) and MIN_SCHEMA <= schema <= MAX_SCHEMA):
        raise ValueError(f"a native schema in {MIN_SCHEMA}..{MAX_SCHEMA}, got {schema!r}")
    if not (_is_int(max_buckets) and max_buckets >= 0):
        raise ValueError(f"native max buckets must be an int >= 0, got {max_buckets!r}")
    numbers = (float(zero_threshold), float(reset_seconds))
    if not all(0 <= number < math.inf for number in numbers):
        raise ValueError(f"native zero threshold and reset must be finite >= 0, got {numbers}")
    return tuple(zip(NATIVE_SETTINGS, (schema, numbers[0], max_buckets, numbers[1])))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
