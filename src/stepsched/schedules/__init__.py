"""Schedules: the base class, primitives, composition and Keras counterparts."""

from .base import Recipe, Schedule
from .batch import BatchScaled
from .compose import Affine, Clip, PerUpdate, Restarts, Sequence, Warmup
from .cooldown import Cooldown
from .extend import Extended
from .extra import InversePower, KDecay, Rex, SqrtDecay, TanhDecay
from .keras_compat import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)
from .planned import Planned
from .primitives import Constant, Cosine, Exponential, Interpolate, Linear, Piecewise, Polynomial
from .recipes import (
    Cyclic,
    InverseSqrt,
    Noam,
    OneCycle,
    OneCycleMomentum,
    WarmupCosine,
    WarmupStableDecay,
)

__all__ = [
    "Schedule", "Recipe",
    "Constant", "Linear", "Cosine", "Exponential", "Polynomial", "Piecewise", "Interpolate",
    "Sequence", "Warmup", "Restarts", "Affine", "Clip", "PerUpdate", "Planned",
    "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay",
    "CosineDecay", "CosineDecayRestarts",
    "OneCycle", "OneCycleMomentum", "Cyclic", "WarmupCosine", "WarmupStableDecay", "InverseSqrt",
    "Noam", "InversePower", "SqrtDecay", "KDecay", "TanhDecay", "Rex",
    "Cooldown", "BatchScaled", "Extended",
]
