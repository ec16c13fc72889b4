"""Keras's built-in optimizers with every float hyperparameter scheduled in-graph, and
variable groups.

``stepsched.optimizers.Adam`` is ``keras.optimizers.Adam`` (a subclass, same
arguments, same variables) whose ``beta_1``, ``beta_2``, ``epsilon`` and
``weight_decay`` may also be schedules, and which takes ``groups=``. At each
update the schedules are evaluated once (per group) from the optimizer's own
step counter inside the compiled step, and put in place of the attribute
while Keras's own update code runs; after it the attribute holds its nominal
float again (the schedule's value at step 0). The optimizer's variables are
those of the Keras optimizer: weights files load both ways.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
from keras import ops

from .. import _keras
from ..durations import Duration, UnresolvedDurationError
from ..schedules import _torch_tables
from ..schedules.base import Schedule
from ..schedules.batch import has_batch_units, resolve_batch
from ..schedules.modifiers import modifiers, with_modifiers
from ..schedules.planned import Planned, needs_plan, plan
from ..schedules.primitives import Constant
from . import _torch_rates
from ._live import live
from .groups import Group

__all__ = ["HYPERPARAMETERS", "OPTIMIZERS", "scheduled_values"]

#: floats Keras reads once, when it builds slots or never in the update step
_NOT_PER_STEP = {
    "learning_rate": "it is the optimizer's rate: pass the schedule as learning_rate",
    "initial_accumulator_value": "Keras reads it once, when it creates the accumulators",
    "ema_momentum": "it belongs to the weight average (use_ema), not the update step",
    **{f"muon_{c}": "it is a coefficient of Muon's Newton-Schulz iteration, not a training "
                    "hyperparameter" for c in "abc"},
}

#: slots Keras creates for every variable that are not the update's state
_NOT_UPDATE_SLOTS = ("gradient_accumulator", "average")


def _schedulable(base: type) -> tuple[str, ...]:
    params = inspect.signature(base.__init__).parameters
    names = [p.name for p in params.values()
             if isinstance(p.default, float) and not isinstance(p.default, bool)
             and p.name not in _NOT_PER_STEP]
    if "weight_decay" not in names:
        names.append("weight_decay")
    return tuple(names)


def _as_hyper(name: str, value):
    if isinstance(value, dict) and "class_name" in value:
        value = keras.saving.deserialize_keras_object(value)
    if isinstance(value, Schedule):
        return value
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        raise TypeError(f"{name}: give a stepsched schedule (it evaluates on the host too, for "
                        f"its nominal value and the logs), got {value!r}")
    return None


def _nominal(schedule: Schedule) -> float:
    """The schedule's value at step 0 (durations planned nominally if unresolved: a batch
    of one sample, 1000 steps an epoch, a run of 10**6 steps)."""
    try:
        return float(schedule.at(0))
    except UnresolvedDurationError:
        if has_batch_units(schedule):
            schedule = resolve_batch(schedule, 1)
        return float(Planned(schedule, 1000.0, 1e6).at(0))


class _State:
    """Everything stepsched keeps on the optimizer: a plain object (no tracking, not saved
    as a variable)."""

    def __init__(self, schedules, nominal, groups):
        self.schedules = schedules        # name -> Schedule (optimizer-wide)
        self.nominal = nominal            # name -> float (the attribute outside updates)
        self.groups = groups              # list[Group] or None, durations planned
        self.written = groups             # the groups as given (told their variables too)
        self.group_of_index: list[int] = []
        self.slots: dict[int, list] = {}  # variable index -> its optimizer slots
        self.step = None                  # _Step while an update is traced
        self.active_lr = None             # a group's rate while its weight decay runs
        self.iteration_offset = None
        self.staged: dict = {}            # group name -> its rate inside the rate modifiers
        self.together = None              # torch: _torch_rates.GroupRates of the groups
        self.layout = None                # torch: the groups' positions in the variables

    def group_rate(self, optimizer, group):
        """The group's own rate inside the modifiers of the optimizer's rate (plateau,
        cooldown: ``stepsched.schedules.modifiers``), made once per rate."""
        rate = _keras.rate_of(optimizer)
        chain = modifiers(rate) if isinstance(rate, Schedule) else []
        if not chain:
            return group.learning_rate
        key = (tuple(id(m) for m in chain), group.learning_rate)
        entry = self.staged.get(group.name)
        if entry is None or entry[0][0] != key[0] or entry[0][1] is not key[1]:
            entry = self.staged[group.name] = (key, with_modifiers(chain, group.learning_rate))
        return entry[1]


class _GroupStep:
    __slots__ = ("group", "_rate", "vector", "index", "views", "gate", "hyper",
                 "weight_decay", "offset")

    @property
    def rate(self):
        """The group's rate at this step, a 0-d tensor (on torch, a view of the step's
        vector of group rates, made when asked for: the fused update reads the vector)."""
        if self._rate is None:
            views = self.views
            if self.index not in views:
                views[self.index] = self.vector[self.index]
            self._rate = views[self.index]
        return self._rate

    @rate.setter
    def rate(self, value):
        self._rate, self.vector = value, None


class _Step:
    """The values of one update: each schedule evaluated once, at the schedules' step
    (``_keras.schedule_step``: the raw step counter, plus the steps skipped where a
    ``LossScaleOptimizer`` counts batches).

    Schedules are evaluated once per step whichever groups use them (by identity:
    groups that share a schedule share its value), and a ``Constant`` multiplier is a
    Python number (no tensor operation). On torch the groups' rates come from one
    look-up where their schedules have tables (``_torch_rates``)."""

    def __init__(self, optimizer, state: _State, base_lr):
        step = _keras.schedule_step(optimizer)
        values: dict[int, object] = {}

        def value(schedule):
            key = id(schedule)
            if key not in values:
                values[key] = schedule(step)
            return values[key]

        def hyper(schedule):
            key = ("live", id(schedule))
            if key not in values:
                values[key] = live(value(schedule))
            return values[key]

        self.globals = {name: hyper(s) for name, s in state.schedules.items()}
        self.base_lr = base_lr  # what Keras's update reads as the rate: evaluated once
        self.groups = []
        if not state.groups:
            return
        base = None
        together = _together(optimizer, state, step, base_lr)
        views: dict = {}
        for j, group in enumerate(state.groups):
            g = _GroupStep()
            g.group, g._rate, g.vector, g.views = group, None, None, views
            gate = None
            if together is not None and together[0].index[j] is not None:
                members, (looked_up, rates) = together
                g.vector, g.index = rates, members.index[j]
                if group.multiplier is not None and not _never_zero(group.multiplier):
                    gate = ops.equal(looked_up[members.multiplier_index[j]], 0.0)
            else:
                if group.learning_rate is not None:
                    own = state.group_rate(optimizer, group)
                    key = ("rate", id(own))
                    if key not in values:
                        values[key] = ops.cast(value(own), "float32")
                    rate = values[key]
                else:
                    if base is None:
                        base = ops.cast(base_lr, "float32")
                    rate = base
                if group.multiplier is not None:
                    if type(group.multiplier) is Constant and \
                            group.multiplier.arg("value") != 0:
                        rate = rate * float(group.multiplier.arg("value"))
                    else:
                        key = ("scaled", id(rate), id(group.multiplier))
                        if key not in values:
                            multiplier = value(group.multiplier)
                            values[key] = (rate * multiplier, None if _never_zero(
                                group.multiplier) else ops.equal(multiplier, 0.0))
                        rate, gate = values[key]
                g.rate = rate
            g.offset = None
            if group.frozen_step is not None:
                k = int(group.frozen_step)
                frozen = ops.less(ops.convert_to_tensor(step), k)
                gate = frozen if gate is None else ops.logical_or(gate, frozen)
                g.rate = ops.where(frozen, ops.zeros_like(g.rate), g.rate)
                accumulation = optimizer.gradient_accumulation_steps or 1
                g.offset = k // accumulation
            g.gate = gate
            g.hyper = {name: hyper(s) for name, s in group.hyperparameters.items()}
            if group.weight_decay is None:
                g.weight_decay = "inherit"
            elif _is_constant(group.weight_decay, nonzero=False):
                g.weight_decay = None
            else:
                g.weight_decay = hyper(group.weight_decay)
            self.groups.append(g)


def _together(optimizer, state: _State, step, base_lr):
    """torch: ``(members, (values, rates))``: ``GroupRates`` called at ``step``, and per
    group where it puts the group's rate and multiplier (``_Members``; None for a group
    whose rate is evaluated on its own), or None where no two groups' rates can be had
    together."""
    if keras.backend.backend() != "torch" or not _torch_tables.TORCH_TABLES:
        return None
    step = _torch_tables.torch_step(step)
    if step is None:
        return None
    pairs, members = [], []
    for group in state.groups:
        source = None if group.learning_rate is None else state.group_rate(optimizer, group)
        pair = (source, group.multiplier)
        if any(s is not None and _torch_rates.column(s) is None for s in pair):
            members.append(None)
            continue
        members.append(len(pairs))
        pairs.append(pair)
    if len(pairs) < 2:
        return None
    made = state.together
    if made is None or not made.same(pairs):
        made = state.together = _torch_rates.GroupRates(pairs)
    at = made(ops.cast(base_lr, "float32") if made.uses_base else None, step)
    index = [None if m is None else made.index[m] for m in members]
    multiplier_index = [None if m is None else made.multiplier_index[m] for m in members]
    return _Members(index, multiplier_index), at


class _Members:
    """Per group (in the optimizer's order), where ``GroupRates`` puts its rate (``index``)
    and its multiplier's value (``multiplier_index``); None for the others."""

    __slots__ = ("index", "multiplier_index")

    def __init__(self, index, multiplier_index):
        self.index, self.multiplier_index = index, multiplier_index


def _is_constant(schedule, *, nonzero: bool) -> bool:
    """Whether ``schedule`` is a ``Constant`` that is non-zero (``nonzero=True``) or zero."""
    return isinstance(schedule, Constant) and (schedule.arg("value") != 0) == nonzero


#: the longest schedule whose every value ``_never_zero`` reads on the host
_NEVER_ZERO_STEPS = 2_000_000


def _never_zero(schedule) -> bool:
    """Whether ``schedule`` is far from 0 at every step (a multiplier that cannot skip its
    group, so the update needs no gate): its values on the host, up to the step from
    which it stays constant, are finite and at least 1e-4 of the largest of them in
    magnitude (far beyond any difference between the host's evaluation and a
    backend's). False where that is not known (an open-ended schedule)."""
    if _is_constant(schedule, nonzero=True):
        return True

    def compute() -> bool:
        try:
            end = schedule.constant_after
            if end is None or not 0 <= end <= _NEVER_ZERO_STEPS:
                return False
            values = np.abs(np.asarray(schedule.at(np.arange(int(end) + 2)), np.float64))
        except Exception:  # noqa: BLE001 - unknown: keep the gate
            return False
        return bool(np.all(np.isfinite(values)) and values.min() >= 1e-4 * values.max() > 0)

    return schedule.cached("never_zero", compute)


class ScheduledOptimizer:
    """The part every ``stepsched.optimizers`` class adds to its Keras optimizer."""

    #: hyperparameters this optimizer can schedule (set per class)
    hyperparameter_names: tuple[str, ...] = ()
    #: the public Keras class it is (set per class)
    _keras_base: type = None

    def __init__(self, *args, groups=None, **kwargs):
        base = self._keras_class()
        try:
            bound = inspect.signature(base.__init__).bind_partial(None, *args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{type(self).__name__}: {err}") from None
        kwargs = dict(bound.arguments)
        kwargs.pop(next(iter(inspect.signature(base.__init__).parameters)))  # self
        extra = kwargs.pop("kwargs", {})
        kwargs.update(extra)
        schedules, nominal = {}, {}
        for name, value in list(kwargs.items()):
            schedule = _as_hyper(name, value)
            if schedule is None:
                continue
            if name not in self.hyperparameter_names:
                why = _NOT_PER_STEP.get(name, "it is not a float hyperparameter of "
                                              f"{base.__name__}")
                if name == "learning_rate":
                    continue
                raise TypeError(f"{type(self).__name__} cannot schedule {name!r}: {why}; "
                                f"it schedules {', '.join(self.hyperparameter_names)}")
            schedules[name] = schedule
            nominal[name] = _nominal(schedule)
            kwargs[name] = nominal[name]
        if kwargs.get("learning_rate") is not None and isinstance(kwargs["learning_rate"], dict):
            kwargs["learning_rate"] = keras.saving.deserialize_keras_object(kwargs["learning_rate"])
        super().__init__(**kwargs)
        self._stepsched = _State(schedules, nominal, self._parse_groups(groups))

    @classmethod
    def _keras_class(cls) -> type:
        """The public Keras class (``keras.optimizers.Adam``), also where the class is built
        on Keras's fused torch implementation of it (set by ``_make``: asked at every
        update)."""
        if cls._keras_base is not None:
            return cls._keras_base
        return next(c for c in cls.__mro__[1:] if c.__module__.startswith("keras.")
                    and getattr(keras.optimizers, c.__name__, None) is c)

    def _parse_groups(self, groups):
        if groups is None:
            return None
        if isinstance(groups, Group):
            groups = [groups]
        out = []
        for g in groups:
            if isinstance(g, dict):
                g = Group.from_config(g)
            if not isinstance(g, Group):
                raise TypeError(f"groups must be stepsched.optimizers.Group objects, got {g!r}")
            out.append(g)
        if not out:
            raise ValueError("groups is empty: give at least one Group (or none at all)")
        names = [g.name for g in out]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"group names must be unique; given more than once: {twice}")
        defaults = [g.name for g in out if g.is_default]
        if len(defaults) > 1:
            raise ValueError(f"only one group may leave its variables unselected (the default "
                             f"group for the rest), got {defaults}")
        for g in out:
            for name in g.hyperparameters:
                if name not in self.hyperparameter_names:
                    raise TypeError(f"group {g.name!r}: {type(self).__name__} cannot schedule "
                                    f"{name!r}; it schedules "
                                    f"{', '.join(self.hyperparameter_names)}")
                if name == "beta_1" and self._keras_class() is keras.optimizers.Nadam:
                    raise ValueError(f"group {g.name!r}: Nadam keeps one product of its beta_1 "
                                     "values for all variables, so beta_1 cannot differ "
                                     "between groups")
            if g.frozen_until is not None and self._keras_class() is keras.optimizers.Nadam:
                raise ValueError(
                    f"group {g.name!r}: frozen_until={g.frozen_until!r} restarts the group's "
                    "bias correction when it unfreezes, but Nadam keeps one product of its "
                    "momentum factors for all variables, advanced at every step: the group "
                    "would be corrected with the wrong product. Freeze it with a multiplier "
                    "(Group(..., multiplier=Piecewise([k], [0.0, 1.0])): its bias "
                    "correction then counts the optimizer's steps), or use Adam")
        return out

    # ------------------------------------------------------------------ public
    @property
    def hyperparameter_schedules(self) -> dict[str, Schedule]:
        """The optimizer-wide hyperparameter schedules (as planned for the current run)."""
        return dict(self._stepsched.schedules)

    @property
    def groups(self) -> list[Group] | None:
        return None if self._stepsched.groups is None else list(self._stepsched.groups)

    def plan(self, steps_per_epoch: float | None = None, total_steps: float | None = None,
             *, step: int = 0, on_change: str = "auto", batch_size=None) -> bool:
        """Plan ``epochs``/``fraction`` durations of the hyperparameter and group schedules
        for a run (the schedules as written are kept). Returns whether anything changed,
        in which case a traced train function must be rebuilt.

        ``total_steps`` is the step at which the run ends; ``step`` the optimizer's
        step now. A plan that changes once training has started follows
        ``on_change``, as the learning rate's does (``stepsched.callbacks.Plan``);
        ``batch_size`` (a number, or a function giving it) resolves ``samples``/``tokens``
        and ``BatchScaled``. Each value is planned by ``stepsched.schedules.planned.plan``,
        as the rate is; stepsched callbacks call this at ``fit()``."""
        context = (steps_per_epoch, total_steps)
        st = self._stepsched

        def planned(schedules: dict, prefix: str = "") -> dict:
            return {k: plan(v, context, step, on_change, f"{prefix}{k}", batch_size)
                    for k, v in schedules.items()}

        new = planned(st.schedules)
        changed = any(new[k] is not st.schedules[k] for k in new)
        st.schedules = new
        if st.groups:
            groups = []
            for g in st.groups:
                schedules = planned(g.schedules(), f"group {g.name!r}: ")
                frozen = g.frozen_plan
                if isinstance(g.frozen_until, Duration):  # a piece that ends at the step
                    frozen = plan(frozen or Constant(0.0, g.frozen_until), context, step,
                                  on_change, f"group {g.name!r}: frozen_until", batch_size)
                if any(schedules[k] is not v for k, v in g.schedules().items()) or \
                        frozen is not g.frozen_plan:
                    changed = True
                    g = g.with_schedules(schedules, frozen)
                groups.append(g)
            st.groups = groups
        if changed:
            self.prepare_values()
        return changed

    def plan_entries(self) -> dict[str, Schedule]:
        """Every scheduled value but the rate, by name: ``"hyperparameter/<name>"``,
        ``"group/<group>/<name>"`` (``frozen_until``: its plan, once planned)."""
        st = self._stepsched
        out = {f"hyperparameter/{k}": v for k, v in st.schedules.items()}
        for g in st.groups or ():
            out.update({f"group/{g.name}/{k}": v for k, v in g.schedules().items()})
            if g.frozen_plan is not None:
                out[f"group/{g.name}/frozen_until"] = g.frozen_plan
            elif isinstance(g.frozen_until, Duration):
                out[f"group/{g.name}/frozen_until"] = Constant(0.0, g.frozen_until)
        return out

    def adopt_plans(self, plans: dict[str, Schedule]) -> None:
        """Put ``plans`` (names as ``plan_entries`` gives them) in place of those values."""
        st = self._stepsched
        for name, value in plans.items():
            kind, _, key = name.partition("/")
            if kind == "hyperparameter":
                st.schedules[key] = value
        groups = []
        for g in st.groups or ():
            mine = {k.rpartition("/")[2]: v for k, v in plans.items()
                    if k.startswith(f"group/{g.name}/")}
            if mine:
                frozen = mine.pop("frozen_until", g.frozen_plan)
                g = g.with_schedules({**g.schedules(), **mine}, frozen)
            groups.append(g)
        if st.groups is not None:
            st.groups = groups
        self.prepare_values()

    # ------------------------------------------------------------------ Keras hooks
    def build(self, var_list):
        st = self._stepsched
        # SGD/RMSprop build momentum slots only for a non-zero momentum: a momentum that a
        # schedule (optimizer-wide or a group's) makes non-zero needs them all the same
        scheduled = set(st.schedules).union(*(g.hyperparameters for g in st.groups or ()))
        zero = {n: getattr(self, n) for n in scheduled
                if isinstance(getattr(self, n, None), (int, float)) and getattr(self, n) == 0}
        for name in zero:
            object.__setattr__(self, name, 1.0)
        try:
            super().build(var_list)
        finally:
            # what was there before: the nominal 0.0, or the live value when Keras builds
            # lazily inside the first traced apply (TensorFlow)
            for name, value in zero.items():
                object.__setattr__(self, name, value)
        if st.groups:
            self._assign_groups(list(var_list))
            # every slot of a variable, also those Keras makes with add_variable (a frozen
            # group keeps all of them)
            for index, state in _keras.per_variable_state(self, list(var_list)).items():
                known = {id(v) for v in st.slots.get(index, [])}
                st.slots.setdefault(index, []).extend(v for v in state if id(v) not in known)
            if isinstance(self, _TorchFused):  # made here, not in a compiled step
                self._layout(list(var_list))
        self.prepare_values()

    def prepare_values(self) -> None:
        """torch: evaluate, once and eagerly, every value the update reads (the rate, the
        hyperparameters, the groups' rates), so that what is made once per schedule (its
        table on the device, the groups' joint table) is made here and not inside a
        ``torch.compile``d step, where making it would break the graph. Called when the
        optimizer is built and when a plan or a rate changes; a no-op elsewhere."""
        if keras.backend.backend() != "torch" or not self.built:
            return
        st = self._stepsched
        if needs_plan(_keras.rate_of(self)) or any(
                needs_plan(s) for s in self.plan_entries().values()):
            return  # not planned yet: made when it is
        import torch

        with torch.no_grad():
            base_lr = _keras.current_learning_rate(self)
            if st.schedules or st.groups:
                _Step(self, st, base_lr if st.groups else None)

    def _assign_groups(self, variables):
        st = self._stepsched
        default = next((i for i, g in enumerate(st.groups) if g.is_default), None)
        owner = []
        for v in variables:
            hits = [i for i, g in enumerate(st.groups) if not g.is_default and g.selects(v)]
            if len(hits) > 1:
                raise ValueError(f"variable {v.path!r} is selected by groups "
                                 f"{[st.groups[i].name for i in hits]}: each variable must be "
                                 "in exactly one group")
            if not hits:
                if default is None:
                    raise ValueError(f"variable {v.path!r} is in no group: select it, or add a "
                                     "default group (a Group with no selector) for the rest")
                hits = [default]
            owner.append(hits[0])
        for i, (g, w) in enumerate(zip(st.groups, st.written, strict=False)):
            g.assigned = w.assigned = [v.path for v, o in zip(variables, owner, strict=False) if o == i]
        st.group_of_index = owner

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        variable = super().add_variable_from_reference(reference_variable, name=name,
                                                       initializer=initializer)
        if name not in _NOT_UPDATE_SLOTS:
            try:
                index = _keras.variable_index(self, reference_variable)
            except KeyError:
                index = None
            if index is not None:
                self._stepsched.slots.setdefault(index, []).append(variable)
        return variable

    def apply(self, grads, trainable_variables=None):
        st = self._stepsched
        if not st.schedules and not st.groups:
            return super().apply(grads, trainable_variables)
        self._check_planned()
        if st.step is not None:  # re-entered (a wrapper calling apply twice): keep the values
            return super().apply(grads, trainable_variables)
        if self._tests_a_scheduled_value():
            return _outside_torch_compile(self._scheduled_apply, grads, trainable_variables)
        return self._scheduled_apply(grads, trainable_variables)

    def _tests_a_scheduled_value(self) -> bool:
        """torch: whether Keras's update tests a value this optimizer schedules (SGD
        ``momentum != 0``, RMSprop ``momentum > 0``: ``_keras.TESTED_HYPERPARAMETERS``).
        Under ``torch.compile`` that test on the step's tensor breaks the graph, and the
        code dynamo makes for the rest of the update fails (``NameError:
        __subclass_Tensor_...``), so such an update runs outside the compiled graph."""
        if keras.backend.backend() != "torch":
            return False
        tested = _keras.TESTED_HYPERPARAMETERS.get(type(self).__name__, ())
        st = self._stepsched
        return any(n in st.schedules or any(n in g.hyperparameters for g in st.groups or ())
                   for n in tested)

    def _scheduled_apply(self, grads, trainable_variables):
        st = self._stepsched
        base_lr = _keras.current_learning_rate(self) if st.groups else None
        st.step = _Step(self, st, base_lr)
        for name, value in st.step.globals.items():
            object.__setattr__(self, name, value)
        try:
            return super().apply(grads, trainable_variables)
        finally:
            for name, value in st.nominal.items():
                object.__setattr__(self, name, value)
            st.step = None

    def _check_planned(self):
        st = self._stepsched
        todo = [k for k, v in st.schedules.items() if needs_plan(v)]
        for g in st.groups or ():
            todo += [f"{g.name}.{k}" for k, v in g.schedules().items() if needs_plan(v)]
            if g.frozen_until is not None and g.frozen_step is None:
                todo.append(f"{g.name}.frozen_until")
        if todo:
            raise UnresolvedDurationError(
                f"the schedules of {todo} have durations in epochs, fractions of the run, samples "
                "or tokens (or a BatchScaled without its batch size): call optimizer.plan("
                "steps_per_epoch=..., total_steps=..., batch_size=...) before fit() (a "
                "stepsched callback does it at fit() once stepsched's callbacks plan "
                "optimizers), or resolve them with schedule.resolve(...)")

    def _group_step(self, variable):
        st = self._stepsched
        return st.step.groups[st.group_of_index[_keras.variable_index(self, variable)]]

    def update_step(self, gradient, variable, learning_rate):
        st = self._stepsched
        if st.step is None or not st.step.groups:
            return super().update_step(gradient, variable, learning_rate)
        g = self._group_step(variable)
        return self._in_group(g, [variable], lambda: super(ScheduledOptimizer, self).update_step(
            gradient, variable, g.rate))

    def _in_group(self, g: _GroupStep, variables: list, update) -> None:
        """Run ``update()`` (Keras's update of ``variables``, all in group ``g``) with the
        group's hyperparameters and step in place; where the group's gate is on at this
        step, the variables and their slots keep their values."""
        st = self._stepsched
        saved = {name: getattr(self, name) for name in g.hyper}
        for name, value in g.hyper.items():
            object.__setattr__(self, name, value)
        st.iteration_offset = g.offset
        try:
            if g.gate is None:
                return update()
            state = [s for v in variables
                     for s in (v, *st.slots.get(_keras.variable_index(self, v), []))]
            self._held(g.gate, state, update)
        finally:
            for name, value in saved.items():
                object.__setattr__(self, name, value)
            st.iteration_offset = None

    def _held(self, gate, state: list, update) -> None:
        """Run ``update()``; where ``gate`` is on, the ``state`` variables keep their values."""
        before = [ops.copy(ops.convert_to_tensor(v)) for v in state]
        update()
        for v, old in zip(state, before, strict=True):
            v.assign(ops.where(gate, old, ops.convert_to_tensor(v)))

    @property
    def iterations(self):
        counter = _keras.update_count(self)
        offset = self._stepsched.iteration_offset if hasattr(self, "_stepsched") else None
        if offset is None:
            return counter
        return ops.maximum(counter - offset, 0)

    def _apply_weight_decay(self, variables):
        st = self._stepsched
        if st.step is None or not st.step.groups:
            return super()._apply_weight_decay(variables)
        by_group: dict[int, list] = {}
        for v in variables:
            by_group.setdefault(st.group_of_index[_keras.variable_index(self, v)], []).append(v)
        outer = self.weight_decay
        adam = getattr(self, "adam_weight_decay", None)  # Muon's, for its AdamW variables
        try:
            for index, group_vars in by_group.items():
                g = st.step.groups[index]
                wd = outer if isinstance(g.weight_decay, str) else g.weight_decay
                if wd is None:
                    continue
                object.__setattr__(self, "weight_decay", wd)
                if adam is not None and not isinstance(g.weight_decay, str):
                    # Muon decays the variables it updates with AdamW by adam_weight_decay:
                    # a group's weight decay is the decay of all its variables
                    object.__setattr__(self, "adam_weight_decay", wd)
                st.active_lr = g.rate
                super()._apply_weight_decay(group_vars)
                if adam is not None:
                    object.__setattr__(self, "adam_weight_decay", adam)
        finally:
            object.__setattr__(self, "weight_decay", outer)
            if adam is not None:
                object.__setattr__(self, "adam_weight_decay", adam)
            st.active_lr = None

    def _get_current_learning_rate(self):
        st = getattr(self, "_stepsched", None)
        if st is not None and st.active_lr is not None:
            return st.active_lr
        if st is not None and st.step is not None and st.step.base_lr is not None:
            return st.step.base_lr
        rate = _keras.rate_of(self)
        if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
            return rate(_keras.schedule_step(self))  # Keras's, at the schedules' step
        return super()._get_current_learning_rate()

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        st = self._stepsched
        # as planned, with the plan's history (a ``Planned`` keeps the schedule as written),
        # like the optimizer's rate
        for name, schedule in st.schedules.items():
            config[name] = keras.saving.serialize_keras_object(schedule)
        if st.groups is not None:
            config["groups"] = [g.get_config() for g in st.groups]
        return config


class _TorchFused:
    """torch: Keras's fused update (every variable at once, ``torch._foreach_*``) per
    group, where every value it takes as a Python number is one at this step; the
    per-variable update for a group where a scheduled value would be read back to the
    host instead (``_keras.TORCH_FUSED_NUMBER_ARGUMENTS``)."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        st = self._stepsched
        if st.step is None:
            return _keras.fused_update(self, grads, trainable_variables, learning_rate)
        numbers = _keras.TORCH_FUSED_NUMBER_ARGUMENTS[self._keras_class().__name__]
        tensors = set(st.step.globals)
        if not st.step.groups:
            update = _keras.per_variable_update if tensors & numbers else _keras.fused_update
            return update(self, grads, trainable_variables, learning_rate)
        members = {index: ([grads[i] for i in at], [trainable_variables[i] for i in at])
                   for index, (at, _) in self._layout(trainable_variables).items()}
        # groups that differ only in their rate: one fused update at a rate per variable,
        # where Keras's fused update is one stepsched runs so (Adam, AdamW)
        merge = self._keras_class().__name__ in _keras.TORCH_FUSED_PER_VARIABLE_RATES \
            and not tensors & numbers
        merged: tuple[list, list, list] = ([], [], [])
        for index, (gs, vs) in members.items():
            g = st.step.groups[index]
            if (tensors | set(g.hyper)) & numbers:
                _keras.per_variable_update(self, gs, vs, learning_rate)  # update_step: g's
            elif merge and g.gate is None and g.offset is None and not g.hyper:
                merged[0].extend(gs)
                merged[1].extend(vs)
                merged[2].extend([g] * len(vs))
            else:
                self._in_group(g, vs, lambda g=g, gs=gs, vs=vs: _keras.fused_update(
                    self, gs, vs, g.rate))
        if merged[1]:
            _keras.fused_update_rates(self, merged[0], merged[1], *_rate_vector(merged[2]))

    def _apply_weight_decay(self, variables):
        # Keras's torch weight decay (``variable *= 1 - weight_decay * rate``) for every
        # group in one fused operation, each group's factor worked out as Keras does
        st = self._stepsched
        if st.step is None or not st.step.groups:
            return super()._apply_weight_decay(variables)
        layout = self._layout(variables)
        decays = {}
        for index in layout:
            g = st.step.groups[index]
            wd = self.weight_decay if isinstance(g.weight_decay, str) else g.weight_decay
            if wd is not None:
                decays[index] = (wd, g)
        if not decays:
            return
        wds = {id(wd) for wd, _ in decays.values()}
        if len(wds) == 1 and len(decays) > 1:  # one weight decay: the factors in one pass
            wd = next(iter(decays.values()))[0]
            rates, which = _rate_vector([g for _, g in decays.values()])
            factors = (1 - wd * rates).unbind()
            factors = {index: factors[i] for index, i in zip(decays, which, strict=True)}
        else:
            factors = {index: 1 - wd * g.rate for index, (wd, g) in decays.items()}
        tensors, scales = [], []
        for index, factor in factors.items():
            for i in layout[index][1]:
                tensors.append(variables[i].value)
                scales.append(factor)
        if tensors:
            _keras.torch_scale(tensors, scales)

    def _layout(self, variables: list) -> dict[int, tuple[list, list]]:
        """Group index -> the positions in ``variables`` of its variables, and of those the
        optimizer decays; worked out once per list of variables (the optimizer holds its
        variables, so their ids stay theirs; which ones it decays is fixed once built)."""
        st = self._stepsched
        key = (id(st.group_of_index), *map(id, variables))
        if st.layout is None or st.layout[0] != key:
            out: dict[int, tuple[list, list]] = {}
            for i, v in enumerate(variables):
                at, decayed = out.setdefault(
                    st.group_of_index[_keras.variable_index(self, v)], ([], []))
                at.append(i)
                if _keras.uses_weight_decay(self, v):
                    decayed.append(i)
            st.layout = (key, out)
        return st.layout[1]

    def _held(self, gate, state: list, update) -> None:
        # the same as the Keras-ops version, on the torch tensors (without Keras's per-call
        # conversions, which cost more than the update itself)
        import torch

        values = [v.value for v in state]
        with torch.no_grad():
            before = _keras.torch_copies(values)
            update()
            for value, old in zip(values, before, strict=True):
                torch.where(gate, old, value, out=value)


def _rate_vector(groups: list) -> tuple:
    """torch: ``(rates, which)``, a 1-D tensor holding the rates of ``groups`` (``_GroupStep``
    objects, repeats allowed) and where each one's is in it: the step's vector of group
    rates where they all come from it, else their distinct rates stacked."""
    vector = groups[0].vector
    if vector is not None and all(g.vector is vector for g in groups):
        return vector, [g.index for g in groups]
    import torch

    # by identity, compared with ``is``: under torch.compile ``id()`` of a tensor becomes a
    # guard on that tensor object, which is new at every step (a recompilation each step)
    distinct, which = [], []
    for g in groups:
        at = next((i for i, d in enumerate(distinct) if d is g.rate), None)
        if at is None:
            at = len(distinct)
            distinct.append(g.rate)
        which.append(at)
    return torch.stack(distinct), which


def scheduled_values(optimizer, step: int, rate: float | None = None) -> dict[str, float]:
    """Host values at ``step`` of every scheduled hyperparameter and each group's rate.

    Keys as a logger writes them: ``"beta_1"``, ``"learning_rate/<group>"``,
    ``"weight_decay/<group>"``; empty for a plain Keras optimizer. ``rate``:
    the base rate at ``step`` when the caller knows it (else it is read).
    """
    optimizer = _keras.inner_optimizer(optimizer)
    st = getattr(optimizer, "_stepsched", None)
    if st is None:
        return {}
    out = {name: s.value_at(step) for name, s in st.schedules.items()}
    if not st.groups:
        return out
    given, rate = rate, _keras.rate_of(optimizer)
    if given is not None:
        base = float(given)
    elif isinstance(rate, Schedule):
        base = rate.value_at(step)
    else:
        base = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    for g in st.groups:
        value = st.group_rate(optimizer, g).value_at(step) if g.learning_rate is not None \
            else base
        if g.multiplier is not None:
            value *= g.multiplier.value_at(step)
        if g.frozen_step is not None and step < g.frozen_step:
            value = 0.0
        out[f"learning_rate/{g.name}"] = value
        if g.weight_decay is not None:
            out[f"weight_decay/{g.name}"] = g.weight_decay.value_at(step)
        for name, s in g.hyperparameters.items():
            out[f"{name}/{g.name}"] = s.value_at(step)
    return out


def _outside_torch_compile(fn, *args):
    """``fn(*args)``, run eagerly when called while ``torch.compile`` traces (a graph break
    around it); called as it is elsewhere."""
    import torch

    if torch.compiler.is_compiling():
        return torch.compiler.disable(fn)(*args)
    return fn(*args)


def _make(base: type) -> type:
    names = _schedulable(base)
    doc = (f"``keras.optimizers.{base.__name__}`` whose {', '.join(f'``{n}``' for n in names)} "
           "may also be stepsched schedules, evaluated in the compiled step from the "
           "optimizer's step counter, and which takes ``groups=`` (a list of "
           "``stepsched.optimizers.Group``). Same arguments and variables as the Keras "
           "optimizer.")
    fused = _keras.torch_fused_class(base)
    bases = (ScheduledOptimizer, base) if fused is None else (
        _TorchFused, ScheduledOptimizer, fused)
    cls = type(base.__name__, bases,
               {"__module__": "stepsched.optimizers", "__doc__": doc,
                "__qualname__": base.__name__, "hyperparameter_names": names,
                "_keras_base": base})
    return keras.saving.register_keras_serializable(package="stepsched",
                                                    name=base.__name__)(cls)


_SKIP = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}

#: name -> stepsched class, for every built-in Keras optimizer
OPTIMIZERS: dict[str, type] = {}
for _name in sorted(dir(keras.optimizers)):
    _cls = getattr(keras.optimizers, _name)
    if (isinstance(_cls, type) and issubclass(_cls, keras.optimizers.Optimizer)
            and _name not in _SKIP and _cls.__name__ == _name):
        OPTIMIZERS[_name] = _make(_cls)

#: name -> the hyperparameters that optimizer schedules per step
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    n: c.hyperparameter_names for n, c in OPTIMIZERS.items()}

del _name, _cls
