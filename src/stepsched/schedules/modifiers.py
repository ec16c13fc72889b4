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

__all__ = ["core", "modifiers", "with_modifiers"]


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
