"""Model factory and the paper's networks (registered in timm's registry on import)."""
from . import mnist  # noqa: F401  (registers dd_lenet_mnist, dd_mlp_mnist)
from .factory import NormalizedModel, create_model, resolve_name, unwrap

__all__ = ["NormalizedModel", "create_model", "resolve_name", "unwrap"]
