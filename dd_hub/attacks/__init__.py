"""Attacks: one batched function each (adv-lib style)."""
from .deepfool import DeepFoolResult, deepfool, deepfool_unrolled
from .fgs import fgs, fgs_direction

__all__ = ["DeepFoolResult", "deepfool", "deepfool_unrolled", "fgs", "fgs_direction"]
