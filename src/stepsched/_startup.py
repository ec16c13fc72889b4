"""Process set-up for the ``stepsched`` command, done before Keras is imported.

``import stepsched`` imports Keras, and Keras imports its backend (TensorFlow,
JAX or torch) at once and for good. The command (the ``stepsched`` console
script and ``python -m stepsched``) imports the package before any of its own
code runs, so the package's ``__init__`` calls :func:`prepare` first. It does
nothing unless this process *is* the command and Keras is not yet imported;
then it

- sets ``TF_CPP_MIN_LOG_LEVEL=2`` (unless set) and imports Keras with the
  native start-up lines dropped (:func:`quiet_native_stderr`): TensorFlow 2.21
  logs through absl before absl is initialised, which ignores
  ``TF_CPP_MIN_LOG_LEVEL``, so its oneDNN and CPU-feature lines are filtered
  out of what the import writes to file descriptor 2;
- for ``demo --backend NAME``: sets ``KERAS_BACKEND=NAME``, so the demo runs in
  this process instead of a second one;
- for host-only commands (``show``, help) with ``KERAS_BACKEND`` unset: picks
  the installed backend that imports fastest. ``show`` evaluates schedules with
  NumPy on the host (``Schedule.at``) and never runs a backend op, so its
  output is the same on every backend; only the start-up time differs.

Standard library only: this runs before anything else in the package.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile

BACKENDS = ("tensorflow", "jax", "torch")

#: the backends, fastest to import first (``import keras`` on 2 CPU cores, see docs/guide/cli.md)
LIGHTEST_FIRST = ("jax", "torch", "tensorflow")

#: commands that never run a backend op
HOST_ONLY = ("show", None)

_NAMES = ("stepsched", "stepsched.cli", "stepsched.__main__")


def command_args(argv: list[str] | None = None, orig_argv: list[str] | None = None,
                 main_file: str | None = None) -> list[str] | None:
    """The command's arguments if this process is the ``stepsched`` command, else None.

    ``python -m stepsched``: while the package is being imported, ``sys.argv[0]``
    is ``"-m"`` and the module name sits in ``sys.orig_argv`` just before the
    arguments. The console script: ``sys.argv[0]`` is the script, which is also
    the ``__main__`` module's file.
    """
    argv = list(sys.argv if argv is None else argv)
    if orig_argv is None:
        orig_argv = list(getattr(sys, "orig_argv", []))
    if main_file is None:
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not argv:
        return None
    if argv[0] == "-m":
        if len(orig_argv) < len(argv):
            return None
        token = orig_argv[len(orig_argv) - len(argv)]  # "stepsched", or "-mstepsched"
        if token.startswith("-") and "m" in token:
            token = token[token.index("m") + 1:]
        return argv[1:] if token in _NAMES else None
    script = os.path.basename(argv[0])
    if script.endswith(".exe"):
        script = script[:-4]
    if script in ("stepsched", "stepsched-script.py") and main_file is not None \
            and os.path.abspath(main_file) == os.path.abspath(argv[0]):
        return argv[1:]
    return None


def _command(args: list[str]) -> str | None:
    """The subcommand: the first argument that is not an option."""
    for a in args:
        if not a.startswith("-"):
            return a
    return None


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` (argparse's unique prefixes too)."""
    value = None
    for i, a in enumerate(args):
        key, eq, rest = a.partition("=")
        if len(key) >= 5 and name.startswith(key):
            value = rest if eq else (args[i + 1] if i + 1 < len(args) else None)
    return value


def lightest_backend() -> str | None:
    """The first of ``LIGHTEST_FIRST`` whose package imports, or None."""
    for name in LIGHTEST_FIRST:
        try:
            importlib.import_module(name)  # Keras imports it next anyway
        except Exception:  # noqa: BLE001  (not installed, or broken: try the next one)
            continue
        return name
    return None


def prepare() -> str | None:
    """Set up the process if it is the ``stepsched`` command; returns the backend it chose."""
    if "keras" in sys.modules:
        return None
    args = command_args()
    if args is None:
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command, chosen = _command(args), None
    if command == "demo":
        backend = _option(args, "--backend")
        if backend in BACKENDS:
            os.environ["KERAS_BACKEND"] = chosen = backend
    elif command in HOST_ONLY and not os.environ.get("KERAS_BACKEND"):
        chosen = lightest_backend()
        if chosen is not None:
            os.environ["KERAS_BACKEND"] = chosen
    with quiet_native_stderr():
        import keras  # noqa: F401  (imports the backend now, its start-up lines dropped)
    return chosen


# ------------------------------------------------------------------ native start-up lines
#: an absl / TensorFlow C++ log line: severity, date, time, thread, file:line]
_LOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUATIONS = ("To enable the following instructions:",)  # of cpu_feature_guard's line
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}


def filter_native_lines(text: str, min_level: int | None = None) -> str:
    """``text`` without absl's preamble and the C++ log lines below ``TF_CPP_MIN_LOG_LEVEL``.

    With level 2 (what the command sets) INFO and WARNING lines go, ERROR and
    FATAL stay; everything that is not a C++ log line (Python warnings,
    tracebacks) stays.
    """
    if min_level is None:
        try:
            min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
        except ValueError:
            min_level = 0
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        match = _LOG_LINE.match(bare)
        if bare == _ABSL_PREAMBLE:
            dropping = False
            continue
        if match:
            dropping = _LEVELS[match.group(1)] < min_level
            if dropping:
                continue
        elif dropping and bare.startswith(_CONTINUATIONS):
            continue
        else:
            dropping = False
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def quiet_native_stderr():
    """Capture file descriptor 2 for the duration, then write back what is not start-up noise.

    Native libraries (TensorFlow's absl logging) write to the file descriptor,
    not to ``sys.stderr``, so the descriptor itself is redirected to a
    temporary file. Python output written meanwhile is kept, in order. If the
    descriptor cannot be redirected, nothing is filtered.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = filter_native_lines(capture.read().decode("utf-8", "replace"))
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()
