"""Import an MLflow server or ``mlruns`` directory: ``modelog import mlflow --tracking-uri URI [--experiment NAME]…``.

Every experiment, run (params, tags, full metric histories with steps and timestamps, status, start and end
times, user), artifact and registered model version becomes modelog events, read through
:mod:`modelog.integrations.mlflow_source` (REST API or file store; no ``mlflow`` package).

* **Original times and actors, marked as imported.** Each event's ``occurred_at`` is the MLflow time (run
  start for ``RunStarted``, each point's own timestamp, run end for ``RunEnded``, the version's creation
  time) and its actor the MLflow user (``user_id``; the importer's principal where MLflow has none). The
  envelope's ``source.program`` is ``modelog-import-mlflow``, and the run and version carry the tags
  ``modelog.import = mlflow`` and ``modelog.import.source = <tracking URI>``. Through ``MODELOG_URL`` the
  server replaces the actor with the token's principal (as for every event it ingests); the times stay. So
  does a signing importer (after ``modelog init``: a signed record's actor is its key's principal), and the
  MLflow user then remains only in the run's ``mlflow.user`` tag.
* **All of a run or nothing.** A run's events are held back until everything of it was read (its metric
  histories, its artifacts' bytes stored), then published together: a source that fails halfway (an HTTP
  error, an unreadable file) publishes nothing of that run, and the next import tries it again.
* **Idempotent.** A run keeps its MLflow run id (a derived one if the id is not a modelog id), so a run
  already in the views is skipped; a model version is identified by its model and MLflow version number
  (the ``mlflow.version`` tag): importing again skips both, with the reason in the summary.
* **Artifacts.** Each file's bytes are fetched (file store: read in place; server: ``/get-artifact``),
  hashed and stored content-addressed in modelog's artifact store (decision 0013) and logged with their
  original URI. Without an artifact store, or where the bytes cannot be fetched, the artifact is recorded
  as a reference only (its URI; without its bytes no sha256, so the reference is a run tag
  ``mlflow.artifact_uri``) and the summary says so. Through ``MODELOG_URL`` the bytes go through the
  server's upload route (:mod:`modelog.sdk.http_artifacts`), which logs the artifact itself (at the time
  of the import, as the token's principal).
* **Logged models** (MLflow 3: ``models:/m-…``, files kept apart from the run's artifacts) are imported as
  artifacts of their source run under ``<model name>/`` (as MLflow 2 kept them), and a version registered
  from one names that run and path, so ``modelog model download`` fetches it.
* **Model versions.** Registered in MLflow's order (so a model new to modelog gets MLflow's numbers). Stages
  and aliases are governed changes in modelog: they are kept as the tags ``mlflow.stage`` and
  ``mlflow.aliases``, not applied (a policy must not be bypassed by an import).

Names MLflow allows and modelog does not (metric keys with ``#``, say) are made safe
(:func:`~modelog.integrations.tensorboard.safe_name`); the original is kept where a name changed.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelog.integrations.mlflow_source import Experiment, LoggedModel, MlRun, MlVersion, SourceError, Unreachable
from modelog.integrations.tensorboard import safe_name
from modelog.wire import rules as _rules
from modelog.wire.envelope import now_micros
from modelog.wire.errors import ConfigError, ModelogError
from modelog.wire.models import validate

PROGRAM = "modelog-import-mlflow"
BATCH_POINTS = 5000
ENDED = ("FINISHED", "FAILED", "KILLED")
_EMPTY_ENV = {"python_version": "", "python_implementation": "", "platform": "", "hostname": "", "cpu_count": 0,
              "working_dir": ""}


@dataclass
class MlflowSummary:
    experiments: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    points: int = 0
    params: int = 0
    artifacts: int = 0
    stored_bytes: int = 0
    references: int = 0                                         # artifacts recorded without their bytes
    versions: list[str] = field(default_factory=list)          # "model/version"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    warnings: list[str] = field(default_factory=list)


def run_id_for(mlflow_run_id: str, source_uri: str) -> str:
    """The modelog run id of an MLflow run: its own id where it is a valid modelog id (32 hex digits are),
    else one derived from the source and the id."""
    try:
        return _rules.ident(mlflow_run_id)
    except ValueError:
        return hashlib.sha256(f"modelog-mlflow-v1\0{source_uri}\0{mlflow_run_id}".encode()).hexdigest()[:32]


def micros(ms: int | None) -> int | None:
    return None if ms is None else int(ms) * 1000


def _principal(user: str, default: str) -> str:
    user = (user or "").strip()
    return user[:200] if user else default


class _Publisher:
    """Makes events stamped with the MLflow time and user, validates and emits them; between ``hold()`` and
    ``release()`` it keeps them back, so that a run whose reading fails halfway publishes nothing."""

    def __init__(self, client) -> None:
        self.client = client
        self.default_user = client.settings.principal
        # a signed record's actor is its key's principal (decision 0015): when this client signs, every event
        # is the importer's, and the MLflow user stays in the run's tags (mlflow.user), not in the actor
        self.signed = getattr(client.emitter, "signer", None) is not None
        self._held: list | None = None

    def hold(self) -> None:
        self._held = []

    def release(self, publish: bool = True) -> None:
        held, self._held = self._held, None
        if publish and held:
            self.client.emitter.emit(held)

    def emit(self, at_ms: int | None, user: str, event_type: str, entity_type: str, key: str, **payload: Any) -> None:
        event = self.client.events.make(event_type, entity_type, key, **payload)
        env = event.record["envelope"]
        if at_ms is not None:
            env["occurred_at"] = int(at_ms) * 1000
        if not self.signed:
            env["actor"] = {"principal": _principal(user, self.default_user), "kind": "USER"}
        validate(event_type, event.record)
        if self._held is not None:
            self._held.append(event)
        else:
            self.client.emitter.emit([event])


def _texts(values: dict[str, str], limit: int, what: str, summary: MlflowSummary, where: str) -> dict[str, str]:
    """Names made safe and values cut to ``limit`` characters (each change a warning)."""
    out = {}
    for k, v in values.items():
        key = safe_name(k)
        text = v if isinstance(v, str) else str(v)
        if len(text) > limit:
            summary.warnings.append(f"{where}: {what} {k!r} cut to {limit} characters (was {len(text)})")
            text = text[:limit]
        if key != k:
            summary.warnings.append(f"{where}: {what} {k!r} imported as {key!r}")
        out[key] = text
    return out


def existing_versions(rows: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(model, MLflow version) of the versions imported before, from ``registered_versions`` rows
    (``model``, ``tags``: a map or a list of (key, value) pairs)."""
    out = set()
    for r in rows:
        tags = r.get("tags") or {}
        tags = dict(tags) if not isinstance(tags, dict) else tags
        if "mlflow.version" in tags:
            out.add((r["model"], tags["mlflow.version"]))
    return out


def import_mlflow(client, source, *, experiments: list[str] | None = None, existing_runs: set[str] | None = None,
                  versions_before: set[tuple[str, str]] | None = None, store=None,
                  progress: Callable[[int], None] | None = None, plan: Callable[[int], None] | None = None
                  ) -> MlflowSummary:
    """Import what ``source`` (a FileStore or RestStore) holds through ``client`` (see the module doc).

    ``experiments``: MLflow experiment names to import (default: all; an unknown name raises SourceError);
    with them, only the model versions of their runs.
    ``existing_runs``: run ids already in the views (skipped); ``versions_before``: see
    :func:`existing_versions`. ``store``: the ArtifactStore for the bytes (None: references only).
    ``plan(n)`` is called once with the number of runs and versions to go through, ``progress(1)`` after each.
    """
    summary = MlflowSummary()
    pub = _Publisher(client)
    existing_runs = set(existing_runs or ())
    versions_before = set(versions_before or ())
    exps = source.experiments()
    if experiments:
        by_name = {e.name: e for e in exps}
        missing = [n for n in experiments if n not in by_name]
        if missing:
            known = ", ".join(sorted(by_name)) or "none"
            raise SourceError(f"--experiment: no MLflow experiment named {', '.join(map(repr, missing))} "
                              f"(experiments there: {known})")
        exps = [by_name[n] for n in dict.fromkeys(experiments)]
    runs: list[tuple[Experiment, MlRun]] = []
    by_run: dict[str, list[tuple[LoggedModel, str]]] = {}  # MLflow run id -> its logged models, their paths
    model_paths: dict[str, tuple[str, str]] = {}  # logged model id -> (MLflow run id, path in the run)
    for exp in exps:
        if exp.deleted:
            summary.skipped.append((f"experiment {exp.name}", "deleted in MLflow"))
            continue
        runs.extend((exp, r) for r in source.runs(exp))
        for lm, path in logged_model_paths(source.logged_models(exp)):
            if lm.source_run_id is None:
                summary.warnings.append(f"logged model {lm.name} ({lm.model_id}) names no run: not imported")
                continue
            by_run.setdefault(lm.source_run_id, []).append((lm, path))
            model_paths[lm.model_id] = (lm.source_run_id, path)
    versions = source.model_versions()
    if plan:
        plan(len(runs) + len(versions))
    declared: set[str] = set()
    imported: dict[str, str] = {}  # MLflow run id -> modelog run id (this import and before)
    for exp, run in runs:
        rid = run_id_for(run.run_id, source.uri)
        imported[run.run_id] = rid
        what = f"run {exp.name}/{run.name} ({run.run_id})"
        try:
            if run.deleted:
                summary.skipped.append((what, "deleted in MLflow"))
            elif rid in existing_runs:
                summary.skipped.append((what, f"already imported (run {rid})"))
            else:
                experiment = safe_name(exp.name)
                if experiment not in declared:
                    pub.emit(exp.created_ms, "", "ExperimentCreated", "experiment", experiment, experiment=experiment,
                             description=exp.tags.get("mlflow.note.content") or None)
                    declared.add(experiment)
                    summary.experiments.append(exp.name)
                pub.hold()  # all of the run's events, or none (a source error halfway publishes nothing)
                try:
                    _import_run(pub, source, experiment, run, rid, store, summary, by_run.get(run.run_id, []))
                except BaseException:
                    pub.release(publish=False)
                    raise
                pub.release()
                summary.runs.append(f"{exp.name}/{run.name}")
        except (SourceError, ModelogError) as exc:
            summary.skipped.append((what, f"failed: {exc}"))
        if progress:
            progress(1)
    for v in versions:
        mlflow_run = version_source(v)[0] or (model_paths.get(v.source[len("models:/"):].split("/")[0], (None,))[0]
                                             if v.source.startswith("models:/") else None)
        if experiments and mlflow_run not in imported:
            summary.skipped.append((f"model version {v.name}/{v.version}",
                                    "its run is not in the experiments imported (--experiment)"))
        else:
            _import_version(pub, source, v, imported, model_paths, versions_before, summary)
        if progress:
            progress(1)
    client.flush()
    return summary


def logged_model_paths(models: list[LoggedModel]) -> list[tuple[LoggedModel, str]]:
    """Each logged model with the path its files get in its run: its name (as MLflow 2 kept a model under
    ``runs:/<id>/<name>``), or ``<name>-<model id>`` for a later one of the same name in the same run."""
    seen: set[tuple[str | None, str]] = set()
    out = []
    for lm in sorted(models, key=lambda m: m.model_id):
        base = safe_name(lm.name).replace(" ", "_").strip("/").replace("/", "_") or "model"
        path = base if (lm.source_run_id, base) not in seen else f"{base}-{lm.model_id}"
        seen.add((lm.source_run_id, base))
        out.append((lm, path))
    return out


def _import_run(pub: _Publisher, source, experiment: str, run: MlRun, rid: str, store, summary: MlflowSummary,
                models: list[tuple[LoggedModel, str]] = ()) -> None:
    where = f"run {run.run_id}"
    tags = _texts(run.tags, _rules.MAX_TAG_VALUE, "tag", summary, where)
    tags.update({"modelog.import": "mlflow", "modelog.import.source": source.uri[:_rules.MAX_TAG_VALUE],
                 "mlflow.run_id": run.run_id, "mlflow.experiment_id": run.experiment_id})
    name = safe_name(run.name or run.run_id)
    start_ms = run.start_ms if run.start_ms is not None else run.end_ms
    user = run.user
    if pub.signed and user and "mlflow.user" not in tags:  # the actor is the importer's: keep who ran it
        tags = {**tags, "mlflow.user": user}
    pub.emit(start_ms, user, "RunStarted", "run", rid, run_id=rid, experiment=experiment, name=name,
             start_time=micros(start_ms) if start_ms is not None else now_micros(), tags=tags,
             environment=_EMPTY_ENV)
    params = _texts(run.params, _rules.MAX_PARAM_VALUE, "param", summary, where)
    if params:
        pub.emit(start_ms, user, "ParamsLogged", "run", rid, run_id=rid,
                 params=[{"key": k, "value": v, "value_type": "str"} for k, v in sorted(params.items())])
        summary.params += len(params)
    for key in run.metric_keys:
        safe = safe_name(key)
        if safe != key:
            summary.warnings.append(f"{where}: metric {key!r} imported as {safe!r}")
        points = []
        for p in source.history(run, key):
            if p.step < 0:
                summary.warnings.append(f"{where}: metric {key!r} point at step {p.step} skipped (steps are >= 0)")
                continue
            points.append({"key": safe, "value": p.value, "step": p.step, "timestamp": p.timestamp_ms * 1000})
        for i in range(0, len(points), BATCH_POINTS):
            batch = points[i:i + BATCH_POINTS]
            pub.emit(batch[-1]["timestamp"] // 1000, user, "MetricsLogged", "run", rid, run_id=rid, points=batch)
        summary.points += len(points)
    logged_at = run.end_ms if run.end_ms is not None else start_ms
    unreachable = []
    files = source.artifacts(run)
    for path, _size in files:
        try:
            _rules.stored_artifact_path(path)
        except ValueError as exc:
            summary.warnings.append(f"{where}: artifact {path!r} not imported: {exc}")
            continue
        try:
            _import_artifact(pub, run, rid, path, store, logged_at, summary,
                             fetch=lambda out, path=path: source.fetch(run, path, out),
                             uri=source.artifact_uri(run, path))
        except Unreachable as exc:
            unreachable.append(path)
            summary.warnings.append(f"{where}: artifact {path!r}: bytes unreachable ({exc}); kept as a reference")
    for lm, prefix in models:  # MLflow 3's logged models of this run: their files under <prefix>/
        for path, _size in source.model_artifacts(lm):
            name = f"{prefix}/{path}"
            try:
                _rules.stored_artifact_path(name)
            except ValueError as exc:
                summary.warnings.append(f"{where}: logged model file {name!r} not imported: {exc}")
                continue
            try:
                _import_artifact(pub, run, rid, name, store, logged_at, summary,
                                 fetch=lambda out, lm=lm, path=path: source.fetch_model(lm, path, out),
                                 uri=f"{lm.artifact_uri.rstrip('/')}/{path}")
            except Unreachable as exc:
                unreachable.append(name)
                summary.warnings.append(f"{where}: logged model file {name!r}: bytes unreachable ({exc})")
    if unreachable or (not files and run.artifact_uri and _remote(run.artifact_uri)):
        pub.emit(logged_at, user, "TagsSet", "run", rid, run_id=rid,
                 tags={"mlflow.artifact_uri": run.artifact_uri[:_rules.MAX_TAG_VALUE]})
        summary.references += len(unreachable)
    if run.status in ENDED:
        end_ms = run.end_ms if run.end_ms is not None else start_ms
        pub.emit(end_ms, user, "RunEnded", "run", rid, run_id=rid, status=run.status, end_time=micros(end_ms),
                 error=None)


def _remote(uri: str) -> bool:
    return not uri.startswith("file:") and "://" in uri or uri.startswith("mlflow-artifacts:")


def _import_artifact(pub: _Publisher, run: MlRun, rid: str, path: str, store, at_ms: int | None,
                     summary: MlflowSummary, *, fetch: Callable[[Any], None], uri: str) -> None:
    """Fetch one file to a temporary file (``fetch(out)``), hash it, store it, log it at ``path``."""
    with tempfile.NamedTemporaryFile(prefix="modelog-mlflow-", delete=True) as tmp:
        fetch(tmp)
        tmp.flush()
        h, size = hashlib.sha256(), 0
        with open(tmp.name, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        sha256 = h.hexdigest()
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        address = None
        if getattr(store, "publishes", False):  # through a modelog server (MODELOG_URL): it stores and logs
            from modelog.sdk.uploads import Upload

            store.upload(Upload(rid, Path(tmp.name), path, uri[:2000], sha256, size, media))
            summary.stored_bytes += size
            summary.artifacts += 1
            return
        if store is not None:
            address = store.put_file(Path(tmp.name), sha256, size)
            summary.stored_bytes += size
        else:
            summary.references += 1
    pub.emit(at_ms, run.user, "ArtifactLogged", "run", rid, run_id=rid, path=path,
             uri=uri[:2000], sha256=sha256, size_bytes=size, media_type=media,
             content_address=address)
    summary.artifacts += 1


_RUN_SOURCE = (re.compile(r"runs:/([^/]+)/(.+)"), re.compile(r"mlflow-artifacts:/+[^/]+/([^/]+)/artifacts/(.+)"),
               re.compile(r"(?:file:)?/.*/([0-9a-f]{32})/artifacts/(.+)"))


def version_source(v: MlVersion) -> tuple[str | None, str | None]:
    """(MLflow run id, artifact path in the run) a version's ``source`` names, else (its run_id, None)."""
    for pattern in _RUN_SOURCE:
        m = pattern.fullmatch(v.source)
        if m:
            return m.group(1), m.group(2).strip("/")
    return v.run_id, None


def _import_version(pub: _Publisher, source, v: MlVersion, imported: dict[str, str],
                    model_paths: dict[str, tuple[str, str]], before: set[tuple[str, str]],
                    summary: MlflowSummary) -> None:
    model = safe_name(v.name)
    what = f"model version {v.name}/{v.version}"
    if (model, str(v.version)) in before:
        summary.skipped.append((what, "already imported"))
        return
    if v.status not in ("READY", ""):
        summary.skipped.append((what, f"status {v.status} in MLflow (not READY)"))
        return
    mlflow_run, artifact = version_source(v)
    if v.source.startswith("models:/") and artifact is None:  # an MLflow 3 logged model: its files' run path
        found = model_paths.get(v.source[len("models:/"):].split("/")[0])
        if found is not None:
            mlflow_run, artifact = found
    run_id = imported.get(mlflow_run) if mlflow_run else None
    if mlflow_run and run_id is None:
        run_id = run_id_for(mlflow_run, source.uri)
    if artifact is not None:
        try:
            _rules.stored_artifact_path(artifact)
        except ValueError:
            artifact = None
    tags = _texts(v.tags, _rules.MAX_TAG_VALUE, "tag", summary, what)
    tags.update({"modelog.import": "mlflow", "modelog.import.source": source.uri[:_rules.MAX_TAG_VALUE],
                 "mlflow.version": str(v.version), "mlflow.stage": v.stage})
    if v.aliases:
        tags["mlflow.aliases"] = ",".join(v.aliases)
    if model != v.name:
        tags["mlflow.name"] = v.name[:_rules.MAX_TAG_VALUE]
    try:
        pub.emit(v.created_ms, v.user, "ModelVersionRegistered", "model", f"model:{model}", model=model,
                 run_id=run_id, artifact=artifact, uri=v.source[:2000] or None, semver=None,
                 description=(v.description or None) and v.description[:8000], tags=tags)
    except ModelogError as exc:
        summary.skipped.append((what, f"failed: {exc}"))
        return
    before.add((model, str(v.version)))
    summary.versions.append(f"{v.name}/{v.version}")


def artifact_store(client):
    """The client's artifact store, or None (with the reason) when there is none configured."""
    try:
        return client.uploads.store, None
    except ConfigError as exc:
        return None, str(exc)
