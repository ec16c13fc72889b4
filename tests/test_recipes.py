"""Recipes and extra pieces: peers' formulas, in-graph agreement, serialization, bad input.

Conformance with transformers, timm, fastai and tf-models is checked against
their formulas reimplemented here from their published source (those
libraries are not dependencies); torch, optax and Keras are compared with the
real libraries in tests/test_conformance_*.py.
"""

from __future__ import annotations

import bisect
import math

import keras
import numpy as np
import pytest

import stepsched as ss
from tests.conftest import graph_values
from tests.probe import ProbeLayer, WeightRecorder, mean_output, probe_data, probe_model


def formula(fn, steps):
    return np.array([fn(int(t)) for t in steps], np.float64)


def assert_conforms(ours, theirs, peak):
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * peak)


PEAK = 3e-4


# ------------------------------------------------------------------ transformers
# lr_lambda formulas of transformers.optimization (multiplied by the optimizer's lr = PEAK)
def hf_linear(t, w, total):
    if t < w:
        return t / max(1, w)
    return max(0.0, (total - t) / max(1, total - w))


def hf_cosine(t, w, total, cycles=0.5, min_rate=0.0):
    if t < w:
        return t / max(1, w)
    progress = (t - w) / max(1, total - w)
    factor = 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress))
    return max(0.0, factor * (1 - min_rate) + min_rate)


def hf_cosine_warmup_min_lr_rate(t, w, total, min_rate):
    if t < w:
        return (t + 1.0) / max(1.0, w)
    progress = (t - w + 1.0) / max(1.0, total - w)
    factor = 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress))
    return max(0.0, factor * (1 - min_rate) + min_rate)


def hf_hard_restarts(t, w, total, cycles):
    if t < w:
        return t / max(1, w)
    progress = (t - w) / max(1, total - w)
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0))))


def hf_polynomial(t, w, total, lr_end, power, lr_init=PEAK):
    if t < w:
        return t / max(1, w)
    if t > total:
        return lr_end / lr_init
    pct_remaining = 1 - (t - w) / (total - w)
    return ((lr_init - lr_end) * pct_remaining**power + lr_end) / lr_init


def hf_constant_with_warmup(t, w):
    return t / max(1.0, w) if t < w else 1.0


def hf_inverse_sqrt(t, w, timescale=None):
    timescale = timescale or w or 10_000
    if t < w:
        return t / max(1, w)
    return 1.0 / math.sqrt((t + timescale - w) / timescale)


def hf_wsd(t, w, stable, decay, decay_type, min_ratio, cycles=0.5):
    if t < w:
        return max(0.0, (t / max(1, w)) * (1.0 - min_ratio) + min_ratio)
    if t < w + stable:
        return 1.0
    if t < w + stable + decay:
        p = (t - w - stable) / max(1, decay)
        factor = {"linear": 1.0 - p,
                  "cosine": 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * p)),
                  "1-sqrt": 1.0 - math.sqrt(p)}[decay_type]
        return max(0.0, factor * (1.0 - min_ratio) + min_ratio)
    return min_ratio


# (transformers lambda, stepsched one-liner, steps compared); docs/migration.md's rows
TRANSFORMERS = {
    "linear": (lambda t: hf_linear(t, 37, 250),
               ss.Warmup(37) >> ss.Linear(PEAK, 0.0, 250 - 37), 400),
    "cosine-in-run": (lambda t: hf_cosine(t, 37, 251), ss.WarmupCosine(PEAK, 37, 251), 252),
    # past num_training_steps transformers' cosine rises again; the periodic convention:
    "cosine-periodic": (lambda t: hf_cosine(t, 20, 120),
                        ss.Warmup(20) >> ss.Restarts(ss.Cosine(PEAK, 0.0, 100)
                                                     >> ss.Cosine(0.0, PEAK, 100)), 600),
    "cosine_with_restarts": (lambda t: hf_hard_restarts(t, 10, 310, 3),
                             ss.Warmup(10) >> ss.Restarts(ss.Cosine(PEAK, 0.0, 300 / 3), limit=3),
                             400),
    "cosine_with_restarts-uneven": (lambda t: hf_hard_restarts(t, 7, 107, 3),
                                    ss.Warmup(7) >> ss.Restarts(ss.Cosine(PEAK, 0.0, 100 / 3),
                                                                limit=3), 200),
    "polynomial": (lambda t: hf_polynomial(t, 15, 200, 1e-7, 2.0),
                   ss.Warmup(15) >> ss.Polynomial(PEAK, 1e-7, 185, power=2.0), 300),
    "constant": (lambda t: 1.0, ss.Constant(PEAK), 50),
    "constant_with_warmup": (lambda t: hf_constant_with_warmup(t, 25),
                             ss.Warmup(25) >> ss.Constant(PEAK), 100),
    "inverse_sqrt": (lambda t: hf_inverse_sqrt(t, 40), ss.InverseSqrt(PEAK, 40), 500),
    "inverse_sqrt-timescale": (lambda t: hf_inverse_sqrt(t, 40, 300),
                               ss.InverseSqrt(PEAK, 40, timescale=300), 500),
    "warmup_stable_decay-cosine": (
        lambda t: hf_wsd(t, 20, 100, 50, "cosine", 0.1),
        ss.WarmupStableDecay(PEAK, 20, 50, stable=100, start=0.1 * PEAK, end=0.1 * PEAK,
                             decay_shape="cosine"), 250),
    "warmup_stable_decay-1-sqrt-total": (
        lambda t: hf_wsd(t, 20, 230 - 20 - 60, 60, "1-sqrt", 0.0),
        ss.WarmupStableDecay(PEAK, 20, 60, total=230, decay_shape="1-sqrt"), 300),
    "warmup_stable_decay-linear": (
        lambda t: hf_wsd(t, 10, 0, 90, "linear", 0.05),
        ss.WarmupStableDecay(PEAK, 10, 90, stable=0, start=0.05 * PEAK, end=0.05 * PEAK), 150),
    "cosine_with_min_lr-in-run": (lambda t: hf_cosine(t, 30, 200, min_rate=0.1),
                                  ss.WarmupCosine(PEAK, 30, 200, end=0.1 * PEAK), 201),
    "cosine_warmup_with_min_lr": (
        lambda t: hf_cosine_warmup_min_lr_rate(t, 30, 200, 0.1),
        ss.Linear(PEAK / 30, PEAK, 29) >> ss.Cosine(PEAK, 0.1 * PEAK, 170), 200),
}


@pytest.mark.parametrize("name", list(TRANSFORMERS))
@pytest.mark.backend_independent
def test_transformers(name):
    fn, ours, n = TRANSFORMERS[name]
    assert_conforms(ours.at(range(n)), PEAK * formula(fn, range(n)), PEAK)


@pytest.mark.backend_independent
def test_transformers_cosine_past_the_end_conventions():
    """transformers' cosine rises after num_training_steps; WarmupCosine holds ``end``."""
    hf = PEAK * formula(lambda t: hf_cosine(t, 0, 100), range(100, 201))
    ours = ss.WarmupCosine(PEAK, 0, 100).at(range(100, 201))
    assert hf[-1] == pytest.approx(PEAK) and np.all(ours == ours[0])


# ------------------------------------------------------------------ Noam
@pytest.mark.parametrize("d_model,warmup,scale", [(512, 4000, 1.0), (256, 37, 2.0), (64, 1, 0.5)])
@pytest.mark.backend_independent
def test_noam_is_the_paper_formula_with_t_plus_1(d_model, warmup, scale):
    steps = np.arange(0, 12_000, 7)
    expected = scale * d_model**-0.5 * np.minimum((steps + 1.0) ** -0.5,
                                                  (steps + 1.0) * warmup**-1.5)
    ours = ss.Noam(d_model, warmup, scale)
    assert_conforms(ours.at(steps), expected, expected.max())
    # the other convention (t instead of t + 1, zero at step 0), as docs/migration.md writes it
    other = ss.Warmup(warmup) >> ss.InversePower(scale * (d_model * warmup) ** -0.5, warmup)
    expected_other = scale * d_model**-0.5 * np.minimum(np.maximum(steps, 1e-300) ** -0.5,
                                                        steps * warmup**-1.5)
    assert_conforms(other.at(steps), expected_other, expected.max())


# ------------------------------------------------------------------ timm (formulas of timm/scheduler)
def timm_multistep(t, base, decay_t, rate):
    return base * rate ** bisect.bisect_right(decay_t, t + 1)  # timm keeps the t + 1


def timm_cosine(t, base, t_initial, lr_min, warmup_t, warmup_lr_init, k):
    if t < warmup_t:
        return warmup_lr_init + t * (base - warmup_lr_init) / warmup_t
    t -= warmup_t  # warmup_prefix=True
    if t >= t_initial:  # cycle_limit=1
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t**k / t_initial**k))


def timm_tanh(t, base, t_initial, lr_min, lb=-7.0, ub=3.0):
    if t >= t_initial:
        return lr_min
    tr = t / t_initial
    return lr_min + 0.5 * (base - lr_min) * (1 - math.tanh(lb * (1.0 - tr) + ub * tr))


def timm_poly(t, base, t_initial, lr_min, power):
    if t >= t_initial:
        return lr_min
    return lr_min + (base - lr_min) * (1 - t / t_initial) ** power


TIMM = {
    "MultiStepLRScheduler": (lambda t: timm_multistep(t, 0.1, [30, 60, 61], 0.5),
                             ss.Piecewise([29, 59, 60], [0.1, 0.05, 0.025, 0.0125])),
    "StepLRScheduler": (lambda t: 0.1 * 0.8 ** (t // 25),
                        ss.Exponential(0.1, 0.8, every=25, staircase=True)),
    "CosineLRScheduler-k_decay": (lambda t: timm_cosine(t, 0.1, 150, 1e-3, 10, 1e-4, 2.0),
                                  ss.Linear(1e-4, 0.1, 10) >> ss.KDecay(0.1, 1e-3, 150, k=2.0)),
    "CosineLRScheduler": (lambda t: timm_cosine(t, 0.1, 150, 0.0, 0, 0.0, 1.0),
                          ss.Cosine(0.1, 0.0, 150)),
    "TanhLRScheduler": (lambda t: timm_tanh(t, 0.1, 120, 1e-3),
                        ss.TanhDecay(0.1, 1e-3, 120, lower=-7.0, upper=3.0) >> ss.Constant(1e-3)),
    "PolyLRScheduler": (lambda t: timm_poly(t, 0.1, 90, 1e-3, 0.5),
                        ss.Polynomial(0.1, 1e-3, 90, power=0.5)),
}


@pytest.mark.parametrize("name", list(TIMM))
@pytest.mark.backend_independent
def test_timm(name):
    fn, ours = TIMM[name]
    assert_conforms(ours.at(range(250)), formula(fn, range(250)), 0.1)


# ------------------------------------------------------------------ fastai
def fastai_combined_cos(pos, pct, start, middle, end):
    """fastai ``combined_cos``: two SchedCos pieces split at ``pct`` of training."""
    def sched_cos(a, b, p):
        return a + (1 + math.cos(math.pi * (1 - p))) * (b - a) / 2
    if pos < pct:
        return sched_cos(start, middle, pos / pct)
    return sched_cos(middle, end, (pos - pct) / (1 - pct))


@pytest.mark.parametrize("n", [100, 333])
@pytest.mark.backend_independent
def test_fastai_fit_one_cycle(n):
    # fit_one_cycle(lr_max=1e-2, div=25, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95))
    lr = formula(lambda t: fastai_combined_cos(t / n, 0.25, 1e-2 / 25, 1e-2, 1e-2 / 1e5),
                 range(n))
    ours = ss.Cosine(1e-2 / 25, 1e-2, 0.25 * n) >> ss.Cosine(1e-2, 1e-2 / 1e5, 0.75 * n)
    assert_conforms(ours.at(range(n)), lr, 1e-2)
    moms = formula(lambda t: fastai_combined_cos(t / n, 0.25, 0.95, 0.85, 0.95), range(n))
    ours_moms = ss.Cosine(0.95, 0.85, 0.25 * n) >> ss.Cosine(0.85, 0.95, 0.75 * n)
    assert_conforms(ours_moms.at(range(n)), moms, 1.0)


@pytest.mark.backend_independent
def test_fastai_fit_flat_cos():
    # fit_flat_cos(lr=1e-3, div_final=1e5, pct_start=0.75)
    n, pct = 200, 0.75
    expected = formula(lambda t: fastai_combined_cos(t / n, pct, 1e-3, 1e-3, 1e-3 / 1e5), range(n))
    ours = ss.Constant(1e-3, pct * n) >> ss.Cosine(1e-3, 1e-3 / 1e5, (1 - pct) * n)
    assert_conforms(ours.at(range(n)), expected, 1e-3)


# ------------------------------------------------------------------ tf-models
def test_tf_models_linear_warmup_then_polynomial_on_the_global_step():
    # official.modeling.optimization LinearWarmup: the after-warmup schedule sees the global step
    w, init = 100, 1e-5
    decay = keras.optimizers.schedules.PolynomialDecay(1e-3, 1000, 0.0, power=1.0)
    steps = np.arange(1200)
    after = keras.ops.convert_to_numpy(decay(keras.ops.convert_to_tensor(steps, "int32")))
    expected = np.where(steps < w, init + steps / w * (after[w] - init), after)
    ours = ss.Sequence([ss.Warmup(w, start=init), ss.PolynomialDecay(1e-3, 1000, 0.0)],
                       relative=False)
    assert_conforms(ours.at(steps), expected, 1e-3)


# ------------------------------------------------------------------ extra pieces
@pytest.mark.backend_independent
def test_rex_tanh_kdecay_formulas():
    t = np.arange(0, 150, dtype=np.float64)
    u = np.minimum(t / 100, 1.0)
    assert_conforms(ss.Rex(1.0, 0.1, 100).at(t), 0.1 + 0.9 * (1 - u) / (0.5 + 0.5 * (1 - u)), 1)
    assert_conforms(ss.TanhDecay(1.0, 0.0, 100).at(t), 0.5 * (1 - np.tanh(-6 + 9 * u)), 1)
    assert_conforms(ss.KDecay(1.0, 0.0, 100, k=3.0, shape="linear").at(t), 1 - u**3, 1)
    assert_conforms(ss.SqrtDecay(1.0, 0.2, 100).at(t), 0.2 + 0.8 * (1 - np.sqrt(u)), 1)
    assert_conforms(ss.InversePower(2.0, 50, power=1.5).at(t), 2.0 * (1 + t / 50) ** -1.5, 2)


# ------------------------------------------------------------------ recipe properties
@pytest.mark.backend_independent
def test_one_cycle_shape():
    s = ss.OneCycle(1.0, 1000, pct_start=0.3)
    v = s.at(range(1000))
    peak = int(np.argmax(v))
    assert peak == 299 and v[peak] == pytest.approx(1.0)
    assert np.all(np.diff(v[: peak + 1]) > 0) and np.all(np.diff(v[peak:]) < 0)
    assert v[0] == pytest.approx(1.0 / 25) and v[-1] == pytest.approx(1.0 / 25 / 1e4)
    three = ss.OneCycle(1.0, 1000, three_phase=True).at(range(1000))
    assert three[598] == pytest.approx(1.0 / 25)


@pytest.mark.backend_independent
def test_wsd_stable_or_total_give_the_same_schedule():
    a = ss.WarmupStableDecay(1.0, 10, 30, stable=60, decay_shape="exponential", end=0.01)
    b = ss.WarmupStableDecay(1.0, 10, 30, total=100, decay_shape="exponential", end=0.01)
    np.testing.assert_array_equal(a.at(range(150)), b.at(range(150)))
    assert a.at(100) == pytest.approx(0.01) and a.at(85) == pytest.approx(0.1, rel=1e-6)


@pytest.mark.backend_independent
def test_symbolic_durations_resolve():
    s = ss.OneCycle(0.1, ss.fraction(1.0))
    with pytest.raises(ss.UnresolvedDurationError):
        s.at(0)
    np.testing.assert_array_equal(s.resolve(total_steps=200).at(range(250)),
                                  ss.OneCycle(0.1, 200).at(range(250)))
    w = ss.WarmupCosine(1.0, ss.epochs(1), ss.fraction(1.0)).resolve(steps_per_epoch=10,
                                                                        total_steps=100)
    np.testing.assert_array_equal(w.at(range(120)), ss.WarmupCosine(1.0, 10, 100).at(range(120)))
    m = ss.OneCycle(0.1, ss.fraction(1.0)).momentum()
    np.testing.assert_array_equal(m.resolve(total_steps=200).at(range(250)),
                                  ss.OneCycleMomentum(200).at(range(250)))


@pytest.mark.backend_independent
def test_one_cycle_joins_at_total_steps():
    s = ss.OneCycle(1.0, 100) >> ss.Constant(0.5)
    assert s.at(99) == pytest.approx(1e-4 / 25 * 1e0, rel=1e-6) and s.at(100) == 0.5


# ------------------------------------------------------------------ every recipe: graph, config
RECIPES = {
    "one-cycle": ss.OneCycle(0.1, 97, pct_start=0.25, anneal_strategy="linear"),
    "one-cycle-three-phase": ss.OneCycle(1.0, 333, three_phase=True),
    "one-cycle-momentum": ss.OneCycleMomentum(97, base_momentum=0.8),
    "cyclic": ss.Cyclic(0.01, 0.1, 7, 13, mode="triangular2"),
    "cyclic-exp-range": ss.Cyclic(0.01, 0.1, 10, mode="exp_range", gamma=0.99),
    "warmup-cosine": ss.WarmupCosine(1.0, 37, 250, start=0.1, end=0.01, exponent=2.0),
    "wsd-linear": ss.WarmupStableDecay(1.0, 20, 50, stable=100),
    "wsd-cosine": ss.WarmupStableDecay(1.0, 20, 50, total=230, decay_shape="cosine"),
    "wsd-1-sqrt": ss.WarmupStableDecay(1.0, 0, 50, stable=30, decay_shape="1-sqrt"),
    "wsd-exponential": ss.WarmupStableDecay(1.0, 20, 50, stable=10, end=1e-3,
                                            decay_shape="exponential"),
    "inverse-sqrt": ss.InverseSqrt(1e-3, 100),
    "noam": ss.Noam(512, 400),
    "rex": ss.Rex(1.0, 0.0, 300),
    "tanh": ss.TanhDecay(1.0, 0.01, 300),
    "k-decay": ss.KDecay(1.0, 0.0, 300, k=2.0),
    "sqrt-decay": ss.SqrtDecay(1.0, 0.1, 300),
    "inverse-power": ss.InversePower(1.0, 40, power=0.75),
}
STEPS = np.arange(0, 600)


@pytest.mark.parametrize("name", list(RECIPES))
def test_in_graph_matches_host(name):
    s = RECIPES[name]
    host = s.at(STEPS)
    np.testing.assert_allclose(graph_values(s, STEPS), host, rtol=2e-6,
                               atol=1e-7 * np.abs(host).max())
    huge = np.array([0, 2**20, 2**31 - 1])
    assert np.all(np.isfinite(s.at(huge))) and np.all(np.isfinite(graph_values(s, huge)))


@pytest.mark.parametrize("name", ["cyclic", "one-cycle-momentum", "noam", "wsd-cosine"])
def test_in_graph_is_exact_at_large_steps(name):
    # float32 (JAX without x64) cannot hold t / period exactly near 2**24; periodic pieces
    # must still land on the right point of their cycle
    s = RECIPES[name]
    steps = np.arange(2**24 - 50, 2**24 + 50)
    host = s.at(steps)
    np.testing.assert_allclose(graph_values(s, steps), host, rtol=2e-6,
                               atol=1e-6 * np.abs(s.at(STEPS)).max())


@pytest.mark.parametrize("name", [*RECIPES, "symbolic"])
def test_config_round_trip(name):
    s = RECIPES.get(name) or ss.WarmupStableDecay(1.0, ss.epochs(1), ss.fraction(0.2),
                                                  total=ss.fraction(1.0))
    back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert type(back) is type(s) and back.get_config() == s.get_config()
    assert repr(back) == repr(s)
    if not s.is_symbolic:
        np.testing.assert_array_equal(back.at(STEPS), s.at(STEPS))


def test_recipe_trains_a_model():
    schedule = ss.OneCycle(0.5, 24, pct_start=0.25)
    model = probe_model(schedule)
    rec = WeightRecorder()
    x, y = probe_data(24)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[rec])
    # w is float32 and grows to ~5, so each recovered rate carries ~5e-7 absolute rounding
    np.testing.assert_allclose(rec.rates(), schedule.at(range(24)), rtol=1e-5, atol=2e-6)


def test_recipe_survives_model_save_and_load(tmp_path):
    schedule = ss.OneCycle(0.5, 24, pct_start=0.25, three_phase=True)
    model = probe_model(schedule)
    x, y = probe_data(8)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    lr = loaded.optimizer._learning_rate
    assert isinstance(lr, ss.OneCycle) and int(loaded.optimizer.iterations) == 8
    np.testing.assert_array_equal(lr.at(STEPS), schedule.at(STEPS))


# ------------------------------------------------------------------ bad input
BAD = [
    (lambda: ss.OneCycle(0.0, 100), ValueError, "max_lr"),
    (lambda: ss.OneCycle(0.1, 0), ValueError, "total_steps"),
    (lambda: ss.OneCycle(0.1, 100, pct_start=1.0), ValueError, "pct_start"),
    (lambda: ss.OneCycle(0.1, 100, pct_start=0.0), ValueError, "pct_start"),
    (lambda: ss.OneCycle(0.1, 3, pct_start=0.3), ValueError, "pct_start"),
    (lambda: ss.OneCycle(0.1, 100, pct_start=0.6, three_phase=True), ValueError, "pct_start"),
    (lambda: ss.OneCycle(0.1, 100, anneal_strategy="cosine"), ValueError, "anneal_strategy"),
    (lambda: ss.OneCycle(0.1, 100, div_factor=0), ValueError, "div_factor"),
    (lambda: ss.OneCycle(0.1, 100, final_div_factor=-1.0), ValueError, "final_div_factor"),
    (lambda: ss.OneCycle(0.1, 100, three_phase=1), TypeError, "three_phase"),
    (lambda: ss.OneCycleMomentum(100, base_momentum="a"), TypeError, "base_momentum"),
    (lambda: ss.OneCycleMomentum(100, max_momentum=float("nan")), ValueError, "max_momentum"),
    (lambda: ss.Cyclic(0.1, 1.0, up=0), ValueError, "up"),
    (lambda: ss.Cyclic(0.1, 1.0, up=10, down=-1), ValueError, "down"),
    (lambda: ss.Cyclic(0.1, 1.0, up=10, mode="sine"), ValueError, "mode"),
    (lambda: ss.Cyclic(0.1, 1.0, up=10, mode="exp_range", gamma=1.5), ValueError, "gamma"),
    (lambda: ss.Cyclic(0.1, 1.0, up=10, gamma=0.0), ValueError, "gamma"),
    (lambda: ss.Cyclic(None, 1.0, up=10), TypeError, "low"),
    (lambda: ss.WarmupCosine(1.0, 100, 100), ValueError, "total"),
    (lambda: ss.WarmupCosine(1.0, -1, 100), ValueError, "warmup"),
    (lambda: ss.WarmupCosine(1.0, 10, 100, exponent=0.0), ValueError, "exponent"),
    (lambda: ss.WarmupCosine(float("inf"), 10, 100), ValueError, "peak"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 20), ValueError, "exactly one of stable or total"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 20, stable=5, total=50), ValueError, "exactly one"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 20, total=25), ValueError, "total"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 0, stable=5), ValueError, "decay"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 20, stable=-5), ValueError, "stable"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 20, stable=5, decay_shape="step"), ValueError,
     "decay_shape"),
    (lambda: ss.WarmupStableDecay(1.0, 10, 20, stable=5, decay_shape="exponential"), ValueError,
     "end > 0"),
    (lambda: ss.InverseSqrt(1.0, 0), ValueError, "timescale"),
    (lambda: ss.InverseSqrt(1.0, 10, timescale=0), ValueError, "timescale"),
    (lambda: ss.InverseSqrt("1", 10), TypeError, "peak"),
    (lambda: ss.Noam(0, 4000), ValueError, "d_model"),
    (lambda: ss.Noam(512, 0.5), ValueError, "warmup"),
    (lambda: ss.Noam(512, 4000, scale=-1.0), ValueError, "scale"),
    (lambda: ss.InversePower(1.0, 0), ValueError, "timescale"),
    (lambda: ss.InversePower(1.0, 10, power=0), ValueError, "power"),
    (lambda: ss.SqrtDecay(1.0, 0.0, 0), ValueError, "duration"),
    (lambda: ss.KDecay(1.0, 0.0, 10, k=0), ValueError, "k"),
    (lambda: ss.KDecay(1.0, 0.0, 10, shape="poly"), ValueError, "shape"),
    (lambda: ss.TanhDecay(1.0, 0.0, 10, lower=3.0, upper=-6.0), ValueError, "upper"),
    (lambda: ss.Rex(1.0, 0.0, -3), ValueError, "duration"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
@pytest.mark.backend_independent
def test_bad_input_fails_at_construction(case):
    build, error, match = BAD[case]
    with pytest.raises(error, match=match):
        build()


@pytest.mark.backend_independent
def test_relations_between_symbolic_durations_are_checked_when_resolved():
    s = ss.WarmupCosine(1.0, ss.epochs(20), ss.fraction(1.0))
    with pytest.raises(ValueError, match="total must be > warmup"):
        s.resolve(steps_per_epoch=10, total_steps=100).at(0)
    with pytest.raises(ValueError, match="pct_start"):
        ss.OneCycle(0.1, ss.fraction(1.0)).resolve(total_steps=3).at(0)


# ------------------------------------------------------------------ momentum / beta_1 schedules
def test_one_cycle_momentum_is_applied_by_the_hyperparameter_callback():
    """Recover the momentum SGD actually used at each step from the probe weight.

    The probe's gradient is 1, so Keras SGD gives velocity ``v_k = m_k v_{k-1} - lr_k`` and
    ``w`` moves by ``v_k``: ``m_k = (v_k + lr_k) / v_{k-1}``.
    """
    n = 20
    lr = ss.OneCycle(0.05, n, pct_start=0.25)
    momentum = lr.momentum(base_momentum=0.8, max_momentum=0.95)
    inputs = keras.Input((1,))
    model = keras.Model(inputs, ProbeLayer()(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.95),
                  loss=mean_output, run_eagerly=True)
    rec = WeightRecorder()
    x, y = probe_data(n)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0,
              callbacks=[ss.callbacks.HyperparameterScheduler("momentum", momentum.at), rec])
    v = -rec.rates()  # w_{k+1} - w_k, the velocity
    applied = (v[1:] + lr.at(range(1, n))) / v[:-1]
    np.testing.assert_allclose(applied, momentum.at(range(1, n)), rtol=2e-4)
    assert float(model.optimizer.momentum) == pytest.approx(float(momentum.at(n - 1)))


def test_hyperparameter_callback_refuses_where_it_would_be_ignored():
    x, y = probe_data(4)
    cb = ss.callbacks.HyperparameterScheduler("beta_1", ss.OneCycleMomentum(4, pct_start=0.5).at)
    with pytest.raises(ValueError, match="beta_1"):  # SGD has no beta_1
        probe_model(0.1, run_eagerly=True).fit(x, y, batch_size=2, verbose=0, callbacks=[cb])
    with pytest.raises(ValueError, match="momentum=0"):
        probe_model(0.1, run_eagerly=True).fit(
            x, y, batch_size=2, verbose=0,
            callbacks=[ss.callbacks.HyperparameterScheduler("momentum", lambda step: 0.9)])
    if keras.backend.backend() != "torch":
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
        with pytest.raises(RuntimeError, match="run_eagerly=True"):
            model.fit(x, y, batch_size=2, verbose=0, callbacks=[cb])
    with pytest.raises(ValueError, match="name"):
        ss.callbacks.HyperparameterScheduler("beta 1", 0.9)
