"""Checkpoint folders of a run: names, and which to try on resume (newest usable first).

``checkpoints/step_XXXXXX/`` holds one checkpoint; ``checkpoints/latest.json`` names the newest
complete one; a checkpoint being written lives in ``checkpoints/.tmp_step_XXXXXX`` until it is
renamed into place (:meth:`lab.runs.RunWriter.commit_checkpoint`).

>>> checkpoint_dir(Path("runs/r"), 4), checkpoint_tmp_dir(Path("runs/r"), 4).name
(PosixPath('runs/r/checkpoints/step_000004'), '.tmp_step_000004')
"""

from __future__ import annotations

from pathlib import Path

from .files import CHECKPOINTS_DIR, LATEST_FILE, read_json, step_name, step_of

TMP_PREFIX = ".tmp_"


def checkpoint_dir(run: Path, step: int) -> Path:
    """``run/checkpoints/step_XXXXXX``: where the checkpoint of ``step`` lives."""
    return Path(run) / CHECKPOINTS_DIR / step_name(step)


def checkpoint_tmp_dir(run: Path, step: int) -> Path:
    """``run/checkpoints/.tmp_step_XXXXXX``: where the checkpoint of ``step`` is written before its commit."""
    return Path(run) / CHECKPOINTS_DIR / f"{TMP_PREFIX}{step_name(step)}"


def checkpoint_candidates(path: str | Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """Checkpoints to try on resume, newest first, and problems met while listing them.

    The one ``latest.json`` names comes first; then every other complete ``step_*`` folder
    by step (so a torn ``latest.json`` or a corrupt newest checkpoint falls back to the
    previous kept one).
    """
    ck = Path(path) / CHECKPOINTS_DIR
    problems: list[str] = []
    found: list[tuple[int, Path]] = []
    latest = ck / LATEST_FILE
    label = f"{CHECKPOINTS_DIR}/{LATEST_FILE}"
    if latest.is_symlink() or latest.exists():
        rec, prob = read_json(latest, label)
        if prob:
            problems.append(prob)
        elif not (isinstance(rec, dict) and isinstance(rec.get("step"), int) and isinstance(rec.get("path"), str)
                  and "/" not in rec["path"] and rec["path"] not in ("", ".", "..")):
            problems.append(f"{label}: not of the form {{\"step\": S, \"path\": \"step_S\"}}")
        elif not (ck / rec["path"]).is_dir():
            problems.append(f"{label}: names {rec['path']}, which does not exist")
        else:
            found.append((rec["step"], ck / rec["path"]))
    folders = []
    for d in ck.glob("step_*") if ck.is_dir() else []:
        s = step_of(d)
        if d.is_dir() and s is not None and all(d != f for _, f in found):
            folders.append((s, d))
    found += sorted(folders, reverse=True)
    return found, problems


def latest_checkpoint(path: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest checkpoint (``latest.json`` first, else the newest folder), or None."""
    found, _ = checkpoint_candidates(path)
    return found[0] if found else None
