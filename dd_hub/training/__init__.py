"""Training: the loop on Accelerate, the Deep Defense loss, the registry of objectives (baselines), checkpoints."""
