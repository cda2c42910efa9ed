"""Multi-gate Mixture-of-Experts head (PPM §3.2.3, Eq. 9-11; Ma et al., KDD 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers.mlp import MLP


def check_task_names(task_names: Sequence[str]) -> list[str]:
    """The task names of a multi-task head as strings.

    Raises:
      ValueError: none, or a name repeated.
    """
    names = [str(t) for t in task_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"task_names must be non-empty and unique, got {names}")
    return names


@keras.utils.register_keras_serializable(package="ppm")
class MMoE(keras.layers.Layer):
    """N shared experts, one softmax gate and one tower per task.

    For task k: ``g_k = softmax(x W_k + b_k)`` (Eq. 10), ``f_k(x) = sum_i g_ki(x) f_i(x)``
    (Eq. 9) and ``y_k = t_k(f_k(x))`` (Eq. 11), where ``f_i`` is expert i (an MLP) and
    ``t_k`` the tower of task k (an MLP and a final linear unit). Towers output logits; the
    sigmoid is applied by the model or the loss.

    Args:
      task_names: one name per task, e.g. ``("click", "order", "cart")``.
      num_experts: N.
      expert_units: widths of each expert's layers.
      tower_units: widths of each tower's hidden layers (may be empty).
      dropout: dropout inside experts and towers.
      init_stddev: N(0, s) kernel initialiser.

    Call: ``x [B, d] -> {task: logits [B]}``. :meth:`gates` returns the gate weights.
    """

    def __init__(self, task_names: Sequence[str], num_experts: int = 4,
                 expert_units: Sequence[int] = (128,), tower_units: Sequence[int] = (64,),
                 dropout: float = 0.0, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        task_names = check_task_names(task_names)
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        self.task_names, self.num_experts = task_names, int(num_experts)
        self.expert_units, self.tower_units = [int(u) for u in expert_units], [
            int(u) for u in tower_units]
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        init = lambda: keras.initializers.RandomNormal(stddev=init_stddev)
        self.experts = [MLP(self.expert_units, dropout=dropout, init_stddev=init_stddev,
                            name=f"expert_{i}") for i in range(self.num_experts)]
        self.gate_layers = [keras.layers.Dense(self.num_experts, kernel_initializer=init(),
                                               name=f"gate_{t}") for t in task_names]
        self.towers = [MLP(self.tower_units, dropout=dropout, init_stddev=init_stddev,
                           name=f"tower_{t}") if self.tower_units else None
                       for t in task_names]
        self.outputs = [keras.layers.Dense(1, kernel_initializer=init(), name=f"logit_{t}")
                        for t in task_names]

    def gates(self, x):
        """Gate weights per task, ``{task: [B, num_experts]}`` (rows sum to 1), Eq. 10."""
        return {t: tf.nn.softmax(tf.cast(g(x), tf.float32), axis=-1)
                for t, g in zip(self.task_names, self.gate_layers)}

    def call(self, x, training=None):
        experts = tf.stack([e(x, training=training) for e in self.experts], axis=1)  # [B,N,U]
        logits = {}
        for t, gate, tower, out in zip(self.task_names, self.gate_layers, self.towers,
                                       self.outputs):
            g = tf.nn.softmax(tf.cast(gate(x), tf.float32), axis=-1)
            mixed = tf.einsum("bn,bnu->bu", tf.cast(g, experts.dtype), experts)  # Eq. 9
            if tower is not None:
                mixed = tower(mixed, training=training)
            logits[t] = tf.squeeze(tf.cast(out(mixed), tf.float32), axis=-1)  # Eq. 11
        return logits

    def get_config(self):
        return {**super().get_config(), "task_names": self.task_names,
                "num_experts": self.num_experts, "expert_units": self.expert_units,
                "tower_units": self.tower_units, "dropout": self.dropout,
                "init_stddev": self.init_stddev}
