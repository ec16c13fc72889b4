"""TensorFlow: the schedule's value at the optimizer's step counter, built once per
traced graph."""

from __future__ import annotations

#: On TensorFlow (graph mode) the schedule's value at the optimizer's step counter is
#: built once per traced graph: Keras evaluates the rate once more per variable for weight
#: decay, and a graph does not merge the copies.
TRACE_REUSE = True


def once_per_trace(schedule, counter, compute):
    """``compute(counter)``, reused within the graph being traced (TensorFlow).

    Within one graph the counter's value does not change between the rate's
    evaluations of one optimizer step (Keras increments it after the update),
    so the first value built in the graph is the value of every later call in
    it. Eager calls, other graphs and cond/while branch graphs compute anew.
    The values are kept on the graph itself, so they go with it.
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        return compute(counter)
    graph = tf.compat.v1.get_default_graph()
    built = getattr(graph, "_stepsched_rates", None)
    if built is None:
        built = {}
        try:
            graph._stepsched_rates = built
        except AttributeError:  # a graph that takes no attributes: no reuse
            return compute(counter)
    key = (id(schedule), id(counter))
    hit = built.get(key)
    if hit is not None and hit[0] is schedule and hit[1] is counter:
        return hit[2]
    value = compute(counter)
    built[key] = (schedule, counter, value)
    return value
