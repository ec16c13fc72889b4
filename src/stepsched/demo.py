"""The demo behind ``stepsched demo`` (the main job of the package, in its own module).

On scikit-learn's bundled 8x8 digits (no download) it runs the LR range test,
then trains the same small network twice from the same initial weights: once
with a per-epoch step schedule (what ``keras.callbacks.LearningRateScheduler``
gives) and once with a per-batch warmup + cosine at the suggested rate. It
writes ``demo.png`` and ``batches.csv`` (per batch: run, step, epoch, batch,
rate, loss, Keras's running mean) to the output folder and prints a summary.

Keras fixes its backend when it is first imported: :func:`main` with a
``backend`` sets ``KERAS_BACKEND`` and, if Keras is already running on another
backend in this process, runs the demo in a fresh one. Keras is imported only
inside the functions, after the backend is chosen.

>>> from stepsched.demo import main
>>> main(out="stepsched-demo", backend="jax", epochs=10)  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
import time
import warnings

BACKENDS = ("tensorflow", "jax", "torch")

#: the columns of ``batches.csv``
CSV_COLUMNS = ("run", "step", "epoch", "batch", "learning_rate", "loss", "loss_running_mean")


class DemoError(Exception):
    """A user-facing failure of the demo (bad argument, missing package, unwritable folder)."""


def main(out: str = "stepsched-demo", backend: str | None = None, seed: int = 0,
         epochs: int = 10, batch_size: int = 32) -> int:
    """Check the arguments, settle the backend, then :func:`run_demo`; returns the exit code.

    Raises :class:`DemoError` with a one-line message on bad input.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 2:
        raise DemoError(f"--epochs must be >= 2 (one epoch of warmup, then decay), "
                        f"got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DemoError(f"--batch-size must be >= 1, got {batch_size!r}")
    if backend is not None:
        if backend not in BACKENDS:
            raise DemoError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        running = _running_backend()
        if running is not None and running != backend:
            # Keras picks its backend once per process, at import: start a fresh one.
            env = dict(os.environ, KERAS_BACKEND=backend)
            argv = ["demo", "--out", out, "--seed", str(seed), "--epochs", str(epochs),
                    "--batch-size", str(batch_size)]
            return subprocess.call([sys.executable, "-m", "stepsched", *argv], env=env)
        os.environ["KERAS_BACKEND"] = backend
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise DemoError(f"the demo needs scikit-learn and matplotlib ({exc.name} is "
                        "missing): pip install 'stepsched[demo]'") from None
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create {out}: {exc.strerror}") from None
    return run_demo(out=out, seed=seed, epochs=epochs, batch_size=batch_size)


def _running_backend() -> str | None:
    """The backend of the Keras already imported in this process, if any."""
    if "keras" not in sys.modules:
        return None
    import keras

    return keras.backend.backend()


# ------------------------------------------------------------------ data and model
def _load_digits(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()  # bundled with scikit-learn: no download
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    return train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)


def _mlp(seed: int, learning_rate):
    import keras

    from ._startup import quiet_native_stderr

    with quiet_native_stderr():  # imports TensorFlow, if installed, on every backend
        keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class _BatchLog:
    """Per-batch records of one run: global step, epoch, logged rate and loss.

    Keras's batch ``logs["loss"]`` is the running mean since the epoch began
    (weighted by batch size); the loss of each batch is recovered from two
    consecutive means with :class:`stepsched._stats.RunningMeanReader`, counting
    samples: ``l_k = (N_k m_k - N_{k-1} m_{k-1}) / n_k``.
    """

    def __init__(self, n_samples: int, batch_size: int):
        import keras

        log = self

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                log.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                logs = logs or {}
                log.rows.append((log.epoch, int(batch), float(logs["learning_rate"]),
                                 float(logs["loss"])))

        self.n, self.batch_size = n_samples, batch_size
        self.epoch, self.rows = 0, []
        self.callback = Recorder()

    def table(self):
        """Rows ``(step, epoch, batch, rate, batch loss, running mean)``."""
        from ._stats import RunningMeanReader

        out, reader, prev_epoch = [], RunningMeanReader(), None
        for step, (epoch, batch, rate, mean) in enumerate(self.rows):
            if epoch != prev_epoch:
                prev_epoch = epoch
                reader.reset()
            seen = min((batch + 1) * self.batch_size, self.n)  # samples since the epoch began
            out.append((step, epoch, batch, rate, reader.read(mean, seen), mean))
        return out


# ------------------------------------------------------------------ the run
def run_demo(out: str, seed: int = 0, epochs: int = 10, batch_size: int = 32) -> int:
    """Run the demo into the existing folder ``out`` (Keras is imported here)."""
    t_start = time.perf_counter()
    import keras

    import stepsched as ss

    from .finder import find_lr
    x_train, x_test, y_train, y_test = _load_digits(seed)
    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = steps_per_epoch * epochs
    print(f"stepsched demo: 8x8 digits ({n} train / {len(x_test)} held-out), MLP 64-64-10, "
          f"Adam, batch {batch_size}, {epochs} epochs x {steps_per_epoch} steps, "
          f"backend {keras.backend.backend()}, seed {seed}")

    # 1. LR range test (restores the model afterwards)
    print("\n[1/3] LR range test")
    t0 = time.perf_counter()
    model = _mlp(seed, 1e-3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle=True.*", category=UserWarning)
        finder = find_lr(model, x_train, y_train, batch_size=batch_size, start=1e-5, end=1.0,
                         steps=100, verbose=1 if sys.stdout.isatty() else 0)
    del model
    gc.collect()
    suggested = finder.suggestion(method="steepest")
    note = "steepest descent of the smoothed loss"
    if suggested is None or not math.isfinite(suggested) or suggested <= 0:
        suggested, note = 1e-3, "no clear descent: fell back to 1e-3"
    t_finder = time.perf_counter() - t0
    print(f"suggested rate {suggested:.3g} ({note}) [{t_finder:.1f} s]")

    # 2. the same schedule shape at two granularities
    per_batch = ss.Warmup(ss.epochs(1)) >> ss.Cosine(suggested, suggested / 20,
                                                     ss.epochs(epochs - 1))
    concrete = per_batch.resolve(steps_per_epoch=steps_per_epoch)
    mids = [(e + 0.5) * steps_per_epoch for e in range(epochs)]
    per_epoch = ss.Piecewise([ss.epochs(e) for e in range(1, epochs)],
                             [float(v) for v in concrete.at(mids)])
    runs = {"per-epoch": per_epoch, "per-batch": per_batch}
    about = {"per-epoch": f"the same curve held constant through each epoch ({epochs} steps "
                          "of a Piecewise, as keras LearningRateScheduler would apply it)",
             "per-batch": repr(per_batch)}
    results = {}
    for i, (name, schedule) in enumerate(runs.items()):
        print(f"\n[{i + 2}/3] {name}: {about[name]}")
        t0 = time.perf_counter()
        model = _mlp(seed, schedule)
        log = _BatchLog(n, batch_size)
        history = model.fit(
            x_train, y_train, batch_size=batch_size, epochs=epochs,
            validation_data=(x_test, y_test),
            callbacks=[ss.callbacks.LearningRateLogger(), log.callback],
            verbose=1 if sys.stdout.isatty() else 2)
        test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        results[name] = {
            "schedule": schedule, "rows": log.table(), "history": history.history,
            "test_loss": float(test_loss), "test_acc": float(test_acc),
            "train_loss": float(history.history["loss"][-1]),
            "time": time.perf_counter() - t0,
        }

    png = os.path.join(out, "demo.png")
    csv_path = os.path.join(out, "batches.csv")
    _write_csv(csv_path, results)
    _demo_figure(png, finder, suggested, results, steps_per_epoch, total)
    elapsed = time.perf_counter() - t_start
    print()
    print(_summary_table(results, suggested, t_finder))
    print(f"\nwrote {png} and {csv_path} (total {elapsed:.1f} s)")
    return 0


# ------------------------------------------------------------------ outputs
def _write_csv(path: str, results: dict) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for name, r in results.items():
            for step, epoch, batch, rate, loss, mean in r["rows"]:
                writer.writerow((name, step, epoch, batch, f"{rate:.6g}", f"{loss:.6g}",
                                 f"{mean:.6g}"))


def _summary_table(results: dict, suggested: float, t_finder: float) -> str:
    head = ("run", "final train loss", "held-out loss", "held-out accuracy", "time")
    rows = [head]
    for name, r in results.items():
        rows.append((name, f"{r['train_loss']:.4f}", f"{r['test_loss']:.4f}",
                     f"{100 * r['test_acc']:.1f} %", f"{r['time']:.1f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"LR range test: suggested rate {suggested:.3g} ({t_finder:.1f} s)", ""]
    for j, row in enumerate(rows):
        lines.append("  ".join([row[0].ljust(widths[0])]
                               + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _demo_figure(path, finder, suggested, results, steps_per_epoch, total) -> None:
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    from ._stats import ema
    from .plotting import _COLORS, plot_schedules

    fig = Figure(figsize=(12, 7.6), layout="constrained")
    (ax_find, ax_lr), (ax_loss, ax_acc) = fig.subplots(2, 2)

    finder.plot(ax=ax_find, method="steepest")
    ax_find.legend(frameon=False)
    smooth = np.asarray(finder.smoothed, dtype=float)
    smooth = smooth[np.isfinite(smooth)]
    if smooth.size:  # the divergence at the end would squash the useful part
        lo, hi = float(smooth.min()), float(smooth[: max(1, smooth.size // 10)].max())
        ax_find.set_ylim(lo - 0.15 * (hi - lo), hi + 0.6 * (hi - lo))
    ax_find.set_title("LR range test (weights restored afterwards)", loc="left")

    plot_schedules({name: r["schedule"] for name, r in results.items()}, total, ax=ax_lr,
                   steps_per_epoch=steps_per_epoch)
    for i, r in enumerate(results.values()):
        steps = [row[0] for row in r["rows"]]
        rates = [row[3] for row in r["rows"]]
        ax_lr.plot(steps, rates, ".", markersize=2.5, color=_COLORS[i], alpha=0.5, zorder=4)
    ax_lr.set_title("learning rate (dots: the rate each batch used, as logged)", loc="left")

    for i, (name, r) in enumerate(results.items()):
        steps = [row[0] for row in r["rows"]]
        losses = [max(row[4], 1e-6) for row in r["rows"]]
        ax_loss.plot(steps, losses, color=_COLORS[i], alpha=0.2, linewidth=0.8)
        ax_loss.plot(steps, ema(losses, 0.9), color=_COLORS[i], linewidth=1.8,
                     label=f"{name} (smoothed)")
    ax_loss.set_yscale("log")
    ax_loss.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_loss.yaxis.set_minor_formatter(NullFormatter())
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss per batch")
    ax_loss.set_xlim(0, total)
    ax_loss.set_title("training loss per batch (faint: each batch)", loc="left")
    ax_loss.legend(frameon=False)

    for i, (name, r) in enumerate(results.items()):
        acc = r["history"].get("val_accuracy", [])
        epochs = np.arange(1, len(acc) + 1)
        ax_acc.plot(epochs, [100 * a for a in acc], "o-", color=_COLORS[i], markersize=4,
                    label=f"{name}: {100 * r['test_acc']:.1f} % at the end")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("held-out accuracy (%)")
    ax_acc.set_title("held-out accuracy after each epoch", loc="left")
    ax_acc.legend(frameon=False, loc="lower right")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))

    for ax in (ax_find, ax_loss, ax_acc):
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.grid(True, color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
    fig.suptitle("stepsched demo: per-epoch steps vs per-batch warmup + cosine, "
                 "8x8 digits", fontsize=12)
    fig.savefig(path, dpi=100)
