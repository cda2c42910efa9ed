"""Progressive Layered Extraction head (Tang et al., "Progressive Layered Extraction (PLE): A
Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020), GRACE's
base model (GRACE §2.2, Eq. 1).

PLE stacks ``num_levels`` Customized Gate Control (CGC) levels. A level has, for each task,
``specific_experts`` experts that only that task reads, and ``shared_experts`` experts that
every task reads. Each level keeps one input per task and one shared input (all equal to
``x`` at the first level):

- task k's output: a softmax gate on task k's input over task k's experts and the shared
  experts, ``o_k = sum_i g_ki(x_k) E_i``;
- the shared output (every level but the last): a softmax gate on the shared input over
  *all* experts of the level, task-specific and shared (the paper's Fig. 5; DeepCTR's
  ``ple.py`` does the same), which becomes the next level's shared input.

The last level's task outputs go through one tower per task (an MLP, then a logit unit).

Decisions: experts and towers are :class:`~ppm.layers.mlp.MLP` (ReLU), the gates are one
linear layer with a bias and a softmax (the repository's :class:`~ppm.layers.mmoe.MMoE`
gates; DeepCTR's have no bias), gate weights are float32 under mixed precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

from ppm.layers.mlp import MLP
from ppm.layers.mmoe import check_task_names


@keras.utils.register_keras_serializable(package="ppm")
class PLE(keras.layers.Layer):
    """CGC levels, then one tower per task.

    Args:
      task_names: one name per task (at least one).
      num_levels: CGC levels (1: a single CGC, PLE's "CGC" ablation).
      specific_experts: experts per task and level.
      shared_experts: shared experts per level.
      expert_units: widths of each expert's layers (the same at every level).
      tower_units: widths of each tower's hidden layers (may be empty), then a logit unit.
      dropout: dropout inside experts and towers.
      init_stddev: N(0, s) kernel initialiser.

    Call: ``x [B, d] -> {task: logits [B]}`` (float32). :meth:`gates` returns every level's
    gate weights.

    Raises:
      ValueError: bad arguments.
    """

    def __init__(self, task_names: Sequence[str], num_levels: int = 2,
                 specific_experts: int = 1, shared_experts: int = 1,
                 expert_units: Sequence[int] = (128,), tower_units: Sequence[int] = (64,),
                 dropout: float = 0.0, init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        task_names = check_task_names(task_names)
        if num_levels < 1 or specific_experts < 1 or shared_experts < 0:
            raise ValueError("num_levels and specific_experts must be >= 1 and shared_experts "
                             f">= 0, got {num_levels}, {specific_experts}, {shared_experts}")
        self.task_names, self.num_levels = task_names, int(num_levels)
        self.specific_experts, self.shared_experts = int(specific_experts), int(shared_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        init = lambda: keras.initializers.RandomNormal(stddev=init_stddev)  # noqa: E731
        mlp = lambda name: MLP(self.expert_units, dropout=dropout,  # noqa: E731
                               init_stddev=init_stddev, name=name)
        self.specific, self.shared, self.task_gates, self.shared_gates = [], [], [], []
        per_task = self.specific_experts + self.shared_experts
        every = len(task_names) * self.specific_experts + self.shared_experts
        for level in range(self.num_levels):
            self.specific.append([[mlp(f"level_{level}_{t}_expert_{j}")
                                   for j in range(self.specific_experts)] for t in task_names])
            self.shared.append([mlp(f"level_{level}_shared_expert_{j}")
                                for j in range(self.shared_experts)])
            self.task_gates.append([keras.layers.Dense(per_task, kernel_initializer=init(),
                                                       name=f"level_{level}_gate_{t}")
                                    for t in task_names])
            last = level == self.num_levels - 1
            self.shared_gates.append(None if last else keras.layers.Dense(
                every, kernel_initializer=init(), name=f"level_{level}_gate_shared"))
        self.towers = [MLP(self.tower_units, dropout=dropout, init_stddev=init_stddev,
                           name=f"tower_{t}") if self.tower_units else None
                       for t in task_names]
        self.outputs = [keras.layers.Dense(1, kernel_initializer=init(), name=f"logit_{t}")
                        for t in task_names]

    @staticmethod
    def _mix(gate, inputs, experts):
        """``(weights [B, n] float32, sum_i weights_i * experts_i)``."""
        g = tf.nn.softmax(tf.cast(gate(inputs), tf.float32), axis=-1)
        stacked = tf.stack(experts, axis=1)  # [B, n, U]
        return g, tf.einsum("bn,bnu->bu", tf.cast(g, stacked.dtype), stacked)

    def _levels(self, x, training):
        """The last level's task outputs, and every level's gate weights."""
        task_inputs, shared_input = [x] * len(self.task_names), x
        gates = []
        for level in range(self.num_levels):
            specific = [[e(inp, training=training) for e in experts]
                        for experts, inp in zip(self.specific[level], task_inputs)]
            shared = [e(shared_input, training=training) for e in self.shared[level]]
            level_gates, outputs = {}, []
            for t, gate, own, inp in zip(self.task_names, self.task_gates[level], specific,
                                         task_inputs):
                g, out = self._mix(gate, inp, own + shared)
                level_gates[t] = g
                outputs.append(out)
            if self.shared_gates[level] is not None:
                g, shared_input = self._mix(self.shared_gates[level], shared_input,
                                            [e for own in specific for e in own] + shared)
                level_gates["shared"] = g
            gates.append(level_gates)
            task_inputs = outputs
        return task_inputs, gates

    def gates(self, x):
        """Gate weights, one dict per level: ``{task: [B, specific + shared]}`` and, but at
        the last level, ``"shared": [B, tasks * specific + shared]`` (rows sum to 1)."""
        return self._levels(x, False)[1]

    def call(self, x, training=None):
        outputs, _ = self._levels(x, training)
        logits = {}
        for t, out, tower, unit in zip(self.task_names, outputs, self.towers, self.outputs):
            if tower is not None:
                out = tower(out, training=training)
            logits[t] = tf.squeeze(tf.cast(unit(out), tf.float32), axis=-1)
        return logits

    def get_config(self):
        return {**super().get_config(), "task_names": self.task_names,
                "num_levels": self.num_levels, "specific_experts": self.specific_experts,
                "shared_experts": self.shared_experts, "expert_units": self.expert_units,
                "tower_units": self.tower_units, "dropout": self.dropout,
                "init_stddev": self.init_stddev}
