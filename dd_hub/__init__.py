"""dd-hub: harden image classifiers with Deep Defense, measure their robustness, publish them to the Hub."""
__version__ = "0.1.0"

from .attacks import DeepFoolResult, deepfool, deepfool_unrolled, fgs, pgd  # noqa: E402
from .defense import DeepDefenseConfig, DeepDefenseLoss  # noqa: E402
from .errors import DDHubError  # noqa: E402
from .evaluate import EvalConfig, Report, evaluate  # noqa: E402
from .hub import load, save_model  # noqa: E402
from .models import NormalizedModel, create_model, unwrap  # noqa: E402
from .pipeline import harden  # noqa: E402
from .publish import publish  # noqa: E402

__all__ = ["DDHubError", "DeepDefenseConfig", "DeepDefenseLoss", "DeepFoolResult", "EvalConfig", "NormalizedModel",
           "Report", "create_model", "deepfool", "deepfool_unrolled", "evaluate", "fgs", "harden", "load", "pgd",
           "publish", "save_model", "unwrap", "__version__"]
