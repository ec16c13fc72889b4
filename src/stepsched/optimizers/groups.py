"""Variable groups: each with its own rate (or a multiplier of the base rate), weight decay
and hyperparameters, and helpers for discriminative rates, layer-wise decay and unfreezing.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from typing import Any

import keras

from .. import _validate
from ..durations import Duration
from ..schedules.base import Schedule, as_schedule

__all__ = ["Group", "spread", "layerwise", "unfreeze_at"]


def _schedule_or_none(name: str, value: Any):
    if value is None:
        return None
    if isinstance(value, dict) and "class_name" in value:
        value = keras.saving.deserialize_keras_object(value)
    return as_schedule(value, name)


class Group:
    """A group of trainable variables and what is different for them.

    Select the variables with one of ``layers`` (layer objects: their
    variables), ``pattern`` (a shell pattern, or a list of them, matched
    against ``variable.path``, e.g. ``"encoder/block_0/*"``), ``paths``
    (exact variable paths) or ``where`` (a predicate on the variable). A group
    with none of them is the default group: every variable no other group
    selects. Every trainable variable must land in exactly one group.

    ``learning_rate`` replaces the optimizer's rate for the group; ``multiplier``
    multiplies the group's rate (the optimizer's, or the group's own). Both
    are numbers or schedules of the optimizer step. ``weight_decay``: ``None``
    keeps the optimizer's, ``0`` turns it off for the group. ``frozen_until=k``
    (steps, or a duration): no update at all before step ``k`` (variables,
    their optimizer slots and their weight decay stay as they are) and the
    group's bias correction then counts its own steps from ``k``. A multiplier
    that is exactly 0 at a step also skips the group at that step. Any other
    keyword schedules one of the optimizer's hyperparameters for this group
    only (e.g. ``beta_1=...``).
    """

    def __init__(self, name: str, *, layers=None, pattern: str | list[str] | None = None,
                 paths: list[str] | None = None, where: Callable | None = None,
                 learning_rate=None, multiplier=None, weight_decay=None,
                 frozen_until: int | Duration | None = None, **hyperparameters):
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
        chosen = [k for k, v in (("layers", layers), ("pattern", pattern), ("paths", paths),
                                 ("where", where)) if v is not None]
        if len(chosen) > 1:
            raise ValueError(f"group {name!r}: give one of layers, pattern, paths or where, got "
                             f"{chosen}")
        if layers is not None:
            layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
            for layer in layers:
                if not isinstance(layer, keras.layers.Layer):
                    raise TypeError(f"group {name!r}: layers must be Keras layers, got {layer!r}")
        if pattern is not None:
            pattern = [pattern] if isinstance(pattern, str) else list(pattern)
            if not pattern or not all(isinstance(p, str) and p for p in pattern):
                raise ValueError(f"group {name!r}: pattern must be a non-empty string or list "
                                 f"of them, got {pattern!r}")
        if paths is not None:
            paths = list(paths)
            if not all(isinstance(p, str) for p in paths):
                raise TypeError(f"group {name!r}: paths must be strings, got {paths!r}")
        if where is not None and not callable(where):
            raise TypeError(f"group {name!r}: where must be a callable, got {where!r}")
        if frozen_until is not None and not isinstance(frozen_until, Duration):
            frozen_until = _validate.number("frozen_until", frozen_until, positive=False)
            if frozen_until < 0 or not float(frozen_until).is_integer():
                raise ValueError(f"group {name!r}: frozen_until must be a whole number of steps "
                                 f">= 0 or a duration, got {frozen_until!r}")
            frozen_until = int(frozen_until)
        self.name = name
        self.layers, self.pattern, self.paths, self.where = layers, pattern, paths, where
        self.learning_rate = _schedule_or_none("learning_rate", learning_rate)
        self.multiplier = _schedule_or_none("multiplier", multiplier)
        self.weight_decay = _schedule_or_none("weight_decay", weight_decay)
        self.frozen_until = frozen_until
        #: the plan of a ``frozen_until`` duration (``optimizer.plan``): a schedule that
        #: ends at the step, planned as the rates are (a later fit of another length
        #: follows the same policy) and saved with its history
        self.frozen_plan: Schedule | None = None
        self.hyperparameters = {k: _schedule_or_none(k, v) for k, v in hyperparameters.items()}
        for k in self.hyperparameters:
            if not k.isidentifier():
                raise ValueError(f"group {name!r}: {k!r} is not a hyperparameter name")
        self.assigned: list[str] | None = None  # variable paths, once the optimizer is built

    @property
    def is_default(self) -> bool:
        return all(v is None for v in (self.layers, self.pattern, self.paths, self.where))

    def selects(self, variable) -> bool:
        if self.layers is not None:
            return any(variable is w for layer in self.layers for w in layer.weights)
        if self.pattern is not None:
            return any(fnmatch.fnmatchcase(variable.path, p) for p in self.pattern)
        if self.paths is not None:
            return variable.path in self.paths
        if self.where is not None:
            return bool(self.where(variable))
        return False

    # ------------------------------------------------------------- values
    def schedules(self) -> dict[str, Schedule]:
        out = {"learning_rate": self.learning_rate, "multiplier": self.multiplier,
               "weight_decay": self.weight_decay, **self.hyperparameters}
        return {k: v for k, v in out.items() if v is not None}

    @property
    def frozen_step(self) -> int | None:
        """The step the group is frozen until, as planned for the run (None: not frozen, or
        a duration not planned yet)."""
        if isinstance(self.frozen_until, int):
            return self.frozen_until
        if self.frozen_plan is None:
            return None
        return int(round(self.frozen_plan.constant_after))

    def with_schedules(self, schedules: dict[str, Schedule], frozen_plan) -> Group:
        """A copy with ``schedules`` in place of this group's and ``frozen_plan`` as the plan
        of ``frozen_until`` (used to plan durations; both stay as written)."""
        new = Group.__new__(Group)
        new.__dict__.update(self.__dict__)
        new.learning_rate = schedules.get("learning_rate")
        new.multiplier = schedules.get("multiplier")
        new.weight_decay = schedules.get("weight_decay")
        new.hyperparameters = {k: schedules[k] for k in self.hyperparameters}
        new.frozen_plan = frozen_plan
        return new

    # ------------------------------------------------------------- config
    def get_config(self) -> dict:
        if self.is_default:
            selector = {}
        elif self.pattern is not None:
            selector = {"pattern": self.pattern}
        elif self.paths is not None:
            selector = {"paths": self.paths}
        elif self.assigned is not None:
            selector = {"paths": list(self.assigned)}
        else:
            raise ValueError(f"group {self.name!r} selects its variables by "
                             f"{'layers' if self.layers is not None else 'a predicate'}, which "
                             "cannot be saved before the optimizer is built (then the variable "
                             "paths are saved)")
        config = {"name": self.name, **selector}
        for k, v in self.schedules().items():
            config[k] = keras.saving.serialize_keras_object(v)
        if self.frozen_until is not None:
            config["frozen_until"] = keras.saving.serialize_keras_object(self.frozen_until) \
                if isinstance(self.frozen_until, Duration) else self.frozen_until
            if self.frozen_plan is not None:  # the plan, kept with the model
                config["frozen_plan"] = keras.saving.serialize_keras_object(self.frozen_plan)
        return config

    @classmethod
    def from_config(cls, config: dict) -> Group:
        if not isinstance(config, dict):
            raise TypeError(f"a group config must be a dict, got {config!r}")
        config = dict(config)
        frozen = config.get("frozen_until")
        if isinstance(frozen, dict):
            config["frozen_until"] = keras.saving.deserialize_keras_object(frozen)
        frozen_plan = config.pop("frozen_plan", None)
        group = cls(**config)
        if frozen_plan is not None:
            if not isinstance(group.frozen_until, Duration):
                raise ValueError(f"group {group.name!r}: frozen_plan is the plan of a "
                                 f"frozen_until duration, but frozen_until is "
                                 f"{group.frozen_until!r}")
            group.frozen_plan = _schedule_or_none("frozen_plan", frozen_plan)
        return group

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        for k in ("pattern", "paths"):
            if getattr(self, k) is not None:
                parts.append(f"{k}={getattr(self, k)!r}")
        if self.layers is not None:
            parts.append(f"layers=[{', '.join(layer.name for layer in self.layers)}]")
        if self.where is not None:
            parts.append("where=...")
        parts += [f"{k}={v!r}" for k, v in self.schedules().items()]
        if self.frozen_until is not None:
            parts.append(f"frozen_until={self.frozen_until!r}")
        return f"Group({', '.join(parts)})"


# ----------------------------------------------------------------- helpers
def spread(low: float, high: float, n: int) -> list[float]:
    """``n`` values from ``low`` to ``high``, evenly spaced on a log scale.

    fastai's ``lr_max=slice(low, high)`` over ``n`` layer groups (its
    ``even_mults``): the first (earliest) group gets ``low``, the last ``high``.

    >>> [round(v, 6) for v in spread(1e-4, 1e-2, 3)]
    [0.0001, 0.001, 0.01]
    """
    low = _validate.number("low", low, positive=True)
    high = _validate.number("high", high, positive=True)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if n == 1:
        return [high]
    step = math.exp((math.log(high) - math.log(low)) / (n - 1))
    return [low * step ** i for i in range(n - 1)] + [high]


def layerwise(blocks, decay: float, head=None, *, name: str = "block", **group_kwargs
              ) -> list[Group]:
    """Layer-wise rate decay: one group per block, deepest first at ``decay ** 1``.

    ``blocks`` are layers (or lists of layers) from the input side to the
    output side; block ``i`` of ``n`` gets the multiplier
    ``decay ** (n - i)`` and ``head`` (layers, or None: the rest of the
    model, as the default group) gets 1. ``group_kwargs`` go to every block's
    group (e.g. ``weight_decay``).
    """
    decay = _validate.number("decay", decay, positive=True)
    if decay > 1:
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    blocks = list(blocks)
    n = len(blocks)
    groups = [Group(f"{name}_{i}", layers=b, multiplier=decay ** (n - i), **group_kwargs)
              for i, b in enumerate(blocks)]
    groups.append(Group("head") if head is None else Group("head", layers=head))
    return groups


def unfreeze_at(step: int | Duration):
    """Keyword arguments for a group frozen until ``step``: ``Group(..., **unfreeze_at(k))``.

    Gradual unfreezing (ULMFiT): give successive groups later steps.
    """
    return {"frozen_until": step}
