"""The schedules, models and probe shared by the benchmark workers.

Every variant is a way of getting the same kind of per-step learning rate into a
Keras optimizer. ``variants(horizon)`` builds them for a nominal run of
``horizon`` steps, so the probe (a short run) sees every schedule change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

import stepsched as ss

PEAK = 1e-3


@dataclass
class Variant:
    """One way of feeding a learning rate to the optimizer.

    ``make_lr()`` gives the optimizer's ``learning_rate`` (a float or a schedule,
    a fresh object per model); ``make_callbacks()`` any callbacks it needs;
    ``reference(steps)`` the rate intended at each step (float64 NumPy).
    """

    name: str
    label: str
    make_lr: Callable[[], Any]
    reference: Callable[[np.ndarray], np.ndarray]
    make_callbacks: Callable[[], list] = field(default=lambda: [])
    # "baseline", "keras", "callback", "stepsched", "stepsched_callback" or "stepsched_assign"
    family: str = "stepsched"
    host: Any = None  # the stepsched schedule, for host evaluation


class EmptyBatchHook(keras.callbacks.Callback):
    """A per-batch hook that does nothing: what Keras itself costs to call one.

    Any batch hook turns off Keras's asynchronous callback dispatch and has
    Keras hand it the batch's logs; a per-batch callback's own cost is its
    time over this one's.
    """

    def on_train_batch_end(self, batch, logs=None):
        pass


class PerBatchCallback(keras.callbacks.Callback):
    """The folk approach: assign the rate before every batch from a Python function.

    Reads the global step from ``optimizer.iterations`` (the most careful form
    of it), yet Keras calls batch hooks once per ``steps_per_execution`` chunk,
    so inside a chunk the rate does not change.
    """

    def __init__(self, fn: Callable[[int], float]):
        super().__init__()
        self.fn = fn

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        optimizer.learning_rate.assign(self.fn(step))


def has_warmup_cosine() -> bool:
    return hasattr(ss, "WarmupCosine")


def warmup_cosine(peak: float, warmup: float, total: float, end: float):
    """``ss.WarmupCosine`` where it exists, else the same composition by hand."""
    if has_warmup_cosine():
        return ss.WarmupCosine(peak=peak, warmup=warmup, total=total, end=end)
    return ss.Warmup(warmup) >> ss.Cosine(peak, end, total - warmup)


def sequence_with_restarts(h: float):
    """A 5-piece sequence: warmup, hold, 3 cosine restarts (x2 period), line, decay."""
    d = h / 10
    return ss.Sequence([
        ss.Warmup(h / 20),
        ss.Constant(PEAK, duration=d),
        ss.Restarts(ss.Cosine(PEAK, PEAK / 100, d), period_mult=2.0, scale=0.7, limit=3),
        ss.Linear(PEAK / 2, PEAK / 10, d),
        ss.Exponential(PEAK / 10, 0.5, every=d),
    ])


def interpolate_knots(h: float, n: int = 50):
    """``n`` knots over ``[0, h]``, on whole steps when they are at least 2 steps apart."""
    b = np.linspace(0.0, h, n)
    if h >= 2 * (n - 1):
        b = np.round(b)
    v = PEAK * (0.55 + 0.45 * np.cos(np.linspace(0.0, 7.0, n)))
    return b.tolist(), v.tolist()


def piecewise_knots(h: float, n: int = 1000):
    """``n`` whole-step boundaries spread over ``[0, h]`` (one a step if ``h <= n``)."""
    spacing = max(1, int(h // (n + 1)))
    boundaries = [spacing * (i + 1) for i in range(n)]
    values = [PEAK * (1.0 - i / (2.0 * n)) for i in range(n + 1)]
    return boundaries, values


def variants(horizon: int, n_boundaries: int = 1000) -> list[Variant]:
    h = float(horizon)
    every = h / 4
    exp_fn = _exp_fn(every)

    wc = warmup_cosine(PEAK, max(1.0, round(h / 10)), h, PEAK / 100)
    wc_label = "ss.WarmupCosine" if has_warmup_cosine() else "ss.Warmup >> ss.Cosine"
    ss_exp = ss.Exponential(PEAK, 0.5, every=every)
    ib, iv = interpolate_knots(h)
    interp = ss.Interpolate(ib, iv)
    seq = sequence_with_restarts(h)
    pb, pv = piecewise_knots(h, n_boundaries)
    n_b = f"{n_boundaries:,}"
    ss_pw = ss.Piecewise(pb, pv)

    def keras_piecewise_ref(steps):  # Keras: values[i] while step <= boundaries[i]
        return np.asarray(pv)[np.searchsorted(np.asarray(pb, float), steps, side="left")]

    return [
        Variant("constant", "constant rate (float)", lambda: PEAK,
                lambda s: np.full(s.shape, PEAK), family="baseline"),
        Variant("keras_exponential", "keras ExponentialDecay",
                lambda: keras.optimizers.schedules.ExponentialDecay(PEAK, every, 0.5),
                lambda s: PEAK * 0.5 ** (s / every), family="keras"),
        Variant("callback", "per-batch callback (assign)", lambda: PEAK,
                lambda s: np.array([exp_fn(int(k)) for k in s]),
                make_callbacks=lambda: [PerBatchCallback(exp_fn)], family="callback"),
        Variant("ss_exponential", "ss.Exponential", lambda: _copy(ss_exp),
                ss_exp.at, host=ss_exp),
        Variant("ss_warmup_cosine", wc_label, lambda: _copy(wc), wc.at, host=wc),
        Variant("ss_interpolate50", "ss.Interpolate (50 knots)", lambda: _copy(interp),
                interp.at, host=interp),
        Variant("ss_sequence_restarts", "ss.Sequence (5 pieces, Restarts)",
                lambda: _copy(seq), seq.at, host=seq),
        Variant("keras_piecewise", f"keras PiecewiseConstantDecay ({n_b})",
                lambda: keras.optimizers.schedules.PiecewiseConstantDecay(pb, pv),
                keras_piecewise_ref, family="keras"),
        Variant("ss_piecewise", f"ss.Piecewise ({n_b})", lambda: _copy(ss_pw),
                ss_pw.at, host=ss_pw),
    ]


def _exp_fn(every: float) -> Callable[[int], float]:
    def fn(step: int) -> float:
        return PEAK * 0.5 ** (step / every)
    return fn


def _copy(schedule):
    return type(schedule).from_config(schedule.get_config())


# ----------------------------------------------------------------- models
MODELS = {
    # name: (input features, hidden widths, outputs, batch size)
    "mlp": (16, (32, 32), 1, 32),
    "mid": (256, (512, 512), 10, 64),
}


def build_model(kind: str, learning_rate, steps_per_execution: int = 1) -> keras.Model:
    n_in, hidden, n_out, _ = MODELS[kind]
    inputs = keras.Input((n_in,))
    x = inputs
    for width in hidden:
        x = keras.layers.Dense(width, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(n_out)(x))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse",
                  steps_per_execution=steps_per_execution)
    return model


def model_data(kind: str, n_steps: int, seed: int = 0):
    n_in, _, n_out, batch = MODELS[kind]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_steps * batch, n_in)).astype("float32")
    y = rng.standard_normal((n_steps * batch, n_out)).astype("float32")
    return x, y, batch


# ----------------------------------------------------------------- probe
class _ProbeLayer(keras.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=(), initializer="zeros", name="w")

    def call(self, x):
        return keras.ops.ones_like(x[:, :1]) * self.w


def _mean_output(y_true, y_pred):
    return keras.ops.mean(y_pred, axis=-1)


def probe_rates(variant: Variant, n_steps: int, steps_per_execution: int) -> np.ndarray | float:
    """Applied rates, recovered exactly from one scalar weight trained with SGD.

    The model outputs ``w`` and the loss is ``mean(w)``, so ``dloss/dw = 1`` and
    ``w_{k+1} = w_k - lr_k``. At ``steps_per_execution=1`` the weight is read
    after every step (per-step rates); otherwise only the total is returned.
    """
    inputs = keras.Input((1,))
    model = keras.Model(inputs, _ProbeLayer()(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=variant.make_lr()),
                  loss=_mean_output, steps_per_execution=steps_per_execution)
    x = np.zeros((n_steps * 2, 1), "float32")
    layer = model.layers[-1]
    ws: list[float] = []

    class Recorder(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ws.append(float(keras.ops.convert_to_numpy(self.model.layers[-1].w)))

    callbacks = variant.make_callbacks()
    if steps_per_execution == 1:
        callbacks = callbacks + [Recorder()]
    model.fit(x, x, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    w_end = float(keras.ops.convert_to_numpy(layer.w))
    if steps_per_execution == 1:
        return -np.diff(np.concatenate([[0.0], np.asarray(ws, np.float64)]))
    return -w_end


def rate_error(variant: Variant, n_steps: int, steps_per_execution: int) -> dict:
    """Relative error of the applied rates against the intended ones."""
    intended = np.asarray(variant.reference(np.arange(n_steps, dtype=np.float64)), np.float64)
    applied = probe_rates(variant, n_steps, steps_per_execution)
    out = {"sum_intended": float(intended.sum())}
    total = float(np.sum(applied))
    out["sum_applied"] = total
    out["sum_rel_error"] = abs(total - intended.sum()) / abs(intended.sum())
    if np.ndim(applied):  # per-step error, relative to the largest intended rate
        out["max_step_error"] = float(np.max(np.abs(applied - intended)) / np.max(np.abs(intended)))
    return out


# ----------------------------------------------------------------- callbacks
def seed_schedule(warmup=None):
    """The README's classic schedule; ``warmup`` defaults to ``ss.epochs(2)`` (resolved at fit)."""
    return ss.Warmup(ss.epochs(2) if warmup is None else warmup) >> ss.Exponential(
        PEAK, rate=0.96, every=1000)


def callback_variants(steps_per_epoch: int, plateau_every: int = 8) -> list[Variant]:
    """The README's paths with stepsched callbacks (``steps_per_execution=1`` only).

    Every variant trains the classic schedule; ``reference`` is its rate with
    the warmup resolved at ``steps_per_epoch`` (the plateau callbacks may lower
    it, so the probe does not run these: their exactness is tested elsewhere).
    """
    cb = ss.callbacks
    resolved = seed_schedule(2 * steps_per_epoch)
    n = plateau_every

    def v(name, label, make_callbacks, make_lr=seed_schedule, family="stepsched_callback"):
        return Variant(name, label, make_lr, resolved.at, make_callbacks=make_callbacks,
                       family=family, host=resolved)

    return [
        Variant("empty_batch_hook", "README schedule + an empty per-batch hook (Keras's dispatch)",
                lambda: _copy(resolved), resolved.at, make_callbacks=lambda: [EmptyBatchHook()],
                family="callback", host=resolved),
        v("seed_logger_batch", "README schedule + LearningRateLogger()",
          lambda: [cb.LearningRateLogger()]),
        v("seed_logger_read", "README schedule + LearningRateLogger() + the empty hook after it",
          lambda: [cb.LearningRateLogger(), EmptyBatchHook()]),
        v("seed_logger_epoch", 'README schedule + LearningRateLogger(every="epoch")',
          lambda: [cb.LearningRateLogger(every="epoch")]),
        v("seed_plateau_batch", f"README schedule + ReduceLROnPlateau(every={n})",
          lambda: [cb.ReduceLROnPlateau(every=n, patience=1000)]),
        v("seed_plateau_epoch", "README schedule + ReduceLROnPlateau() (epoch)",
          lambda: [cb.ReduceLROnPlateau(patience=1000)]),
        v("seed_logger_plateau", f"README schedule + logger + ReduceLROnPlateau(every={n})",
          lambda: [cb.LearningRateLogger(), cb.ReduceLROnPlateau(every=n, patience=1000)]),
        v("seed_plan", "README schedule + Plan()", lambda: [cb.Plan()]),
        v("batch_scheduler", "float rate + BatchLearningRateScheduler(README schedule)",
          lambda: [cb.BatchLearningRateScheduler(resolved)], make_lr=lambda: PEAK,
          family="stepsched_assign"),  # assigns the rate every batch, like "callback"
    ]


def seed_bare_variant(steps_per_epoch: int) -> Variant:
    """The classic schedule with its warmup given in steps: no callback needed."""
    resolved = seed_schedule(2 * steps_per_epoch)
    return Variant("seed_bare", "README schedule (no callback)", lambda: _copy(resolved),
                   resolved.at, host=resolved)


# ----------------------------------------------------------------- every class
def every_class(total: int = 64) -> dict:
    """One schedule of every public class, all changing within ``total`` steps."""
    t = int(total)
    q = max(2, t // 4)
    lin = ss.Linear(PEAK, PEAK / 10, q)
    out = {
        "Constant": ss.Constant(PEAK),
        "Linear": lin,
        "Cosine": ss.Cosine(PEAK, PEAK / 100, t),
        "Exponential": ss.Exponential(PEAK, 0.5, every=q),
        "Polynomial": ss.Polynomial(PEAK, PEAK / 100, t, power=2.0),
        "Piecewise": ss.Piecewise([q, 2 * q, 3 * q], [PEAK, PEAK / 2, PEAK / 4, PEAK / 8]),
        "Interpolate": ss.Interpolate([0, q, t], [PEAK / 10, PEAK, PEAK / 100]),
        "Sequence": ss.Sequence([lin, ss.Cosine(PEAK, 0.0, q), ss.Exponential(PEAK, 0.5, q)]),
        "Warmup": ss.Warmup(q) >> ss.Cosine(PEAK, 0.0, t),
        "Restarts": ss.Restarts(ss.Cosine(PEAK, PEAK / 100, q), period_mult=1.5, scale=0.8),
        "Affine": ss.Affine(lin, scale=0.5, offset=PEAK / 10),
        "Clip": ss.Clip(ss.Exponential(PEAK, 0.5, every=q), min=PEAK / 10),
        "PerUpdate": ss.PerUpdate(lin, accumulation_steps=2),
        "Planned": ss.Planned(ss.WarmupCosine(PEAK, ss.epochs(1), t), steps_per_epoch=q),
        "ExponentialDecay": ss.ExponentialDecay(PEAK, q, 0.5),
        "PiecewiseConstantDecay": ss.PiecewiseConstantDecay([q, 2 * q], [PEAK, PEAK / 2,
                                                                           PEAK / 4]),
        "PolynomialDecay": ss.PolynomialDecay(PEAK, q, PEAK / 10, cycle=True),
        "InverseTimeDecay": ss.InverseTimeDecay(PEAK, q, 0.5),
        "CosineDecay": ss.CosineDecay(0.0, t - q, warmup_target=PEAK, warmup_steps=q),
        "CosineDecayRestarts": ss.CosineDecayRestarts(PEAK, q, t_mul=2.0, m_mul=0.8),
        "OneCycle": ss.OneCycle(1e-2, t),
        "OneCycleMomentum": ss.OneCycleMomentum(t),
        "Cyclic": ss.Cyclic(PEAK / 10, PEAK, q, mode="exp_range", gamma=0.99),
        "WarmupCosine": ss.WarmupCosine(PEAK, q, t),
        "WarmupStableDecay": ss.WarmupStableDecay(PEAK, q, q, total=t),
        "InverseSqrt": ss.InverseSqrt(PEAK, q),
        "Noam": ss.Noam(512, q),
        "InversePower": ss.InversePower(PEAK, q),
        "SqrtDecay": ss.SqrtDecay(PEAK, 0.0, t),
        "KDecay": ss.KDecay(PEAK, 0.0, t),
        "TanhDecay": ss.TanhDecay(PEAK, 0.0, t),
        "Rex": ss.Rex(PEAK, 0.0, t),
        "Scaled": ss.callbacks.Scaled(ss.Cosine(PEAK, 0.0, t), multiplier=0.5),
    }
    if hasattr(ss, "Cooldown"):  # a decay whose start is a variable, set here at q
        out["Cooldown"] = ss.Cooldown(ss.Constant(PEAK), duration=q, shape="cosine",
                                      start_step=q)
    if hasattr(ss, "BatchScaled"):  # the rate scaled for a batch size
        out["BatchScaled"] = ss.BatchScaled(ss.Cosine(PEAK, 0.0, t), base_batch_size=2,
                                            rule="sqrt", batch_size=4)
    if hasattr(ss, "Extended"):  # a schedule continued by another from a step on
        out["Extended"] = ss.Extended(ss.Cosine(PEAK, PEAK / 10, q), ss.Linear(PEAK / 2, 0.0, q),
                                      at=2 * q)
    return out


def schedule_classes() -> set[str]:
    """Names of every public schedule class (what ``every_class`` must cover)."""
    names = {n for n in ss.schedules.__all__
             if isinstance(getattr(ss, n), type) and issubclass(getattr(ss, n), ss.Schedule)
             and n not in ("Schedule", "Recipe")}
    return names | {"Scaled"}


# ----------------------------------------------------------------- host syncs (torch)
#: host reads made in Python (``Tensor.numpy()``/``tolist()``/``cpu()``); every read of a
#: value on the host made in C++ (``item()``, ``bool(t)``, ``int(t)``, ``x[t]`` with a 0-d
#: index tensor, ...) goes through the ``aten._local_scalar_dense`` operator
SYNC_METHODS = ("tolist", "numpy", "cpu")
SYNC_OPERATOR = "aten._local_scalar_dense"


class SyncCounter:
    """Counts host reads of torch tensors: the operator every scalar read goes through
    (seen by a ``TorchDispatchMode``, so reads inside PyTorch's own C++ count too) and
    the ``torch.Tensor`` methods that copy a tensor to the host.

    ``with SyncCounter() as c: ...`` then ``c.total`` / ``c.counts``. On a GPU
    each of these is a device->host synchronisation; on the CPU the read is
    counted all the same (it is what would synchronise).
    """

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._saved: dict[str, Any] = {}
        self._mode = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def __enter__(self):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Reads(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if str(func).startswith(SYNC_OPERATOR):
                    counter._count("item (scalar read)")
                return func(*args, **(kwargs or {}))

        for name in SYNC_METHODS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def wrapper(tensor, *args, _original=original, _name=name, **kwargs):
                self._count(_name)
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, wrapper)
        self._mode = Reads()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        self._mode.__exit__(*exc)
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved.clear()
        return False


def training_syncs(lr, n_steps: int = 8, optimizer: str = "adamw") -> int:
    """Host reads during ``fit()`` of ``n_steps`` steps beyond those of the same fit at a
    constant rate (Keras's own, e.g. the logs at the epoch end, cancel out)."""
    x = np.random.default_rng(0).standard_normal((n_steps * 4, 3)).astype("float32")
    y = x[:, :1] * 0.5

    def run(rate) -> int:
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(4)(inputs)))
        opt = (keras.optimizers.AdamW(learning_rate=rate) if optimizer == "adamw"
               else keras.optimizers.SGD(learning_rate=rate))
        model.compile(optimizer=opt, loss="mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)  # warm-up
        with SyncCounter() as c:
            model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        return c.total

    return run(lr) - run(PEAK)
