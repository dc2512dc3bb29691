"""tftrt_toolkit: optimize an existing TensorFlow model for inference and save a plain SavedModel."""

__version__ = "0.1.0"
