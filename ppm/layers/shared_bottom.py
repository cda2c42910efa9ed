"""Shared-bottom multi-task head (Caruana 1997; the baseline of MMoE, Ma et al. KDD 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers.mlp import MLP
from ppm.layers.mmoe import check_task_names


@keras.utils.register_keras_serializable(package="ppm")
class SharedBottom(keras.layers.Layer):
    """One MLP shared by every task, then one tower per task.

    ``y_k = t_k(f(x))``: the simplest multi-task head, and what MMoE with a single expert
    reduces to (without the gates).

    Args:
      task_names: one name per task.
      bottom_units: widths of the shared MLP.
      tower_units: widths of each tower's hidden layers (may be empty), then a logit unit.
      dropout: dropout in bottom and towers.
      init_stddev: N(0, s) kernel initialiser.

    Call: ``x [B, d] -> {task: logits [B]}`` (float32).
    """

    def __init__(self, task_names: Sequence[str], bottom_units: Sequence[int] = (128,),
                 tower_units: Sequence[int] = (64,), dropout: float = 0.0,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        task_names = check_task_names(task_names)
        self.task_names = task_names
        self.bottom_units = [int(u) for u in bottom_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        self.bottom = MLP(self.bottom_units, dropout=dropout, init_stddev=init_stddev,
                          name="bottom")
        self.towers = [MLP(self.tower_units, dropout=dropout, init_stddev=init_stddev,
                           name=f"tower_{t}") if self.tower_units else None
                       for t in task_names]
        self.outputs = [keras.layers.Dense(
            1, kernel_initializer=keras.initializers.RandomNormal(stddev=init_stddev),
            name=f"logit_{t}") for t in task_names]

    def call(self, x, training=None):
        shared = self.bottom(x, training=training)
        logits = {}
        for t, tower, out in zip(self.task_names, self.towers, self.outputs):
            h = tower(shared, training=training) if tower is not None else shared
            logits[t] = tf.squeeze(tf.cast(out(h), tf.float32), axis=-1)
        return logits

    def get_config(self):
        return {**super().get_config(), "task_names": self.task_names,
                "bottom_units": self.bottom_units, "tower_units": self.tower_units,
                "dropout": self.dropout, "init_stddev": self.init_stddev}
