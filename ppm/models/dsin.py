"""DSIN (Feng et al., "Deep Session Interest Network for Click-Through Rate Prediction",
IJCAI 2019, arXiv:1905.06482), a PPM Table 2 baseline.

The history is cut into sessions (a new one after a gap of more than 30 minutes, DSIN §4.1;
``hist_session`` in the examples, :func:`ppm.features.session_ids`), the ``max_sessions`` most
recent kept with up to ``session_length`` items each. Each session's items (their four ID
fields side by side) get a bias encoding and self-attention, pooled into a session interest
(§4.2, :class:`~ppm.layers.session_interest.SessionInterestExtractor`); a Bi-LSTM runs over
the session interests (§4.3); the candidate attends over both the interests and the Bi-LSTM
states (§4.4, :class:`~ppm.layers.session_interest.SessionActivation`). The model's head takes
``[candidate | interest attention | Bi-LSTM attention | context]`` and the profile D.

Examples built before sessions existed have no ``hist_session``: DSIN refuses them (the other
models read them as before).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ppm.features import HIST_SESSION
from ppm.layers.session_interest import (
    SessionActivation,
    SessionInterestExtractor,
    SessionInterestInteractor,
    SessionSplit,
)
from ppm.models import registry
from ppm.models.fields import flat
from ppm.models.ranker import Ranker


@keras.utils.register_keras_serializable(package="ppm")
class DSINBackbone(keras.layers.Layer):
    """DSIN's session interests over the zoo's fields.

    Args:
      max_sessions, session_length: sessions kept (the most recent) and items per session.
      num_heads: self-attention heads within a session (must divide the item width 4 * D).
      lstm_units: units of each direction of the Bi-LSTM.
      dropout: of the self-attention block.
      init_stddev: N(0, s) initialiser.

    Call: the fields dict (with ``hist_session``) ->
      ``{"vector": [B, 4D + 4D + 2 * lstm_units + D]}``.
    """

    extra_inputs = (HIST_SESSION,)

    def __init__(self, max_sessions: int = 5, session_length: int = 10, num_heads: int = 4,
                 lstm_units: int = 32, dropout: float = 0.0, init_stddev: float = 0.01,
                 **kwargs):
        super().__init__(**kwargs)
        self.max_sessions, self.session_length = int(max_sessions), int(session_length)
        self.num_heads, self.lstm_units = int(num_heads), int(lstm_units)
        self.dropout, self.init_stddev = float(dropout), float(init_stddev)
        self.split = SessionSplit(self.max_sessions, self.session_length, name="split")
        self.extractor = SessionInterestExtractor(self.num_heads, dropout=self.dropout,
                                                  init_stddev=init_stddev, name="extractor")
        self.interactor = SessionInterestInteractor(self.lstm_units, name="interactor")
        self.interest_activation = SessionActivation(init_stddev=init_stddev,
                                                     name="interest_activation")
        self.lstm_activation = SessionActivation(init_stddev=init_stddev,
                                                 name="lstm_activation")

    def call(self, fields, training=None):
        if HIST_SESSION not in fields:
            raise ValueError(
                f"DSIN reads the history's sessions ({HIST_SESSION!r}), which these examples "
                "lack: they were built before sessions were written; rebuild them with "
                "python -m beam_jobs.build_examples")
        target = flat(fields["target"])
        sessions, mask = self.split([flat(fields["history"]), fields[HIST_SESSION],
                                     fields["hist_len"]])
        interests, session_mask = self.extractor([sessions, mask], training=training)
        states = self.interactor([interests, session_mask], training=training)
        parts = [target,
                 self.interest_activation([interests, session_mask, target]),
                 self.lstm_activation([states, session_mask, target]),
                 flat(fields["context"])]
        return {"vector": tf.concat([tf.cast(p, target.dtype) for p in parts], axis=-1)}

    def get_config(self):
        return {**super().get_config(), "max_sessions": self.max_sessions,
                "session_length": self.session_length, "num_heads": self.num_heads,
                "lstm_units": self.lstm_units, "dropout": self.dropout,
                "init_stddev": self.init_stddev}


@registry.register("dsin")
def build(config, inputs, parts) -> Ranker:
    m = config.model
    if HIST_SESSION not in inputs.schema.names:
        raise ValueError(
            f"model.type=dsin reads {HIST_SESSION!r}, which the examples in "
            f"{config.data.examples} lack (built before sessions were written): rebuild them "
            "with python -m beam_jobs.build_examples")
    backbone = DSINBackbone(m.dsin.max_sessions, m.dsin.session_length,
                            num_heads=m.dsin.num_heads, lstm_units=m.dsin.lstm_units,
                            dropout=m.transformer.dropout, init_stddev=m.init_stddev,
                            name="dsin")
    return Ranker(parts.fields(), backbone, parts.head(), **parts.ranker_kwargs(), name="dsin")
