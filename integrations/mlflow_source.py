"""Reading an MLflow tracking server or ``mlruns`` directory, without the ``mlflow`` package.

Two sources with one interface, used by :mod:`modelog.integrations.mlflow_import`:

* :class:`FileStore` reads MLflow's file store directly: ``<root>/<experiment_id>/meta.yaml``, each run's
  ``<run_id>/meta.yaml`` with ``params/``, ``tags/``, ``metrics/`` (one file per key, nested by ``/``; a
  metric file holds ``<timestamp ms> <value> <step>`` lines) and ``artifacts/``; the registry under
  ``<root>/models/<name>/`` (``meta.yaml``, ``version-<n>/meta.yaml``, ``tags/``, ``aliases/``).
* :class:`RestStore` talks to a server's REST API (``/api/2.0/mlflow/...``) over plain HTTP: experiments,
  runs and registered model versions through the ``search`` endpoints (paged), full metric histories
  through ``metrics/get-history``, artifacts through ``artifacts/list`` and ``/get-artifact``.

MLflow 3's logged models (``<experiment_id>/models/<model_id>/`` in the file store; ``logged-models/search``
and its artifact routes on a server) keep their files apart from their run's artifacts; both sources list
and fetch them (``logged_models``, ``model_artifacts``, ``fetch_model``).

Both return plain records (:class:`Experiment`, :class:`MlRun`, :class:`MlVersion`); times are MLflow's
milliseconds since the epoch. Reading is pure apart from the file or socket I/O; nothing is written.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

STATUS_NAMES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


class SourceError(Exception):
    """The MLflow source cannot be read (missing directory, HTTP error, malformed file)."""


class Unreachable(SourceError):
    """An artifact's bytes cannot be fetched from the source (its URI is kept as a reference)."""


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    created_ms: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    deleted: bool = False


@dataclass
class MlRun:
    run_id: str
    experiment_id: str
    name: str
    user: str
    status: str  # RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_ms: int | None
    end_ms: int | None
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metric_keys: list[str] = field(default_factory=list)
    deleted: bool = False


@dataclass
class MlVersion:
    name: str
    version: int
    created_ms: int | None
    user: str
    source: str
    run_id: str | None
    description: str | None
    stage: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "READY"


@dataclass(frozen=True)
class LoggedModel:
    """An MLflow 3 logged model (``models:/m-…``): its files live apart from its run's artifacts."""

    model_id: str
    name: str
    source_run_id: str | None
    artifact_uri: str


@dataclass(frozen=True)
class Point:
    value: float
    timestamp_ms: int
    step: int


# -- meta.yaml (the flat subset MLflow writes with yaml.safe_dump) --------------------------------------

def parse_meta(text: str) -> dict[str, Any]:
    """The top-level scalars of an MLflow ``meta.yaml``: ``key: value`` lines, values plain, quoted
    ('...' or "...") or folded onto indented continuation lines; ints as int, ``null``/``~``/empty as None.
    Nested blocks (``tags: []`` lists) are skipped."""
    out: dict[str, Any] = {}
    key: str | None = None
    parts: list[str] = []

    def close() -> None:
        if key is not None:
            out[key] = _scalar(" ".join(parts))

    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t-":  # a continuation of the value above (or a nested list item)
            if key is not None:
                parts.append(line.strip())
            continue
        close()
        name, sep, rest = line.partition(":")
        key, parts = (name.strip(), [rest.strip()]) if sep else (None, [])
    close()
    return out


def _scalar(text: str) -> Any:
    text = text.strip()
    if text in ("", "null", "~"):
        return None
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return json.loads(text)
    if text in ("[]", "{}"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


def parse_metric_line(line: str) -> Point:
    """One line of a file-store metric file: ``<timestamp ms> <value> <step>`` (older files: no step)."""
    parts = line.split()
    if len(parts) < 2:
        raise SourceError(f"metric line {line!r}: expected '<timestamp> <value> [<step>]'")
    value = float(parts[1])  # 'nan', 'inf', '-inf' parse too
    return Point(value, int(parts[0]), int(parts[2]) if len(parts) > 2 else 0)


def _key_files(directory: Path) -> dict[str, Path]:
    """Files under ``directory`` by key (their path relative to it: MLflow nests keys with '/')."""
    if not directory.is_dir():
        return {}
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}


def _text_files(directory: Path) -> dict[str, str]:
    return {k: p.read_text(encoding="utf-8") for k, p in _key_files(directory).items()}


def local_path(uri: str, base: Path) -> Path | None:
    """The local directory of a ``file:`` URI or a plain path (relative to ``base``); None for other schemes."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":/", ":\\")):
        p = Path(uri)
        return p if p.is_absolute() else base / p
    return None


# -- the file store ------------------------------------------------------------------------------------

class FileStore:
    """An ``mlruns`` directory (MLflow's file store)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError(f"{root}: not a directory (an MLflow file store: mlruns/)")
        self.uri = self.root.resolve().as_uri()

    def experiments(self) -> list[Experiment]:
        out = []
        for base, deleted in ((self.root, False), (self.root / ".trash", True)):
            if not base.is_dir():
                continue
            for d in sorted(base.iterdir()):
                meta_file = d / "meta.yaml"
                if d.name in ("models", ".trash") or not meta_file.is_file():
                    continue
                meta = parse_meta(meta_file.read_text(encoding="utf-8"))
                if meta.get("name") is None:
                    continue
                out.append(Experiment(str(meta.get("experiment_id", d.name)), str(meta["name"]),
                                      meta.get("creation_time"), _text_files(d / "tags"),
                                      deleted or meta.get("lifecycle_stage") == "deleted"))
        return out

    def _experiment_dir(self, exp: Experiment) -> Path:
        d = self.root / exp.id
        return d if d.is_dir() else self.root / ".trash" / exp.id

    def runs(self, exp: Experiment) -> Iterator[MlRun]:
        for d in sorted(self._experiment_dir(exp).iterdir()):
            meta_file = d / "meta.yaml"
            if not d.is_dir() or not meta_file.is_file():
                continue
            meta = parse_meta(meta_file.read_text(encoding="utf-8"))
            if not meta.get("run_id") and not meta.get("run_uuid"):
                continue
            tags = _text_files(d / "tags")
            status = meta.get("status")
            yield MlRun(
                run_id=str(meta.get("run_id") or meta.get("run_uuid")), experiment_id=exp.id,
                name=str(meta.get("run_name") or tags.get("mlflow.runName") or d.name),
                user=str(meta.get("user_id") or tags.get("mlflow.user") or ""),
                status=STATUS_NAMES.get(status, status) if isinstance(status, int) else str(status or "FINISHED"),
                start_ms=meta.get("start_time"), end_ms=meta.get("end_time"),
                artifact_uri=str(meta.get("artifact_uri") or (d / "artifacts").resolve().as_uri()),
                params=_text_files(d / "params"), tags=tags, metric_keys=sorted(_key_files(d / "metrics")),
                deleted=meta.get("lifecycle_stage") == "deleted")

    def history(self, run: MlRun, key: str) -> list[Point]:
        f = self._run_dir(run) / "metrics" / key
        return [parse_metric_line(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _run_dir(self, run: MlRun) -> Path:
        d = self.root / run.experiment_id / run.run_id
        return d if d.is_dir() else self.root / ".trash" / run.experiment_id / run.run_id

    def _artifact_root(self, run: MlRun) -> Path:
        p = local_path(run.artifact_uri, self.root)
        if p is None:
            raise Unreachable(f"artifact root {run.artifact_uri} is not a local directory")
        return p

    def artifacts(self, run: MlRun) -> list[tuple[str, int]]:
        try:
            root = self._artifact_root(run)
        except Unreachable:
            return []
        return [(k, p.stat().st_size) for k, p in _key_files(root).items()]

    def artifact_uri(self, run: MlRun, path: str) -> str:
        return run.artifact_uri.rstrip("/") + "/" + path

    def fetch(self, run: MlRun, path: str, out: BinaryIO) -> None:
        src = self._artifact_root(run) / path
        try:
            with src.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
        except OSError as exc:
            raise Unreachable(f"{src}: {exc}") from exc

    def logged_models(self, exp: Experiment) -> list[LoggedModel]:
        out = []
        models = self._experiment_dir(exp) / "models"
        for d in sorted(models.iterdir()) if models.is_dir() else []:
            if not (d / "meta.yaml").is_file():
                continue
            meta = parse_meta((d / "meta.yaml").read_text(encoding="utf-8"))
            out.append(LoggedModel(str(meta.get("model_id") or d.name), str(meta.get("name") or d.name),
                                   meta.get("source_run_id") or None,
                                   str(meta.get("artifact_location") or (d / "artifacts").resolve().as_uri())))
        return out

    def model_artifacts(self, model: LoggedModel) -> list[tuple[str, int]]:
        root = local_path(model.artifact_uri, self.root)
        return [(k, p.stat().st_size) for k, p in _key_files(root).items()] if root is not None else []

    def fetch_model(self, model: LoggedModel, path: str, out: BinaryIO) -> None:
        root = local_path(model.artifact_uri, self.root)
        if root is None:
            raise Unreachable(f"logged model root {model.artifact_uri} is not a local directory")
        try:
            with (root / path).open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
        except OSError as exc:
            raise Unreachable(f"{root / path}: {exc}") from exc

    def model_versions(self) -> list[MlVersion]:
        models = self.root / "models"
        out: list[MlVersion] = []
        if not models.is_dir():
            return out
        for m in sorted(models.iterdir()):
            meta_file = m / "meta.yaml"
            if not meta_file.is_file():
                continue
            name = str(parse_meta(meta_file.read_text(encoding="utf-8")).get("name") or m.name)
            aliases: dict[int, list[str]] = {}
            for alias, text in _text_files(m / "aliases").items():
                if text.strip().isdigit():
                    aliases.setdefault(int(text.strip()), []).append(alias)
            for v in m.glob("version-*"):
                vm = v / "meta.yaml"
                if not vm.is_file():
                    continue
                meta = parse_meta(vm.read_text(encoding="utf-8"))
                number = int(meta.get("version") or v.name.split("-", 1)[1])
                out.append(MlVersion(name, number, meta.get("creation_timestamp"), str(meta.get("user_id") or ""),
                                     str(meta.get("source") or ""), meta.get("run_id") or None,
                                     meta.get("description") or None, str(meta.get("current_stage") or "None"),
                                     sorted(aliases.get(number, [])), _text_files(v / "tags"),
                                     str(meta.get("status") or "READY")))
        return sorted(out, key=lambda v: (v.name, v.version))


# -- the REST API ----------------------------------------------------------------------------------------

PAGE = 1000
HISTORY_PAGE = 25000


class RestStore:
    """An MLflow tracking server at ``uri`` (``http://host:port``), through its REST API."""

    def __init__(self, uri: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        self.uri = uri.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout

    @staticmethod
    def auth_headers(env: dict[str, str]) -> dict[str, str]:
        """``Authorization`` from MLflow's own variables: MLFLOW_TRACKING_TOKEN (Bearer) or
        MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (Basic)."""
        if env.get("MLFLOW_TRACKING_TOKEN"):
            return {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
        if env.get("MLFLOW_TRACKING_USERNAME"):
            pair = f"{env['MLFLOW_TRACKING_USERNAME']}:{env.get('MLFLOW_TRACKING_PASSWORD', '')}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        return {}

    def _open(self, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None):
        url = f"{self.uri}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 -- the user's tracking URI
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", errors="replace")
            raise SourceError(f"{url}: HTTP {exc.code}: {detail}") from exc
        except OSError as exc:
            raise SourceError(f"{url}: {exc}") from exc

    def _json(self, path: str, query: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> dict:
        with self._open(f"/api/2.0/mlflow/{path}", query, body) as resp:
            return json.loads(resp.read() or b"{}")

    def experiments(self) -> list[Experiment]:
        out, token = [], None
        while True:
            page = self._json("experiments/search", body={"max_results": PAGE, "view_type": "ALL",
                                                          **({"page_token": token} if token else {})})
            for e in page.get("experiments", []):
                out.append(Experiment(str(e["experiment_id"]), e["name"], _int(e.get("creation_time")),
                                      {t["key"]: t.get("value", "") for t in e.get("tags", [])},
                                      e.get("lifecycle_stage") == "deleted"))
            token = page.get("next_page_token")
            if not token:
                return sorted(out, key=lambda e: (len(e.id), e.id))

    def runs(self, exp: Experiment) -> Iterator[MlRun]:
        token = None
        while True:
            page = self._json("runs/search", body={"experiment_ids": [exp.id], "max_results": PAGE,
                                                   "run_view_type": "ALL", "order_by": ["attributes.start_time ASC"],
                                                   **({"page_token": token} if token else {})})
            for r in page.get("runs", []):
                info, data = r["info"], r.get("data", {})
                tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
                yield MlRun(
                    run_id=info.get("run_id") or info["run_uuid"], experiment_id=exp.id,
                    name=info.get("run_name") or tags.get("mlflow.runName") or info.get("run_id"),
                    user=info.get("user_id") or tags.get("mlflow.user") or "", status=info.get("status", "FINISHED"),
                    start_ms=_int(info.get("start_time")), end_ms=_int(info.get("end_time")),
                    artifact_uri=info.get("artifact_uri", ""),
                    params={p["key"]: p.get("value", "") for p in data.get("params", [])}, tags=tags,
                    metric_keys=sorted({m["key"] for m in data.get("metrics", [])}),
                    deleted=info.get("lifecycle_stage") == "deleted")
            token = page.get("next_page_token")
            if not token:
                return

    def history(self, run: MlRun, key: str) -> list[Point]:
        out, token = [], None
        while True:
            page = self._json("metrics/get-history", query={"run_id": run.run_id, "metric_key": key,
                                                            "max_results": HISTORY_PAGE,
                                                            **({"page_token": token} if token else {})})
            for m in page.get("metrics", []):
                out.append(Point(_number(m.get("value")), int(m.get("timestamp", 0)), int(m.get("step", 0))))
            token = page.get("next_page_token")
            if not token:
                return out

    def artifacts(self, run: MlRun, path: str = "") -> list[tuple[str, int]]:
        try:
            page = self._json("artifacts/list", query={"run_id": run.run_id, **({"path": path} if path else {})})
        except SourceError:
            return []
        out = []
        for f in page.get("files", []):
            if f.get("is_dir"):
                out.extend(self.artifacts(run, f["path"]))
            else:
                out.append((f["path"], int(f.get("file_size", 0) or 0)))
        return out

    def artifact_uri(self, run: MlRun, path: str) -> str:
        return run.artifact_uri.rstrip("/") + "/" + path

    def fetch(self, run: MlRun, path: str, out: BinaryIO) -> None:
        try:
            with self._open("/get-artifact", query={"path": path, "run_uuid": run.run_id}) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
        except SourceError as exc:
            raise Unreachable(str(exc)) from exc

    def logged_models(self, exp: Experiment) -> list[LoggedModel]:
        out, token = [], None
        while True:
            try:
                page = self._json("logged-models/search", body={"experiment_ids": [exp.id], "max_results": 100,
                                                                **({"page_token": token} if token else {})})
            except SourceError:  # an MLflow 2 server: no logged models
                return out
            for m in page.get("models", []):
                info = m.get("info", {})
                out.append(LoggedModel(info["model_id"], info.get("name") or info["model_id"],
                                       info.get("source_run_id") or None, info.get("artifact_uri", "")))
            token = page.get("next_page_token")
            if not token:
                return out

    def model_artifacts(self, model: LoggedModel, path: str = "") -> list[tuple[str, int]]:
        try:
            page = self._json(f"logged-models/{urllib.parse.quote(model.model_id)}/artifacts/directories",
                              query={"artifact_directory_path": path} if path else None)
        except SourceError:
            return []
        out = []
        for f in page.get("files", []):
            if f.get("is_dir"):
                out.extend(self.model_artifacts(model, f["path"]))
            else:
                out.append((f["path"], int(f.get("file_size", 0) or 0)))
        return out

    def fetch_model(self, model: LoggedModel, path: str, out: BinaryIO) -> None:
        url = f"/ajax-api/2.0/mlflow/logged-models/{urllib.parse.quote(model.model_id)}/artifacts/files"
        try:
            with self._open(url, query={"artifact_file_path": path}) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
        except SourceError as exc:
            raise Unreachable(str(exc)) from exc

    def model_versions(self) -> list[MlVersion]:
        names, token = [], None
        while True:
            page = self._json("registered-models/search", query={"max_results": PAGE,
                                                                 **({"page_token": token} if token else {})})
            for m in page.get("registered_models", []):
                aliases: dict[int, list[str]] = {}
                for a in m.get("aliases", []):
                    aliases.setdefault(int(a["version"]), []).append(a["alias"])
                names.append((m["name"], aliases))
            token = page.get("next_page_token")
            if not token:
                break
        out = []
        for name, aliases in names:
            token = None
            while True:
                quoted = name.replace("\\", "\\\\").replace("'", "\\'")
                query = {"filter": f"name = '{quoted}'", "max_results": PAGE,
                         **({"page_token": token} if token else {})}
                page = self._json("model-versions/search", query=query)
                for v in page.get("model_versions", []):
                    number = int(v["version"])
                    out.append(MlVersion(name, number, _int(v.get("creation_timestamp")), v.get("user_id") or "",
                                         v.get("source") or "", v.get("run_id") or None, v.get("description") or None,
                                         v.get("current_stage") or "None",
                                         sorted(set(v.get("aliases", [])) | set(aliases.get(number, []))),
                                         {t["key"]: t.get("value", "") for t in v.get("tags", [])},
                                         v.get("status") or "READY"))
                token = page.get("next_page_token")
                if not token:
                    break
        return sorted(out, key=lambda v: (v.name, v.version))


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _number(value: Any) -> float:
    if isinstance(value, str):  # MLflow's JSON writes NaN / Infinity as strings
        return float(value)
    return float(value) if value is not None else math.nan


def open_source(uri: str, env: dict[str, str] | None = None):
    """The source for a tracking URI: ``http(s)://...`` a server, ``file://...`` or a path an ``mlruns``
    directory. Raises SourceError for another scheme (``databricks``, ``sqlite:`` ...: serve it with
    ``mlflow server`` and import from there)."""
    if uri.startswith(("http://", "https://")):
        return RestStore(uri, RestStore.auth_headers(env or {}))
    p = local_path(uri, Path.cwd())
    if p is None:
        raise SourceError(f"--tracking-uri {uri!r}: expected http(s)://host:port (an MLflow server) or an mlruns "
                          "directory (a path or file://); for a database store run `mlflow server "
                          "--backend-store-uri ...` and import from it")
    return FileStore(p)
