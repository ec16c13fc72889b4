"""stepsched: per-step (per-batch) learning-rate schedules for Keras 3.

Every schedule is a pure function of the optimizer step, evaluated in-graph by
the optimizer (``schedule(step)``) and on the host with NumPy
(``schedule.at(steps)``), composable with ``>>``, and serializable by Keras.
"""

# ruff: noqa: E402  (the command's process set-up must run before Keras is imported)
from ._startup import prepare as _prepare

_prepare()  # only in the stepsched command: backend and TF log level (see _startup)

from . import callbacks, optimizers, schedules
from .durations import (
    Duration,
    UnresolvedDurationError,
    epochs,
    fraction,
    samples,
    steps,
    tokens,
)
from .finder import LRFinderResult, find_lr
from .phases import extend
from .plotting import plot_lr_finder, plot_reductions, plot_schedule, plot_schedules
from .schedules import *  # noqa: F403  (the flat list of schedule names, see schedules.__all__)
from .spec import SpecError, get_schedule, parse

__version__ = "0.1.0"

__all__ = [
    *schedules.__all__,
    "Duration", "UnresolvedDurationError", "epochs", "fraction", "steps", "samples", "tokens",
    "find_lr", "LRFinderResult", "extend",
    "plot_schedule", "plot_schedules", "plot_lr_finder", "plot_reductions",
    "parse", "get_schedule", "SpecError",
    "callbacks", "optimizers",
]
