"""Generators, discriminators, losses and model files for geogan.

Imports torch (and safetensors for model files) only. The render pipeline
needs :func:`build_generator` and :func:`load_generator`; the rest serves
training.
"""

from .checkpoint import (
    MODEL_FORMAT,
    SCHEMA_V1_CLASSES,
    load_generator,
    load_training_state,
    model_paths,
    save_generator,
    save_training_state,
    validate_card,
)
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .discriminator import MultiScaleDiscriminator, PatchGANDiscriminator, receptive_field
from .init import init_weights
from .loss import GANLoss, VGGPerceptualLoss, feature_matching_loss, kld_loss, maybe_vgg_loss
from .normalization import SPADE, NoiseInjection, resize_noise
from .registry import (
    DISCRIMINATOR_ARCHS,
    GENERATOR_ARCHS,
    build_discriminator,
    build_generator,
    generator_defaults,
)
from .shadow import ShadowGenerator, random_flip_rotate, split_texture_height
from .spade import SPADEGenerator, SPADEResBlock
from .style import StyleEncoder, StyleFiLM, reparameterize
from .unet import UNetGenerator
from .vgg import VGG19Features

__all__ = [
    "MODEL_FORMAT",
    "SCHEMA_V1_CLASSES",
    "DISCRIMINATOR_ARCHS",
    "GENERATOR_ARCHS",
    "build_generator",
    "build_discriminator",
    "generator_defaults",
    "save_generator",
    "load_generator",
    "validate_card",
    "model_paths",
    "save_training_state",
    "load_training_state",
    "UNetGenerator",
    "SPADEGenerator",
    "SPADEResBlock",
    "StyleEncoder",
    "StyleFiLM",
    "reparameterize",
    "SPADE",
    "NoiseInjection",
    "resize_noise",
    "init_weights",
    "PatchGANDiscriminator",
    "MultiScaleDiscriminator",
    "receptive_field",
    "GANLoss",
    "feature_matching_loss",
    "kld_loss",
    "VGGPerceptualLoss",
    "VGG19Features",
    "maybe_vgg_loss",
    "ShadowGenerator",
    "random_flip_rotate",
    "split_texture_height",
    "DCGANGenerator",
    "DCGANDiscriminator",
]
