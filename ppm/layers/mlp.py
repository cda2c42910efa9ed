"""A stack of fully connected layers (the towers and experts of the ranking heads)."""

from __future__ import annotations

from collections.abc import Sequence

import tf_keras as keras


@keras.utils.register_keras_serializable(package="ppm")
class MLP(keras.layers.Layer):
    """Dense layers with an activation and dropout after each.

    Args:
      units: widths of the layers, e.g. ``(256, 128, 64)``.
      activation: activation after every layer.
      dropout: dropout rate after every layer (training only).
      init_stddev: standard deviation of the N(0, s) kernel initialiser (PPM §4.2.3: 0.01).

    Call: ``[..., d_in] -> [..., units[-1]]``.
    """

    def __init__(self, units: Sequence[int], activation: str = "relu", dropout: float = 0.0,
                 init_stddev: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        units = [int(u) for u in units]
        if not units or min(units) < 1:
            raise ValueError(f"units must be a non-empty list of positive widths, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.units, self.activation, self.dropout = units, activation, float(dropout)
        self.init_stddev = float(init_stddev)
        self.dense_layers = [
            keras.layers.Dense(u, activation=activation, name=f"dense_{i}",
                               kernel_initializer=keras.initializers.RandomNormal(
                                   stddev=init_stddev))
            for i, u in enumerate(units)]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None

    def call(self, x, training=None):
        for layer in self.dense_layers:
            x = layer(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "dropout": self.dropout, "init_stddev": self.init_stddev}
