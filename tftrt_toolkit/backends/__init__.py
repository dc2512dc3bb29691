"""Conversion backends behind one interface: tensorrt (TF-TRT) and cpu (oneDNN graph pipeline)."""
