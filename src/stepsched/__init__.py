"""stepsched: per-step (per-batch) learning-rate schedules for Keras 3.

Every schedule is a pure function of the optimizer step, evaluated in-graph by
the optimizer (``schedule(step)``) and on the host with NumPy
(``schedule.at(steps)``), composable with ``>>``, and serializable by Keras.
"""

from .durations import Duration, UnresolvedDurationError, epochs, fraction, steps
from .schedules import (
    Affine,
    Clip,
    Constant,
    Cosine,
    CosineDecay,
    CosineDecayRestarts,
    Exponential,
    ExponentialDecay,
    Interpolate,
    InverseTimeDecay,
    Linear,
    PerUpdate,
    Piecewise,
    PiecewiseConstantDecay,
    Polynomial,
    PolynomialDecay,
    Recipe,
    Restarts,
    Schedule,
    Sequence,
    Warmup,
)

__version__ = "0.1.0"

__all__ = [
    "Schedule", "Recipe", "Duration", "UnresolvedDurationError", "epochs", "fraction", "steps",
    "Constant", "Linear", "Cosine", "Exponential", "Polynomial", "Piecewise", "Interpolate",
    "Sequence", "Warmup", "Restarts", "Affine", "Clip", "PerUpdate",
    "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay",
    "CosineDecay", "CosineDecayRestarts",
]

from . import callbacks  # noqa: E402

# Each feature area appends its public names below its own marker.
# --- recipes ---
# --- finder ---
# --- plotting ---
