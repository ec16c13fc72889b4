"""Schedule core: values, in-graph agreement, composition, durations, serialization."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import BACKEND, graph_values

STEPS = np.arange(0, 400)


def closed_form(fn, steps=STEPS):
    return np.array([fn(float(t)) for t in steps])


# (schedule, reference written by hand from the formula, with non-zero start values)
CASES = {
    "constant": (ss.Constant(0.3), lambda t: 0.3),
    "linear": (ss.Linear(0.2, 1.0, 100), lambda t: 0.2 + 0.8 * min(t, 100) / 100),
    "linear-up-then-hold": (ss.Linear(1e-4, 3e-3, 37), lambda t: 1e-4 + (3e-3 - 1e-4) * min(t, 37) / 37),
    "cosine": (ss.Cosine(1.0, 0.1, 200),
               lambda t: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 200) / 200))),
    "cosine-exponent": (ss.Cosine(1.0, 0.1, 200, exponent=2.0),
                        lambda t: 0.1 + 0.9 * (0.5 * (1 + math.cos(math.pi * min(t, 200) / 200))) ** 2),
    "exponential": (ss.Exponential(0.5, 0.9, every=10), lambda t: 0.5 * 0.9 ** (t / 10)),
    "exponential-staircase": (ss.Exponential(0.5, 0.9, every=10, staircase=True),
                              lambda t: 0.5 * 0.9 ** math.floor(t / 10)),
    "exponential-floor": (ss.Exponential(0.5, 0.9, every=10, limit=0.2),
                          lambda t: max(0.5 * 0.9 ** (t / 10), 0.2)),
    "exponential-ceiling": (ss.Exponential(0.01, 1.05, limit=0.5),
                            lambda t: min(0.01 * 1.05 ** min(t, 1e3), 0.5)),
    "exponential-duration": (ss.Exponential(0.5, 0.99, duration=50),
                             lambda t: 0.5 * 0.99 ** min(t, 50)),
    "polynomial": (ss.Polynomial(1.0, 0.05, 150, power=2.0),
                   lambda t: 0.05 + 0.95 * (1 - min(t, 150) / 150) ** 2),
    "piecewise": (ss.Piecewise([30, 100, 250], [1.0, 0.5, 0.1, 0.01]),
                  lambda t: 1.0 if t < 30 else 0.5 if t < 100 else 0.1 if t < 250 else 0.01),
    "interpolate": (ss.Interpolate([10, 60, 300], [0.1, 1.0, 0.2]),
                    lambda t: float(np.interp(t, [10, 60, 300], [0.1, 1.0, 0.2]))),
    "interpolate-cosine": (
        ss.Interpolate([0, 100], [1.0, 0.0], kind="cosine"),
        lambda t: 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100))),
    "warmup-linear": (ss.Warmup(50, start=0.1) >> ss.Constant(0.9),
                      lambda t: 0.1 + 0.8 * t / 50 if t < 50 else 0.9),
    "warmup-cosine": (ss.Warmup(50, start=0.1, shape="cosine") >> ss.Linear(0.9, 0.3, 100),
                      lambda t: (0.9 + (0.1 - 0.9) * 0.5 * (1 + math.cos(math.pi * t / 50)))
                      if t < 50 else 0.9 - 0.6 * min(t - 50, 100) / 100),
    "warmup-exponential": (ss.Warmup(40, start=1e-4, shape="exponential") >> ss.Constant(1e-2),
                           lambda t: 1e-4 * 100 ** (t / 40) if t < 40 else 1e-2),
    "sequence-3": (ss.Constant(0.2, 20) >> ss.Linear(1.0, 0.5, 30) >> ss.Exponential(0.5, 0.97),
                   lambda t: 0.2 if t < 20 else (1.0 - 0.5 * (t - 20) / 30) if t < 50
                   else 0.5 * 0.97 ** (t - 50)),
    "sequence-global": (ss.Sequence([ss.Constant(0.2, 20), ss.Exponential(1.0, 0.97)],
                                    relative=False),
                        lambda t: 0.2 if t < 20 else 0.97 ** t),
    "sequence-finite-end": (ss.Linear(0.0, 1.0, 10) >> ss.Linear(1.0, 0.25, 10),
                            lambda t: t / 10 if t < 10 else 1.0 - 0.75 * min(t - 10, 10) / 10),
    "restarts": (ss.Restarts(ss.Linear(1.0, 0.1, 40)),
                 lambda t: 1.0 - 0.9 * (t % 40) / 40),
    "restarts-mult-decay": (
        ss.Restarts(ss.Cosine(1.0, 0.1, 10), period_mult=2.0, scale=0.5),
        lambda t: (lambda i: 0.5 ** i * (0.1 + 0.9 * 0.5 * (1 + math.cos(
            math.pi * (t - 10 * (2 ** i - 1)) / (10 * 2 ** i)))))(
            int(math.floor(math.log2(t / 10 + 1))))),
    "restarts-limit": (ss.Restarts(ss.Linear(1.0, 0.0, 50), limit=3),
                       lambda t: 1.0 - (t % 50) / 50 if t < 150 else 0.0),
    "affine": (ss.Linear(1.0, 0.0, 100) * 0.5 + 0.1, lambda t: 0.5 * (1 - min(t, 100) / 100) + 0.1),
    "clip": (ss.Linear(0.0, 1.0, 100).clip(min=0.2, max=0.7),
             lambda t: min(max(min(t, 100) / 100, 0.2), 0.7)),
    "per-update": (ss.Linear(0.0, 1.0, 10).per_update(4), lambda t: min(t // 4, 10) / 10),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.backend_independent
def test_values_match_closed_form(name):
    schedule, reference = CASES[name]
    np.testing.assert_allclose(schedule.at(STEPS), closed_form(reference), rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(CASES))
def test_in_graph_matches_host(name):
    schedule, _ = CASES[name]
    host = schedule.at(STEPS)
    graph = graph_values(schedule, STEPS)
    np.testing.assert_allclose(graph, host, rtol=2e-6, atol=1e-7 * np.abs(host).max())


@pytest.mark.parametrize("name", [k for k in CASES if "sequence" in k or "warmup" in k])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_scalar_step_evaluates_only_the_active_piece_and_agrees(name, jit_compile):
    # The optimizer passes one 0-d step: a sequence then runs only its active
    # piece (a switch); the values must be those of the vectorised evaluation.
    schedule, _ = CASES[name]
    steps = [0, 1, 19, 20, 21, 49, 50, 51, 149, 150, 399, 2**31 - 1]
    np.testing.assert_allclose(graph_values(schedule, steps, scalar=True, jit_compile=jit_compile),
                               schedule.at(steps), rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_any_step_dtype(dtype):
    schedule = ss.Warmup(10) >> ss.Cosine(1.0, 0.0, 100)
    np.testing.assert_allclose(graph_values(schedule, [0, 5, 50, 200], dtype=dtype),
                               schedule.at([0, 5, 50, 200]), rtol=1e-6, atol=1e-7)


def test_scalar_step_gives_scalar():
    schedule = ss.Linear(0.0, 1.0, 10)
    value = schedule(keras.ops.convert_to_tensor(3))
    assert tuple(keras.ops.shape(value)) == ()
    assert float(value) == pytest.approx(0.3)
    assert isinstance(schedule.at(3), np.float32)
    assert schedule.at(range(4)).dtype == np.float32


@pytest.mark.backend_independent
def test_host_evaluation_is_vectorised():
    values = ss.WarmupStableDecay if False else (ss.Warmup(1000) >> ss.Cosine(1.0, 0.0, 10**6))
    out = values.at(np.arange(1_000_000))
    assert out.shape == (1_000_000,) and np.all(np.isfinite(out))


HUGE = np.array([0, 2**20, 2**24 + 1, 123_456_789, 2**30 + 3, 2**31 - 7, 2**31 - 1])


@pytest.mark.parametrize("name", list(CASES))
def test_huge_steps_are_finite_and_match_float64(name):
    # int32 steps up to 2**31 - 1 (int64 on TF): finite, and the in-graph values
    # match the float64 NumPy reference to float32 precision -- periodic pieces
    # included, whose phase needs the step exactly.
    schedule, reference = CASES[name]
    host = schedule.at(HUGE)
    assert np.all(np.isfinite(host))
    np.testing.assert_allclose(host, closed_form(reference, HUGE), rtol=2e-6, atol=1e-9)
    scale = np.abs(schedule.at(STEPS)).max()
    for dtype in ("int32", "int64"):
        np.testing.assert_allclose(graph_values(schedule, HUGE, dtype=dtype), host,
                                   rtol=2e-6, atol=2e-7 * scale)


def test_restart_phase_is_exact_at_huge_steps():
    s = ss.Restarts(ss.Cosine(1.0, 0.0, 1000), period_mult=1.5, scale=0.999)
    np.testing.assert_allclose(graph_values(s, HUGE), s.at(HUGE), rtol=2e-6, atol=1e-7)


def test_many_boundaries_use_one_lookup():
    boundaries = list(range(10, 10_010, 10))
    values = [0.99**i for i in range(len(boundaries) + 1)]
    schedule = ss.Piecewise(boundaries, values)
    steps = np.arange(0, 10_100, 7)
    expected = np.array([values[int(np.searchsorted(boundaries, s, side="right"))] for s in steps])
    np.testing.assert_allclose(schedule.at(steps), expected, rtol=1e-6)
    np.testing.assert_allclose(graph_values(schedule, steps), expected, rtol=1e-6)


# ---------------------------------------------------------------- the seed case
@pytest.mark.backend_independent
def test_seed_case_relative_and_global():
    warmup_epochs, steps_per_epoch = 2, 50
    initial_lr, lr_decay, lr_decay_steps = 1e-3, 0.96, 30
    w = warmup_epochs * steps_per_epoch
    relative = ss.Warmup(ss.epochs(warmup_epochs)) >> ss.Exponential(
        initial_lr, rate=lr_decay, every=lr_decay_steps)
    global_ = ss.Sequence([ss.Warmup(ss.epochs(warmup_epochs)),
                           ss.Exponential(initial_lr, rate=lr_decay, every=lr_decay_steps)],
                          relative=False)
    steps = np.arange(400)
    rel = relative.resolve(steps_per_epoch=steps_per_epoch).at(steps)
    glo = global_.resolve(steps_per_epoch=steps_per_epoch).at(steps)
    peak_rel, peak_glo = initial_lr, initial_lr * lr_decay ** (w / lr_decay_steps)
    exp_rel = np.where(steps < w, peak_rel * steps / w,
                       initial_lr * lr_decay ** ((steps - w) / lr_decay_steps))
    exp_glo = np.where(steps < w, peak_glo * steps / w,
                       initial_lr * lr_decay ** (steps / lr_decay_steps))
    np.testing.assert_allclose(rel, exp_rel, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(glo, exp_glo, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------- durations
@pytest.mark.backend_independent
def test_unresolved_duration_says_how_to_fix():
    schedule = ss.Warmup(ss.epochs(2)) >> ss.Cosine(1.0, 0.0, ss.fraction(0.5))
    with pytest.raises(ss.UnresolvedDurationError, match="steps_per_epoch"):
        schedule.at(0)
    with pytest.raises(ss.UnresolvedDurationError, match="total_steps"):
        schedule.resolve(steps_per_epoch=10).at(0)
    concrete = schedule.resolve(steps_per_epoch=10, total_steps=200)
    assert concrete.duration == 20 + 100
    assert not concrete.is_symbolic and schedule.is_symbolic
    np.testing.assert_allclose(concrete.at([0, 10, 20, 70, 120]), [0, 0.5, 1.0, 0.5, 0.0],
                               atol=1e-7)


def test_resolve_returns_a_copy_and_never_changes_the_schedule():
    schedule = ss.Warmup(ss.fraction(0.5)) >> ss.Constant(1.0)
    short, long = schedule.resolve(total_steps=10), schedule.resolve(total_steps=100)
    assert short.at(2) == pytest.approx(0.4) and long.at(2) == pytest.approx(0.04)
    assert schedule.is_symbolic and not short.is_symbolic
    with pytest.raises(ss.UnresolvedDurationError, match="returns a resolved copy"):
        schedule.at(2)
    assert not hasattr(schedule, "bind")
    assert graph_values(short, [2])[0] == pytest.approx(0.4)
    concrete = ss.Linear(1.0, 0.0, 10)
    assert concrete.resolve(total_steps=5) is concrete  # a value: nothing to copy


def test_planned_remembers_the_schedule_as_written():
    schedule = ss.Warmup(ss.epochs(1)) >> ss.Linear(1.0, 0.0, ss.fraction(0.5))
    planned = ss.Planned(schedule, steps_per_epoch=10, total_steps=40)
    np.testing.assert_array_equal(planned.at(range(60)),
                                  schedule.resolve(10, 40).at(range(60)))
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(planned))
    assert back.context == (10, 40) and back.arg("schedule").is_symbolic
    np.testing.assert_array_equal(back.at(range(60)), planned.at(range(60)))
    with pytest.raises(ValueError, match="total_steps"):
        ss.Planned(schedule, steps_per_epoch=10, total_steps=-1)


@pytest.mark.backend_independent
def test_fractional_epochs():
    schedule = ss.Linear(0.0, 1.0, ss.epochs(1.5)).resolve(steps_per_epoch=10)
    assert schedule.duration == 15
    assert float(schedule.at(15)) == 1.0


# ---------------------------------------------------------------- composition
@pytest.mark.backend_independent
def test_warmup_join_is_continuous():
    for shape in ("linear", "cosine", "exponential"):
        s = ss.Warmup(30, start=1e-3, shape=shape) >> ss.Cosine(0.7, 0.01, 100)
        v = s.at(np.arange(0, 31))
        assert v[0] == pytest.approx(1e-3)
        assert v[30] == pytest.approx(0.7, rel=1e-6)
        assert np.all(np.diff(v) >= 0)


@pytest.mark.backend_independent
def test_rshift_flattens_and_accepts_numbers():
    s = ss.Warmup(10) >> ss.Constant(1.0, 10) >> 0.5
    assert isinstance(s, ss.Sequence) and len(s.arg("pieces")) == 3
    assert s.at(25) == pytest.approx(0.5)


@pytest.mark.backend_independent
def test_restarts_are_periodic():
    s = ss.Restarts(ss.Warmup(5) >> ss.Cosine(1.0, 0.0, 20))
    v = s.at(np.arange(100))
    np.testing.assert_allclose(v[:25], v[25:50], rtol=1e-6)
    np.testing.assert_allclose(v[:25], v[75:], rtol=1e-6)


@pytest.mark.backend_independent
def test_repr_is_readable():
    s = ss.Warmup(ss.epochs(2)) >> ss.Exponential(1e-3, rate=0.96, every=1000)
    assert repr(s) == "Warmup(duration=epochs(2)) >> Exponential(start=0.001, rate=0.96, every=1000)"
    assert repr(ss.Linear(1.0, 0.0, 10) * 0.5) == "Linear(start=1, end=0, duration=10) * 0.5"


# ---------------------------------------------------------------- serialization
ALL = {**{k: v[0] for k, v in CASES.items()},
       "symbolic": ss.Warmup(ss.epochs(2)) >> ss.Cosine(1.0, 0.0, ss.fraction(0.8)),
       "keras-cosine-warmup": ss.CosineDecay(0.0, 100, alpha=0.1, warmup_target=0.5,
                                             warmup_steps=10)}


@pytest.mark.parametrize("name", list(ALL))
def test_config_round_trip(name):
    schedule = ALL[name]
    again = type(schedule).from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    assert repr(again) == repr(schedule)
    blob = keras.saving.serialize_keras_object(schedule)
    back = keras.saving.deserialize_keras_object(blob)
    assert type(back) is type(schedule)
    assert back.get_config() == schedule.get_config()
    if not schedule.is_symbolic:
        np.testing.assert_array_equal(back.at(STEPS), schedule.at(STEPS))


def test_model_save_and_load_without_custom_objects(tmp_path):
    schedule = ss.Warmup(10) >> ss.Restarts(ss.Cosine(0.1, 0.01, 20), period_mult=2.0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    lr = loaded.optimizer._learning_rate
    assert isinstance(lr, ss.Sequence)
    assert int(loaded.optimizer.iterations) == 8
    np.testing.assert_array_equal(lr.at(STEPS), schedule.at(STEPS))
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(schedule.at(8)), rel=1e-6)


# ---------------------------------------------------------------- bad input
BAD = [
    (lambda: ss.Linear(0.0, 1.0, 0), ValueError, "duration"),
    (lambda: ss.Linear(0.0, 1.0, -5), ValueError, "duration"),
    (lambda: ss.Linear(0.0, float("nan"), 5), ValueError, "end"),
    (lambda: ss.Linear(0.0, True, 5), TypeError, "end"),
    (lambda: ss.Linear("a", 1.0, 5), TypeError, "start"),
    (lambda: ss.Constant(float("inf")), ValueError, "value"),
    (lambda: ss.Cosine(1.0, 0.0, 10, exponent=0), ValueError, "exponent"),
    (lambda: ss.Exponential(1.0, 0.0), ValueError, "rate"),
    (lambda: ss.Exponential(1.0, -0.5), ValueError, "rate"),
    (lambda: ss.Exponential(1.0, 0.5, every=0), ValueError, "every"),
    (lambda: ss.Exponential(1.0, 0.5, limit=2.0), ValueError, "limit"),
    (lambda: ss.Exponential(1.0, 1.5, limit=0.5), ValueError, "limit"),
    (lambda: ss.Exponential(1.0, 0.5, staircase="yes"), TypeError, "staircase"),
    (lambda: ss.Exponential(1.0, 1.5), ValueError, "limit"),
    (lambda: ss.Polynomial(1.0, 0.0, 10, power=-1), ValueError, "power"),
    (lambda: ss.Piecewise([10, 10], [1, 2, 3]), ValueError, "strictly increasing"),
    (lambda: ss.Piecewise([10, 5], [1, 2, 3]), ValueError, "strictly increasing"),
    (lambda: ss.Piecewise([10, 20], [1, 2]), ValueError, "values"),
    (lambda: ss.Piecewise([], [1]), ValueError, "boundaries"),
    (lambda: ss.Piecewise([-1], [1, 2]), ValueError, "boundaries"),
    (lambda: ss.Interpolate([0, 10], [1, 2], kind="cubic"), ValueError, "kind"),
    (lambda: ss.Interpolate([0, 10], [1, 2, 3]), ValueError, "values"),
    (lambda: ss.Warmup(10, shape="sigmoid"), ValueError, "shape"),
    (lambda: ss.Warmup(10, start=0.0, shape="exponential"), ValueError, "start"),
    (lambda: ss.Sequence([ss.Constant(1.0), ss.Constant(2.0)]), ValueError, "open-ended"),
    (lambda: ss.Sequence([]), ValueError, "pieces"),
    (lambda: ss.Sequence(ss.Constant(1.0)), TypeError, "pieces"),
    (lambda: ss.Restarts(ss.Constant(1.0)), ValueError, "finite"),
    (lambda: ss.Restarts(ss.Linear(1, 0, 5), period_mult=0.5), ValueError, "period_mult"),
    (lambda: ss.Restarts(ss.Linear(1, 0, 5), limit=0), ValueError, "limit"),
    (lambda: ss.Linear(1, 0, 5).clip(min=1.0, max=0.5), ValueError, "min"),
    (lambda: ss.Linear(1, 0, 5).per_update(0), ValueError, "accumulation_steps"),
    (lambda: ss.epochs(0), ValueError, "epochs"),
    (lambda: ss.fraction(1.5), ValueError, "fraction"),
    (lambda: ss.fraction(float("nan")), ValueError, "fraction"),
    (lambda: ss.Linear(0, 1, 5) * "x", TypeError, "scale"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
@pytest.mark.backend_independent
def test_bad_input_fails_at_construction(case):
    build, error, match = BAD[case]
    with pytest.raises(error, match=match):
        build()


@pytest.mark.backend_independent
def test_at_rejects_bad_steps():
    s = ss.Linear(0.0, 1.0, 10)
    with pytest.raises(ValueError, match="steps"):
        s.at(-1)
    with pytest.raises(ValueError, match="steps"):
        s.at([0, float("nan")])
    with pytest.raises(TypeError, match="steps"):
        s.at(["a"])


@pytest.mark.backend_independent
def test_standalone_warmup_has_clear_error():
    with pytest.raises(ValueError, match="Warmup"):
        ss.Warmup(10).at(0)


@pytest.mark.backend_independent
def test_arithmetic_folds_instead_of_nesting():
    s = ss.Linear(1.0, 0.0, 10)
    folded = s
    for _ in range(1000):
        folded = folded * 1.0 + 0.0
    assert isinstance(folded.arg("schedule"), ss.Linear)
    np.testing.assert_array_equal(folded.at(range(12)), s.at(range(12)))
    assert ((s * 2 + 1) * 3).at(0) == pytest.approx(9.0)


def _nested_config(levels):
    inner = keras.saving.serialize_keras_object(ss.Linear(1.0, 0.0, 10))
    for _ in range(levels):
        inner = {"module": "stepsched.schedules.compose", "class_name": "Clip",
                 "registered_name": "stepsched>Clip",
                 "config": {"schedule": inner, "min": None, "max": None}}
    return inner


def test_deeply_nested_config_is_refused_cleanly():
    with pytest.raises(ValueError, match="nested"):
        keras.saving.deserialize_keras_object(_nested_config(1000))
    assert keras.saving.deserialize_keras_object(_nested_config(20)).at(5) == pytest.approx(0.5)


@pytest.mark.backend_independent
def test_unknown_and_wrong_typed_config_keys():
    with pytest.raises(TypeError, match="unknown keys"):
        ss.Linear.from_config({"start": 1.0, "end": 0.0, "duration": 5, "evil": 1})
    with pytest.raises(TypeError, match="start"):
        ss.Linear.from_config({"start": "1.0", "end": 0.0, "duration": 5})
    with pytest.raises(TypeError, match="config must be a dict"):
        ss.Linear.from_config([1, 2])


@pytest.mark.skipif(BACKEND != "torch", reason="torch's tables")
@pytest.mark.parametrize("schedule,periodic", [
    (ss.Restarts(ss.Cosine(1e-3, 1e-5, 500)), True),
    (ss.Restarts(ss.Cosine(1e-3, 1e-5, 500)) * 0.5, True),
    (ss.Cyclic(1e-4, 1e-2, 200, 300), True),
    (ss.Cyclic(1e-4, 1e-2, 200.5), True),  # a whole period of 401 steps
    (ss.Cyclic(1e-4, 1e-2, 200, mode="exp_range", gamma=1.0), True),
    (ss.Warmup(100) >> ss.Restarts(ss.Cosine(1e-3, 1e-5, 500)), True),
    (ss.Cyclic(1e-4, 1e-2, 200, mode="triangular2"), False),
    (ss.Restarts(ss.Cosine(1e-3, 1e-5, 500), scale=0.9), False),
    (ss.Restarts(ss.Cosine(1e-3, 1e-5, 100.5)), False),
    (ss.Warmup(100.5) >> ss.Restarts(ss.Cosine(1e-3, 1e-5, 500)), False),
], ids=repr)
def test_torch_reads_a_periodic_schedule_from_one_period_of_its_table(schedule, periodic):
    """On torch a schedule whose values repeat every whole number of steps for ever (an
    open-ended ``Restarts`` of the piece itself, a ``triangular`` ``Cyclic``, also after
    a warmup of whole steps) reads one period of its table at the step's place in its
    period, instead of running the formula: bit-equal to ``at()`` up to ``2**31 - 1``."""
    import torch

    from stepsched.schedules import _torch_tables

    entry = _torch_tables._entry(schedule)  # (values, tail, offset, (start, period))
    assert (entry is not None and entry[3] is not None) is periodic
    steps = np.concatenate([np.arange(2100), [2**31 - 1, 2**31 - 500, 10**9 + 7]])
    got = np.array([schedule(torch.tensor(int(s))).item() for s in steps], np.float32)
    if periodic:
        np.testing.assert_array_equal(got, schedule.at(steps))
    else:
        np.testing.assert_allclose(got, schedule.at(steps), rtol=1e-6, atol=1e-12)
