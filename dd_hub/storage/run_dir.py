"""The output folder of a run as a unit: locked while a run writes it, never cleared before the run's inputs are
validated, its final files committed as a whole, and its metrics tied to its weights.

Final files (weights, config, metrics, card, figures) are first written into ``OUT/.staging/``; a ``COMMIT`` marker
then records that the set is complete, the files are renamed into ``OUT/`` and the staging folder is removed. A
run killed before the marker leaves the previous folder untouched; one killed after it leaves a commit that the next
run (or ``recover``) finishes. Readers (:func:`check_complete`) refuse a folder with an unfinished commit, or whose
``metrics.json`` names other weights than the ones present (its ``files`` hold the sha256 of every final file).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

from .atomic_io import read_json_object, write_json_atomic, write_text_atomic
from ..errors import DDHubError

LOCK_NAME = ".dd-hub.lock"
STAGING_NAME = ".staging"
COMMIT_NAME = "COMMIT"
SETTINGS_NAME = "run.json"
METRICS_NAME = "metrics.json"
#: what a previous run leaves in a folder; a new run without --resume refuses to write over them
RUN_FILES = ("model.safetensors", "config.json", METRICS_NAME, "README.md", "train_log.jsonl", "checkpoints",
             "reference", SETTINGS_NAME)
#: recipe keys a resumed run may change; every other change is refused
RESUMABLE_CHANGES = ("harden.epochs", "evaluation.")


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT/.dd-hub.lock`` for the duration; a second run on the same folder stops at once, naming the holder.

    A lock whose process no longer runs on this host is stale and taken over. Only the main process of a
    multi-process launch takes it (``RANK`` 0).
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_NAME
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _lock_holder(lock)
            if other is not None and _alive(other):
                raise DDHubError(f"{out_dir} is in use by another dd-hub run (pid {other['pid']} on {other['host']}, "
                                 f"since {other.get('since', '?')}); wait for it or choose another --out") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(holder, fh)
        break
    else:
        raise DDHubError(f"cannot lock {out_dir}; remove {lock} if no dd-hub run uses the folder")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell for another host: assume it runs
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, KeyError, TypeError):
        return True
    return True


def previous_run_files(out_dir: Path) -> list[str]:
    return [name for name in RUN_FILES if (out_dir / name).exists()]


def prepare(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out_dir`` ready for a run whose inputs are already validated: finish an interrupted commit, refuse to
    write over a previous run unless told (``--resume`` continues it, ``--overwrite`` replaces it), and only then
    clear what a fresh run must not reuse (its checkpoints and training log)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recover(out_dir)
    found = previous_run_files(out_dir)
    if resume and overwrite:
        raise DDHubError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    if found and not resume and not overwrite:
        raise DDHubError(f"{out_dir} holds a previous run ({', '.join(found)}); pass --resume to continue it, "
                         "--overwrite to replace it, or choose another --out")
    if not resume:
        (out_dir / "train_log.jsonl").unlink(missing_ok=True)
        (out_dir / SETTINGS_NAME).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        shutil.rmtree(out_dir / "reference", ignore_errors=True)


def check_settings(out_dir: Path, settings: dict, *, resume: bool) -> list[str]:
    """Record the run's settings (recipe and run options) in ``OUT/run.json``; when resuming, compare them with the
    recorded ones first. Returns the keys a resume changed (only :data:`RESUMABLE_CHANGES` are allowed)."""
    path = out_dir / SETTINGS_NAME
    changed: list[str] = []
    if resume and path.is_file():
        recorded = read_json_object(path, what="the settings of the run", fix="resume without it: pass --overwrite")
        changed = sorted(_differences(recorded, settings))
        refused = [key for key in changed if not key.startswith(RESUMABLE_CHANGES)]
        if refused:
            raise DDHubError(f"--resume with other settings than the run in {out_dir}: {', '.join(refused)} "
                             "changed; only harden.epochs and evaluation.* may change when resuming (or pass "
                             "--overwrite to start over)")
    write_json_atomic(path, settings)
    return changed


def _differences(old: object, new: object, prefix: str = "") -> set[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return set().union(*(_differences(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys)) if keys else set()
    return set() if old == new else {prefix.rstrip(".")}


def staging_dir(out_dir: Path) -> Path:
    """An empty ``OUT/.staging/`` for the run's final files."""
    staging = out_dir / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def commit(out_dir: Path) -> None:
    """Move the staged final files into ``out_dir`` as a whole (see the module docstring)."""
    staging = out_dir / STAGING_NAME
    names = sorted(p.name for p in staging.iterdir())
    files = {name: sha256(staging / name) for name in names if name != METRICS_NAME}
    metrics = read_json_object(staging / METRICS_NAME, what="dd-hub metrics", fix="rerun the command")
    metrics = {**metrics, "files": files}
    write_json_atomic(staging / METRICS_NAME, {**metrics, "digest": metrics_digest(metrics)})
    write_text_atomic(staging / COMMIT_NAME, "\n".join(names) + "\n")
    recover(out_dir)


def metrics_digest(metrics: dict) -> str:
    """sha256 of the metrics' canonical JSON, without the digest itself: a hand edit no longer matches."""
    body = {k: v for k, v in metrics.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def recover(out_dir: Path) -> None:
    """Finish a commit that was interrupted after its marker; drop a staging folder that never got one."""
    staging = out_dir / STAGING_NAME
    marker = staging / COMMIT_NAME
    if marker.is_file():
        for name in marker.read_text().split():
            if (staging / name).exists():
                os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)


def check_complete(model_dir: Path) -> dict | None:
    """For readers (load, eval, publish): refuse a folder with an unfinished commit, or whose metrics.json records
    other files than those present. Returns the metrics (None for a plain timm folder without metrics.json)."""
    if (model_dir / STAGING_NAME / COMMIT_NAME).is_file():
        raise DDHubError(f"{model_dir} was interrupted while its files were being replaced; rerun the same "
                         "`dd-hub harden ... --resume` to finish it")
    path = model_dir / METRICS_NAME
    if not path.is_file():
        return None
    metrics = read_json_object(path, what="dd-hub metrics", fix="rerun `dd-hub harden`")
    recorded = metrics.get("files")
    if not isinstance(recorded, dict):
        raise DDHubError(f"{path} records no file hashes, so nothing ties it to the weights beside it; rerun "
                         "`dd-hub harden` (or remove metrics.json to use the folder as a plain timm checkpoint)")
    if metrics.get("digest") != metrics_digest(metrics):
        raise DDHubError(f"{path} was changed after the run that measured it, so its figures cannot be trusted; "
                         "rerun `dd-hub harden`")
    for name, digest in recorded.items():
        if not (model_dir / name).is_file() or sha256(model_dir / name) != digest:
            raise DDHubError(f"{model_dir / name} is not the file {METRICS_NAME} was measured on (missing or "
                             "changed); rerun `dd-hub harden` instead of mixing the files of two runs")
    return metrics
