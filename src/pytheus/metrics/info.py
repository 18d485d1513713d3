"""Info: constant information about the target, such as a version or a build."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pytheus.desc import label_value
from pytheus.exceptions import LabelValidationException
from pytheus.metrics._family import Family
from pytheus.metrics._shadowed import _Shadowed, info_series
from pytheus.naming import check_label_name
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

        def transform(family: Family, series: Sequence[Series]) -> Sequence[Series]:
            return info_series(family.desc.label_names, series, cache)

        self._define_shadowed(
            name, description, required_labels, default_labels, registry, transform
        )

    def info(self, value: Mapping[str, Any]) -> None:
        """Set the information: label names to values (values are converted with ``str``).

        The keys become label names, so they follow the label name rules of the validation
        scheme in force (:mod:`pytheus.naming`): classic names by default, any UTF-8 name under
        ``"utf8"`` (``{"service.version": "1.2"}``). None may start with ``__``.
        """
        desc = self._family.desc
        pairs = []
        for key, item in value.items():  # checked before sorting: keys may not be strings
            check_label_name(desc.name, key)
            if key.startswith("__"):
                raise LabelValidationException(
                    f"metric {desc.name!r}: info key {key!r} starts with '__', which Prometheus "
                    "reserves for internal label names"
                )
            if key in desc.label_names:
                raise LabelValidationException(
                    f"metric {desc.name!r}: info key {key!r} is already one of the metric's labels"
                )
            pairs.append((key, label_value(desc.name, key, item)))
        self._record(json.dumps(sorted(pairs), ensure_ascii=False))
