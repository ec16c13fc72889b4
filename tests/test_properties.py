"""Property tests over randomly generated schedules and compositions."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stepsched as ss
from tests.conftest import graph_values

values = st.floats(min_value=1e-5, max_value=1.0, allow_nan=False)
durations = st.integers(min_value=1, max_value=300)


@st.composite
def monotone_pieces(draw):
    """A finite primitive with its promised direction and bounds."""
    kind = draw(st.sampled_from(["linear", "cosine", "polynomial", "exponential", "constant"]))
    a, b, d = draw(values), draw(values), draw(durations)
    if kind == "linear":
        return ss.Linear(a, b, d), (a, b)
    if kind == "cosine":
        return ss.Cosine(a, b, d, exponent=draw(st.floats(0.25, 4.0))), (a, b)
    if kind == "polynomial":
        return ss.Polynomial(a, b, d, power=draw(st.floats(0.25, 4.0))), (a, b)
    if kind == "exponential":
        rate = draw(st.floats(0.5, 0.999))
        end = a * rate ** (d / 1.0)
        return ss.Exponential(a, rate, duration=d), (a, end)
    return ss.Constant(a, d), (a, a)


@st.composite
def compositions(draw):
    n = draw(st.integers(1, 4))
    pieces, bounds = [], []
    for _ in range(n):
        piece, (a, b) = draw(monotone_pieces())
        if draw(st.booleans()):
            warm_start = draw(values)
            pieces.append(ss.Warmup(draw(durations), start=warm_start,
                                    shape=draw(st.sampled_from(["linear", "cosine", "exponential"]))))
            bounds.append((warm_start, warm_start))
        pieces.append(piece)
        bounds.append((a, b))
    schedule = pieces[0] if len(pieces) == 1 else ss.Sequence(pieces)
    if draw(st.booleans()):
        schedule = ss.Restarts(schedule, period_mult=draw(st.sampled_from([1.0, 1.5, 2.0])),
                               scale=draw(st.floats(0.3, 1.0)))
        bounds.append((0.0, 0.0))  # scale may shrink the values towards 0
    lo = min(min(p) for p in bounds)
    hi = max(max(p) for p in bounds)
    return schedule, lo, hi


STEPS = np.arange(0, 1500)


@settings(max_examples=60, deadline=None)
@given(monotone_pieces())
@pytest.mark.backend_independent
def test_primitives_are_monotone_between_start_and_end(case):
    schedule, (a, b) = case
    v = schedule.at(STEPS).astype(np.float64)
    assert v[0] == np.float32(a) or abs(v[0] - a) <= 1e-6 * abs(a)
    assert abs(v[-1] - b) <= 1e-6 * max(abs(a), abs(b))
    steps = np.diff(v)
    tol = 1e-6 * max(abs(a), abs(b))
    assert np.all(steps <= tol) if a >= b else np.all(steps >= -tol)


@settings(max_examples=60, deadline=None)
@given(compositions())
@pytest.mark.backend_independent
def test_compositions_stay_within_the_pieces_bounds(case):
    schedule, lo, hi = case
    v = schedule.at(STEPS)
    assert np.all(np.isfinite(v))
    assert v.min() >= lo * (1 - 1e-6) - 1e-12
    assert v.max() <= hi * (1 + 1e-6) + 1e-12


@settings(max_examples=60, deadline=None)
@given(monotone_pieces(), st.integers(1, 200), values,
       st.sampled_from(["linear", "cosine", "exponential"]))
@pytest.mark.backend_independent
def test_warmup_joins_are_continuous_and_monotone(case, w, start, shape):
    piece, (a, _) = case
    schedule = ss.Warmup(w, start=start, shape=shape) >> piece
    v = schedule.at(np.arange(0, w + 1)).astype(np.float64)
    assert abs(v[w] - a) <= 1e-6 * a
    assert abs(v[0] - start) <= 1e-6 * start
    d = np.diff(v)
    tol = 1e-6 * max(a, start)
    assert np.all(d >= -tol) if a >= start else np.all(d <= tol)
    # the largest jump of the ramp is bounded by its total rise spread over w steps
    # (exponential ramps bunch up, at most by the ratio of the ends)
    spread = max(a, start) / min(a, start) if shape == "exponential" else np.pi / 2
    assert np.abs(d).max() <= abs(a - start) / w * spread * (1 + 1e-5) + tol


@settings(max_examples=40, deadline=None)
@given(monotone_pieces(), st.integers(2, 5))
@pytest.mark.backend_independent
def test_restarts_are_periodic(case, cycles):
    piece, _ = case
    d = int(piece.duration)
    v = ss.Restarts(piece).at(np.arange(d * cycles))
    for c in range(1, cycles):
        np.testing.assert_array_equal(v[c * d:(c + 1) * d], v[:d])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compositions())
def test_serialization_round_trip_is_equal(case):
    schedule, _, _ = case
    blob = keras.saving.serialize_keras_object(schedule)
    back = keras.saving.deserialize_keras_object(blob)
    assert back.get_config() == schedule.get_config()
    np.testing.assert_array_equal(back.at(STEPS), schedule.at(STEPS))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compositions())
def test_in_graph_agrees_with_host(case):
    schedule, _, hi = case
    steps = np.arange(0, 1500, 7)
    np.testing.assert_allclose(graph_values(schedule, steps), schedule.at(steps),
                               rtol=1e-5, atol=1e-6 * hi)
