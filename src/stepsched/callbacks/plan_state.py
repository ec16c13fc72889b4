"""The plans of an optimizer's scheduled values, kept in its weights files.

``model.save`` keeps each plan (with its history of changes) in the
optimizer's config. ``BackupAndRestore``, ``ModelCheckpoint(save_weights_only=True)``
and ``load_weights`` carry weights only: a fresh process that compiles the
schedule as written and restores a run whose plan changed (a later ``fit()``
of another length, ``on_change="continue"``) would plan it afresh and follow
another rate. ``PlanState``, attached to the optimizer as
``optimizer.stepsched_plan`` by any stepsched callback, writes every plan into
the weights file beside the optimizer's variables (as ``RunState`` does for
the plateau multiplier: a file without it loads into a run with it, and the
other way round). When training begins, a plan read from the file takes the
place of a value that has none yet, if it is the plan of the same schedule
as written; a value that already has a plan keeps it.
"""

from __future__ import annotations

import json
import weakref

import keras
import numpy as np

from .. import _keras
from .._state import RunState
from ..schedules.base import Schedule
from ..schedules.modifiers import core, modifiers, with_modifiers
from ..schedules.planned import Planned

__all__ = ["PlanState", "attach", "adopt_saved_plans"]

RATE = "learning_rate"
#: the name of the plan of ``BatchLearningRateScheduler``'s schedule (the optimizer's rate
#: is then a float that the callback assigns)
BY_CALLBACK = "BatchLearningRateScheduler"


def _entries(optimizer) -> dict:
    """name -> the optimizer's value for it (a schedule), for every scheduled value."""
    rate = _keras.rate_of(optimizer)
    out = {RATE: core(rate)} if isinstance(rate, Schedule) else {}
    entries = getattr(optimizer, "plan_entries", None)
    if entries is not None:
        out.update(entries())
    return out


class PlanState(RunState):
    """Every plan of one optimizer, saved as JSON text in the weights file."""

    def __init__(self, optimizer):
        super().__init__(name="stepsched_plan", dtype="float32")
        self._optimizer = weakref.ref(optimizer)  # not tracked: Keras walks attributes
        self.saved: dict | None = None  # plans read from a weights file, not adopted yet
        #: the plan of ``BatchLearningRateScheduler``'s schedule for this optimizer: kept
        #: here, not on the callback, so that a callback made anew for a later fit()
        #: goes on with it by the same policy (and a resumed run gets it from the file)
        self.by_callback: Planned | None = None

    def save_state(self, store) -> None:
        optimizer = self._optimizer()
        plans = {} if optimizer is None else {
            name: keras.saving.serialize_keras_object(value)
            for name, value in _entries(optimizer).items() if isinstance(value, Planned)}
        if self.by_callback is not None:
            plans[BY_CALLBACK] = keras.saving.serialize_keras_object(self.by_callback)
        store["0"] = np.frombuffer(json.dumps(plans).encode(), np.uint8)

    def load_state(self, store) -> None:
        text = np.asarray(store["0"], np.uint8).tobytes().decode()
        plans = json.loads(text)
        if BY_CALLBACK in plans:
            self.by_callback = keras.saving.deserialize_keras_object(plans.pop(BY_CALLBACK))
        self.saved = plans or None

    def callback_plan(self, schedule) -> Schedule:
        """What ``BatchLearningRateScheduler`` plans for this fit(): its earlier plan of
        ``schedule`` (the same schedule as written), or ``schedule`` itself."""
        earlier = self.by_callback
        return earlier if isinstance(earlier, Planned) and _same_schedule(schedule, earlier) \
            else schedule


def attach(optimizer) -> PlanState:
    """The optimizer's ``PlanState``, attached now if it has none."""
    state = getattr(optimizer, "stepsched_plan", None)
    if not isinstance(state, PlanState):
        state = PlanState(optimizer)
        optimizer.stepsched_plan = state
    return state


def _same_schedule(current, saved: Planned) -> bool:
    return isinstance(current, Schedule) and not isinstance(current, Planned) and \
        current.get_config() == saved.arg("schedule").get_config() and \
        type(current) is type(saved.arg("schedule"))


def adopt_saved_plans(optimizer) -> bool:
    """Put the plans a weights file brought in place of values that have none yet; returns
    whether anything changed."""
    state = getattr(optimizer, "stepsched_plan", None)
    if not isinstance(state, PlanState) or not state.saved:
        return False
    saved = {k: keras.saving.deserialize_keras_object(v) for k, v in state.saved.items()}
    state.saved = None
    current = _entries(optimizer)
    chosen = {k: v for k, v in saved.items()
              if k in current and isinstance(v, Planned) and _same_schedule(current[k], v)}
    if not chosen:
        return False
    if RATE in chosen:
        rate = _keras.rate_of(optimizer)
        _keras.replace_schedule(optimizer, with_modifiers(modifiers(rate), chosen.pop(RATE)))
    if chosen:
        optimizer.adopt_plans(chosen)
    return True
