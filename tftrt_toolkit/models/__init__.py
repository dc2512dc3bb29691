"""Loading models: any spec → a SavedModel dir plus its discovered signature."""
