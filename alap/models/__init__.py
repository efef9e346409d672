"""Generators built from explicit per-conv widths, channel gates, discriminator, checkpoints."""

from alap.models.arch import KINDS, arch_of, build_generator, default_arch, validate_arch
from alap.models.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from alap.models.discriminator import NLayerDiscriminator
from alap.models.gates import add_gates, fold_gates, gateable_convs, gated_convs
from alap.models.reference import import_reference_generator, infer_reference_config, read_reference_state_dict
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
    "import_reference_generator",
    "infer_reference_config",
    "load_checkpoint",
    "read_reference_state_dict",
    "save_checkpoint",
    "validate_arch",
]
