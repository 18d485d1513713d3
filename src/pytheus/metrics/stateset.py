"""Enum: which one of a fixed set of states something is in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pytheus.exceptions import InvalidValueException, MetricDefinitionException
from pytheus.metrics._family import Family
from pytheus.metrics._shadowed import _Shadowed, newest_per_series, state_series
from pytheus.registry import REGISTRY, Registry
from pytheus.samples import LabelSet, MetricType, Series


class Enum(_Shadowed):
    """One series per state, labelled with the metric's own name: 1 for the current state.

    The first state is the current one until ``state()`` is called.

    Example::

        from pytheus.metrics import Enum

        task = Enum("task_state", "State of the task.", states=["starting", "running", "stopped"])
        task.state("running")
        # task_state{task_state="running"} 1.0, and 0.0 for the other two
    """

    type_: ClassVar[MetricType] = MetricType.STATESET
    __slots__ = ()
    _hidden_label = "__state"

    def __init__(
        self,
        name: str,
        description: str,
        required_labels: Sequence[str] | None = None,
        default_labels: Mapping[str, str] | None = None,
        registry: Registry | None = REGISTRY,
        *,
        states: Sequence[str],
    ) -> None:
        states = tuple(str(s) for s in states)
        if not states or len(set(states)) != len(states) or isinstance(states, str):
            raise MetricDefinitionException(
                f"enum {name!r}: states must be a non-empty sequence of distinct names"
            )
        if required_labels and name in required_labels:
            raise MetricDefinitionException(
                f"enum {name!r}: a label cannot have the metric's own name, which labels states"
            )
        cache: dict[Any, LabelSet] = {}

        def transform(family: Family, series: Sequence[Series]) -> Sequence[Series]:
            newest = newest_per_series(series)
            for own in list(family.children):  # known here but never set: the first state
                newest.setdefault(own, (states[0], 0.0))
            names = (*family.desc.label_names, family.desc.name)
            return state_series(names, states, newest, cache)

        self._define_shadowed(
            name, description, required_labels, default_labels, registry, transform,
            options={"states": states},
        )  # fmt: skip

    @property
    def _states(self) -> tuple[str, ...]:
        states = self._family.desc.option("states")
        assert isinstance(states, tuple)
        return states

    def state(self, state: str) -> None:
        """Make ``state`` the current state."""
        if state not in self._states:
            raise InvalidValueException(
                f"enum {self.name!r}: {state!r} is not one of its states {list(self._states)}"
            )
        self._record(state)
