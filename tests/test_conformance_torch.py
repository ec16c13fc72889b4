"""Conformance with PyTorch's ``torch.optim.lr_scheduler``, value for value.

Each case steps a real torch optimizer and scheduler and reads the rate the
optimizer would use at every step (``get_last_lr()`` before ``optimizer.step()``),
then compares it with the stepsched one-liner of docs/migration.md over the
whole run and past it. torch computes in float64 (some schedulers
recursively); stepsched's ``.at()`` returns float32, hence rtol=1e-6 plus an
absolute tolerance of 1e-6 x the peak for values near 0.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import stepsched as ss

torch = pytest.importorskip("torch")

# the reference library against stepsched's host values (NumPy): no Keras backend
pytestmark = pytest.mark.backend_independent
sched = torch.optim.lr_scheduler

LR = 0.1


def run_torch(make, n_steps, lr=LR, optimizer="sgd", read="lr"):
    """Rates (or momenta / beta_1) a real torch optimizer uses at steps 0..n_steps-1."""
    param = torch.nn.Parameter(torch.zeros(1))
    if optimizer == "sgd":
        opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam([param], lr=lr)
    scheduler = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR / chainable-form notices
        for _ in range(n_steps):
            group = opt.param_groups[0]
            if read == "lr":
                out.append(scheduler.get_last_lr()[0])
            elif read == "momentum":
                out.append(group["momentum"])
            else:
                out.append(group["betas"][0])
            param.grad = torch.ones_like(param)
            opt.step()
            scheduler.step()
    return np.asarray(out, np.float64)


def assert_conforms(ours, theirs, peak=None, rtol=1e-6):
    peak = np.abs(theirs).max() if peak is None else peak
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-6 * peak)


# ------------------------------------------------------------------ OneCycleLR
ONE_CYCLE = {
    "defaults": dict(max_lr=0.1, total_steps=100),
    "linear-odd-total": dict(max_lr=0.3, total_steps=97, pct_start=0.25,
                             anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0),
    "three-phase": dict(max_lr=1.0, total_steps=333, three_phase=True),
    "three-phase-linear-fractional-ends": dict(max_lr=0.05, total_steps=50, pct_start=0.123,
                                               anneal_strategy="linear", three_phase=True),
    "pct-0.7": dict(max_lr=2.0, total_steps=41, pct_start=0.7, div_factor=4.0),
}


@pytest.mark.parametrize("name", list(ONE_CYCLE))
def test_one_cycle_lr(name):
    kw = ONE_CYCLE[name]
    total = kw["total_steps"]
    theirs = run_torch(lambda opt: sched.OneCycleLR(opt, **kw), total)
    ours = ss.OneCycle(**kw)
    assert_conforms(ours.at(range(total)), theirs)
    # torch raises past total_steps; stepsched holds the final value.
    np.testing.assert_allclose(ours.at(range(total, total + 50)), theirs[-1], rtol=1e-6)
    assert ours.duration == total


@pytest.mark.parametrize("name", ["defaults", "three-phase-linear-fractional-ends", "pct-0.7"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_cycle_momentum(name, optimizer):
    kw = ONE_CYCLE[name]
    total = kw["total_steps"]
    read = "momentum" if optimizer == "sgd" else "beta_1"
    theirs = run_torch(lambda opt: sched.OneCycleLR(opt, base_momentum=0.8, max_momentum=0.97,
                                                    **kw),
                       total, optimizer=optimizer, read=read)
    ours = ss.OneCycle(**kw).momentum(base_momentum=0.8, max_momentum=0.97)
    assert_conforms(ours.at(range(total)), theirs)
    np.testing.assert_allclose(ours.at(range(total, total + 20)), 0.97, rtol=1e-6)


# ------------------------------------------------------------------ CyclicLR
CYCLIC = {
    "triangular": (dict(base_lr=0.01, max_lr=0.1, step_size_up=20),
                   dict(low=0.01, high=0.1, up=20), 200),
    "triangular2": (dict(base_lr=0.01, max_lr=0.1, step_size_up=7, step_size_down=13,
                         mode="triangular2"),
                    dict(low=0.01, high=0.1, up=7, down=13, mode="triangular2"), 300),
    "exp_range": (dict(base_lr=0.001, max_lr=0.1, step_size_up=10, step_size_down=5,
                       mode="exp_range", gamma=0.995),
                  dict(low=0.001, high=0.1, up=10, down=5, mode="exp_range", gamma=0.995), 300),
    "fractional-sizes": (dict(base_lr=0.02, max_lr=0.5, step_size_up=7.5, step_size_down=4.25),
                         dict(low=0.02, high=0.5, up=7.5, down=4.25), 150),
}


@pytest.mark.parametrize("name", list(CYCLIC))
def test_cyclic_lr(name):
    theirs_kw, ours_kw, n = CYCLIC[name]
    theirs = run_torch(lambda opt: sched.CyclicLR(opt, **theirs_kw), n)
    assert_conforms(ss.Cyclic(**ours_kw).at(range(n)), theirs)


@pytest.mark.parametrize("name", ["triangular", "exp_range"])
def test_cyclic_momentum(name):
    theirs_kw, ours_kw, n = CYCLIC[name]
    theirs = run_torch(lambda opt: sched.CyclicLR(opt, base_momentum=0.75, max_momentum=0.95,
                                                  **theirs_kw), n, read="momentum")
    ours = ss.Cyclic(**ours_kw).momentum(base_momentum=0.75, max_momentum=0.95)
    assert_conforms(ours.at(range(n)), theirs)


# ------------------------------------------------------------------ the rest of the catalogue
# (torch factory, stepsched one-liner, steps compared); the one-liners are docs/migration.md's.
CATALOGUE = {
    "StepLR": (lambda o: sched.StepLR(o, step_size=13, gamma=0.7),
               ss.Exponential(LR, 0.7, every=13, staircase=True), 200),
    "MultiStepLR": (lambda o: sched.MultiStepLR(o, milestones=[15, 40, 41, 100], gamma=0.3),
                    ss.Piecewise([15, 40, 41, 100], [LR * 0.3**i for i in range(5)]), 200),
    "ExponentialLR": (lambda o: sched.ExponentialLR(o, gamma=0.97),
                      ss.Exponential(LR, 0.97), 300),
    "LinearLR": (lambda o: sched.LinearLR(o, start_factor=0.25, end_factor=0.75, total_iters=40),
                 ss.Linear(0.25 * LR, 0.75 * LR, 40), 100),
    "PolynomialLR": (lambda o: sched.PolynomialLR(o, total_iters=30, power=2.0),
                     ss.Polynomial(LR, 0.0, 30, power=2.0), 60),
    "PolynomialLR-linear": (lambda o: sched.PolynomialLR(o, total_iters=25),
                            ss.Polynomial(LR, 0.0, 25), 50),
    "ConstantLR": (lambda o: sched.ConstantLR(o, factor=0.3, total_iters=12),
                   ss.Piecewise([12], [0.3 * LR, LR]), 40),
    "CosineAnnealingLR-in-run": (lambda o: sched.CosineAnnealingLR(o, T_max=90, eta_min=1e-3),
                                 ss.Cosine(LR, 1e-3, 90), 91),
    # torch's rate rises again after T_max (a cosine of period 2 T_max); the other convention:
    "CosineAnnealingLR-periodic": (
        lambda o: sched.CosineAnnealingLR(o, T_max=40, eta_min=1e-3),
        ss.Restarts(ss.Cosine(LR, 1e-3, 40) >> ss.Cosine(1e-3, LR, 40)), 200),
    "CosineAnnealingWarmRestarts": (
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=17, eta_min=1e-3),
        ss.Restarts(ss.Cosine(LR, 1e-3, 17)), 150),
    "CosineAnnealingWarmRestarts-T_mult=2": (
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2),
        ss.Restarts(ss.Cosine(LR, 0.0, 10), period_mult=2), 320),
    "CosineAnnealingWarmRestarts-T_mult=3": (
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=3, eta_min=0.01),
        ss.Restarts(ss.Cosine(LR, 0.01, 3), period_mult=3), 200),
    "SequentialLR-warmup-cosine": (
        lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.1, total_iters=10),
                                         sched.CosineAnnealingLR(o, T_max=90, eta_min=1e-4)],
                                     milestones=[10]),
        ss.Linear(0.1 * LR, LR, 10) >> ss.Cosine(LR, 1e-4, 90), 101),
    "SequentialLR-constant-exponential": (
        lambda o: sched.SequentialLR(o, [sched.ConstantLR(o, factor=0.5, total_iters=20),
                                         sched.ExponentialLR(o, gamma=0.98)],
                                     milestones=[30]),
        ss.Constant(0.5 * LR, 20) >> ss.Constant(LR, 10) >> ss.Exponential(LR, 0.98), 150),
    "SequentialLR-warmup-multistep": (
        lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.01, total_iters=5),
                                         sched.MultiStepLR(o, milestones=[20, 40], gamma=0.1)],
                                     milestones=[5]),
        ss.Linear(0.01 * LR, LR, 5) >> ss.Piecewise([20, 40], [LR, 0.1 * LR, 0.01 * LR]), 80),
    "LambdaLR-staircase": (lambda o: sched.LambdaLR(o, lambda t: 0.95 ** (t // 10)),
                           ss.Exponential(LR, 0.95, every=10, staircase=True), 200),
    "LambdaLR-warmup-(t+1)/w": (lambda o: sched.LambdaLR(o, lambda t: min(1.0, (t + 1) / 10)),
                                ss.Linear(0.1 * LR, LR, 9) >> ss.Constant(LR), 50),
    "LambdaLR-inverse-sqrt": (lambda o: sched.LambdaLR(o, lambda t: 1 / math.sqrt(1 + t / 50)),
                              ss.InversePower(LR, 50), 200),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_catalogue(name):
    make, ours, n = CATALOGUE[name]
    theirs = run_torch(make, n)
    assert_conforms(ours.at(range(n)), theirs, peak=LR)


def test_cosine_annealing_past_t_max_conventions():
    """stepsched's Cosine holds eta_min after T_max; torch's CosineAnnealingLR rises again."""
    theirs = run_torch(lambda o: sched.CosineAnnealingLR(o, T_max=30), 61)
    held = ss.Cosine(LR, 0.0, 30).at(range(61))
    assert np.all(held[30:] == held[30])
    assert theirs[60] == pytest.approx(LR)  # back at the top after 2 T_max
