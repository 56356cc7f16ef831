"""dd-hub's own architectures (``dd_lenet_mnist``, ``dd_mlp_mnist``, ...) in timm's registry as soon as both
``dd_hub`` and ``timm`` are imported, in either order, without ``import dd_hub`` importing timm (or torch) itself:
``timm.create_model("hf-hub:ORG/NAME", pretrained=True)`` on one of their checkpoints then works after a plain
``import dd_hub``. When timm is not imported yet, a one-shot import hook registers them right after it is.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: every architecture dd-hub registers is named ``dd_*`` (timm's own never are)
OWN_ARCHITECTURE_PREFIX = "dd_"


def is_own_architecture(name: str) -> bool:
    """Whether ``name`` is one of dd-hub's own architectures (which plain timm knows only once dd_hub is imported)."""
    return name.startswith(OWN_ARCHITECTURE_PREFIX)


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Finds timm with the other finders and registers dd-hub's architectures once timm's module has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_timm = spec.loader.exec_module

        def exec_module(module):
            run_timm(module)
            importlib.import_module("dd_hub.models")

        spec.loader.exec_module = exec_module
        return spec


def register_with_timm() -> None:
    """Register now if timm is imported, else as soon as it is (idempotent)."""
    if "timm" in sys.modules:
        importlib.import_module("dd_hub.models")
    elif not any(isinstance(finder, _RegisterAfterTimm) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())
