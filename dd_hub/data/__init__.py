"""Data: dataset names to datasets of [0, 1] images, and the loaders (training order, evaluation subset, shards)."""
