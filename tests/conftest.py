"""Shared helpers: every test runs on the backend named by KERAS_BACKEND."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.backend import config as keras_config  # noqa: E402

BACKEND = keras.backend.backend()


def graph_values(schedule, steps, dtype="int32", scalar=False, jit_compile=True):
    """Evaluate ``schedule`` in-graph (jit-compiled on TF and JAX) at ``steps``.

    With ``scalar=True`` the compiled function takes one 0-d step, as the
    optimizer passes it, and is called once per step (traced once).
    """
    steps = np.asarray(steps, dtype=dtype)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda s: schedule(s), jit_compile=jit_compile)
        convert = tf.constant
    elif BACKEND == "jax":
        import jax

        fn, convert = jax.jit(lambda s: schedule(s)), np.asarray
    else:
        fn, convert = schedule, keras.ops.convert_to_tensor
    if scalar:
        outs = [fn(convert(s)) for s in steps]
        assert all(tuple(keras.ops.shape(o)) == () for o in outs)
        out = keras.ops.stack(outs)
    else:
        out = fn(convert(steps))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    return keras.ops.convert_to_numpy(out)


@pytest.fixture
def backend():
    return BACKEND


# ------------------------------------------------------------ backend-independent tests
# A test marked ``backend_independent`` runs host code only (NumPy values, argument
# checks, configs, text): it proves the same on every backend, so
# scripts/test_all_backends.py runs it in one backend's pass. STEPSCHED_TESTS picks:
#   all          every test (the default: a plain ``pytest`` runs everything)
#   backend      only the tests not marked backend_independent
#   independent  only the marked tests
# A marked test fails if, in its set-up or call, it enters Keras's backend code
# (keras.src.backend.<backend>, keras.src.ops, keras.backend.backend()), or if its
# function names BACKEND, graph_values or the ``backend`` fixture: the mark cannot hide a
# backend dependence.
TEST_SETS = ("all", "backend", "independent")
_KERAS_SRC = os.path.join(os.path.dirname(keras.__file__), "src")
_BACKEND_CODE_DIRS = tuple(os.path.join(_KERAS_SRC, *part.split("/")) + os.sep for part in (
    "backend/tensorflow", "backend/jax", "backend/torch", "backend/numpy", "backend/openvino",
    "ops"))
_BACKEND_FUNCTION = keras_config.backend.__code__
_BACKEND_NAMES = {"BACKEND", "graph_values"}


def pytest_configure(config):
    chosen = os.environ.get("STEPSCHED_TESTS", "all")
    if chosen not in TEST_SETS:
        raise pytest.UsageError(f"STEPSCHED_TESTS={chosen!r}: expected one of {TEST_SETS}")


def pytest_collection_modifyitems(config, items):
    chosen = os.environ.get("STEPSCHED_TESTS", "all")
    if chosen == "all":
        return
    keep = [item for item in items
            if (item.get_closest_marker("backend_independent") is not None)
            == (chosen == "independent")]
    if len(keep) != len(items):
        kept = set(keep)
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = keep


def _names_used(code) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_used(const)
    return names


class _BackendWatch:
    """Notes the first Keras backend function entered while installed (``sys.setprofile``)."""

    def __init__(self):
        self.entered = None

    def __call__(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            if code is _BACKEND_FUNCTION or code.co_filename.startswith(_BACKEND_CODE_DIRS):
                self.entered = f"{code.co_name} ({code.co_filename}:{code.co_firstlineno})"
                sys.setprofile(None)

    def __enter__(self):
        self.previous = sys.getprofile()
        sys.setprofile(self)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.previous)


_WATCH = pytest.StashKey[_BackendWatch]()


def _watched(item):
    if item.get_closest_marker("backend_independent") is None:
        return None
    return item.stash.setdefault(_WATCH, _BackendWatch())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    watch = _watched(item)
    if watch is None:
        return (yield)
    with watch:
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    watch = _watched(item)
    if watch is None:
        return (yield)
    with watch:
        result = yield
    function = getattr(item, "function", None)
    named = sorted(_names_used(function.__code__) & _BACKEND_NAMES) if function else []
    if "backend" in getattr(item, "fixturenames", ()):
        named.append("the backend fixture")
    if named:
        pytest.fail(f"marked backend_independent but uses {', '.join(named)}", pytrace=False)
    if watch.entered:
        pytest.fail(f"marked backend_independent but entered Keras backend code: "
                    f"{watch.entered}", pytrace=False)
    return result
