"""Training benchmarks on the backend named by KERAS_BACKEND (run by ``run.py``).

Usage: KERAS_BACKEND=jax python benchmarks/train_bench.py OUT.json [--quick]

For each model and ``steps_per_execution``, every variant gets its own model;
the first ``fit()`` (which traces the train function) is timed, then each
repeat times one ``fit()`` per variant in a fresh random order; the step time
comes from each repeat's second epoch (fit's set-up and the first epoch's
planning excluded): minimum and median over repeats, and the per-repeat ratio
to the constant rate's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import workloads  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "torch":
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

FULL = {"models": ["mlp", "mid"], "steps": {"mlp": 64, "mid": 16}, "repeats": 11,
        "probe_steps": 64, "horizon": 4096, "finder_steps": 100, "boundaries": 1000,
        "timed_spe": "all", "probe_spe": "all"}
QUICK = {"models": ["mlp"], "steps": {"mlp": 16}, "repeats": 1,
         "probe_steps": 32, "horizon": 4096, "finder_steps": 10, "boundaries": 20,
         "timed_spe": "first", "probe_spe": "last"}


class EpochTimer(keras.callbacks.Callback):
    """Wall time from epoch begin to epoch end of every epoch (excludes fit's set-up)."""

    def __init__(self):
        super().__init__()
        self.epochs: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.t0)


def spe_values() -> list[int]:
    return [1] if BACKEND == "torch" else [1, 16]


def _spes(which: str) -> list[int]:
    if which == "all":
        return spe_values()
    return spe_values()[:1] if which == "first" else spe_values()[-1:]


def timed_fit(model, x, y, batch, callbacks, epochs: int = 1) -> tuple[float, list[float]]:
    """Wall time of one ``fit()`` and the time of each of its epochs."""
    timer = EpochTimer()
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0,
              callbacks=list(callbacks) + [timer])
    return time.perf_counter() - t0, timer.epochs


def bench_config(kind: str, spe: int, cfg: dict, rng: random.Random) -> dict:
    n_steps = cfg["steps"][kind]
    x, y, batch = workloads.model_data(kind, n_steps)
    variants = workloads.variants(cfg["horizon"], cfg["boundaries"])
    if spe == 1:  # the README's paths with stepsched callbacks (one fit = one epoch)
        variants += [workloads.seed_bare_variant(n_steps)]
        variants += workloads.callback_variants(n_steps, plateau_every=8)
    models, callbacks, first = {}, {}, {}
    order = list(variants)
    rng.shuffle(order)
    for v in order:
        models[v.name] = workloads.build_model(kind, v.make_lr(), spe)
        callbacks[v.name] = v.make_callbacks()
        first[v.name] = timed_fit(models[v.name], x, y, batch, callbacks[v.name], epochs=2)[0]
    fits = {v.name: [] for v in variants}
    epochs = {v.name: [] for v in variants}  # the steady (second) epoch of each repeat
    first_epochs = {v.name: [] for v in variants}  # the first epoch of each fit()
    for _ in range(cfg["repeats"]):
        rng.shuffle(order)
        for v in order:
            # two epochs: a stepsched callback plans the run at its first epoch (a fit()
            # that extends the run re-plans, and the new plan retraces on TF and JAX),
            # so the second epoch is the steady per-step cost
            f, e = timed_fit(models[v.name], x, y, batch, callbacks[v.name], epochs=2)
            fits[v.name].append(f)
            first_epochs[v.name].append(e[0])
            epochs[v.name].append(e[1])
    out = {}
    for v in variants:
        step = min(epochs[v.name]) / n_steps
        out[v.name] = {
            "label": v.label,
            "family": v.family,
            "step_ms": 1e3 * step,
            "step_ms_median": 1e3 * float(np.median(epochs[v.name])) / n_steps,
            "first_fit_s": first[v.name],
            "steady_fit_s": min(fits[v.name]),
            "trace_s": first[v.name] - min(fits[v.name]),
            # a fit()'s first epoch over its steady epoch, in ms: the per-fit() cost
            "first_epoch_extra_ms": 1e3 * float(np.median(np.asarray(first_epochs[v.name])
                                                          - np.asarray(epochs[v.name]))),
            "schedule_graph_ops": graph_ops(v.make_lr()),
        }
    base = out["constant"]
    for name, r in out.items():
        r["step_ratio"] = r["step_ms"] / base["step_ms"]
        # each repeat's time over the constant's in the same repeat: robust to load drifts
        paired = np.asarray(epochs[name]) / np.asarray(epochs["constant"])
        r["step_ratio_paired"] = paired.tolist()
        r["step_ratio_paired_median"] = float(np.median(paired))
        r["step_ratio_paired_q25"] = float(np.quantile(paired, 0.25))
        r["step_ratio_paired_q75"] = float(np.quantile(paired, 0.75))
        r["trace_ratio"] = r["trace_s"] / base["trace_s"] if base["trace_s"] > 0 else None
    return {"model": kind, "steps_per_execution": spe, "steps_per_fit": n_steps,
            "batch_size": batch, "repeats": cfg["repeats"], "variants": out}


def graph_ops(lr) -> int | None:
    """Operations in the schedule's own graph for one scalar step (TF and JAX)."""
    if not callable(lr):
        return 0
    try:
        return _graph_ops(lr)
    except Exception:  # noqa: BLE001  (an epoch-based warmup resolves only at fit())
        return None


def _graph_ops(lr) -> int | None:
    if BACKEND == "jax":
        import jax
        import jax.extend

        def count(jaxpr) -> int:
            n = 0
            for eqn in jaxpr.eqns:
                n += 1
                for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                    n += count(sub)
            return n

        return count(jax.make_jaxpr(lambda s: lr(s))(np.int32(0)).jaxpr)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda s: lr(s)).get_concrete_function(tf.TensorSpec((), tf.int64))
        return len(fn.graph.get_operations())
    return None


def bench_errors(cfg: dict) -> list[dict]:
    n = cfg["probe_steps"]
    rows = []
    for spe in _spes(cfg["probe_spe"]):
        for v in workloads.variants(n, cfg["boundaries"]):
            rows.append({"variant": v.name, "label": v.label, "family": v.family,
                         "steps_per_execution": spe, "probe_steps": n,
                         **workloads.rate_error(v, n, spe)})
    return rows


def bench_finder(cfg: dict) -> dict:
    try:
        from stepsched import find_lr
    except ImportError as exc:
        return {"available": False, "note": f"stepsched.find_lr not importable ({exc})"}
    n = cfg["finder_steps"]
    x, y, batch = workloads.model_data("mlp", n)
    plain = workloads.build_model("mlp", workloads.PEAK)
    first = timed_fit(plain, x, y, batch, [])[0]
    steady = min(timed_fit(plain, x, y, batch, [])[0] for _ in range(3))
    finder_times, done = [], 0
    for _ in range(2 if n >= 100 else 1):
        model = workloads.build_model("mlp", workloads.PEAK)
        t0 = time.perf_counter()
        # a sweep that never diverges, so every one of the n steps runs
        result = find_lr(model, x, y, batch_size=batch, start=1e-7, end=1e-2, steps=n,
                         diverge=1e30, verbose=0)
        finder_times.append(time.perf_counter() - t0)
        done = len(result.lrs)
    return {"available": True, "steps": n, "steps_done": done, "model": "mlp",
            "batch_size": batch, "sweep": "1e-7 -> 1e-2",
            "find_lr_s": min(finder_times), "plain_first_fit_s": first,
            "plain_steady_fit_s": steady,
            "ratio_to_first_fit": min(finder_times) / first,
            "ratio_to_steady_fit": min(finder_times) / steady}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    rng = random.Random(0)
    t0 = time.time()
    result = {"backend": BACKEND, "config": cfg, "step_time": [], "errors": None,
              "finder": None}
    for kind in cfg["models"]:
        for spe in _spes(cfg["timed_spe"]):
            print(f"[{BACKEND}] {kind} steps_per_execution={spe}", file=sys.stderr, flush=True)
            result["step_time"].append(bench_config(kind, spe, cfg, rng))
    print(f"[{BACKEND}] applied-rate probe", file=sys.stderr, flush=True)
    result["errors"] = bench_errors(cfg)
    print(f"[{BACKEND}] find_lr", file=sys.stderr, flush=True)
    result["finder"] = bench_finder(cfg)
    result["wall_s"] = time.time() - t0
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
