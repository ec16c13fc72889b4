"""Durations in the user's units: steps, epochs, or a fraction of the run.

An ``int`` (or positive float) anywhere a duration is expected is a number of
optimizer steps. ``epochs(x)`` and ``fraction(p)`` stay symbolic until they are
resolved, either explicitly with ``schedule.resolve(steps_per_epoch=...,
total_steps=...)`` or automatically at ``fit()`` time by any stepsched callback.
"""

from __future__ import annotations

import numbers

import keras

from . import _validate

__all__ = ["Duration", "epochs", "fraction", "steps", "samples", "tokens",
           "UnresolvedDurationError"]


class UnresolvedDurationError(ValueError):
    """A schedule with ``epochs(...)``/``fraction(...)`` was evaluated unresolved."""


_HOW = ("Either add any stepsched callback to fit() (e.g. "
        "stepsched.callbacks.LearningRateLogger()): it resolves the schedule from fit's own "
        "parameters; or call schedule.resolve(steps_per_epoch=..., total_steps=...), which "
        "returns a resolved copy, and give that copy to the optimizer")


@keras.saving.register_keras_serializable(package="stepsched")
class Duration:
    """A symbolic duration; ``unit`` is ``"steps"``, ``"epochs"``, ``"fraction"``,
    ``"samples"`` or ``"tokens"`` (with ``per``, the tokens per sample)."""

    UNITS = ("steps", "epochs", "fraction", "samples", "tokens")
    #: units resolved from the batch size of fit() (see stepsched.schedules.batch)
    BATCH_UNITS = ("samples", "tokens")

    def __init__(self, unit: str, value: float, per: float | None = None):
        self.unit = _validate.choice("unit", unit, self.UNITS)
        self.value = _validate.number(unit, value, positive=True)
        if unit == "fraction" and self.value > 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {value!r}")
        if unit == "tokens":
            self.per = _validate.number("tokens_per_sample", per, positive=True)
        elif per is not None:
            raise ValueError(f"tokens_per_sample applies to tokens(...) only, got {per!r}")
        else:
            self.per = None

    def to_steps(self, steps_per_epoch: float | None = None,
                 total_steps: float | None = None, *, batch_size: float | None = None) -> float:
        """The number of steps this duration stands for (``batch_size``: samples per step)."""
        if self.unit == "steps":
            return self.value
        if self.unit in self.BATCH_UNITS:
            if batch_size is None:
                raise UnresolvedDurationError(
                    f"{self!r} needs the batch size. Any stepsched callback reads it from "
                    "fit(); by hand: stepsched.schedules.batch.resolve_batch(schedule, "
                    "batch_size) returns a copy in steps")
            samples = self.value if self.unit == "samples" else self.value / self.per
            return samples / batch_size
        if self.unit == "epochs":
            if steps_per_epoch is None:
                raise UnresolvedDurationError(f"{self!r} needs steps_per_epoch. {_HOW}")
            return self.value * steps_per_epoch
        if total_steps is None:
            raise UnresolvedDurationError(f"{self!r} needs total_steps. {_HOW}")
        return self.value * total_steps

    def get_config(self) -> dict:
        if self.per is not None:
            return {"unit": self.unit, "value": self.value, "per": self.per}
        return {"unit": self.unit, "value": self.value}

    @classmethod
    def from_config(cls, config: dict) -> Duration:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and (self.unit, self.value, self.per) == (
            other.unit, other.value, other.per)

    def __hash__(self) -> int:
        return hash((self.unit, self.value, self.per))

    def __repr__(self) -> str:  # the expression that builds it (stepsched.parse reads it)
        value = _number(self.value)
        if self.per is not None:
            return f"{self.unit}({value}, tokens_per_sample={_number(self.per)})"
        return f"{self.unit}({value})"


def _number(v: float) -> str:
    return repr(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def steps(n: float) -> Duration:
    """``n`` optimizer steps (the same as passing the number itself)."""
    return Duration("steps", n)


def epochs(n: float) -> Duration:
    """``n`` epochs (fractional allowed), resolved from ``steps_per_epoch``."""
    return Duration("epochs", n)


def fraction(p: float) -> Duration:
    """A fraction ``p`` in (0, 1] of the whole training run, resolved from ``total_steps``."""
    return Duration("fraction", p)


def samples(n: float) -> Duration:
    """``n`` training samples, resolved from the batch size of ``fit()`` (the global batch:
    all replicas together): ``n / batch_size`` steps."""
    return Duration("samples", n)


def tokens(n: float, tokens_per_sample: float) -> Duration:
    """``n`` tokens at ``tokens_per_sample`` tokens per sample (e.g. the sequence length),
    resolved from the batch size of ``fit()``: ``n / (tokens_per_sample * batch_size)``
    steps."""
    return Duration("tokens", n, per=tokens_per_sample)


def optional_duration_arg(name: str, value):
    """A duration that may also be 0 (the phase it sets is skipped)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0:
        return 0
    return duration_arg(name, value)


def duration_arg(name: str, value, *, allow_none: bool = False):
    """Validate a duration argument: positive number of steps, a Duration, or None."""
    if value is None and allow_none:
        return None
    if isinstance(value, Duration):
        return value
    if value is None:
        raise ValueError(f"{name} must be a number of steps or a Duration, got None")
    return _validate.number(name, value, positive=True)
