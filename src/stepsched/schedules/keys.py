"""Key steps: where a schedule's formula changes piece (joins, restarts, boundaries).

Each composite lists its own with a ``key_steps(horizon)`` method (a recipe those of
what it stands for, a formula none: ``Schedule.key_steps``); previews, plots and the
command line (``schedules/preview.py``) label them.
"""

from __future__ import annotations

__all__ = ["key_steps"]


def key_steps(schedule, horizon: float) -> list[tuple[float, str]]:
    """Where ``schedule``'s formula changes piece, up to step ``horizon``: ``(step, label)``.

    Each composite says where its joins are with a ``key_steps(horizon)``
    method (sequences their joins, restarts their cycle starts, piecewise
    schedules their boundaries, wrappers those of what they wrap), computed
    with the arithmetic of its own formula, so the value at a listed step is
    the new piece's. A recipe without one reports those of the composition it
    stands for (``explain()``); any other schedule has none.

    >>> import stepsched as ss
    >>> key_steps(ss.Restarts(ss.Linear(1.0, 0.0, 100), limit=3), 1000)
    [(100.0, 'restart'), (200.0, 'restart')]
    """
    return list(schedule.key_steps(horizon))
