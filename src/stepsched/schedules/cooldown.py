"""Cooldown on demand: a schedule whose decay start is decided during training.

``Cooldown(schedule, duration, shape, end)`` follows ``schedule`` until the
cooldown starts, at a step held in a variable (``CooldownState``), then decays
from the value the schedule had there to ``end`` over ``duration`` steps. The
start is read in the compiled step, so a cooldown started by a callback (or by
``callback.start_cooldown()``) takes effect at exactly the next optimizer step
whatever ``steps_per_execution`` is.

Where the start lives, and why (the same choices as the plateau multiplier,
see ``stepsched.callbacks.plateau``): the variable is *not* one of the
optimizer's variables (that would change their count, and ``load_weights`` /
``load_model`` then skip all optimizer state); it sits in a
``keras.metrics.Metric`` attached to the optimizer as
``optimizer.stepsched_cooldown``, so Keras's weights files
(``save_weights``, ``BackupAndRestore``, ``ModelCheckpoint``) store it through
its public ``save_own_variables`` / ``load_own_variables``. The start is also
in the schedule's config, so ``model.save`` / ``load_model`` bring it back. It
is read live in-graph on TensorFlow and PyTorch; on JAX a non-optimizer
variable is a trace-time constant, so whoever changes it rebuilds the train
function (``stepsched._keras.retrace``); a cooldown starts once per run.

The schedule the user wrote stays a value: the ``Cooldown`` wrapper, with its
state, is made per optimizer by ``stepsched.callbacks.CooldownOnDemand``.
"""

from __future__ import annotations

import keras
import numpy as np

from .. import _validate
from .._state import RunState
from . import _exact, _graph
from .base import Schedule, _serialize, as_schedule, number_text
from .extra import SqrtDecay
from .keys import key_steps
from .primitives import Cosine, Linear

__all__ = ["Cooldown", "CooldownState"]

INT32_MAX = 2**31 - 1
#: the start variable's value while no cooldown has started
NOT_STARTED = -1


def _start_arg(start_step) -> int | None:
    start_step = _validate.integer("start_step", start_step, minimum=0, allow_none=True)
    if start_step is not None and start_step > INT32_MAX:
        raise ValueError(f"start_step must be <= 2**31 - 1, got {start_step!r}")
    return start_step


class CooldownState(RunState):
    """The step at which the cooldown starts (``-1``: not started), in an int32 variable."""

    def __init__(self, start_step: int | None = None):
        super().__init__(name="stepsched_cooldown", dtype="float32")
        start_step = _start_arg(start_step)
        self.start = keras.Variable(NOT_STARTED if start_step is None else start_step,
                                    dtype="int32", trainable=False, name="cooldown_start")
        self.host_start = start_step  # a host copy, kept by set_start()

    @property
    def start_step(self) -> int | None:
        """The step the cooldown starts at, None before it is decided."""
        value = int(keras.ops.convert_to_numpy(self.start.value))
        return None if value < 0 else value

    def set_start(self, step: int | None) -> None:
        """Assign the start (the variable and its host copy)."""
        self.start.assign(NOT_STARTED if step is None else int(step))
        self.host_start = None if step is None or int(step) < 0 else int(step)

    def save_state(self, store) -> None:
        store["0"] = np.asarray(keras.ops.convert_to_numpy(self.start.value), np.int32)

    def load_state(self, store) -> None:
        self.set_start(int(np.asarray(store["0"], np.int32)))


@keras.saving.register_keras_serializable(package="stepsched")
class Cooldown(Schedule):
    r"""``schedule`` until the cooldown starts at step :math:`s_0`, then a decay to ``end``.

    .. math:: \eta(t) = \begin{cases} s(t) & t < s_0 \\
              \text{end} + \bigl(s(s_0) - \text{end}\bigr)\,
              g\!\left(\min(t - s_0, d)/d\right) & t \ge s_0 \end{cases}

    with :math:`d` = ``duration`` and, for ``shape``: ``"linear"``
    :math:`g(u) = 1 - u` (``Linear``), ``"cosine"`` :math:`g(u) = \tfrac12(1 +
    \cos \pi u)` (``Cosine``), ``"1-sqrt"`` :math:`g(u) = 1 - \sqrt u`
    (``SqrtDecay``; Hägele et al. 2024). Each :math:`g` is that primitive from 1
    to 0, so the formulas are written once. The decay starts from the value the
    schedule has at :math:`s_0` (the peak of a warmup-stable schedule; mid-warmup
    if started during the warmup), so the rate is continuous there.

    :math:`s_0` is ``start_step`` (None: not decided yet, the schedule alone),
    held in a variable that ``stepsched.callbacks.CooldownOnDemand`` sets during
    training; the formula reads it in the compiled step.

    >>> import stepsched as ss
    >>> c = Cooldown(ss.Constant(1.0), duration=4, shape="linear", start_step=10)
    >>> c.at([0, 9, 10, 11, 13, 14, 99]).tolist()
    [1.0, 1.0, 1.0, 0.75, 0.25, 0.0, 0.0]
    """

    SHAPES = ("linear", "cosine", "1-sqrt")
    #: the value reads the start variable: never tabulated ahead
    reads_variables = True
    exact_step = True

    def __init__(self, schedule: Schedule | float, duration: float, shape: str = "1-sqrt",
                 end: float = 0.0, start_step: int | None = None):
        self._set_args(schedule, duration, shape, end)
        self.state = CooldownState(start_step)

    def _set_args(self, schedule, duration, shape, end) -> None:
        schedule = as_schedule(schedule, "schedule")
        duration = _validate.number("duration", duration, positive=True)
        super().__init__(schedule=schedule, duration=duration,
                         shape=_validate.choice("shape", shape, self.SHAPES),
                         end=_validate.number("end", end))

    # ----------------------------------------------------------- the wrapper protocol
    def with_schedule(self, schedule: Schedule, duration: float | None = None) -> Cooldown:
        """The same start (shared state, not copied) over another schedule or duration."""
        out = Cooldown.__new__(Cooldown)  # no state of its own to build and drop
        out._set_args(schedule, self.arg("duration") if duration is None else duration,
                      self.arg("shape"), self.arg("end"))
        out.state = self.state
        return out

    def resolve(self, steps_per_epoch=None, total_steps=None) -> Cooldown:
        inner = self.arg("schedule").resolve(steps_per_epoch, total_steps)
        return self if inner is self.arg("schedule") else self.with_schedule(inner)

    @property
    def start_step(self) -> int | None:
        return self.state.start_step

    def host_state(self) -> int | None:
        """What the values depend on besides the step (``Schedule.value_at``): the host copy
        of the start, which ``CooldownState.set_start`` keeps."""
        return self.state.host_start

    @property
    def duration(self) -> float | None:  # decided during training: open-ended until then
        return None

    @property
    def is_finite(self) -> bool:
        return False

    def decay(self) -> Schedule:
        """The shape as a primitive from 1 to 0 over ``duration`` steps."""
        def build():
            d, shape = self.arg("duration"), self.arg("shape")
            if shape == "linear":
                return Linear(1.0, 0.0, d)
            if shape == "cosine":
                return Cosine(1.0, 0.0, d)
            return SqrtDecay(1.0, 0.0, d)
        return self.cached("decay", build)

    @property
    def end_step(self) -> float | None:
        """The step at which the cooldown reaches ``end`` (None before it starts)."""
        start = self.start_step
        return None if start is None else start + self.arg("duration")

    # ----------------------------------------------------------- evaluation
    def _eval(self, t, xp, clip: bool = True):
        inner, end = self.arg("schedule"), self.arg("end")
        before = inner._eval(t, xp, clip)
        if not isinstance(xp, _graph.Graph):
            start = self.start_step
            if start is None:
                return before
            s0 = np.asarray([float(start)])
            v0 = inner._eval(s0, xp, clip)
            local = np.maximum(t - s0, 0.0)
            after = end + (v0 - end) * self.decay()._eval(local, xp)
            return np.where(t < s0, before, after)
        ops = xp.ops
        raw = ops.reshape(ops.convert_to_tensor(self.state.start.value), (1,))
        waiting = raw < 0
        s = ops.maximum(raw, 0)  # an int32 step
        if isinstance(t, _exact.ExactStep):  # JAX without x64: the local step stays exact
            local = xp.maximum(_exact.ExactStep(t.n - s, t.f, xp), 0.0)
            earlier = t.n < s  # n + f < s  <=>  n < s, for whole s and f in [0, 1)
            at_start = _exact.ExactStep(s, None, xp)
        else:
            s_float = ops.cast(s, xp.dtype)
            local = xp.maximum(t - s_float, 0.0)
            earlier = t < s_float
            at_start = s_float
        v0 = xp.float(inner._eval(at_start, xp, clip))
        after = end + (v0 - end) * xp.float(self.decay()._eval(local, xp))
        return xp.where(waiting | earlier, before, after)

    def key_steps(self, horizon: float) -> list[tuple[float, str]]:
        """The schedule's before the start, then the cooldown's start and end."""
        start = self.start_step
        out = key_steps(self.arg("schedule"), horizon)
        if start is None:
            return out
        out = [(s, label) for s, label in out if s < start]
        for s, label in ((float(start), "cooldown"), (self.end_step, "cooldown ends")):
            if 0 < s <= horizon:
                out.append((s, label))
        return sorted(out)

    # ----------------------------------------------------------- saving
    def get_config(self) -> dict:
        return {"schedule": _serialize(self.arg("schedule")), "duration": self.arg("duration"),
                "shape": self.arg("shape"), "end": self.arg("end"),
                "start_step": self.start_step}

    def __reduce__(self):
        return (_from_config, (type(self), self.get_config()))

    def __repr__(self) -> str:  # the defaults left out; no start_step: not started yet
        parts = [repr(self.arg("schedule")), f"duration={number_text(self.arg('duration'))}"]
        if self.arg("shape") != "1-sqrt":
            parts.append(f"shape={self.arg('shape')!r}")
        if self.arg("end") != 0.0:
            parts.append(f"end={number_text(self.arg('end'))}")
        if self.start_step is not None:
            parts.append(f"start_step={self.start_step}")
        return f"Cooldown({', '.join(parts)})"


def _from_config(cls, config):
    return cls.from_config(config)
