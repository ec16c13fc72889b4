"""KerasTuner: a RandomSearch over schedule hyperparameters (docs/guide/keras-tuner.md).

The guide's code runs as is; then every trial's applied rates, per batch from
its own TensorBoard event files and per epoch from KerasTuner's own metric
history, are compared with that trial's schedule rebuilt from its
hyperparameters, and the best model is reloaded and continued.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import BACKEND
from tests.test_exactness import RTOL
from tests.test_tensorboard import read_scalars

kt = pytest.importorskip("keras_tuner", reason="keras-tuner is a test dependency "
                                               "(pip install -e '.[test]')")
pytest.importorskip("tensorboard", reason="tensorboard is a test dependency")

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "keras-tuner.md"


def guide_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The guide's search, run once: its namespace after the first block."""
    root = tmp_path_factory.mktemp("tuner")
    namespace = {"__name__": "guide", "TUNER_DIR": str(root / "tuner"),
                 "LOG_DIR": str(root / "logs")}
    blocks = guide_blocks()
    assert len(blocks) == 2
    exec(compile(blocks[0], str(GUIDE), "exec"), namespace)  # noqa: S102
    return namespace


def trial_schedule(guide, hp):
    """The schedule a trial with these hyperparameters trains with, in steps."""
    steps_per_epoch = math.ceil(len(guide["x"]) / hp.get("batch_size"))
    return guide["make_schedule"](hp).resolve(steps_per_epoch=steps_per_epoch), steps_per_epoch


def trial_event_files(log_dir: Path, trials) -> dict[str, Path]:
    """Each trial's TensorBoard events: KerasTuner 1.4 gives every trial its own folder on
    TensorFlow only; on JAX and torch all trials write to ``log_dir/train``, one events file
    per trial (numbered by the writer, in trial order)."""
    if BACKEND == "tensorflow":
        return {t.trial_id: log_dir / t.trial_id / "execution0" / "train" for t in trials}
    files = sorted((log_dir / "train").glob("events.out.tfevents.*"),
                   key=lambda f: int(f.name.split(".")[-2]))
    assert len(files) == len(trials)
    return {t.trial_id: f for t, f in zip(trials, files, strict=True)}


def test_each_trial_applies_its_own_schedule(guide):
    tuner = guide["tuner"]
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    assert len(trials) == 4
    # the trials differ, so a schedule leaking from one trial to the next would show
    values = {tuple(sorted(t.hyperparameters.values.items())) for t in trials}
    assert len(values) == 4
    assert len({t.hyperparameters.get("batch_size") for t in trials}) == 2
    epochs = guide["EPOCHS"]
    events = trial_event_files(Path(guide["LOG_DIR"]), trials)
    for trial in trials:
        schedule, spe = trial_schedule(guide, trial.hyperparameters)
        # per batch: the trial's own TensorBoard events, step b = b-th batch of its fit
        logged = read_scalars(events[trial.trial_id])
        rates = logged["batch_learning_rate"]
        assert sorted(rates) == list(range(1, epochs * spe + 1)), trial.trial_id
        np.testing.assert_allclose([rates[b] for b in sorted(rates)],
                                   schedule.at(range(epochs * spe)), rtol=RTOL,
                                   err_msg=f"trial {trial.trial_id}")
        # KerasTuner's own record of the epoch logs (the rate of that epoch's last update)
        history = trial.metrics.get_history("learning_rate")
        assert history
        np.testing.assert_allclose([h.value[0] for h in history],
                                   schedule.at([(h.step + 1) * spe - 1 for h in history]),
                                   rtol=RTOL)


def test_best_model_reloads_with_its_schedule_and_continues_exactly(guide):
    tuner = guide["tuner"]
    best_trial = tuner.oracle.get_best_trials(1)[0]
    hp = best_trial.hyperparameters
    assert hp.values == guide["best_hp"].values
    schedule, spe = trial_schedule(guide, hp)
    namespace = dict(guide)
    exec(compile(guide_blocks()[1], str(GUIDE), "exec"), namespace)  # noqa: S102
    best = namespace["best"]
    # the checkpoint is the best epoch's; the optimizer step came back with it
    assert namespace["step"] == (best_trial.best_step + 1) * spe
    rates = namespace["history"].history["learning_rate"]
    np.testing.assert_allclose(rates, schedule.at([namespace["step"] + spe - 1]), rtol=RTOL)
    assert int(best.optimizer.iterations) == namespace["step"] + spe
    # the optimizer's current rate is the schedule's at the next step
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(best.optimizer.learning_rate)),
                               schedule.at(namespace["step"] + spe), rtol=RTOL)


def test_without_building_the_optimizer_the_step_is_lost(guide, tmp_path):
    """What the guide's ``model.optimizer.build`` line prevents."""
    tuner = guide["tuner"]
    best_trial = tuner.oracle.get_best_trials(1)[0]
    model = guide["ScheduleHyperModel"]().build(best_trial.hyperparameters)
    fresh = keras.models.clone_model(model)
    fresh.compile(optimizer=keras.optimizers.SGD(guide["make_schedule"](
        best_trial.hyperparameters), momentum=0.9), loss="mse")
    fresh.load_weights(tuner._get_checkpoint_fname(best_trial.trial_id))
    assert int(fresh.optimizer.iterations) == 0
