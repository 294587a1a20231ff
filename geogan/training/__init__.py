"""Training: datasets (side-by-side pairs, georeferenced chips), the D:G ratio controller, the trainer."""
