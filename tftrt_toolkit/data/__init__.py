"""Input data for every stage: images, arrays and synthetic inputs shaped from a signature."""
