"""What parameter groups cost, stepsched beside its peers, one process per backend.

Usage: python benchmarks/groups_bench.py [--quick] [--backends torch,jax,tensorflow]
       [--out benchmarks/results/groups.json]

Every backend runs in its own process (one compute thread) on the same model,
21 ``Dense(8)`` layers (42 variables), and the same batch (32 samples, a
fixed seed): the gradients of the batch's mean-squared loss are computed
once, and each variant times one optimizer update with them, at step 2,500
of a 10,000-step run. The groups are layers split evenly, each with a rate
of its own: the base schedule (a 1,000-step warmup, then a cosine decay to
0) times a cosine multiplier of the group's, from ``0.8**i`` to
``0.08 * 0.8**i``. Variants:

- stepsched (every backend): Keras's AdamW with a constant rate (the
  baseline), stepsched's AdamW with 1 and with 16 groups (``Group(...,
  multiplier=Cosine(...))``); torch eager, TensorFlow a traced
  ``tf.function``, JAX the jitted ``stateless_apply``;
- PyTorch (torch process): ``torch.optim.AdamW(foreach=True)`` without a
  scheduler (the baseline), and with 1 and with 16 parameter groups and
  ``LambdaLR`` (one lambda per group) stepped after every update;
- optax (JAX process): ``optax.adamw`` with a constant rate (the baseline),
  and ``optax.multi_transform`` over 1 and 16 groups of ``optax.adamw`` with
  the group's schedule, in a jitted update.

Each repeat times a block of updates of every variant in a fresh random
order (paired repeats); a variant's ratio is its time over its baseline's
(or its 1-group variant's) in the same repeat. The table gives the median
and quartiles of those per-repeat ratios, and the minimum and median time.
On torch it also counts the operations one update runs (``aten::`` events
under the torch profiler): a number that does not depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STEP, HORIZON, WARMUP, PEAK, WD = 2500, 10_000, 1000, 1e-3, 0.004
LAYERS, WIDTH, BATCH = 21, 8, 32
FULL = {"calls": 20, "repeats": 25}
QUICK = {"calls": 3, "repeats": 3}
GROUPS = (1, 16)


def multiplier_ends(i: int) -> tuple[float, float]:
    return 0.8 ** i, 0.08 * 0.8 ** i


def host_rate(step: int, i: int) -> float:
    """The rate of group ``i`` at ``step`` (for the peers: written out)."""
    if step < WARMUP:
        base = PEAK * step / WARMUP
    else:
        base = PEAK * 0.5 * (1 + math.cos(math.pi * min(step - WARMUP, HORIZON - WARMUP)
                                          / (HORIZON - WARMUP)))
    a, b = multiplier_ends(i)
    t = min(step, HORIZON) / HORIZON
    return base * (b + (a - b) * 0.5 * (1 + math.cos(math.pi * t)))


def split(items: list, k: int) -> list[list]:
    share = len(items) // k
    return [items[i * share:(i + 1) * share] if i < k - 1 else items[i * share:]
            for i in range(k)]


# ----------------------------------------------------------------- one backend
def keras_model():
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    inputs = keras.Input((WIDTH,))
    h, layers = inputs, []
    for i in range(LAYERS):
        layers.append(keras.layers.Dense(WIDTH, name=f"dense_{i}"))
        h = layers[-1](h)
    model = keras.Model(inputs, h)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    y = rng.normal(size=(BATCH, WIDTH)).astype("float32")
    return model, layers, x, y


def keras_grads(model, x, y) -> list:
    import keras

    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "torch":
        import torch

        loss = torch.mean((model(torch.as_tensor(x)) - torch.as_tensor(y)) ** 2)
        model.zero_grad()
        loss.backward()
        return [v.value.grad.detach().clone() for v in variables]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        return tape.gradient(loss, variables)
    import jax
    import jax.numpy as jnp

    values = [v.value for v in variables]

    def loss(vals):
        out, _ = model.stateless_call(vals, [], x)
        return jnp.mean((out - y) ** 2)

    return list(jax.grad(loss)(values))


def stepsched_variants(layers, variables, grads) -> dict:
    import keras

    import stepsched as ss
    import stepsched.optimizers as so

    base = ss.WarmupCosine(PEAK, WARMUP, HORIZON)

    def grouped(k):
        parts = split(layers, k)
        groups = [so.Group(f"g{i}", layers=parts[i], multiplier=ss.Cosine(
            *multiplier_ends(i), HORIZON)) for i in range(k - 1)]
        groups.append(so.Group(f"g{k - 1}", multiplier=ss.Cosine(
            *multiplier_ends(k - 1), HORIZON)))
        return so.AdamW(base, weight_decay=WD, groups=groups)

    makers = {"keras_constant": lambda: keras.optimizers.AdamW(PEAK, weight_decay=WD)}
    for k in GROUPS:
        makers[f"stepsched_{k}"] = lambda k=k: grouped(k)
    return {name: apply_fn(make(), variables, grads) for name, make in makers.items()}


def apply_fn(opt, variables, grads):
    import keras

    opt.build(variables)
    opt.iterations.assign(STEP)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda *g: opt.apply(list(g), variables))
        return lambda: fn(*grads)
    if backend == "jax":
        import jax

        opt_values = [v.value for v in opt.variables]
        trainable = [v.value for v in variables]
        fn = jax.jit(opt.stateless_apply)
        return lambda: jax.block_until_ready(fn(opt_values, grads, trainable))
    return lambda: opt.apply(grads, variables)


def torch_variants(model, x, y) -> dict:
    import torch

    net = torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])
    with torch.no_grad():  # the same weights as the Keras model
        for linear, layer in zip(net, [m for m in model.layers if m.weights], strict=True):
            linear.weight.copy_(layer.kernel.value.detach().T)
            linear.bias.copy_(layer.bias.value.detach())
    loss = torch.mean((net(torch.as_tensor(x)) - torch.as_tensor(y)) ** 2)
    loss.backward()
    modules = list(net)
    out = {}
    opt = torch.optim.AdamW(net.parameters(), lr=PEAK, weight_decay=WD, foreach=True)
    out["torch_constant"] = opt.step
    for k in GROUPS:
        groups = [{"params": [p for m in part for p in m.parameters()]}
                  for part in split(modules, k)]
        opt = torch.optim.AdamW(groups, lr=1.0, weight_decay=WD, foreach=True)
        lambdas = [lambda s, i=i: host_rate(STEP + s, i) for i in range(k)]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)

        def step(opt=opt, sched=sched):
            opt.step()
            sched.step()

        out[f"torch_{k}"] = step
    return out


def optax_variants(variables, grads) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    params = {f"p{i:02d}": v.value for i, v in enumerate(variables)}
    g = {f"p{i:02d}": gr for i, gr in enumerate(grads)}
    base = optax.warmup_cosine_decay_schedule(0.0, PEAK, WARMUP, HORIZON, 0.0)

    def schedule(i):
        a, b = multiplier_ends(i)
        mult = optax.cosine_decay_schedule(a, HORIZON, b / a)
        return lambda step: base(step) * mult(step)

    def make(tx):
        state = tx.init(params)
        # at step 2,500: the count of every adam state
        state = jax.tree_util.tree_map(
            lambda s: jnp.asarray(STEP, s.dtype) if getattr(s, "dtype", None) == jnp.int32
            and s.shape == () else s, state)

        @jax.jit
        def update(state, params):
            updates, state = tx.update(g, state, params)
            return optax.apply_updates(params, updates), state

        return lambda: jax.block_until_ready(update(state, params))

    out = {"optax_constant": make(optax.adamw(PEAK, weight_decay=WD))}
    names = sorted(params)
    for k in GROUPS:
        parts = split(names, k)
        labels = {n: f"g{i}" for i, part in enumerate(parts) for n in part}
        tx = optax.multi_transform(
            {f"g{i}": optax.adamw(schedule(i), weight_decay=WD) for i in range(k)}, labels)
        out[f"optax_{k}"] = make(tx)
    return out


def time_paired(fns: dict, calls: int, repeats: int, rng: random.Random) -> dict:
    for fn in fns.values():  # trace, compile, warm caches
        for _ in range(3):
            fn()
    times = {k: [] for k in fns}
    order = list(fns)
    for _ in range(repeats):
        rng.shuffle(order)
        for k in order:
            fn = fns[k]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[k].append((time.perf_counter() - t0) / calls)
    return times


def aten_ops(fn, calls: int = 5) -> float:
    """torch: the operations one call runs (``aten::`` events under the torch profiler, the
    nested ones included), a count that does not depend on the machine."""
    from torch.profiler import profile

    fn()
    with profile() as prof:
        for _ in range(calls):
            fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::")) / calls


def run_backend(cfg: dict) -> dict:
    import keras
    import numpy as np

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    model, layers, x, y = keras_model()
    variables = model.trainable_variables
    grads = keras_grads(model, x, y)
    fns = stepsched_variants(layers, variables, grads)
    baselines = {"stepsched": "keras_constant"}
    if backend == "torch":
        fns.update(torch_variants(model, x, y))
        baselines["torch"] = "torch_constant"
    if backend == "jax":
        fns.update(optax_variants(variables, grads))
        baselines["optax"] = "optax_constant"
    times = {k: np.asarray(v) for k, v in
             time_paired(fns, cfg["calls"], cfg["repeats"], random.Random(0)).items()}

    def spread(r):
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        return {"median": float(med), "q1": float(q1), "q3": float(q3)}

    rows = {}
    for family, base in baselines.items():
        for name in [base] + [f"{family}_{k}" for k in GROUPS]:
            t = times[name]
            rows[name] = {"family": family, "us_min": 1e6 * float(t.min()),
                          "us_median": 1e6 * float(np.median(t)),
                          "x_baseline": spread(t / times[base]),
                          "x_one_group": spread(t / times[f"{family}_1"])}
            if backend == "torch":
                rows[name]["aten_ops"] = aten_ops(fns[name])
    return {"backend": backend, "config": cfg, "rows": rows,
            "times_s": {k: v.tolist() for k, v in times.items()}}


# ----------------------------------------------------------------- driver
def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("keras", "tensorflow", "jax", "torch", "optax", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def table(results: dict) -> str:
    fam = {"stepsched": "stepsched", "torch": "PyTorch AdamW + LambdaLR",
           "optax": "optax multi_transform"}
    lines = ["| backend | optimizer | baseline µs, min (median) | 1 group: x baseline | "
             "16 groups: x baseline | 16 groups: x 1 group | torch ops: baseline / 1 / 16 |",
             "|---|---|---:|---:|---:|---:|---:|"]

    def cell(s):
        return f"{s['median']:.2f} [{s['q1']:.2f}–{s['q3']:.2f}]"

    for backend, res in results.items():
        rows = res["rows"]
        for family in ("stepsched", "torch", "optax"):
            if f"{family}_1" not in rows:
                continue
            base = next(r for n, r in rows.items() if r["family"] == family
                        and n.endswith("constant"))
            one, many = rows[f"{family}_1"], rows[f"{family}_{GROUPS[-1]}"]
            counts = " / ".join(f"{r['aten_ops']:,.0f}" for r in (base, one, many)) \
                if "aten_ops" in base else "—"
            lines.append(f"| {backend} | {fam[family]} | {base['us_min']:,.0f} "
                         f"({base['us_median']:,.0f}) | {cell(one['x_baseline'])} | "
                         f"{cell(many['x_baseline'])} | {cell(many['x_one_group'])} | "
                         f"{counts} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "groups.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.child:
        json.dump(run_backend(cfg), sys.stdout)
        return 0
    results = {}
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "OMP_NUM_THREADS": "1",
               "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        print(f"[{backend}] timing", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--child"]
                             + (["--quick"] if args.quick else []),
                             env=env, check=True, capture_output=True, text=True).stdout
        results[backend] = json.loads(out)
    doc = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "load_average_at_start": load, "versions": versions(), "results": results}
    if not args.quick:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
