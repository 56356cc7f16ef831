"""dd-hub: harden image classifiers with Deep Defense, measure their robustness, publish them to the Hub."""
from .attacks import DeepFoolResult, deepfool, deepfool_unrolled, fgs, pgd
from .errors import DDHubError
from .models import NormalizedModel, create_model, unwrap
from .hub import load, save_model
from .publish import publish

__version__ = "0.1.0"

__all__ = ["DDHubError", "DeepFoolResult", "NormalizedModel", "create_model", "deepfool", "deepfool_unrolled",
           "fgs", "load", "pgd", "publish", "save_model", "unwrap", "__version__"]
