"""What a multi-process store keeps of each family's definition.

Series keys carry what values are combined by (name, type, gauge mode, label names, buckets);
a family's *description* adds what only exposition needs: its help text, its unit, an Enum's
states. Stores keep one per family (and per definition, when two versions of a program share a
store), where every process can read it, so that a process holding no metric objects
(``pytheus serve``) serves the family as the application would: with its real HELP and UNIT,
and even once all its series are gone.

The encoding is a JSON array: ``[name, type, mode, label names, buckets, help, unit, states,
quantiles]`` (a Summary's target quantiles; descriptions written before they were kept have
eight elements).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pytheus.desc import MetricDesc
from pytheus.samples import MetricType


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


def encode(desc: MetricDesc) -> str:
    """The stored text of ``desc``'s description."""
    states = desc.option("states") or ()
    return json.dumps(
        [
            desc.name, desc.type.value, str(desc.option("multiprocess_mode") or ""),
            list(desc.label_names), list(desc.upper_bounds), desc.help, desc.unit,
            list(states),  # type: ignore[call-overload]
            list(desc.option("quantiles") or ()),  # type: ignore[call-overload]
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
        )  # fmt: skip
    except (TypeError, ValueError):
        return None
