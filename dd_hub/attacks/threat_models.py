"""Named threat models, as the attacks see them: re-exported from :mod:`dd_hub.threat_models` (a base module, so the
browsing commands read threat-model names without importing torch)."""
from __future__ import annotations

from ..threat_models import STANDARD, THREAT_MODELS, standard_threat_models, threat_model

__all__ = ["STANDARD", "THREAT_MODELS", "standard_threat_models", "threat_model"]
