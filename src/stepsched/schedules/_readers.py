"""The pieces of a schedule whose value reads a variable (a plateau multiplier, a
cooldown's start), and what those variables hold now."""

from __future__ import annotations


def variable_readers(schedule) -> list:
    """The pieces of ``schedule`` whose value reads a variable (a plateau multiplier, a
    cooldown's start), each with ``host_state()``: what their values depend on besides
    the step. Worked out once per schedule."""
    def find():
        out, todo = [], [schedule]
        while todo:
            s = todo.pop()
            if getattr(s, "reads_variables", False):
                out.append(s)
            todo.extend(s._parts())
        return out

    return schedule.cached("variable readers", find)


def reads_variables(schedule) -> bool:
    """Whether the schedule's value depends on a variable: its values cannot be tabulated
    ahead of time for good."""
    return bool(variable_readers(schedule))


def host_state(schedule) -> tuple:
    """The values, read now, of the variables ``schedule`` reads (``()`` for most):
    host values computed earlier hold while this is unchanged."""
    return tuple(s.host_state() for s in variable_readers(schedule))
