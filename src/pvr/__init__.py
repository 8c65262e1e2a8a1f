"""pvr: pre-trained vision representations for control."""
__version__ = "0.1.0"
