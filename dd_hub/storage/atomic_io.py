"""File I/O with guarantees: every file dd-hub writes goes to a temporary name beside its target and is renamed over
it, so a crash or a full disk never leaves a half-written file under a final name; JSON is read under a size limit
with one-line errors; files are hashed in blocks."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import DDHubError


def file_mode() -> int:
    """The permission bits a plain ``open(path, 'w')`` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path``; no temp file survives a failure."""
    path = Path(path)
    try:
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as fh:
            tmp = Path(fh.name)
            try:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            except BaseException:
                fh.close()
                tmp.unlink(missing_ok=True)
                raise
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        fix = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else
               "check that its folder exists and can be written")
        raise DDHubError(f"cannot write {path}: {exc.strerror or exc}; {fix}, or choose another folder") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: object) -> None:
    """Write strict JSON (no NaN or Infinity, which are not JSON) atomically, keys sorted."""
    try:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False)
    except ValueError:
        raise DDHubError(f"refusing to write {Path(path).name}: it holds a non-finite number (NaN or inf); the "
                         "model or its evaluation diverged") from None
    write_text_atomic(path, text + "\n")


def copy_atomic(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` through a temp file and a rename."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DDHubError(f"cannot copy {source} to {target}: {exc.strerror or exc}") from None


def regular_file(path: Path, *, links_within: Path | None = None) -> bool:
    """Whether ``path`` is a file that is not a link, or (``links_within``) a link that resolves inside that folder:
    the way huggingface_hub's cache stores snapshots. A folder dd-hub reads as a unit never reaches outside."""
    if not path.is_file():
        return False
    if not path.is_symlink():
        return True
    if links_within is None:
        return False
    root = links_within.resolve()
    return root in path.resolve().parents


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text_limited(path: str | Path, max_bytes: int) -> str:
    """The UTF-8 text of ``path``, refused (``ValueError``) when it is larger than ``max_bytes``: nothing from
    outside is parsed without a size limit."""
    with Path(path).open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"larger than {max_bytes:,} bytes")
    return data.decode("utf-8")


def read_json_object(path: str | Path, *, what: str, fix: str, max_bytes: int = 16 << 20) -> dict:
    """The JSON object in ``path`` (``what`` it should be, e.g. "timm's config"), at most ``max_bytes`` long, or a
    one-line error ending in ``fix``, the way to repair it."""
    path = Path(path)
    try:
        data = json.loads(read_text_limited(path, max_bytes), parse_constant=_reject_non_finite)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DDHubError(f"{path} is not valid JSON ({exc}); {fix}") from None
    except OSError as exc:
        raise DDHubError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    if not isinstance(data, dict):
        raise DDHubError(f"{path} must hold a JSON object ({what}), not a {type(data).__name__}; {fix}")
    return data


def _reject_non_finite(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows (a non-finite figure)")
