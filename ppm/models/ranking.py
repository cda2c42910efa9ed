"""The ranking model base: one TFRS ranking task per label, losses scaled for MirroredStrategy.

Models output logits ``{task: [B]}``; :meth:`RankingModel.probabilities` applies the sigmoid.
Each task is a ``tfrs.tasks.Ranking`` that owns its loss and its AUC metric: the task's label
is the example's feature of the same name, its loss is named by ``model.task_losses``
(:mod:`ppm.losses`; binary cross-entropy on logits, PPM Eq. 6, by default) and its weight by
``model.task_weights``. Under ``tf.distribute`` every replica sums its examples' losses and
divides by the *global* batch size, so the all-reduced gradient is the gradient of the global
mean loss and one replica or many give the same step (tested on 2 logical CPU devices).
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from ppm import losses
from ppm.features import derived_labels


class TaskLoss(keras.losses.Loss):
    """A :mod:`ppm.losses` per-example loss as a Keras 2 loss, summed over the batch (each
    replica's sum is divided by the global batch in :meth:`RankingModel.compute_loss`).

    Args:
      loss: its name in :data:`ppm.losses.LOSSES` (e.g. ``bce``).
    """

    def __init__(self, loss: str = "bce", **kwargs):
        kwargs.setdefault("name", loss)
        super().__init__(reduction=keras.losses.Reduction.SUM, **kwargs)
        self.loss, self.fn = loss, losses.get(loss)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "loss": self.loss}


@keras.utils.register_keras_serializable(package="ppm")
class RankingModel(tfrs.Model):
    """Base class of PPM and URM.

    Args:
      task_weights: ``{task: loss weight}``; tasks are learnt in this order.
      global_batch_size: examples per step over all replicas (the loss divisor).

    Subclasses implement :meth:`call` ``(features, training) -> {task: logits [B]}``, and
    name in :attr:`extra_inputs` the optional features they read (``ppm.features``: today
    ``hist_session``), so the serving signature asks only for what the model uses.
    """

    extra_inputs: tuple = ()

    def __init__(self, task_weights: Mapping[str, float], global_batch_size: int,
                 task_losses: Mapping[str, str] | None = None, id_dropout=None,
                 frequency_gate=None, **kwargs):
        super().__init__(**kwargs)
        id_dropout, frequency_gate = (keras.layers.deserialize(x) if isinstance(x, dict) else x
                                      for x in (id_dropout, frequency_gate))
        # The ID side's cold-start layers (ppm.layers.cold_start), or None.
        self.id_dropout, self.frequency_gate = id_dropout, frequency_gate
        if not task_weights:
            raise ValueError("a ranking model needs at least one task")
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
        self.task_weights = {str(k): float(v) for k, v in task_weights.items()}
        self.global_batch_size = int(global_batch_size)
        task_losses = dict(task_losses or {})
        unknown = sorted(set(task_losses) - set(self.task_weights))
        if unknown:
            raise ValueError(f"task_losses names tasks the model does not learn: {unknown}")
        self.task_losses = {t: str(task_losses.get(t, "bce")) for t in self.task_weights}
        self.ranking_tasks = [
            tfrs.tasks.Ranking(
                loss=TaskLoss(self.task_losses[task]),
                metrics=[keras.metrics.AUC(from_logits=True, name=f"{task}_auc")],
                name=f"{task}_task")
            for task in self.task_weights]

    def get_config(self):
        """The constructor arguments; subclasses add theirs (and serialize their sub-layers).

        Keras' default ``Model.get_config`` cannot serialize sub-layer arguments and logs
        "Model's `__init__()` arguments contain non-serializable objects" at every export.
        """
        return {"name": self.name, "task_weights": dict(self.task_weights),
                "global_batch_size": self.global_batch_size,
                "task_losses": dict(self.task_losses),
                **{k: keras.layers.serialize(v) for k, v in (
                    ("id_dropout", self.id_dropout), ("frequency_gate", self.frequency_gate))
                   if v is not None}}

    def id_side(self, features, training=None):
        """The features the ID side reads: item ids dropped at ``model.id_dropout`` in
        training (:class:`~ppm.layers.cold_start.IdDropout`); the plug-in reads ``features``."""
        if self.id_dropout is None:
            return features
        return self.id_dropout(features, training=training)

    def gate_id_side(self, vector, id_features) -> list:
        """``[vector]``, or with ``model.frequency_gate`` ``[vector * gate, code]`` by the
        target item's training frequency (:class:`~ppm.layers.cold_start.FrequencyGate`)."""
        if self.frequency_gate is None:
            return [vector]
        return list(self.frequency_gate((vector, id_features["item_id"])))

    def set_plugin_training(self, plugin_training) -> None:
        """How :meth:`train_step` trains the plug-in (:class:`~ppm.models.plugins.PluginTraining`:
        its own optimizer, L2-SP), or None. Not tracked: it is not part of the model (its
        optimizer is checkpointed beside the model's by training)."""
        object.__setattr__(self, "_plugin_training", plugin_training)

    @property
    def task_names(self) -> list[str]:
        return list(self.task_weights)

    def probabilities(self, features, training=False):
        """``{task: P(task | features)}``, float32 [B]."""
        return {t: tf.sigmoid(v) for t, v in self(features, training=training).items()}

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        """This replica's share of the global mean loss: sum_k w_k * sum_i BCE_ik / B_global."""
        features, labels = inputs
        labels = derived_labels(self.task_weights, features, labels)  # top<k> (GRACE Eq. 6)
        logits = self(features, training=training)
        total = tf.constant(0.0)
        for (task, weight), ranking in zip(self.task_weights.items(), self.ranking_tasks):
            # [B, 1]: Keras losses average over the last axis, which must be the unit axis.
            loss = ranking(labels=labels[task][:, None], predictions=logits[task][:, None],
                           training=training)
            total += weight * loss / self.global_batch_size
        return total

    def _step_logs(self, loss):
        """The step's logs: ``loss`` is this replica's share of the global mean loss, and Keras
        sums the replicas' logs (``distribute_reduction_method`` "auto" is "sum" off TPUs), so
        the logged loss is the global mean under any number of replicas and workers."""
        logs = {m.name: m.result() for m in self.metrics}
        logs["loss"] = loss
        return logs

    def enable_xla(self) -> None:
        """XLA-compiles the dense layers (transformers, multi-task heads, CTR head) of a built
        model.

        String lookups (hash tables) cannot be compiled, so the whole step is not; each dense
        block becomes a ``tf.function(jit_compile=True)`` instead.
        """
        from ppm.layers import MLP, PLE, BehaviorTransformer, MMoE, SharedBottom

        for layer in self._flatten_modules():
            if isinstance(layer, (BehaviorTransformer, MMoE, PLE, SharedBottom)) or (
                    isinstance(layer, MLP) and layer.name == "ctr_head"):
                layer.call = tf.function(layer.call, jit_compile=True, reduce_retracing=True)

    def train_step(self, data):
        scaled = isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)
        plugin = getattr(self, "_plugin_training", None)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(data, training=True)
            # Regularisation terms are per-model totals: each replica adds its share.
            if self.losses:
                loss += tf.add_n(self.losses) / replicas
            if plugin is not None and plugin.l2_sp:
                loss += plugin.penalty() / replicas
            scaled_loss = self.optimizer.get_scaled_loss(loss) if scaled else loss
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if scaled:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        if plugin is None or plugin.optimizer is None:
            self.optimizer.apply_gradients(zip(gradients, variables))
        else:
            own = plugin.owns
            self.optimizer.apply_gradients(
                [(g, v) for g, v in zip(gradients, variables) if v.ref() not in own])
            mine = [(g, v) for g, v in zip(gradients, variables) if v.ref() in own]
            if scaled:  # the loss scale skips a non-finite step: so does the plug-in
                finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g, _ in mine])
                mine = [(tf.where(finite, g, tf.zeros_like(g)), v) for g, v in mine]
            plugin.optimizer.apply_gradients(mine)
        return self._step_logs(loss)

    def test_step(self, data):
        return self._step_logs(self.compute_loss(data, training=False))
