"""The private Keras touch-points of ``stepsched._keras`` against the installed Keras.

Each test names the attribute or behaviour it relies on, so a Keras release
that changes one fails here by name.
"""

from __future__ import annotations

import keras
import numpy as np

import stepsched as ss
from stepsched import _keras


def _model(rate, **optimizer_kwargs):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(rate, **optimizer_kwargs), loss="mse")
    return model


def test_optimizer_learning_rate_attribute_holds_the_rate_object():
    schedule = ss.Exponential(0.1, 0.9)
    assert _keras.rate_of(_model(schedule).optimizer) is schedule, "optimizer._learning_rate"
    assert isinstance(_keras.rate_of(_model(0.1).optimizer), keras.Variable)


def test_replacing_the_schedule_is_what_the_optimizer_evaluates_and_saves():
    model = _model(ss.Constant(0.1))
    before = len(model.optimizer.variables)
    _keras.replace_schedule(model.optimizer, ss.Constant(0.25))
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == 0.25
    assert len(model.optimizer.variables) == before
    config = model.optimizer.get_config()["learning_rate"]
    back = keras.saving.deserialize_keras_object(config)
    assert isinstance(back, ss.Constant) and back.arg("value") == 0.25


def test_raw_step_counter_under_gradient_accumulation():
    model = _model(0.1, gradient_accumulation_steps=2)
    counter = _keras.step_variable(model.optimizer)
    assert isinstance(counter, keras.Variable), "optimizer._iterations"
    x = np.zeros((8, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(counter.value)) == 8
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4


def test_retrace_builds_a_new_train_function():
    model = _model(0.1)
    x = np.zeros((4, 2), "float32")
    model.fit(x, x[:, :1], verbose=0)
    old = model.train_function
    _keras.retrace(model)
    assert model.train_function is not old, "model.make_train_function(force=True)"


def test_weights_files_walk_into_a_metric_attached_to_the_optimizer(tmp_path):
    """The plateau state relies on Keras's saving walking an optimizer's attributes."""
    from stepsched.callbacks.plateau import PlateauState

    model = _model(0.1)
    model.optimizer.build(model.trainable_variables)
    model.optimizer.stepsched_plateau = PlateauState(0.125, {"best": 3.0})
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    other = _model(0.1)
    other.optimizer.build(other.trainable_variables)
    other.optimizer.stepsched_plateau = PlateauState()
    other.load_weights(path)
    assert other.optimizer.stepsched_plateau.multiplier_value == 0.125
    assert other.optimizer.stepsched_plateau.values == {"best": 3.0}


def test_variable_index_maps_keras_and_backend_variables():
    """``optimizer._get_variable_index``: stepsched's groups find a variable's group by it,
    also for the ``tf.Variable`` TensorFlow's update step receives."""
    model = _model(0.1)
    model.optimizer.build(model.trainable_variables)
    for i, v in enumerate(model.trainable_variables):
        assert _keras.variable_index(model.optimizer, v) == i
        if keras.backend.backend() == "tensorflow":
            assert _keras.variable_index(model.optimizer, v.value) == i


def test_current_learning_rate_is_the_rate_at_the_raw_step():
    """``optimizer._get_current_learning_rate()``: stepsched's groups evaluate the base rate
    once per step with it and override it while a group's weight decay runs."""
    model = _model(ss.Linear(1.0, 0.0, 10))
    model.optimizer.build(model.trainable_variables)
    _keras.step_variable(model.optimizer).assign(4)
    value = float(keras.ops.convert_to_numpy(_keras.current_learning_rate(model.optimizer)))
    assert value == np.float32(0.6)


def test_apply_calls_the_private_methods_stepsched_overrides():
    """``apply`` runs ``_apply_weight_decay(variables)``, which reads the rate through
    ``_get_current_learning_rate()``, then ``update_step`` per variable: a subclass
    recording the calls sees that order (stepsched.optimizers relies on it)."""
    calls = []

    class Recording(keras.optimizers.SGD):
        def _apply_weight_decay(self, variables):
            calls.append(("decay", len(variables)))
            return super()._apply_weight_decay(variables)

        def _get_current_learning_rate(self):
            calls.append(("rate",))
            return super()._get_current_learning_rate()

        def update_step(self, gradient, variable, learning_rate):
            calls.append(("update",))
            return super().update_step(gradient, variable, learning_rate)

    assert set(_keras.OVERRIDDEN_PRIVATE_METHODS) <= set(vars(keras.optimizers.Optimizer)) | {
        m for c in keras.optimizers.Optimizer.__mro__ for m in vars(c)}
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=Recording(0.1, weight_decay=0.01), loss="mse", run_eagerly=True)
    x = np.ones((2, 2), "float32")
    model.train_on_batch(x, x[:, :1])
    assert calls[0] == ("decay", 2)
    assert ("rate",) in calls[:3]
    assert calls.count(("update",)) == 2
    assert calls.index(("update",)) > calls.index(("decay", 2))


def test_slots_are_created_through_add_variable_from_reference():
    """stepsched finds each variable's optimizer slots (to keep a frozen group's moments) by
    overriding the public ``add_variable_from_reference``; every built-in optimizer's
    slots go through it, named after Keras's accumulators and averages otherwise."""
    from stepsched.optimizers.core import _NOT_UPDATE_SLOTS

    model = _model(0.1)
    seen = []

    class Recording(keras.optimizers.Adam):
        def add_variable_from_reference(self, reference_variable, name=None,
                                        initializer="zeros"):
            seen.append(name)
            return super().add_variable_from_reference(reference_variable, name, initializer)

    opt = Recording(0.1, gradient_accumulation_steps=2, use_ema=True)
    opt.build(model.trainable_variables)
    assert set(seen) == {"momentum", "velocity", *_NOT_UPDATE_SLOTS}


def test_fit_batch_size_is_read_from_the_epoch_iterator_of_fit():
    """``fit()``'s local ``epoch_iterator.data_adapter.batch_size`` (no public way: callback
    params hold no batch size): arrays, a tf.data dataset with a static batch size, one
    with an unknown batch dimension and a generator (both None)."""
    import tensorflow as tf

    model = _model(0.1)
    seen = []
    probe = keras.callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.append(_keras.fit_batch_size(model)),
        on_epoch_begin=lambda epoch, logs: seen.append(_keras.fit_batch_size(model)))
    x, y = np.zeros((12, 2), "float32"), np.zeros((12, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[probe])
    data = tf.data.Dataset.from_tensor_slices((x, y))
    model.fit(data.batch(6, drop_remainder=True), epochs=1, verbose=0, callbacks=[probe])
    model.fit(data.batch(6), epochs=1, verbose=0, callbacks=[probe])  # batch dim unknown

    def batches():
        while True:
            yield x[:3], y[:3]

    model.fit(batches(), steps_per_epoch=2, epochs=1, verbose=0, callbacks=[probe])
    assert seen == [4, 4, 6, 6, None, None, None, None]
    assert _keras.fit_batch_size(model) is None  # outside fit()
