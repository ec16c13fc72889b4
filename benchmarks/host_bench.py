"""Host evaluation: ``schedule.at()`` over many steps vs optax and torch (run by ``run.py``).

Usage: KERAS_BACKEND=jax JAX_PLATFORMS=cpu python benchmarks/host_bench.py OUT.json [--quick]

- stepsched: ``schedule.at(range(n))`` (NumPy, float64 inside, float32 out).
- optax: ``jax.jit`` of the equivalent optax schedule over ``jnp.arange(n)`` on
  CPU, ``block_until_ready``; compile time excluded (one warm-up call).
- torch: stepping a ``torch.optim.lr_scheduler`` and reading ``get_last_lr()``;
  stepping is slow, so a shorter run is timed and extrapolated linearly to ``n``.
Each time is the minimum over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import workloads  # noqa: E402
from workloads import PEAK  # noqa: E402

FULL = {"steps": 1_000_000, "torch_steps": 10_000, "repeats": 3, "boundaries": 1000}
QUICK = {"steps": 100_000, "torch_steps": 1_000, "repeats": 1, "boundaries": 20}


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ----------------------------------------------------------------- optax equivalents
def optax_schedules(h: int, n_boundaries: int) -> dict:
    import optax

    every = h / 4
    d = h // 10
    wb, wv = workloads.interpolate_knots(h)
    pb, pv = workloads.piecewise_knots(h, n_boundaries)
    interp = optax.join_schedules(
        [optax.linear_schedule(wv[i], wv[i + 1], int(wb[i + 1] - wb[i]))
         for i in range(len(wb) - 1)],
        [int(b) for b in wb[1:-1]])
    restarts = [optax.cosine_decay_schedule(PEAK * 0.7 ** i, d * 2 ** i, alpha=0.01)
                for i in range(3)]
    pieces = [optax.linear_schedule(0.0, PEAK, h // 20), optax.constant_schedule(PEAK),
              *restarts, optax.linear_schedule(PEAK / 2, PEAK / 10, d),
              optax.exponential_decay(PEAK / 10, d, 0.5)]
    starts = np.cumsum([h // 20, d, d, 2 * d, 4 * d, d]).tolist()
    return {
        "constant": optax.constant_schedule(PEAK),
        "ss_exponential": optax.exponential_decay(PEAK, int(every), 0.5),
        "ss_warmup_cosine": optax.warmup_cosine_decay_schedule(
            0.0, PEAK, max(1, round(h / 10)), h, end_value=PEAK / 100),
        "ss_interpolate50": interp,
        "ss_sequence_restarts": optax.join_schedules(pieces, starts),
        "ss_piecewise": optax.piecewise_constant_schedule(
            PEAK, {b: pv[i + 1] / pv[i] for i, b in enumerate(pb)}),
    }


def time_optax(schedule, n: int, repeats: int) -> tuple[float, np.ndarray]:
    import jax
    import jax.numpy as jnp

    steps = jnp.arange(n, dtype=jnp.int32)
    fn = jax.jit(schedule)
    out = fn(steps).block_until_ready()  # compile
    return best_of(lambda: fn(steps).block_until_ready(), repeats), np.asarray(out)


# ----------------------------------------------------------------- torch equivalents
def torch_schedulers(h: int, n_boundaries: int) -> dict:
    """Factories of (optimizer, scheduler, exact?) for each schedule."""
    import torch
    from torch.optim import lr_scheduler as L

    every = h / 4
    d = h // 10
    w = max(1, round(h / 10))
    wb, wv = workloads.interpolate_knots(h)
    pb, _ = workloads.piecewise_knots(h, n_boundaries)

    def opt():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=PEAK)

    def interp_factor(s):
        return float(np.interp(s, wb, wv)) / PEAK

    return {
        "constant": lambda: L.LambdaLR(opt(), lambda s: 1.0),
        "ss_exponential": lambda: L.ExponentialLR(opt(), gamma=0.5 ** (1 / every)),
        "ss_warmup_cosine": lambda: L.SequentialLR(
            o := opt(), [L.LinearLR(o, 1e-8, 1.0, total_iters=w),
                         L.CosineAnnealingLR(o, T_max=h - w, eta_min=PEAK / 100)], [w]),
        "ss_interpolate50": lambda: L.LambdaLR(opt(), interp_factor),
        "ss_sequence_restarts": lambda: L.SequentialLR(
            o := opt(), [L.LinearLR(o, 1e-8, 1.0, total_iters=h // 20),
                         L.ConstantLR(o, 1.0, total_iters=0),
                         L.CosineAnnealingWarmRestarts(o, T_0=d, T_mult=2, eta_min=PEAK / 100),
                         L.LinearLR(o, 0.5, 0.1, total_iters=d),
                         L.ExponentialLR(o, gamma=0.5 ** (1 / d))],
            np.cumsum([h // 20, d, 7 * d, d]).tolist()),
        "ss_piecewise": lambda: L.MultiStepLR(opt(), milestones=pb, gamma=0.9995),
    }


TORCH_NOTES = {
    "ss_interpolate50": "LambdaLR(np.interp)",
    "ss_sequence_restarts": "SequentialLR incl. CosineAnnealingWarmRestarts (no cycle decay)",
    "ss_piecewise": "MultiStepLR (constant factor)",
}


def time_torch(factory, n: int, repeats: int) -> float:
    def run():
        sched = factory()
        sched.optimizer.step()
        for _ in range(n):
            sched.step()
            sched.get_last_lr()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return best_of(run, repeats)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    import jax
    import torch

    n, nt, rep = cfg["steps"], cfg["torch_steps"], cfg["repeats"]
    variants = {v.name: v for v in workloads.variants(n, cfg["boundaries"])}
    schedules = {"constant": workloads.ss.Constant(PEAK)}
    schedules.update({k: v.host for k, v in variants.items() if v.host is not None})
    optax_s = optax_schedules(n, cfg["boundaries"])
    torch_s = torch_schedulers(n, cfg["boundaries"])
    time_torch(torch_s["constant"], 10, 1)  # first optimizer.step() pays torch's lazy imports
    rows = {}
    for name, schedule in schedules.items():
        print(f"[host] {name}", file=sys.stderr, flush=True)
        ours = np.empty(0)

        def at(schedule=schedule):
            nonlocal ours
            ours = schedule.at(range(n))

        t_ss = best_of(at, rep)
        t_optax, optax_values = time_optax(optax_s[name], n, rep)
        t_torch = time_torch(torch_s[name], nt, rep) * (n / nt)
        label = "constant (ss.Constant)" if name == "constant" else variants[name].label
        rows[name] = {
            "label": label, "steps": n,
            "ss_at_s": t_ss, "optax_jit_s": t_optax, "torch_extrapolated_s": t_torch,
            "torch_timed_steps": nt, "torch_scheduler": TORCH_NOTES.get(name, ""),
            "ratio_ss_to_optax": t_ss / t_optax, "ratio_torch_to_ss": t_torch / t_ss,
            "max_rel_diff_vs_optax": float(np.max(np.abs(ours.astype(np.float64) - optax_values))
                                           / np.max(np.abs(optax_values))),
        }
    result = {"config": cfg, "jax_version": jax.__version__, "torch_version": torch.__version__,
              "rows": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
