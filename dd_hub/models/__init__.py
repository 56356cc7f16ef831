"""Model factory and the paper's networks (registered in timm's registry on import)."""
from . import cifar, mnist  # noqa: F401  (register dd_convnet_cifar10, dd_nin_cifar10, dd_lenet_mnist, dd_mlp_mnist)
from .factory import create_model, resolve_name
from .normalized import NormalizedModel, normalization_of, unwrap

__all__ = ["NormalizedModel", "create_model", "normalization_of", "resolve_name", "unwrap"]
