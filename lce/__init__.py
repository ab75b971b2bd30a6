"""lce: compare vision models by the visual concepts their units detect (network dissection + LCE)."""

__version__ = "0.1.0"
