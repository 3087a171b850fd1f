"""GAN Compression for hwaml: distillation from a ResNet teacher into a once-for-all
mobile generator, and a search over its channel widths under a MACs budget."""

__version__ = "0.1.0"
