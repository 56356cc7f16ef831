"""Reading weights: safetensors only. Pickled checkpoints can run code when loaded, so they are refused."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import DDHubError
from ..names import WEIGHTS_NAME
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a ``.safetensors`` file or a model directory; pickled checkpoints are refused."""
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = f" (found pickle {pickles[0]}: dd-hub only loads safetensors)" if pickles else ""
            raise DDHubError(f"no {WEIGHTS_NAME} in {path}{hint}")
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise DDHubError(f"checkpoint {path} does not exist")
    if path.suffix in PICKLE_SUFFIXES:
        raise DDHubError(f"{path.name} is a pickle checkpoint, which can run code when loaded; convert it to "
                         "safetensors (safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors'))")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDHubError(f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
    check_finite(state, str(path))
    return state


def check_finite(state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged run): nothing measured on them would mean anything."""
    bad = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise DDHubError(f"{where} holds non-finite weights (NaN or inf, e.g. in {bad[0]}); the run that made them "
                         "diverged: retrain with a lower learning rate")
