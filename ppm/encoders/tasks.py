"""Pre-training tasks of the encoders, as Keras 3 models with their own ``train_step``.

- :class:`QueryMatching` (PPM §3.1.1, Eq. 1): SimCSE-style in-batch contrastive loss between a
  search query and the clicked item's title, both through the same text tower, temperature tau.
- :class:`EntityPrediction` (PPM §3.1.1, Eq. 2): softmax classification of the item's entity
  from its image. The classifier is a cosine classifier on the L2-normalised embedding (logits
  = scale * cos(embedding, class weight)), so the 64-d vector that is cached is exactly the one
  trained.
- :class:`SemanticContrastive` (Taobao §3.1-3.3): InfoNCE with a learnable temperature between a
  query and its positive item, with a MoCo momentum key encoder and a queue of past keys as extra
  negatives, plus a triplet loss against the hard negative. ``use_moco=False`` and
  ``triplet_weight=0`` give the ablations of Taobao Table 2.

Losses are averaged per replica and divided by the number of replicas before the gradient, so
``MirroredStrategy`` (which sums gradients over replicas) optimises the global mean.
"""

from __future__ import annotations

import tensorflow as tf

from ppm.encoders import contrastive
from ppm.encoders.backend import keras


class _Task(keras.Model):
    """Shared bookkeeping: a loss tracker per named loss and a gradient step."""

    def __init__(self, loss_names, **kwargs):
        super().__init__(**kwargs)
        self._trackers = {n: keras.metrics.Mean(name=n) for n in loss_names}

    def call(self, inputs, training=False):
        """The encoder's embedding of the first element of a batch (Keras builds with it)."""
        return self.encoder(inputs, training=training)

    @property
    def metrics(self):
        return list(self._trackers.values())

    @staticmethod
    def _scaled(loss):
        """The per-replica mean loss divided by the replica count (call inside the tape): the
        optimizer sums gradients over replicas, so this optimises the global mean."""
        return loss / tf.distribute.get_strategy().num_replicas_in_sync

    def _apply(self, tape, scaled_loss, variables):
        # Embedding lookups give sparse (IndexedSlices) gradients whose row count depends on
        # each replica's tokens; the all-reduce under MirroredStrategy needs equal shapes.
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in tape.gradient(scaled_loss, variables)]
        self.optimizer.apply_gradients(zip(grads, variables))

    def _report(self, **values):
        for name, v in values.items():
            self._trackers[name].update_state(v)
        return {n: t.result() for n, t in self._trackers.items()}


class QueryMatching(_Task):
    """Query matching: data is ``(query_inputs, title_inputs)`` (preprocessed token dicts).

    Args:
      encoder: the text tower (:class:`ppm.encoders.text.TextEncoder`).
      temperature: tau of PPM Eq. 1.
    """

    def __init__(self, encoder, temperature: float = 0.05, **kwargs):
        super().__init__(["loss"], **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.encoder = encoder
        self.temperature = temperature

    def train_step(self, data):
        query, title = data
        with tf.GradientTape() as tape:
            loss = contrastive.info_nce_loss(self.encoder(query, training=True),
                                             self.encoder(title, training=True),
                                             self.temperature)
            scaled = self._scaled(loss)
        self._apply(tape, scaled, self.encoder.trainable_variables)
        return self._report(loss=loss)


class EntityPrediction(_Task):
    """Entity prediction: data is ``(images, entity_index)``.

    Args:
      encoder: the image tower (:class:`ppm.encoders.image.ImageEncoder`).
      num_classes: number of entities.
      scale: logit scale of the cosine classifier.
    """

    def __init__(self, encoder, num_classes: int, scale: float = 16.0, **kwargs):
        super().__init__(["loss", "accuracy"], **kwargs)
        if num_classes < 2:
            raise ValueError(f"Entity prediction needs >= 2 entities, got {num_classes}")
        self.encoder = encoder
        self.scale = scale
        self.classes = self.add_weight(shape=(encoder.dim, num_classes), name="class_weights",
                                       initializer="glorot_uniform")

    def logits(self, images, training=False):
        emb = self.encoder(images, training=training)
        return self.scale * tf.matmul(emb, tf.math.l2_normalize(self.classes, axis=0))

    def train_step(self, data):
        images, labels = data
        with tf.GradientTape() as tape:
            logits = self.logits(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits))
            scaled = self._scaled(loss)
        self._apply(tape, scaled, self.encoder.trainable_variables + [self.classes])
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))
        return self._report(loss=loss, accuracy=acc)


class SemanticContrastive(_Task):
    """Semantic-aware contrastive learning: data is ``(query, positive, negative)`` inputs.

    Args:
      encoder: the tower shared by queries and items (text or image).
      use_moco: keys from a momentum encoder, and a queue of ``queue_size`` past keys as extra
        negatives (otherwise keys from the online encoder, in-batch negatives only).
      queue_size: K (Taobao: 196,800).
      momentum: m of the key encoder update.
      triplet_weight: weight of the triplet loss (0 disables it).
      margin: triplet margin.
      initial_temperature: start value of the learnable temperature.
    """

    def __init__(self, encoder, use_moco: bool = True, queue_size: int = 4096,
                 momentum: float = 0.99, triplet_weight: float = 1.0, margin: float = 0.2,
                 initial_temperature: float = 0.07, **kwargs):
        names = ["loss", "info_nce"] + (["triplet"] if triplet_weight else [])
        super().__init__(names, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.encoder = encoder
        self.use_moco = use_moco
        self.momentum = momentum
        self.triplet_weight = triplet_weight
        self.margin = margin
        self.temperature = contrastive.LearnableTemperature(initial_temperature,
                                                            name="temperature")
        self.key_encoder = None
        self.queue = None
        if use_moco:
            self.key_encoder = keras.models.clone_model(encoder)
            self.key_encoder.trainable = False
            self.queue = contrastive.MomentumQueue(queue_size, encoder.dim, name="queue")

    def build_keys(self, sample):
        """Creates the key encoder's weights as a copy of the online encoder's."""
        if self.key_encoder is not None:
            self.key_encoder(sample)
            self.encoder(sample)
            for k, o in zip(self.key_encoder.weights, self.encoder.weights):
                k.assign(o)

    def train_step(self, data):
        query, positive, negative = data
        online_vars = self.encoder.trainable_variables + self.temperature.trainable_variables
        with tf.GradientTape() as tape:
            q = self.encoder(query, training=True)
            p = self.encoder(positive, training=True)
            tau = self.temperature(q)
            if self.use_moco:
                k = tf.stop_gradient(self.key_encoder(positive, training=False))
                nce = contrastive.info_nce_loss(q, k, tau, queue=self.queue())
            else:
                nce = contrastive.info_nce_loss(q, p, tau)
            loss = nce
            losses = {"info_nce": nce}
            if self.triplet_weight:
                n = self.encoder(negative, training=True)
                trip = contrastive.triplet_loss(q, p, n, self.margin)
                loss = loss + self.triplet_weight * trip
                losses["triplet"] = trip
            scaled = self._scaled(loss)
        self._apply(tape, scaled, online_vars)
        if self.use_moco:
            contrastive.momentum_update(self.encoder.weights, self.key_encoder.weights,
                                        self.momentum)
            self.queue.enqueue(k)
        return self._report(loss=loss, **losses)
