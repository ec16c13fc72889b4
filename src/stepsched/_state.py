"""``RunState``: state of one run that Keras's weights files carry beside an optimizer.

Attached to an optimizer as an attribute (``optimizer.stepsched_plateau``,
``optimizer.stepsched_cooldown``), a ``keras.metrics.Metric`` is walked by
Keras's saving (``save_weights``, ``ModelCheckpoint``, ``BackupAndRestore``,
``model.save``) through its public ``save_own_variables`` /
``load_own_variables`` hooks, without being one of the optimizer's variables:
a file without it (from a plain run) loads into a run with it, and the other
way round. It is never a metric of a model.
"""

from __future__ import annotations

import keras


class RunState(keras.metrics.Metric):
    """Base class: subclasses write ``save_state(store)`` and ``load_state(store)``."""

    def update_state(self, *args, **kwargs):  # never used as a metric
        pass

    def result(self):
        return 0.0

    def reset_state(self):  # Keras resets metrics each epoch: nothing to forget here
        pass

    def save_state(self, store) -> None:
        raise NotImplementedError

    def load_state(self, store) -> None:
        raise NotImplementedError

    def save_own_variables(self, store) -> None:
        self.save_state(store)

    def load_own_variables(self, store) -> None:
        if store is None or "0" not in store.keys():  # a file from a run without this state
            return
        self.load_state(store)
