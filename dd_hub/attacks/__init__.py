"""Attacks: one batched function each, ``attack(model, inputs, labels=None, *, ...) -> AttackResult``.

Conventions (see :mod:`dd_hub.attacks.result`): inputs in [0, 1] pixel units (normalization lives inside the
model), ``labels=None`` means the model's predictions, ``norm`` is ``'l2'`` or ``'linf'``, ``bounds=(0.0, 1.0)``
clips to the valid box by default and ``bounds=None`` leaves the result unconstrained.
"""
from .autoattack import AutoAttackResult, autoattack
from .ddn import ddn
from .deepfool import UnrolledResult, deepfool, deepfool_unrolled
from .fgs import fgs, fgs_direction
from .pgd import pgd
from .random_search import random_search
from .result import AttackResult
from .threat_models import THREAT_MODELS, standard_threat_models, threat_model

__all__ = ["AttackResult", "AutoAttackResult", "THREAT_MODELS", "UnrolledResult", "autoattack", "ddn", "deepfool",
           "deepfool_unrolled", "fgs", "fgs_direction", "pgd", "random_search", "standard_threat_models",
           "threat_model"]
