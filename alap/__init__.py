"""alap: ALAP-AE compression of conditional image-generation autoencoders as a reproducible pipeline."""

__version__ = "0.1.0"
