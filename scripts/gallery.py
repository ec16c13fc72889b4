"""Draw the recipe gallery: docs/img/gallery-*.png and docs/gallery.md.

Each entry is a ``stepsched show`` expression; the page shows it as Python
(``ss.``-prefixed names) and as the command that previews it in a terminal, so
the code on the page is exactly the code that drew the picture.

Usage: python scripts/gallery.py [--out docs]
"""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "numpy")  # host evaluation only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

import stepsched as ss  # noqa: E402
from stepsched.spec import allowed_names, parse_expression  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# (slug, title, expression, steps, steps_per_epoch, log, note)
ENTRIES = [
    ("classic", "Warmup for 2 epochs, then x0.96 every 1000 batches",
     "Warmup(epochs(2)) >> Exponential(1e-3, rate=0.96, every=1000)", 20_000, 500, False,
     "The request that starts most searches: a linear warmup over two epochs, then "
     "`lr = 1e-3 * 0.96 ** (step / 1000)` evaluated every batch."),
    ("warmup-cosine", "Linear warmup, cosine decay (transformer fine-tuning)",
     "WarmupCosine(peak=3e-4, warmup=fraction(0.05), total=fraction(1.0), end=3e-5)",
     10_000, None, False,
     "Durations as fractions of the run: the same object fits any training length."),
    ("one-cycle", "One-cycle (torch OneCycleLR)",
     "OneCycle(max_lr=0.1, total_steps=fraction(1.0))", 5_000, None, False,
     "Up from `max_lr / 25`, then a cosine down to `max_lr / 25e4`, with torch's phase ends."),
    ("wsd", "Warmup-stable-decay",
     "WarmupStableDecay(peak=1e-3, warmup=1000, decay=fraction(0.2), total=fraction(1.0))",
     20_000, None, False,
     "Hold the peak for most of the run and decay over the last 20 %."),
    ("sgdr", "Cosine with warm restarts (SGDR)",
     "Restarts(Cosine(0.1, 1e-4, 1000), period_mult=2.0, scale=0.7, limit=4)", None, None,
     False, "Each cycle twice as long as the one before and scaled by 0.7."),
    ("epoch-steps", "Step decay at epoch boundaries",
     "Piecewise([epochs(30), epochs(60), epochs(80)], [0.1, 0.01, 1e-3, 1e-4])",
     90 * 391, 391, True,
     "The classic ResNet schedule, written in epochs; the rate changes at the first batch "
     "of epochs 30, 60 and 80."),
    ("cyclic", "Triangular cyclical rate",
     "Cyclic(low=1e-4, high=1e-2, up=2000)", 12_000, None, False,
     "Up for 2000 steps, down for 2000 (Smith's triangular policy)."),
    ("noam", "Noam (Attention Is All You Need)",
     "Noam(d_model=512, warmup=4000)", 40_000, None, False,
     "`d_model ** -0.5 * min(t ** -0.5, t * warmup ** -1.5)`."),
    ("inverse-sqrt", "Warmup, then inverse square root",
     "InverseSqrt(peak=1e-3, warmup=1000)", 20_000, None, False,
     "fairseq's `inverse_sqrt`: continuous at the end of the warmup."),
    ("polynomial", "Warmup, then quadratic decay to zero",
     "Warmup(500, start=1e-6) >> Polynomial(2e-3, 0.0, 9500, power=2.0)", None, None, False,
     "Any piece can follow a warmup; the warmup ramps to wherever it begins."),
    ("exponential-warmup", "Exponential warmup and decay with a floor (log scale)",
     "Warmup(1000, start=1e-6, shape='exponential') >> "
     "Exponential(1e-3, rate=0.5, every=2000, limit=1e-6)", 20_000, None, True,
     "On a log scale an exponential warmup and an exponential decay are straight lines."),
    ("keras-restarts", "Keras's CosineDecayRestarts, composable",
     "CosineDecayRestarts(1e-3, first_decay_steps=1000)", 7_000, None, False,
     "The Keras class's values at every step, as a stepsched schedule."),
]


def as_python(expression: str) -> str:
    """``Warmup(...)`` -> ``ss.Warmup(...)`` for the names stepsched exports, text kept as is."""
    names = set(allowed_names())
    offsets = sorted(node.col_offset for node in ast.walk(ast.parse(expression, mode="eval"))
                     if isinstance(node, ast.Name) and node.id in names)
    for offset in reversed(offsets):
        expression = expression[:offset] + "ss." + expression[offset:]
    return expression


def show_command(expression: str, steps, steps_per_epoch) -> str:
    cmd = f'stepsched show "{expression}"'
    if steps:
        cmd += f" --steps {steps}"
    if steps_per_epoch:
        cmd += f" --steps-per-epoch {steps_per_epoch}"
    return cmd


def draw(expression: str, steps, steps_per_epoch, log: bool, title: str, path: Path) -> None:
    schedule = parse_expression(expression)
    fig = Figure(figsize=(7.0, 3.3), layout="constrained")
    ax = fig.add_subplot()
    ss.plot_schedule(schedule, steps, ax=ax, steps_per_epoch=steps_per_epoch, log=log)
    ax.set_title(title, loc="left", fontsize=11)
    fig.savefig(path, dpi=80)


def comparison(path: Path) -> str:
    decays = {
        "Linear": "Linear(1e-3, 0.0, 10000)",
        "Cosine": "Cosine(1e-3, 0.0, 10000)",
        "Polynomial(power=2)": "Polynomial(1e-3, 0.0, 10000, power=2.0)",
        "Exponential(rate=0.7, every=1000)": "Exponential(1e-3, rate=0.7, every=1000)",
        "Rex": "Rex(1e-3, 0.0, 10000)",
    }
    fig = Figure(figsize=(7.0, 3.3), layout="constrained")
    ax = fig.add_subplot()
    ss.plot_schedules({k: parse_expression(v) for k, v in decays.items()}, 10_000, ax=ax)
    ax.set_title("Decay shapes side by side (plot_schedules)", loc="left", fontsize=11)
    fig.savefig(path, dpi=80)
    code = ",\n".join(f'    "{k}": {as_python(v)}' for k, v in decays.items())
    return f"ss.plot_schedules({{\n{code},\n}}, total_steps=10_000)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="docs folder")
    out = Path(parser.parse_args().out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    lines = [
        "# Gallery",
        "",
        "Every picture below was drawn by `scripts/gallery.py` from the code shown under it "
        "with `stepsched.plot_schedule`; the `stepsched show` line previews the same schedule "
        "in a terminal. Dotted lines mark the joins between pieces; the dot marks the peak.",
        "",
    ]
    for slug, title, expression, steps, spe, log, note in ENTRIES:
        name = f"gallery-{slug}.png"
        draw(expression, steps, spe, log, title, out / "img" / name)
        call = "lr.plot(" + ", ".join(
            [f"total_steps={steps:_}" if steps else ""]
            + ([f"steps_per_epoch={spe}"] if spe else []) + (["log=True"] if log else [])
        ).strip(", ") + ")"
        lines += [
            f"## {title}", "", note, "",
            f"![{title}](img/{name})", "",
            "```python",
            "import stepsched as ss",
            "",
            f"lr = {as_python(expression)}",
            call.replace("(, ", "("),
            "```", "",
            "```bash",
            show_command(expression, steps, spe),
            "```", "",
        ]
    code = comparison(out / "img" / "gallery-decays.png")
    lines += ["## Decay shapes side by side", "",
              "![Decay shapes side by side](img/gallery-decays.png)", "",
              "```python", "import stepsched as ss", "", code, "```", ""]
    (out / "gallery.md").write_text("\n".join(lines))
    print(f"wrote {out / 'gallery.md'} and {len(ENTRIES) + 1} images in {out / 'img'}")


if __name__ == "__main__":
    main()
