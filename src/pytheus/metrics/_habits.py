"""prometheus_client habits in pytheus's constructors: a clear error saying what to write.

``Counter("requests", "Requests.", labelnames=["method"])`` would otherwise fail with Python's
bare "unexpected keyword argument". The check runs once per definition, never on the hot path.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pytheus.exceptions import MetricDefinitionException

_NO_NAMESPACE = (
    "pytheus has no {key}: write it into the name ('shop_requests_total'), or give the "
    "registry a prefix (CollectorRegistry(prefix='shop'))"
)
HINTS = {
    "labelnames": "pytheus calls them required_labels: {cls}(name, description, "
    "required_labels=[...]) (labels(...) then takes values in that order, as prometheus_client)",
    "namespace": _NO_NAMESPACE,
    "subsystem": _NO_NAMESPACE,
    "documentation": "pytheus calls it description (the second argument)",
    "buckets": "only a Histogram has buckets",
    "states": "only an Enum has states",
    "multiprocess_mode": "only a Gauge has a multiprocess_mode",
    "quantiles": "only a Summary has quantiles",
    "_labelvalues": "labels are set with labels(...)",
}
F = TypeVar("F", bound=Callable[..., None])
_ALL = "; or keep prometheus_client's API unchanged with pytheus.compat.patch_client"


def explain_habits(init: F) -> F:
    """Wrap a metric class's ``__init__``: a keyword it does not take, that prometheus_client
    users write, raises MetricDefinitionException saying what to write instead."""
    parameters = inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return init  # passes keywords on (a subclass): the __init__ it calls checks them
    accepted = set(parameters)

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        for key in kwargs.keys() - accepted:
            if key in HINTS:
                cls = type(self).__name__
                name = args[0] if args else kwargs.get("name", "?")
                hint = HINTS[key].format(key=key, cls=cls)
                raise MetricDefinitionException(
                    f"{cls.lower()} {name!r}: {cls}() takes no {key}=; {hint}{_ALL}"
                )
        init(self, *args, **kwargs)

    return cast(F, checked)
