"""Generators built from explicit per-conv widths, channel gates, discriminator, checkpoints."""

from alap.models.arch import KINDS, arch_of, build_generator, default_arch, validate_arch
from alap.models.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from alap.models.discriminator import NLayerDiscriminator
from alap.models.gates import add_gates, fold_gates, gateable_convs, gated_convs
from alap.models.reference import import_generator, match_generator, read_generator_state
from alap.models.resnet import ResnetBlock, ResnetGenerator
from alap.models.unet import UnetGenerator, UnetSkipConnectionBlock

__all__ = [
    "FORMAT",
    "KINDS",
    "NLayerDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "add_gates",
    "arch_of",
    "build_generator",
    "default_arch",
    "fold_gates",
    "gateable_convs",
    "gated_convs",
    "import_generator",
    "load_checkpoint",
    "match_generator",
    "read_generator_state",
    "save_checkpoint",
    "validate_arch",
]
