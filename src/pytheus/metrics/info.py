"""Info: constant information about the target, such as a version or a build."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pytheus.desc import label_value
from pytheus.exceptions import LabelValidationException
from pytheus.metrics._family import Family
from pytheus.metrics._shadowed import _Shadowed, info_series
from pytheus.naming import LABEL_NAME_RE
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import LabelSet, MetricType, Series


class Info(_Shadowed):
    """Key-value information, exposed as ``<name>_info{key="value",...} 1``.

    Example::

        from pytheus.metrics import Info

        build = Info("build", "Build of this service.")
        build.info({"version": "1.2.0", "commit": "a1b2c3"})
        # build_info{commit="a1b2c3",version="1.2.0"} 1.0
    """

    type_: ClassVar[MetricType] = MetricType.INFO
    __slots__ = ()
    _hidden_label = "__info"

    def __init__(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None = None,
        default_labels: Mapping[str, str] | None = None,
        registry: Registry | None = REGISTRY,
    ) -> None:
        if name.endswith("_info"):
            name = name[: -len("_info")]  # the suffix is added when exposed
        cache: dict[Any, LabelSet] = {}

        def transform(family: Family, series: list[Series]) -> list[Series]:
            return info_series(family.desc.label_names, series, cache)

        self._define_shadowed(
            name, description, required_labels, default_labels, registry, transform
        )

    def info(self, value: Mapping[str, Any]) -> None:
        """Set the information: label names to values (values are converted with ``str``)."""
        desc = self._family.desc
        pairs = []
        for key, item in sorted(value.items()):
            if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
                raise LabelValidationException(f"info {desc.name!r}: invalid label name {key!r}")
            if key in desc.label_names:
                raise LabelValidationException(
                    f"info {desc.name!r}: {key!r} is already one of the metric's labels"
                )
            pairs.append((key, label_value(desc.name, key, item)))
        self._record(json.dumps(pairs, ensure_ascii=False))
