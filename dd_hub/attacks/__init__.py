"""Attacks: one batched function each (adv-lib style)."""
from .deepfool import DeepFoolResult, deepfool, deepfool_unrolled
from .fgs import fgs, fgs_direction
from .pgd import BUDGETS, budget, pgd

__all__ = ["BUDGETS", "DeepFoolResult", "budget", "deepfool", "deepfool_unrolled", "fgs", "fgs_direction", "pgd"]
