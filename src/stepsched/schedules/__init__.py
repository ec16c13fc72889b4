"""Schedules: the base class, primitives, composition and Keras counterparts."""

from .base import Recipe, Schedule
from .compose import Affine, Clip, PerUpdate, Restarts, Sequence, Warmup
from .keras_compat import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
)
from .primitives import Constant, Cosine, Exponential, Interpolate, Linear, Piecewise, Polynomial

__all__ = [
    "Schedule", "Recipe",
    "Constant", "Linear", "Cosine", "Exponential", "Polynomial", "Piecewise", "Interpolate",
    "Sequence", "Warmup", "Restarts", "Affine", "Clip", "PerUpdate",
    "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay", "InverseTimeDecay",
    "CosineDecay", "CosineDecayRestarts",
]
