"""The ``stepsched`` command (also ``python -m stepsched``): parses and dispatches.

``stepsched demo`` runs the demo (:mod:`stepsched.demo`): the LR range test,
then a per-epoch step schedule against a per-batch warmup + cosine on
scikit-learn's bundled 8x8 digits; it writes a figure, a per-batch CSV and a
summary.

``stepsched show SPEC --steps N`` previews a schedule given as an expression
(``"Warmup(epochs(2)) >> Exponential(1e-3, rate=0.96, every=1000)"``) or as a
JSON config file: a terminal chart, a table of key points and, with ``--out``,
a PNG; ``--steps-per-epoch`` resolves ``epochs(...)`` and ``--batch-size``
resolves ``samples(...)``, ``tokens(...)`` and ``BatchScaled``.

Keras fixes its backend when it is first imported, and ``import stepsched``
imports Keras: :mod:`stepsched._startup` settles the backend and TensorFlow's
log level for the command before that (see ``docs/guide/cli.md``).
"""

from __future__ import annotations

import argparse
import math
import sys

from ._startup import BACKENDS


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


# ------------------------------------------------------------------ arguments
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepsched", description="Per-step learning-rate schedules for Keras 3.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo", help="LR range test + per-epoch vs per-batch schedule on the 8x8 digits",
        description="Runs the LR range test on scikit-learn's bundled 8x8 digits, then trains "
                    "the same MLP twice: with a per-epoch step schedule and with a per-batch "
                    "warmup + cosine decay at the suggested rate. Writes demo.png and "
                    "batches.csv to --out and prints a summary.")
    demo.add_argument("--out", default="stepsched-demo", metavar="DIR",
                      help="output folder (default: ./stepsched-demo)")
    demo.add_argument("--backend", choices=BACKENDS, default=None,
                      help="Keras backend (default: KERAS_BACKEND or Keras's own default)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--epochs", type=_positive_int, default=10,
                      help="training epochs per run, >= 2 (default: 10)")
    demo.add_argument("--batch-size", type=_positive_int, default=32,
                      help="batch size (default: 32)")

    show = sub.add_parser(
        "show", help="preview a schedule given as an expression or a JSON config",
        description="Preview a schedule: a terminal chart, its key points and, with --out, a "
                    "PNG. SPEC is an expression over stepsched names, e.g. "
                    "\"Warmup(epochs(2)) >> Exponential(1e-3, rate=0.96, every=1000)\", "
                    "or a JSON file as written by keras.saving.serialize_keras_object.")
    show.add_argument("spec", metavar="SPEC", help="expression, JSON file, or inline JSON")
    show.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                      help="number of steps to show (default: the schedule's own duration)")
    show.add_argument("--steps-per-epoch", type=_positive_float, default=None, metavar="K",
                      help="steps per epoch, to resolve epochs(...) and draw an epoch axis")
    show.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                      help="samples per step (the global batch), to resolve samples(...), "
                           "tokens(...) and BatchScaled")
    show.add_argument("--out", default=None, metavar="FILE.png", help="also write a PNG")
    show.add_argument("--log", action="store_true", help="log scale for the rate")
    show.add_argument("--width", type=_positive_int, default=60,
                      help="chart width in characters (default: 60)")
    show.add_argument("--ascii", action="store_true", help="plain ASCII chart (no Braille dots)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 on a bad input, with a one-line error)."""
    from .demo import DemoError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has already printed its message
        return int(exc.code or 0)
    try:
        if args.command == "demo":
            return _demo(args)
        return _show(args)
    except (CommandError, DemoError) as exc:
        print(f"stepsched {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _demo(args) -> int:
    from . import demo

    return demo.main(out=args.out, backend=args.backend, seed=args.seed, epochs=args.epochs,
                     batch_size=args.batch_size)


# ------------------------------------------------------------------ show
def _show(args) -> int:
    from . import plotting
    from .durations import UnresolvedDurationError
    from .spec import SpecError, load_spec

    try:
        written = load_spec(args.spec)
        schedule = _batch_resolved(written, args.batch_size)
        if args.steps is None and not schedule.is_finite:
            raise CommandError(f"{written!r} runs forever: give --steps N, the number of "
                               "steps to show")
        points = plotting.key_points(schedule, args.steps, args.steps_per_epoch)
        unicode = not args.ascii and _can_encode(sys.stdout, "⣿┤└─")
        chart = plotting.text_chart(schedule, args.steps, args.steps_per_epoch,
                                    width=min(args.width, 200), unicode=unicode)
    except UnresolvedDurationError as exc:  # "<what> needs <which>. <how to in Python>"
        need = " ".join(str(exc).split(":")[0].split(". ")[0].split())
        flag = "--batch-size" if "batch size" in need else \
            "--steps-per-epoch" if "steps_per_epoch" in need else "--steps"
        raise CommandError(f"{need}: give {flag}") from None
    except (SpecError, TypeError, ValueError, OverflowError) as exc:
        raise CommandError(" ".join(str(exc).split())[:300]) from None

    total = max(p.step for p in points if not math.isnan(p.step))
    print(repr(written))
    resolved = f", steps_per_epoch={args.steps_per_epoch:g}" if args.steps_per_epoch else ""
    if args.batch_size:
        resolved += f", batch_size={args.batch_size:g}"
    print(f"over {total:,.0f} steps{resolved}\n")
    print(chart)
    print()
    print(_points_table(points, args.steps_per_epoch))
    if args.out:
        _write_png(schedule, args, title=repr(written))
        print(f"\nwrote {args.out}")
    return 0


def _can_encode(stream, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _points_table(points, steps_per_epoch) -> str:
    rows = [("point", "step", "epoch", "learning rate")] if steps_per_epoch else \
        [("point", "step", "learning rate")]
    for p in points:
        if math.isnan(p.step):
            rows.append((p.label,) + ("",) * (len(rows[0]) - 1))
            continue
        step = f"{p.step:,.0f}" if float(p.step).is_integer() else f"{p.step:,.2f}"
        cells = [p.label, step]
        if steps_per_epoch:
            cells.append(f"{p.step / steps_per_epoch:.2f}")
        cells.append(f"{p.value:.4g}")
        rows.append(tuple(cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                        strict=True)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _batch_resolved(schedule, batch_size):
    """``samples``/``tokens`` durations in steps of ``batch_size`` samples, and every unfilled
    ``BatchScaled`` given it (what a stepsched callback does at ``fit()``)."""
    from .schedules.batch import has_batch_units, resolve_batch

    if batch_size is None or not has_batch_units(schedule):
        return schedule
    return resolve_batch(schedule, batch_size)


def _write_png(schedule, args, title: str) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CommandError("--out needs matplotlib: pip install 'stepsched[plot]'") from None
    from .plotting import plot_schedule

    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    plot_schedule(schedule, args.steps, ax=ax, steps_per_epoch=args.steps_per_epoch, log=args.log)
    ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize=9, loc="left")
    try:
        fig.savefig(args.out, dpi=110)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot write {args.out}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
