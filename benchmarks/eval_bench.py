"""Direct cost of one schedule evaluation on the backend named by KERAS_BACKEND (run by ``run.py``).

Usage: KERAS_BACKEND=torch python benchmarks/eval_bench.py OUT.json [--quick]

In one process, side by side with Keras's own schedules, each schedule is
evaluated as the optimizer evaluates it, ``schedule(optimizer.iterations)``
(the optimizer's step variable, set to ``STEP``):

- torch: called eagerly, as Keras's torch optimizer calls it at every step;
- TensorFlow: inside a ``tf.function`` (Keras's TF train step is a graph,
  without XLA by default), 32 evaluations at consecutive steps per call, the
  time of the same function with the steps only (``empty``) subtracted;
- JAX: inside ``jax.jit`` on the step's value, with ``block_until_ready``,
  likewise.

Each repeat times a block of calls (``calls``, fewer for a schedule slower than
0.1 ms a call) of every candidate in a fresh random order
(interleaved); the tables give the minimum and median over repeats of the
per-call time, and the median over repeats of the per-repeat ratio to Keras's
``ExponentialDecay``. TensorFlow: graph operations of one evaluation (all
nodes of the traced ``tf.function``, nested functions included) and of one
AdamW ``apply`` over 42 variables. JAX: equations of the jaxpr. torch: host
reads (``Tensor.item/__index__/__bool__/__int__/__float__/tolist/numpy/cpu``)
per evaluation, and during real training steps for every schedule class
beyond those of a constant rate.
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
from workloads import PEAK  # noqa: E402

import stepsched as ss  # noqa: E402

BACKEND = keras.backend.backend()
STEP = 2500  # inside every schedule's interesting part (5th Restarts cycle, mid-decay)
HORIZON = 10_000
# unroll (TF and JAX): evaluations per compiled call, at that many different steps
FULL = {"calls": 200, "repeats": 15, "boundaries": 1000, "train_steps": 8, "variables": 42,
        "unroll": 32}
# quick: 20 boundaries, as train_bench's quick mode (Keras traces 1,000 unrolled 32 times
# in about 250 s on TF), and 4 evaluations to a call (tracing 32 takes most of a quick run)
QUICK = {"calls": 20, "repeats": 2, "boundaries": 20, "train_steps": 4, "variables": 42,
         "unroll": 4}
KS = keras.optimizers.schedules

if BACKEND == "torch":
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))


class KerasWarmupExponential(KS.LearningRateSchedule):
    """The seed as a Keras user writes it: a linear warmup from 0 to ``peak`` over
    ``warmup`` steps, then Keras's ``ExponentialDecay`` from the warmup's end (Keras has
    no warmup for ExponentialDecay)."""

    def __init__(self, peak: float, warmup: int, decay_steps: int, decay_rate: float):
        self.peak, self.warmup = peak, warmup
        self.decay = KS.ExponentialDecay(peak, decay_steps, decay_rate)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * step / self.warmup
        return keras.ops.where(step < self.warmup, warm, self.decay(step - self.warmup))

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, **self.decay.get_config()}


def schedules(n_boundaries: int) -> list[dict]:
    """The rows: a stepsched schedule and Keras's counterpart where Keras has one."""
    pb, pv = workloads.piecewise_knots(HORIZON, n_boundaries)
    return [
        {"name": "seed", "label": "seed: `Warmup(1000) >> Exponential(1e-3, 0.96, every=1000)`",
         "ss": ss.Warmup(1000) >> ss.Exponential(PEAK, 0.96, every=1000),
         # Keras has no warmup for ExponentialDecay: the counterpart is what a user writes;
         # ExponentialDecay alone is the "x Keras ExponentialDecay" column and its own row
         "keras_label": "hand-written warmup, then ExponentialDecay",
         "keras": KerasWarmupExponential(PEAK, 1000, 1000, 0.96)},
        {"name": "warmup_cosine", "label": "`WarmupCosine(1e-3, 1000, 10000)`",
         "ss": ss.WarmupCosine(PEAK, 1000, HORIZON),
         "keras_label": "CosineDecay(warmup_steps=1000)",
         "keras": KS.CosineDecay(0.0, HORIZON - 1000, warmup_target=PEAK, warmup_steps=1000)},
        {"name": "one_cycle", "label": "`OneCycle(1e-2, 10000)`",
         "ss": ss.OneCycle(1e-2, HORIZON), "keras_label": None, "keras": None},
        {"name": "sequence", "label": "5-piece `Sequence` with `Restarts`",
         "ss": workloads.sequence_with_restarts(HORIZON), "keras_label": None, "keras": None},
        {"name": "restarts", "label": "`Restarts(Cosine(1e-3, 1e-5, 500), period_mult=1.0002)`",
         "ss": ss.Restarts(ss.Cosine(PEAK, PEAK / 100, 500), period_mult=1.0002),
         "keras_label": "CosineDecayRestarts(500, t_mul=1.0002)",
         "keras": KS.CosineDecayRestarts(PEAK, 500, t_mul=1.0002, alpha=0.01)},
        {"name": "piecewise", "label": f"`Piecewise`, {n_boundaries:,} boundaries",
         "ss": ss.Piecewise(pb, pv), "keras_label": f"PiecewiseConstantDecay ({n_boundaries:,})",
         "keras": KS.PiecewiseConstantDecay(pb, pv)},
    ]


# ----------------------------------------------------------------- one evaluation
def make_optimizer():
    opt = keras.optimizers.AdamW(learning_rate=PEAK)
    opt.build([keras.Variable(np.zeros((1,), "float32"))])
    opt.iterations.assign(STEP)
    return opt


def evaluator(schedule, opt, unroll: int):
    """A no-argument function doing the evaluations as the optimizer does (None: empty).

    torch: one eager evaluation. TF and JAX: one compiled call evaluating the
    schedule at ``unroll`` consecutive steps from the optimizer's (so nothing is
    shared between them), summed; ``None`` gives the same call with the steps
    only, whose time is subtracted (``per_call_divisor`` gives ``unroll``).
    """
    if BACKEND == "torch":
        if schedule is None:
            return lambda: opt.iterations.value
        return lambda: schedule(opt.iterations)

    def body(step):
        total = 0.0
        for i in range(unroll):
            s = step + i
            total = total + (keras.ops.cast(s, "float32") if schedule is None
                             else keras.ops.cast(schedule(s), "float32"))
        return total

    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda: body(opt.iterations.value))
    import jax

    fn = jax.jit(body)
    step = opt.iterations.value
    return lambda: fn(step).block_until_ready()


def per_call_divisor(unroll: int) -> int:
    return 1 if BACKEND == "torch" else unroll


def graph_ops(schedule) -> int | None:
    """Operations of one evaluation: TF graph nodes (nested functions included), JAX equations."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda s: schedule(s)).get_concrete_function(
            tf.TensorSpec((), tf.int64))
        return _tf_nodes(fn)
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

        return count(jax.make_jaxpr(lambda s: schedule(s))(np.int64(STEP)).jaxpr)
    return None


def _tf_nodes(concrete) -> int:
    graph_def = concrete.graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def syncs_per_call(fn, calls: int) -> float | None:
    if BACKEND != "torch":
        return None
    with workloads.SyncCounter() as c:
        for _ in range(calls):
            fn()
    return c.total / calls


def time_interleaved(fns: dict, calls: int, repeats: int, rng: random.Random,
                     divisor: int = 1) -> dict:
    """Seconds per call of every function over ``divisor`` (the evaluations in one call),
    ``repeats`` blocks each, interleaved."""
    n_calls = {}
    for k, fn in fns.items():  # trace, build tables, warm caches
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        fn()
        # a block lasts at most about 20 ms: slow schedules get fewer calls (at least 5)
        n_calls[k] = max(5, min(calls, int(0.02 / max(time.perf_counter() - t0, 1e-9))))
    times = {k: [] for k in fns}
    order = list(fns)
    for _ in range(repeats):
        rng.shuffle(order)
        for k in order:
            fn, n = fns[k], n_calls[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[k].append((time.perf_counter() - t0) / n / divisor)
    return times


def bench_eval(cfg: dict, rng: random.Random) -> dict:
    opt = make_optimizer()
    rows = schedules(cfg["boundaries"])
    unroll = cfg["unroll"]
    fns = {"empty": evaluator(None, opt, unroll),
           "keras_exponential": evaluator(KS.ExponentialDecay(PEAK, 1000, 0.96), opt, unroll)}
    for r in rows:
        fns[f"ss:{r['name']}"] = evaluator(r["ss"], opt, unroll)
        if r["keras"] is not None:
            fns[f"keras:{r['name']}"] = evaluator(r["keras"], opt, unroll)
    times = time_interleaved(fns, cfg["calls"], cfg["repeats"], rng, per_call_divisor(unroll))
    ref = np.asarray(times["keras_exponential"])

    def summary(key: str) -> dict:
        t = np.asarray(times[key])
        return {"us_min": 1e6 * float(t.min()), "us_median": 1e6 * float(np.median(t)),
                "ratio_to_keras_exponential_paired_median": float(np.median(t / ref)),
                "ratio_to_keras_exponential_paired_q25": float(np.quantile(t / ref, 0.25)),
                "ratio_to_keras_exponential_paired_q75": float(np.quantile(t / ref, 0.75))}

    out = {"step": STEP, "calls": cfg["calls"], "repeats": cfg["repeats"],
           "evaluations_per_call": per_call_divisor(unroll),
           "empty": summary("empty"), "keras_exponential": summary("keras_exponential"),
           "rows": {}}
    out["keras_exponential"]["graph_ops"] = graph_ops(KS.ExponentialDecay(PEAK, 1000, 0.96))
    out["keras_exponential"]["syncs_per_call"] = syncs_per_call(fns["keras_exponential"], 10)
    for r in rows:
        key = f"keras:{r['name']}"
        row = {"label": r["label"], "keras_label": r["keras_label"],
               "ss": summary(f"ss:{r['name']}"),
               "keras": summary(key) if r["keras"] is not None else None}
        row["ss"]["graph_ops"] = graph_ops(r["ss"])
        row["ss"]["syncs_per_call"] = syncs_per_call(fns[f"ss:{r['name']}"], 10)
        if r["keras"] is not None:
            row["keras"]["graph_ops"] = graph_ops(r["keras"])
            row["keras"]["syncs_per_call"] = syncs_per_call(fns[key], 10)
            paired = np.asarray(times[f"ss:{r['name']}"]) / np.asarray(times[key])
            row["ratio_to_counterpart_paired_median"] = float(np.median(paired))
        out["rows"][r["name"]] = row
    return out


# ----------------------------------------------------------------- AdamW apply (TF)
def bench_apply(cfg: dict) -> dict | None:
    """Graph nodes of one AdamW ``apply`` over many variables (TF), per learning rate."""
    if BACKEND != "tensorflow":
        return None
    import tensorflow as tf

    n = cfg["variables"]
    cands = {
        "constant": ("constant rate (float)", PEAK),
        "keras_cosine": ("keras CosineDecay(warmup_steps=1000)",
                         KS.CosineDecay(0.0, HORIZON - 1000, warmup_target=PEAK,
                                        warmup_steps=1000)),
        "ss_warmup_cosine": ("ss.WarmupCosine(1e-3, 1000, 10000)",
                             ss.WarmupCosine(PEAK, 1000, HORIZON)),
        "ss_seed": ("seed: ss.Warmup(1000) >> ss.Exponential(...)",
                    ss.Warmup(1000) >> ss.Exponential(PEAK, 0.96, every=1000)),
    }
    out = {"variables": n, "rows": {}}
    for name, (label, lr) in cands.items():
        variables = [keras.Variable(np.zeros((3, 2) if i % 2 == 0 else (2,), "float32"))
                     for i in range(n)]
        opt = keras.optimizers.AdamW(learning_rate=lr)
        opt.build(variables)
        specs = [tf.TensorSpec(v.shape, tf.float32) for v in variables]
        fn = tf.function(_applier(opt, variables))
        nodes = _tf_nodes(fn.get_concrete_function(*specs))
        one = 0 if not callable(lr) else graph_ops(lr)
        out["rows"][name] = {"label": label, "graph_ops": nodes, "one_evaluation_ops": one}
    base = out["rows"]["constant"]["graph_ops"]
    for r in out["rows"].values():
        r["extra_ops_over_constant"] = r["graph_ops"] - base
        r["evaluations_estimate"] = (None if not r["one_evaluation_ops"]
                                     else r["extra_ops_over_constant"] / r["one_evaluation_ops"])
    return out


def _applier(opt, variables):
    def apply(*grads):
        opt.apply(list(grads), variables)
    return apply


# ----------------------------------------------------------------- variable groups
GROUP_COUNTS = (1, 4, 16)


def _group_optimizers(layers: list) -> dict:
    """AdamW over the layers' variables: Keras's with a constant rate and with its cosine
    schedule, stepsched's with one rate, and with 1, 4 and 16 groups, each group with a
    multiplier schedule of its own (layers split evenly between the groups)."""
    warm_cosine = ss.WarmupCosine(PEAK, 1000, HORIZON)
    out = {
        "keras_constant": ("Keras AdamW, constant rate", lambda: keras.optimizers.AdamW(PEAK)),
        "keras_cosine": ("Keras AdamW, CosineDecay(warmup_steps=1000)",
                         lambda: keras.optimizers.AdamW(KS.CosineDecay(
                             0.0, HORIZON - 1000, warmup_target=PEAK, warmup_steps=1000))),
        "ss_single": ("stepsched AdamW, `WarmupCosine`, no groups",
                      lambda: ss.optimizers.AdamW(warm_cosine)),
    }
    import stepsched.optimizers as so

    for k in GROUP_COUNTS:
        def make(k=k):
            share = len(layers) // k
            groups = [so.Group(f"g{i}", layers=layers[i * share:(i + 1) * share],
                               multiplier=ss.Cosine(0.8 ** i, 0.08 * 0.8 ** i, HORIZON))
                      for i in range(k - 1)]
            # the last group is the default one (every variable the others leave)
            groups.append(so.Group(f"g{k - 1}", multiplier=ss.Cosine(
                0.8 ** (k - 1), 0.08 * 0.8 ** (k - 1), HORIZON)))
            return so.AdamW(warm_cosine, groups=groups)
        out[f"ss_groups_{k}"] = (f"stepsched AdamW, `WarmupCosine`, {k} group"
                                 f"{'s' if k > 1 else ''} (a `Cosine` multiplier each)", make)
    return out


def _apply_fn(opt, variables):
    """One ``apply`` of ``opt`` with fixed gradients, as a no-argument function
    (TF: a traced ``tf.function``; JAX: the jitted ``stateless_apply``; torch: eager),
    and the operations of one apply (TF graph nodes, JAX equations; torch None)."""
    grads = [keras.ops.full_like(v.value, 0.01) for v in variables]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(_applier(opt, variables))
        return (lambda: fn(*grads)), _tf_nodes(fn.get_concrete_function(*grads))
    if BACKEND == "jax":
        import jax

        opt_values = [v.value for v in opt.variables]
        trainable = [v.value for v in variables]
        fn = jax.jit(opt.stateless_apply)
        ops = _count_eqns(jax.make_jaxpr(opt.stateless_apply)(opt_values, grads, trainable).jaxpr)
        return (lambda: jax.block_until_ready(fn(opt_values, grads, trainable))), ops
    return (lambda: opt.apply(grads, variables)), None


def _count_eqns(jaxpr) -> int:
    import jax.extend

    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            n += _count_eqns(sub)
    return n


def bench_groups(cfg: dict, rng: random.Random) -> dict:
    """Time (and operations) of one AdamW ``apply`` over many variables: what variable
    groups cost beside a single rate and Keras's own optimizer, per backend."""
    n_layers = cfg["variables"] // 2
    inputs = keras.Input((8,))
    h, layers = inputs, []
    for i in range(n_layers):
        layers.append(keras.layers.Dense(8, name=f"dense_{i}"))
        h = layers[-1](h)
    keras.Model(inputs, h)  # builds the layers
    variables = [v for layer in layers for v in layer.trainable_variables]
    fns, ops, labels, syncs = {}, {}, {}, {}
    for name, (label, make) in _group_optimizers(layers).items():
        opt = make()
        opt.build(variables)
        opt.iterations.assign(STEP)
        fns[name], ops[name] = _apply_fn(opt, variables)
        labels[name] = label
    for name, fn in fns.items():
        syncs[name] = syncs_per_call(fn, 5)
    times = time_interleaved(fns, max(5, cfg["calls"] // 10), cfg["repeats"], rng)
    times = {k: np.asarray(t) for k, t in times.items()}
    rows = {}
    for name in fns:
        t = times[name]
        rows[name] = {"label": labels[name], "us_min": 1e6 * float(t.min()),
                      "us_median": 1e6 * float(np.median(t)),
                      "ratio_to_keras_constant_paired_median": float(np.median(
                          t / times["keras_constant"])),
                      "ratio_to_keras_cosine_paired_median": float(np.median(
                          t / times["keras_cosine"])),
                      "ratio_to_ss_single_paired_median": float(np.median(
                          t / times["ss_single"])),
                      "ops": ops[name], "syncs_per_call": syncs[name]}
    return {"variables": len(variables), "step": STEP, "repeats": cfg["repeats"],
            "rows": rows}


# ----------------------------------------------------------------- training syncs (torch)
def bench_training_syncs(cfg: dict) -> dict | None:
    if BACKEND != "torch":
        return None
    return {name: workloads.training_syncs(s, cfg["train_steps"])
            for name, s in workloads.every_class().items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    rng = random.Random(0)
    t0 = time.time()
    print(f"[{BACKEND}] per-evaluation cost", file=sys.stderr, flush=True)
    result = {"backend": BACKEND, "config": cfg, "eval": bench_eval(cfg, rng)}
    print(f"[{BACKEND}] AdamW apply / training syncs", file=sys.stderr, flush=True)
    result["apply"] = bench_apply(cfg)
    result["training_syncs"] = bench_training_syncs(cfg)
    print(f"[{BACKEND}] variable groups", file=sys.stderr, flush=True)
    result["groups"] = bench_groups(cfg, rng)
    result["wall_s"] = time.time() - t0
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
