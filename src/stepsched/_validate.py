"""Argument checks shared by every constructor.

Each check raises at construction time with a message that names the argument
and the value received, so a bad schedule never turns into a NaN later.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def number(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False,
           allow_none: bool = False) -> float | None:
    """Return ``value`` as a finite float, or raise naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)} "
                        f"({type(value).__name__})")
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be finite and within float32 range, got "
                         f"{_short(value)}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be within float32 range (|x| <= {FLOAT32_MAX:.4g}): "
                         f"the optimizer computes in float32; got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


FLOAT32_MAX = 3.4028234663852886e38


def _short(value: Any) -> str:
    """repr of a value, cut short (a 10**400 int has 401 digits)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(name: str, value: Any, *, minimum: int | None = None,
            allow_none: bool = False) -> int | None:
    """Return ``value`` as an int, or raise naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_short(value)} "
                        f"({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {_short(value)}")
    if abs(value) > 2**63 - 1:
        raise ValueError(f"{name} must fit in 64 bits, got {_short(value)}")
    return value


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, or raise naming ``name``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {_short(value)} ({type(value).__name__})")
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def number_list(name: str, values: Any, *, keep: type | tuple[type, ...] = ()) -> list:
    """A non-empty list of finite numbers; values of the types ``keep`` (``Duration``) are
    kept as they are."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of numbers, got {values!r}")
    out = []
    for i, v in enumerate(list(values)):
        if keep and isinstance(v, keep):
            out.append(v)
        else:
            out.append(number(f"{name}[{i}]", v))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def increasing(name: str, values: list) -> None:
    """Raise unless ``values``, when all are plain numbers (no durations), are strictly
    increasing."""
    plain = [v for v in values if isinstance(v, numbers.Real)]
    if len(plain) == len(values):
        for i in range(1, len(values)):
            if not values[i] > values[i - 1]:
                raise ValueError(
                    f"{name} must be strictly increasing; got {values[i - 1]!r} then "
                    f"{values[i]!r} at positions {i - 1} and {i}"
                )
