"""largelr: large learning rates vs spurious correlations and compressibility."""

__version__ = "0.1.0"
