"""Image tower: a keras-hub ResNet, global average pooling, projection, L2 norm.

PPM §3.1.1: item images go through ResNet (ResNet-101 in the paper), fine-tuned with entity
prediction (Eq. 2), and the representation is cached. The backbone comes from a keras-hub
preset folder (e.g. a locally saved ``resnet_101_imagenet``) or from a small configuration
trained from scratch (the synthetic pictures are 64x64 drawings; no download is possible here).

The exported model takes encoded JPEG/PNG bytes and decodes and resizes them in the graph
(:func:`decode_images`); pixel scaling is part of the model (ImageNet mean/std, as keras-hub's
ResNet presets expect).
"""

from __future__ import annotations

import os

import tensorflow as tf

from ppm.encoders.backend import keras, keras_hub
from ppm.encoders.contract import DEFAULT_DIM
from ppm.encoders.text import L2Normalize

DEFAULT_IMAGE_SIZE = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_images(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes [B] -> float32 RGB [B, size, size, 3] in [0, 255]."""

    def one(b):
        img = tf.io.decode_image(b, channels=3, expand_animations=False)
        img = tf.image.resize(tf.cast(img, tf.float32), [image_size, image_size],
                              antialias=True)
        return tf.ensure_shape(img, [image_size, image_size, 3])

    return tf.map_fn(one, data, fn_output_signature=tf.TensorSpec(
        [image_size, image_size, 3], tf.float32))


@keras.saving.register_keras_serializable(package="ppm")
class PixelNormalization(keras.layers.Layer):
    """[0, 255] RGB -> ImageNet-normalised inputs, (x / 255 - mean) / std."""

    def call(self, x):
        x = tf.cast(x, tf.float32) / 255.0
        return (x - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


@keras.saving.register_keras_serializable(package="ppm")
class ImageEncoder(keras.Model):
    """ResNet backbone -> global average pooling -> Dense(dim) -> L2 normalisation.

    Input: float RGB [B, H, W, 3] in [0, 255]. Output: float32 [B, dim] unit vectors.

    Args:
      backbone: a ``keras_hub.models.ResNetBackbone``.
      dim: output (cached) dimension, 64 in PPM.
      image_size: side the exported model resizes decoded images to.
    """

    def __init__(self, backbone: keras_hub.models.ResNetBackbone, dim: int = DEFAULT_DIM,
                 image_size: int = DEFAULT_IMAGE_SIZE, **kwargs):
        super().__init__(**kwargs)
        if dim < 1 or image_size < 8:
            raise ValueError(f"dim must be >= 1 and image_size >= 8, got {dim}, {image_size}")
        self.backbone = backbone
        self.dim = dim
        self.image_size = image_size
        self.pixels = PixelNormalization(name="pixel_normalization")
        self.pooling = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        self.projection = keras.layers.Dense(dim, name="projection")
        self.normalize = L2Normalize(name="l2_normalize")

    def features(self, images, training=False):
        """Pooled backbone features [B, C] (before the projection)."""
        return self.pooling(self.backbone(self.pixels(images), training=training))

    def call(self, images, training=False):
        return self.normalize(self.projection(self.features(images, training=training)))

    def get_config(self):
        config = super().get_config()
        config.update(backbone=keras.saving.serialize_keras_object(self.backbone),
                      dim=self.dim, image_size=self.image_size)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def from_preset(preset: str, dim: int = DEFAULT_DIM, image_size: int = 224) -> ImageEncoder:
    """An encoder over a keras-hub ResNet preset (folder or name keras-hub can resolve)."""
    if os.path.sep in preset and not os.path.isdir(preset):
        raise FileNotFoundError(f"Image preset folder {preset} does not exist")
    backbone = keras_hub.models.ResNetBackbone.from_preset(preset)
    return ImageEncoder(backbone, dim, image_size, name="image_encoder")


def small(dim: int = DEFAULT_DIM, image_size: int = DEFAULT_IMAGE_SIZE,
          widths: tuple[int, ...] = (64, 128), blocks: tuple[int, ...] = (1, 1),
          seed: int | None = None) -> ImageEncoder:
    """A small ResNet (basic blocks) initialised at random, to train from scratch.

    keras-hub requires the stem and the first stack to have 64 filters.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=list(widths), stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1] + [2] * (len(widths) - 1), block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    return ImageEncoder(backbone, dim, image_size, name="image_encoder")
