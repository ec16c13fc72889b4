"""Rate modifiers: the stage between a planned schedule and the rate an optimizer applies.

Plateau reduction (``Scaled``) and cooldown on demand (``Cooldown``) are
schedules wrapped around the optimizer's rate by their callbacks; each holds
its state (a multiplier, a start step) in a variable shared by every copy
that ``with_schedule`` makes. The optimizer's rate is therefore

    modifier_1(modifier_2(... planned schedule ...))

and the same chain of modifiers, with the same state, is put around every
other rate the optimizer applies: a variable group's own ``learning_rate``
(``stepsched.optimizers.Group``) sees the same reduction and the same
cooldown as the optimizer-wide rate. A group with a ``multiplier`` scales the
optimizer's rate, modifiers included.
"""

from __future__ import annotations

__all__ = ["core", "find", "inside", "modifiers", "replace", "with_modifiers"]


def is_modifier(schedule) -> bool:
    """Whether ``schedule`` wraps another one and keeps state of its own (``with_schedule``)."""
    return hasattr(schedule, "with_schedule")


def modifiers(rate) -> list:
    """The modifiers around ``rate``, outermost first (empty for a plain schedule)."""
    out = []
    while is_modifier(rate):
        out.append(rate)
        rate = rate.arg("schedule")
    return out


def core(rate):
    """``rate`` without its modifiers: the schedule they wrap."""
    while is_modifier(rate):
        rate = rate.arg("schedule")
    return rate


def with_modifiers(chain: list, schedule):
    """``schedule`` inside the modifiers of ``chain`` (as ``modifiers`` lists them), each
    sharing its state with the one in ``chain``."""
    for modifier in reversed(chain):
        schedule = modifier.with_schedule(schedule)
    return schedule


def find(rate, kind):
    """The outermost modifier of type ``kind`` around ``rate`` (None if there is none)."""
    return next((m for m in modifiers(rate) if isinstance(m, kind)), None)


def inside(rate, kinds, make):
    """``rate`` with ``make(inner)`` in place of ``inner``, the schedule inside its outer
    modifiers of types ``kinds`` (the first other modifier and what it wraps is ``inner``);
    the outer modifiers keep their state."""
    chain = modifiers(rate)
    n = 0
    while n < len(chain) and isinstance(chain[n], kinds):
        n += 1
    return with_modifiers(chain[:n], make(chain[n] if n < len(chain) else core(rate)))


def replace(rate, old, new):
    """``rate`` with its modifier ``old`` (the object) replaced by ``new``, a schedule that
    stands for ``old`` and what it wraps; the modifiers outside it keep their state."""
    chain = modifiers(rate)
    i = next(i for i, m in enumerate(chain) if m is old)
    return with_modifiers(chain[:i], new)
