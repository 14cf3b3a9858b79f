"""Reading artifacts back: a run's artifact, or a registered model's files, from the artifact store, checked.

Which bytes an artifact is comes from the ``artifacts`` view (``content_address``, ``sha256``); a model
version names its run and artifact path in ``model_versions``. Every byte read is checked against the
sha256 logged with it (:func:`modelog.wire.artifact_store.checked`): a missing or corrupted object
raises :class:`~modelog.wire.errors.ArtifactError` naming the run, the path, the expected and the actual
sha256, and leaves no file behind. Paths that could escape the destination (``..``, ``%2e%2e``, absolute
paths, ``file:``) are refused with a ValidationError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelog.consumers.query import sql_arrow
from modelog.wire import rules as _rules
from modelog.wire.artifact_store import ArtifactStore, checked
from modelog.wire.errors import ArtifactError, ValidationError
from modelog.wire.settings import Settings

COLUMNS = "run_id, path, uri, sha256, size_bytes, media_type, logged_at, content_address"


def check_path(path: str, field: str = "path") -> str:
    """``path`` if it is a safe artifact path (see :func:`modelog.wire.rules.stored_artifact_path`)."""
    try:
        return _rules.stored_artifact_path(path)
    except ValueError as exc:
        raise ValidationError(field, path, str(exc)) from None


def list_artifacts(run_id: str, settings: Settings) -> list[dict[str, Any]]:
    """The run's artifacts (one row per path, the latest record), sorted by path."""
    return sql_arrow(f"SELECT {COLUMNS} FROM artifacts WHERE run_id = ? ORDER BY path", settings,
                     params=[run_id]).to_pylist()


def select(run_id: str, path: str, settings: Settings) -> tuple[list[dict[str, Any]], bool]:
    """The artifact ``path`` of the run, or every artifact under the directory ``path``; and whether it is
    a directory. Raises ValidationError for an unsafe path, ArtifactError when there is none."""
    check_path(path)
    rows = sql_arrow(f"SELECT {COLUMNS} FROM artifacts WHERE run_id = ? AND (path = ? OR starts_with(path, ?)) "
                     "ORDER BY path", settings, params=[run_id, path, path.rstrip("/") + "/"]).to_pylist()
    exact = [r for r in rows if r["path"] == path]
    if exact:
        return exact, False
    if not rows:
        raise ArtifactError(f"run {run_id} has no artifact {path!r} in the views (modelog artifacts list {run_id})",
                            run_id=run_id, path=path)
    return rows, True


def stream(row: dict[str, Any], settings: Settings, *, hold_last: bool = False) -> Iterator[bytes]:
    """The stored bytes of one artifact row, checked against its sha256 as they pass."""
    store, sha256 = _store_for(row, settings)
    if sha256 != row["sha256"]:
        raise ArtifactError(f"artifact {row['path']!r} of run {row['run_id']}: its content address "
                            f"{row['content_address']} is not its sha256 {row['sha256']}", run_id=row["run_id"],
                            path=row["path"], expected=row["sha256"], actual=sha256)
    return checked(store.chunks(sha256, run_id=row["run_id"], path=row["path"]), row["sha256"],
                   run_id=row["run_id"], path=row["path"], hold_last=hold_last)


def download(run_id: str, path: str, dest: str | Path | None, settings: Settings) -> Path:
    """Download artifact ``path`` of run ``run_id`` (a file, or every file under a directory) to ``dest``.

    ``dest``: a file path, or an existing directory to put it in (default: the current directory). For a
    directory artifact ``dest`` is the directory that receives its files. Returns the file or directory
    written. Files already there with the right sha256 are kept as they are.
    """
    rows, is_dir = select(run_id, path, settings)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    target = Path(dest) if dest is not None else Path.cwd() / name
    if not is_dir:
        if target.is_dir():
            target = target / name
        return _fetch(rows[0], target, settings)
    root = target.resolve()
    prefix = path.rstrip("/") + "/"
    for row in rows:
        rel = row["path"][len(prefix):]
        check_path(row["path"])
        out = (root / rel).resolve()
        if not out.is_relative_to(root):  # belt and braces: check_path already refuses such paths
            raise ValidationError("path", row["path"], "must stay inside the destination directory")
        _fetch(row, out, settings)
    return root


def model_artifact(name: str, settings: Settings, *, version: int | None = None, alias: str | None = None,
                   stage: str | None = None) -> dict[str, Any]:
    """The live version of model ``name`` picked by exactly one of ``version``, ``alias``, ``stage`` (the
    latest version in that stage): its row of ``model_versions`` (run_id, artifact, uri ...)."""
    given = [k for k, v in (("version", version), ("alias", alias), ("stage", stage)) if v is not None]
    if len(given) != 1:
        raise ValidationError("version/alias/stage", given, "give exactly one of version, alias or stage")
    if version is not None:
        where, param = "version = ?", version
    elif alias is not None:
        where, param = "list_contains(aliases, ?)", alias
    else:
        where, param = "stage = ?", stage
    rows = sql_arrow(f"SELECT model, version, stage, aliases, run_id, artifact, uri FROM model_versions "
                     f"WHERE model = ? AND {where} ORDER BY version DESC LIMIT 1", settings,
                     params=[name, param]).to_pylist()
    if not rows:
        raise ArtifactError(f"model {name!r} has no live version with {given[0]} {param!r} in the views")
    row = rows[0]
    if not row["run_id"] or not row["artifact"]:
        raise ArtifactError(f"model {name!r} version {row['version']} names no run artifact (run_id "
                            f"{row['run_id']!r}, artifact {row['artifact']!r}, uri {row['uri']!r}): nothing "
                            "stored to download")
    return row


def load_model_path(name: str, settings: Settings, *, version: int | None = None, alias: str | None = None,
                    stage: str | None = None, dest: str | Path | None = None) -> Path:
    """Download the model version's artifact (checked) and return its local path.

    Default ``dest``: ``$MODELOG_HOME/models/<name>/<version>/``, kept between calls (a file already there
    with the right sha256 is not downloaded again).
    """
    mv = model_artifact(name, settings, version=version, alias=alias, stage=stage)
    if dest is None:
        folder = settings.home / "models" / name / str(mv["version"])
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / mv["artifact"].rstrip("/").rsplit("/", 1)[-1]
    return download(mv["run_id"], mv["artifact"], dest, settings)


# -- internals ------------------------------------------------------------------------------

def _store_for(row: dict[str, Any], settings: Settings) -> tuple[ArtifactStore, str]:
    if not row.get("content_address"):
        raise ArtifactError(f"artifact {row['path']!r} of run {row['run_id']} was not stored (logged with "
                            f"store=False, or before the artifact store): its bytes were at {row['uri']}",
                            run_id=row["run_id"], path=row["path"], expected=row["sha256"])
    return ArtifactStore.for_address(settings, row["content_address"])


def _fetch(row: dict[str, Any], target: Path, settings: Settings) -> Path:
    if target.is_file() and _sha256_of(target) == row["sha256"]:
        return target
    store, sha256 = _store_for(row, settings)
    if sha256 != row["sha256"]:
        raise ArtifactError(f"artifact {row['path']!r} of run {row['run_id']}: its content address "
                            f"{row['content_address']} is not its sha256 {row['sha256']}", run_id=row["run_id"],
                            path=row["path"], expected=row["sha256"], actual=sha256)
    return store.download(sha256, target, run_id=row["run_id"], path=row["path"])


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
