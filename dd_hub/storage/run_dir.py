"""The output folder of a run as a unit: locked while a run writes it, never cleared before the run's inputs are
validated, its final files committed as a whole, and its metrics tied to its weights.

Final files (weights, config, metrics, card, figures) are first written into ``OUT/.staging/``; a ``COMMIT`` marker
then records that the set is complete, the files are renamed into ``OUT/`` and the staging folder is removed. A
run killed before the marker leaves the previous folder untouched; one killed after it leaves a commit that the next
run (or ``recover``) finishes. Readers (:func:`dd_hub.storage.metrics.read_metrics`) refuse a folder with an unfinished commit, or whose
``metrics.json`` names other weights than the ones present (its ``files`` hold the sha256 of every final file).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

from ..errors import DDHubError
from ..names import (CARD_NAME, CHECKPOINTS_DIR, COMMIT_NAME, CONFIG_NAME, CURVE_NAME, LOCK_NAME, METRICS_NAME,
                     REFERENCE_DIR, SETTINGS_NAME, STAGING_DIR, TRAIN_LOG_NAME, TRAINING_NAME, WEIGHTS_NAME)
from .atomic_io import read_json_object, write_json_atomic, write_text_atomic
from .metrics import seal

#: what a previous run leaves in a folder; a new run without --resume refuses to write over them
RUN_FILES = (WEIGHTS_NAME, CONFIG_NAME, METRICS_NAME, CARD_NAME, TRAIN_LOG_NAME, CHECKPOINTS_DIR, REFERENCE_DIR,
             SETTINGS_NAME)
#: what a fresh run clears: found in a folder, it belongs to a previous run (of any command) and is refused too
CLEARED = (TRAIN_LOG_NAME, SETTINGS_NAME, CHECKPOINTS_DIR, REFERENCE_DIR)
#: what a run keeps in its folder besides its outputs: never a reason to call the folder someone else's
OURS = (LOCK_NAME, STAGING_DIR, WEIGHTS_NAME, CONFIG_NAME, METRICS_NAME, CARD_NAME, CURVE_NAME, TRAINING_NAME,
        "tensorboard", "logs")
#: recipe keys a resumed run may change; every other change is refused
RESUMABLE_CHANGES = ("harden.epochs", "evaluation.")


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold ``OUT/.dd-hub.lock`` for the duration; a second run on the same folder stops at once, naming the holder.

    A lock is taken over only when provably stale: it names a process of this host that no longer runs. A lock that
    names no process (being written, or not dd-hub's) is left alone with a one-line error. Only the main process of
    a multi-process launch takes it (``RANK`` 0), and only its owner removes it.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DDHubError(f"cannot create {out_dir}: {exc.strerror or exc}; choose another --out") from None
    lock = out_dir / LOCK_NAME
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = _lock_holder(lock)
            if other is None:
                raise DDHubError(f"{out_dir} is locked by {lock}, which names no run (being written, or not "
                                 "dd-hub's); if no dd-hub run uses the folder, remove it") from None
            if _alive(other):
                raise DDHubError(f"{out_dir} is in use by another dd-hub run (pid {other['pid']} on {other['host']}, "
                                 f"since {other.get('since', '?')}); wait for it or choose another --out") from None
            _remove_stale(lock, other)
            continue
        except OSError as exc:
            raise DDHubError(f"cannot lock {out_dir}: {exc.strerror or exc}; choose another --out") from None
        with os.fdopen(fd, "w") as fh:
            json.dump(holder, fh)
        break
    else:
        raise DDHubError(f"cannot lock {out_dir}; remove {lock} if no dd-hub run uses the folder")
    try:
        yield
    finally:
        if _lock_holder(lock) == holder:  # ours: never remove a lock another run took over
            lock.unlink(missing_ok=True)


def _remove_stale(lock: Path, stale: dict) -> None:
    """Remove the lock of ``stale``, a dead holder, and nothing else.

    Two runs can find the same stale lock; the one that comes second may meet the lock the first has just taken.
    So the lock is first moved aside (atomic: one mover per file) and deleted only if it is still the stale one;
    a live holder's lock moved by mistake is put back (``os.link`` never overwrites).
    """
    aside = lock.with_name(f"{lock.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another run removed it first
    if _lock_holder(aside) == stale:
        aside.unlink(missing_ok=True)
        return
    try:
        os.link(aside, lock)
    except FileExistsError:
        pass  # a third run locked meanwhile; the one whose lock was moved no longer holds the folder
    finally:
        aside.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder and "host" in holder else None


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell for another host: assume it runs
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, KeyError, TypeError, OverflowError):
        return True
    return True


def check(out_dir: Path, *, resume: bool = False, overwrite: bool = False,
          outputs: tuple[str, ...] = RUN_FILES, resumable: bool = True) -> None:
    """Refuse, reading only, a folder the run may not write into: a previous run's ``outputs`` or what any run
    leaves (:data:`CLEARED`) unless told (``--resume`` continues it, when the command is ``resumable``;
    ``--overwrite`` replaces it), and a non-empty folder that holds no dd-hub run unless ``--overwrite`` (its files
    are then left alone). Cheap: commands call it before anything slow, and :func:`prepare` again."""
    if resume and overwrite:
        raise DDHubError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    if resume and not resumable:
        raise DDHubError("--resume does not apply here: this command cannot continue a run; pass --overwrite to "
                         "start over")
    try:
        if not out_dir.is_dir():
            return
        entries = [p.name for p in out_dir.iterdir()]
    except OSError as exc:
        raise DDHubError(f"cannot create {out_dir}: {exc.strerror or exc}; choose another --out") from None
    ours = dict.fromkeys((*outputs, *CLEARED))
    found = [name for name in ours if (out_dir / name).exists() or (out_dir / name).is_symlink()]
    if (out_dir / STAGING_DIR / COMMIT_NAME).is_file():
        found.append(STAGING_DIR)
    if found and not resume and not overwrite:
        again, python = ("pass --resume to continue it, ", "resume=True, ") if resumable else ("", "")
        raise DDHubError(f"{out_dir} holds a previous run ({', '.join(found)}); {again}pass --overwrite to replace "
                         f"it, or choose another --out (from Python: {python}overwrite=True or another out_dir)")
    foreign = sorted(name for name in entries if name not in ours and name not in OURS)
    if foreign and not found and not overwrite:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DDHubError(f"{out_dir} is not empty and holds no dd-hub run ({shown}); choose another --out, or pass "
                         "--overwrite to write into it anyway (files dd-hub did not write are left alone; from Python: "
                         "overwrite=True or another out_dir)")


def prepare(out_dir: Path, *, resume: bool = False, overwrite: bool = False,
            outputs: tuple[str, ...] = RUN_FILES, resumable: bool = True) -> None:
    """Make ``out_dir`` ready for a run whose inputs are already validated: finish an interrupted commit, refuse
    what :func:`check` refuses, and only then clear what a fresh run must not reuse."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DDHubError(f"cannot create {out_dir}: {exc.strerror or exc}; choose another --out") from None
    recover(out_dir)
    check(out_dir, resume=resume, overwrite=overwrite, outputs=outputs, resumable=resumable)
    if not resume:
        for path in (out_dir / name for name in CLEARED):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)  # a link is removed, never what it points to


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
    staging = out_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def commit(out_dir: Path, manifest: str = METRICS_NAME) -> None:
    """Move the staged final files into ``out_dir`` as a whole (see the module docstring); the ``manifest`` (a
    model directory's metrics.json, reproduce's results.json, sweep's sweep.json) is sealed with the hashes of the
    others first (:func:`dd_hub.storage.metrics.seal`)."""
    staging = out_dir / STAGING_DIR
    content = read_json_object(staging / manifest, what="dd-hub results", fix="rerun the command")
    write_json_atomic(staging / manifest, seal(content, staging, manifest))
    names = sorted(p.name for p in staging.iterdir())
    write_text_atomic(staging / COMMIT_NAME, "\n".join(names) + "\n")
    recover(out_dir)


def recover(out_dir: Path) -> None:
    """Finish a commit that was interrupted after its marker; drop a staging folder that never got one."""
    staging = out_dir / STAGING_DIR
    marker = staging / COMMIT_NAME
    if marker.is_file():
        for name in marker.read_text().split():
            if (staging / name).exists():
                os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
