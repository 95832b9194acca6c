"""Architectures by name, from one registry (timm-style ``@register`` + ``create_model``).

Every model takes raw 0-255 pixels at its own size and channels and normalises
inside the graph, so the exported SavedModel/ONNX can be fed a resized face crop by
any tool. Augmentation is *not* part of these models: :func:`training_model` wraps
them for training only, so nothing random or custom is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import layers


@dataclass(frozen=True)
class ArchSpec:
    builder: Callable[..., keras.Model]
    input_shape: tuple[int, int, int]  # default (height, width, channels)
    summary: str


_REGISTRY: dict[str, ArchSpec] = {}


def register(name: str, input_shape: tuple[int, int, int], summary: str):
    def wrap(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        _REGISTRY[name] = ArchSpec(builder, input_shape, summary)
        return builder

    return wrap


def list_architectures() -> list[str]:
    return sorted(_REGISTRY)


def architecture(name: str) -> ArchSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown architecture '{name}'; choose one of: {', '.join(list_architectures())}")
    return _REGISTRY[name]


def create_model(
    name: str,
    num_classes: int,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | Path | None = None,
    dropout_rate: float = 0.4,
) -> keras.Model:
    """Build ``name`` for ``num_classes`` with ``input_shape`` (default: the architecture's own)."""
    spec = architecture(name)
    shape = tuple(input_shape or spec.input_shape)
    model = spec.builder(input_shape=shape, num_classes=num_classes, weights=weights, dropout_rate=dropout_rate)
    return model


def _conv_bn_relu(x, filters: int):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _classifier_head(x, num_classes: int, dropout_rate: float, hidden: int = 0):
    if hidden:
        x = layers.Dropout(dropout_rate)(x)
        x = layers.Dense(hidden, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.Dropout(dropout_rate)(x)
    x = layers.Dense(num_classes)(x)
    return layers.Activation("softmax", dtype="float32", name="probs")(x)


@register("fer_vgg", (48, 48, 1), "VGG-style, 4 stages x 2 conv (32-256), 48x48 gray; the fast default")
def fer_vgg(input_shape, num_classes, weights=None, dropout_rate=0.4, widths=(32, 64, 128, 256)):
    """Plain conv-BN-ReLU stacks: fast on a laptop CPU, and FER2013-sized (48x48)."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    for filters in widths:
        x = _conv_bn_relu(x, filters)
        x = _conv_bn_relu(x, filters)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    outputs = _classifier_head(x, num_classes, dropout_rate, hidden=256)
    model = keras.Model(inputs, outputs, name="fer_vgg")
    if weights:
        model.load_weights(weights)
    return model


@register("fer_vgg_wide", (48, 48, 1), "fer_vgg at twice the width (64-512): more accurate, ~3x slower")
def fer_vgg_wide(input_shape, num_classes, weights=None, dropout_rate=0.4):
    return fer_vgg(input_shape, num_classes, weights, dropout_rate, widths=(64, 128, 256, 512))


def _application(app_fn, pretrained_preprocess: Callable, input_shape, num_classes, weights, dropout_rate, name):
    """A ``keras.applications`` backbone; ImageNet weights only from a local file (never downloaded).

    With weights, the input is normalised the way those weights were trained; from scratch, to [-1, 1].
    """
    if input_shape[-1] != 3 and weights:
        raise ValueError(f"{name}: ImageNet weights need 3-channel input, got {input_shape}")
    inputs = keras.Input(input_shape, name="image")
    x = (pretrained_preprocess if weights else _scale_minus_one_to_one)(inputs)
    backbone = app_fn(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):  # MobileNetV2's 0.999 suits ImageNet-sized epochs: on
            layer.momentum = min(layer.momentum, 0.99)  # FER2013 its moving statistics lag so long that val collapses onto one class
    if weights:
        backbone.load_weights(str(weights))
    x = backbone(x)
    outputs = _classifier_head(x, num_classes, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


def _scale_minus_one_to_one(x):
    return layers.Rescaling(1 / 127.5, offset=-1.0)(x)


IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def _rgb_to_bgr_minus_imagenet_mean(x):
    """Keras' "caffe" preprocessing, which its VGG19/ResNet50 ImageNet weights expect, as a frozen
    1x1 convolution: plain layers, so the model saves, loads and exports without custom objects."""
    conv = layers.Conv2D(3, 1, trainable=False, dtype="float32", name="rgb_to_bgr_minus_imagenet_mean")
    y = conv(x)
    conv.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3), -np.asarray(IMAGENET_BGR_MEAN, "float32")])
    return y


@register("vgg19", (128, 128, 3), "keras.applications VGG19, 128x128 RGB")
def vgg19(input_shape, num_classes, weights=None, dropout_rate=0.4):
    return _application(keras.applications.VGG19, _rgb_to_bgr_minus_imagenet_mean, input_shape, num_classes, weights, dropout_rate, "vgg19")


@register("resnet50", (128, 128, 3), "keras.applications ResNet50, 128x128 RGB")
def resnet50(input_shape, num_classes, weights=None, dropout_rate=0.4):
    return _application(keras.applications.ResNet50, _rgb_to_bgr_minus_imagenet_mean, input_shape, num_classes, weights, dropout_rate, "resnet50")


@register("mobilenetv2", (128, 128, 3), "keras.applications MobileNetV2, 128x128 RGB")
def mobilenetv2(input_shape, num_classes, weights=None, dropout_rate=0.4):
    return _application(keras.applications.MobileNetV2, _scale_minus_one_to_one, input_shape, num_classes, weights, dropout_rate, "mobilenetv2")


def augmentation(strength: float = 1.0) -> keras.Sequential:
    """Flip, small affine, brightness/contrast and random erasing, on 0-255 pixels."""
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(0.03 * strength, fill_mode="nearest"),  # about +-11 degrees
            layers.RandomTranslation(0.1 * strength, 0.1 * strength, fill_mode="nearest"),
            layers.RandomZoom(0.1 * strength, fill_mode="nearest"),
            layers.RandomBrightness(0.2 * strength, value_range=(0, 255)),
            layers.RandomContrast(0.3 * strength, value_range=(0, 255)),
            layers.RandomErasing(factor=0.5 * strength, scale=(0.02, 0.2), value_range=(0, 255)),
        ],
        name="augment",
    )


class RandomExposure(layers.Layer):
    """Per face, on 0-255 pixels: a gamma curve ``255 * (x / 255) ** g`` with ``log g`` uniform
    in ``[-0.5 s, 0.5 s]``; for a share ``0.3 s`` of faces, an exposure cut to between
    ``1 - 0.75 s`` and 1 of its level (a dim room, a backlit face); then Gaussian sensor noise
    of a standard deviation uniform in ``[0, 6 s]`` grey levels. Only while training."""

    def __init__(self, strength: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training or self.strength <= 0:
            return images
        ops, s = keras.ops, self.strength
        shape = (ops.shape(images)[0], 1, 1, 1)
        gamma = ops.exp(keras.random.uniform(shape, -0.5 * s, 0.5 * s, seed=self.seed_generator))
        x = 255.0 * ops.power(ops.clip(images, 0.0, 255.0) / 255.0 + 1e-6, gamma)
        dim = keras.random.uniform(shape, seed=self.seed_generator) < 0.3 * s
        level = keras.random.uniform(shape, 1 - 0.75 * min(s, 1.0), 1.0, seed=self.seed_generator)
        x = ops.where(dim, x * level, x)
        sigma = keras.random.uniform(shape, 0.0, 6.0 * s, seed=self.seed_generator)
        return x + sigma * keras.random.normal(ops.shape(images), seed=self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "strength": self.strength}


def camera_augmentation(strength: float = 1.0) -> keras.Sequential:
    """What a webcam or a phone does to a face that FER2013's scans do not: exposure and gamma,
    focus blur, sensor noise (0-255 pixels, training only; JPEG artefacts are not simulated)."""
    return keras.Sequential(
        [
            layers.RandomGaussianBlur(factor=min(1.0, strength), kernel_size=5, sigma=(0.1, 1.0 + strength), value_range=(0, 255)),
            RandomExposure(strength),
        ],
        name="camera_augment",
    )


def training_model(core: keras.Model, data_shape: tuple[int, int, int], strength: float = 1.0,
                   camera_strength: float = 0.0) -> keras.Model:
    """``core`` behind augmentation (and :func:`camera_augmentation` when ``camera_strength``),
    and behind resizing/channel-repeat when the data (FER2013: 48x48 gray) differs from the
    model's input. Only ``core`` is exported."""
    height, width, channels = core.input_shape[1:]
    inputs = keras.Input(data_shape, name="image")
    x = augmentation(strength)(inputs)
    if camera_strength > 0:
        x = camera_augmentation(camera_strength)(x)
    if (data_shape[0], data_shape[1]) != (height, width):
        x = layers.Resizing(height, width)(x)
    if data_shape[-1] == 1 and channels == 3:
        x = layers.Concatenate()([x, x, x])
    return keras.Model(inputs, core(x), name=f"train_{core.name}")
