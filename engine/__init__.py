"""CTC Engine: an Asterisk-native click-to-call and IVR engine."""

__all__ = ["__version__"]

__version__ = "0.1.0"
