"""Using an optimized model: predict, validate against the original, benchmark."""
