"""Reading weights: safetensors only. Pickled checkpoints can run code when loaded, so they are refused."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import DDHubError
from ..names import WEIGHTS_NAME
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")


def load_weights_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], *, strict: bool = True) -> None:
    """``module.load_state_dict(weights)``, with the module's own layer versions (the ``_metadata`` torch keeps
    beside a state dict, which safetensors has no place for: torchvision's MNASNet refuses weights without it).
    BatchNorm layers get none: a frozen BatchNorm's weights have no ``num_batches_tracked``, which BatchNorm accepts
    only from weights without a version."""
    versioned = OrderedDict(weights)
    versioned._metadata = {prefix: entry for prefix, entry in module.state_dict()._metadata.items()
                           if not isinstance(module.get_submodule(prefix), torch.nn.modules.batchnorm._BatchNorm)}
    module.load_state_dict(versioned, strict=strict)


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


def read_weights(path: str | Path, expected_sha256: str | None = None, *, max_bytes: int | None = None
                 ) -> dict[str, torch.Tensor]:
    """Weights from a ``.safetensors`` file read once into memory, its sha256 checked against ``expected_sha256``
    (what metrics.json recorded) on those very bytes, and loaded from them: no other process can swap the file
    between the check and the load."""
    import hashlib

    from safetensors.torch import load as load_bytes

    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES or not path.is_file():
        return load_state_dict(path)  # the right error
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise DDHubError(f"{path} is {size:,} bytes, over the {max_bytes:,} allowed (DD_HUB_MAX_WEIGHTS_BYTES)")
            data = fh.read()
    except OSError as exc:
        raise DDHubError(f"cannot read {path} ({exc.strerror or exc})") from None
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise DDHubError(f"{path} is not the file metrics.json was measured on (it changed while it was being "
                         "loaded, or was swapped); rerun `dd-hub harden` instead of mixing the files of two runs")
    try:
        state = load_bytes(data)
    except (SafetensorError, ValueError) as exc:
        raise DDHubError(f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
    del data
    check_finite(state, str(path))
    return state


def check_finite(state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged run): nothing measured on them would mean anything."""
    bad = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise DDHubError(f"{where} holds non-finite weights (NaN or inf, e.g. in {bad[0]}); the run that made them "
                         "diverged: retrain with a lower learning rate")
