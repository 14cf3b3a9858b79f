"""deploy/: the image, the compose stack, the Kubernetes manifests and topics.sh, checked without
Docker or a cluster.

Nothing here starts a container. What is checked is what can be checked offline: every file
parses; every MODELOG_* name is a setting modelog reads (each container's environment goes through
``Settings.load``, which rejects unknown names); topics.sh creates exactly what ``ensure_topics``
creates (captured from the code with a fake admin client); the KRaft quorum, replication and
ports agree across files; the probes and the healthcheck call endpoints the projector's HTTP server
(processors/query_server.py, started here on a free port) answers as a probe needs; the Dockerfile
installs every package folder and runs the console script.

PyYAML is not a dependency of modelog, so the YAML files are read by a small loader for the subset
of YAML they are written in (block mappings and sequences, flow sequences of scalars, quoted and
plain scalars, comments, ``---``). It rejects anything outside that subset instead of guessing,
and is compared with PyYAML wherever a PyYAML can be found (in this interpreter or a system one).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import pytest

from modelog.wire import settings as _config
from modelog.wire import topics as _topics
from modelog.wire.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# manifests that kustomization.yaml leaves out on purpose (docs/deploy.md says how to apply them)
K8S_NOT_IN_KUSTOMIZATION = {"kafka-secret.example.yaml", "webhook.yaml"}


# -- a loader for the YAML subset deploy/ is written in --------------------------------------------

class YamlSubsetError(ValueError):
    pass


_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
# plain scalars that YAML 1.1 parsers (PyYAML, go-yaml v2 under kubectl) and YAML 1.2 parsers
# (compose) read differently: they must be quoted
_AMBIGUOUS = re.compile(r"(?i:y|n|yes|no|on|off)|[-+]?0[0-9_]+|[-+]?0[box].*|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+"
                        r"|[-+]?[0-9.]+[eE][-+]?[0-9]+|[0-9]+_[0-9_]*")


def _scan(text: str, stop) -> int:
    """Index of the first position outside quotes where ``stop(text, i)`` holds, else -1."""
    quote = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = None
        elif quote == "'":
            if c == "'":
                if text[i + 1:i + 2] == "'":
                    i += 1
                else:
                    quote = None
        elif c in "\"'" and (i == 0 or text[i - 1] in " [,:-"):
            quote = c
        elif stop(text, i):
            return i
        i += 1
    return -1


def _strip_comment(line: str) -> str:
    at = _scan(line, lambda t, i: t[i] == "#" and (i == 0 or t[i - 1] in " \t"))
    return (line if at < 0 else line[:at]).rstrip()


def _scalar(s: str, where: str):
    s = s.strip()
    if not s:
        return None
    if s[0] == '"':
        if len(s) < 2 or s[-1] != '"':
            raise YamlSubsetError(f"{where}: unterminated double-quoted scalar {s!r}")
        body, out, i = s[1:-1], [], 0
        escapes = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t"}
        while i < len(body):
            c = body[i]
            if c == '"':
                raise YamlSubsetError(f"{where}: text after a quoted scalar: {s!r}")
            if c == "\\":
                nxt = body[i + 1:i + 2]
                if nxt not in escapes:
                    raise YamlSubsetError(f"{where}: unsupported escape \\{nxt} in {s!r}")
                out.append(escapes[nxt])
                i += 2
                continue
            out.append(c)
            i += 1
        return "".join(out)
    if s[0] == "'":
        if len(s) < 2 or s[-1] != "'" or re.search(r"(?<!')'(?!')", s[1:-1].replace("''", "")):
            raise YamlSubsetError(f"{where}: bad single-quoted scalar {s!r}")
        return s[1:-1].replace("''", "'")
    if s[0] in "&*!|>%@`{[]}," or s.startswith("- ") or s == "-":
        raise YamlSubsetError(f"{where}: unsupported YAML ({s[0]!r}: anchors, aliases, tags, block "
                              f"scalars, nested flow collections) in {s!r}")
    if ": " in s or s.endswith(":") or " #" in s:
        raise YamlSubsetError(f"{where}: a plain scalar may not contain ': ' or ' #': {s!r}")
    if s in ("~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    if _AMBIGUOUS.fullmatch(s):
        raise YamlSubsetError(f"{where}: {s!r} means different things to YAML 1.1 and 1.2 parsers: quote it")
    return s


def _inline(s: str, where: str):
    if s.startswith("["):
        if not s.endswith("]"):
            raise YamlSubsetError(f"{where}: a flow sequence must close on its line: {s!r}")
        body = s[1:-1].strip()
        if not body:
            return []
        items, start = [], 0
        while True:
            at = _scan(body[start:], lambda t, i: t[i] == ",")
            if at < 0:
                items.append(body[start:])
                break
            items.append(body[start:start + at])
            start += at + 1
        return [_scalar(item, where) for item in items]
    if s == "{}":
        return {}
    return _scalar(s, where)


def _split_key(text: str, where: str):
    at = _scan(text, lambda t, i: t[i] == ":" and (i + 1 == len(t) or t[i + 1] == " "))
    if at <= 0:
        raise YamlSubsetError(f"{where}: expected 'key: value', got {text!r}")
    key = _scalar(text[:at], where)
    if not isinstance(key, str):
        raise YamlSubsetError(f"{where}: keys must be strings, got {text[:at]!r}")
    return key, text[at + 1:].strip()


class _Parser:
    def __init__(self, lines: list[tuple[int, str, int]], source: str) -> None:
        self.lines, self.source = lines, source

    def where(self, i: int) -> str:
        return f"{self.source}:{self.lines[min(i, len(self.lines) - 1)][2]}"

    def node(self, i: int, indent: int):
        ind, text, _ = self.lines[i]
        if ind != indent:
            raise YamlSubsetError(f"{self.where(i)}: bad indentation")
        if text == "-" or text.startswith("- "):
            return self.sequence(i, indent)
        return self.mapping(i, indent)

    def _is_item(self, text: str) -> bool:
        return text == "-" or text.startswith("- ")

    def sequence(self, i: int, indent: int):
        out = []
        while i < len(self.lines) and self.lines[i][0] == indent and self._is_item(self.lines[i][1]):
            _, text, lineno = self.lines[i]
            rest = text[1:].lstrip()
            if not rest:
                if i + 1 >= len(self.lines) or self.lines[i + 1][0] <= indent:
                    out.append(None)
                    i += 1
                    continue
                value, i = self.node(i + 1, self.lines[i + 1][0])
                out.append(value)
                continue
            if self._is_item(rest):
                raise YamlSubsetError(f"{self.where(i)}: nested '- - ' sequences are not supported")
            if rest[0] not in "\"'[" and _scan(rest, lambda t, k: t[k] == ":" and (k + 1 == len(t) or t[k + 1] == " ")) > 0 \
                    or rest[0] in "\"'" and re.match(r"""("[^"]*"|'[^']*')\s*:(\s|$)""", rest):
                # "- key: value": a mapping whose keys line up with this first one
                column = indent + len(text) - len(rest)
                self.lines[i] = (column, rest, lineno)
                value, i = self.mapping(i, column)
                out.append(value)
                continue
            out.append(_inline(rest, self.where(i)))
            i += 1
            if i < len(self.lines) and self.lines[i][0] > indent:
                raise YamlSubsetError(f"{self.where(i)}: continuation lines are not supported")
        return out, i

    def mapping(self, i: int, indent: int):
        out: dict = {}
        while i < len(self.lines) and self.lines[i][0] == indent:
            text = self.lines[i][1]
            if self._is_item(text):
                raise YamlSubsetError(f"{self.where(i)}: a sequence item where a key was expected")
            key, rest = _split_key(text, self.where(i))
            if key in out:
                raise YamlSubsetError(f"{self.where(i)}: duplicate key {key!r}")
            i += 1
            if rest:
                out[key] = _inline(rest, self.where(i - 1))
                if i < len(self.lines) and self.lines[i][0] > indent:
                    raise YamlSubsetError(f"{self.where(i)}: continuation lines are not supported")
            elif i < len(self.lines) and self.lines[i][0] > indent:
                out[key], i = self.node(i, self.lines[i][0])
            elif i < len(self.lines) and self.lines[i][0] == indent and self._is_item(self.lines[i][1]):
                out[key], i = self.sequence(i, indent)  # a sequence not indented under its key
            else:
                out[key] = None
        if i < len(self.lines) and self.lines[i][0] > indent:
            raise YamlSubsetError(f"{self.where(i)}: bad indentation")
        return out, i


def load_yaml(text: str, source: str = "<yaml>") -> list:
    """The documents of ``text`` (empty ones dropped). Raises YamlSubsetError outside the subset."""
    docs: list[list[tuple[int, str, int]]] = [[]]
    for lineno, raw in enumerate(text.splitlines(), 1):
        if raw.rstrip() == "---":
            docs.append([])
            continue
        if raw.startswith(("---", "...", "%")):
            raise YamlSubsetError(f"{source}:{lineno}: unsupported document marker or directive")
        line = _strip_comment(raw)
        if not line.strip():
            continue
        body = line.lstrip(" ")
        if body.startswith("\t") or "\t" in line[:len(line) - len(body)]:
            raise YamlSubsetError(f"{source}:{lineno}: tabs in indentation")
        docs[-1].append((len(line) - len(body), body, lineno))
    out = []
    for lines in docs:
        if not lines:
            continue
        parser = _Parser(lines, source)
        value, end = parser.node(0, lines[0][0])
        if end != len(lines):
            raise YamlSubsetError(f"{parser.where(end)}: unexpected content (bad indentation?)")
        out.append(value)
    return out


def test_yaml_loader_reads_the_subset():
    text = """\
# comment
a: "8765"      # quoted: a string
b: 8765
c: -1
d: "-1"
e: [CMD, "x, y", 'it''s', "a: b # c"]
f:
  - name: one
    args: ["process"]
  - plain
g:
- indentless
h: 0.5
i: true
j:
k: {}
---
second: doc
"""
    assert load_yaml(text) == [
        {"a": "8765", "b": 8765, "c": -1, "d": "-1", "e": ["CMD", "x, y", "it's", "a: b # c"],
         "f": [{"name": "one", "args": ["process"]}, "plain"], "g": ["indentless"], "h": 0.5, "i": True,
         "j": None, "k": {}},
        {"second": "doc"},
    ]


@pytest.mark.parametrize("text", [
    "a: &anchor 1\n",            # anchors
    "a: *alias\n",               # aliases
    "a: !!str 1\n",              # tags
    "a: {b: 1}\n",               # flow mappings
    "a: [1,\n  2]\n",            # multi-line flow sequences
    "a: |\n  text\n",            # block scalars
    "a: yes\n",                  # YAML 1.1 boolean
    "a: 0755\n",                 # YAML 1.1 octal
    "a: 1:30\n",                 # YAML 1.1 sexagesimal
    "a: 1\na: 2\n",              # duplicate keys
    "a:\n\tb: 1\n",              # tabs
    "a: 1\n  b: 2\n",            # bad indentation
    "a: b: c\n",                 # ': ' in a plain scalar
    "- a\nb: 1\n",               # a key after a sequence
])
def test_yaml_loader_rejects_what_it_does_not_understand(text):
    with pytest.raises(YamlSubsetError):
        load_yaml(text)


# -- the files -----------------------------------------------------------------------------------

def yaml_paths() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


@functools.cache
def documents(path: Path) -> tuple:
    return tuple(load_yaml(path.read_text(), str(path.relative_to(ROOT))))


def compose() -> dict:
    (doc,) = documents(DEPLOY / "compose.yaml")
    return doc


def k8s_objects() -> list[tuple[Path, dict]]:
    return [(p, d) for p in yaml_paths() if p.parent == K8S and p.name != "kustomization.yaml"
            for d in documents(p)]


def k8s(kind: str, name: str | None = None) -> list[dict]:
    return [d for _, d in k8s_objects() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; the values are kept plain (no quotes, no inline comments) so every
    env-file reader (compose, docker --env-file, a shell) agrees on them."""
    env = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=([^\s\"'#]*)", line)
        assert m, f"{path.name}:{lineno}: not a plain KEY=VALUE line: {line!r}"
        assert m[1] not in env, f"{path.name}:{lineno}: {m[1]} set twice"
        env[m[1]] = m[2]
    return env


def test_deploy_has_the_expected_files():
    for rel in ("Dockerfile", "Dockerfile.dockerignore", "compose.yaml", "modelog.env", "topics.sh",
                "k8s/kustomization.yaml", "k8s/namespace.yaml", "k8s/configmap.yaml", "k8s/projector.yaml",
                "k8s/drift.yaml", "k8s/webhook.yaml", "k8s/kafka-secret.example.yaml", "kafka-acls.sh"):
        assert (DEPLOY / rel).is_file(), rel
    assert os.access(DEPLOY / "topics.sh", os.X_OK) and os.access(DEPLOY / "kafka-acls.sh", os.X_OK)


@pytest.mark.parametrize("path", yaml_paths(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses_into_mappings(path):
    docs = documents(path)
    assert docs, f"{path} has no document"
    assert all(isinstance(d, dict) and d for d in docs)


def _pyyaml_load_all(paths: list[Path]) -> list | None:
    """Each file's documents as PyYAML reads them, or None when no PyYAML can be found."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return [[d for d in yaml.safe_load_all(p.read_text()) if d is not None] for p in paths]
    code = ("import json, sys, yaml; print(json.dumps([[d for d in yaml.safe_load_all(open(p)) if d is not None]"
            " for p in sys.argv[1:]]))")
    for python in dict.fromkeys(filter(None, ["/usr/bin/python3", shutil.which("python3")])):
        if Path(python).resolve() == Path(sys.executable).resolve():
            continue
        proc = subprocess.run([python, "-c", code, *map(str, paths)], capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    return None


def test_yaml_loader_agrees_with_pyyaml():
    paths = yaml_paths()
    theirs = _pyyaml_load_all(paths)
    if theirs is None:
        pytest.skip("no PyYAML in this interpreter or a system python3: the subset loader's own tests still ran")
    assert [list(documents(p)) for p in paths] == theirs


# -- settings: every MODELOG_* name is one modelog reads ------------------------------------------

@functools.cache
def librdkafka_knows(option: str) -> bool:
    from confluent_kafka import KafkaException, Producer

    try:
        Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0, option: "1"})
    except KafkaException as exc:
        return "No such configuration property" not in str(exc)
    return True


def is_setting(name: str) -> bool:
    if name in _config._ENV:
        return True
    if name.startswith(_config._PASSTHROUGH):
        option = name[len(_config._PASSTHROUGH):].lower().replace("_", ".")
        return bool(re.fullmatch(r"[a-z0-9]+(\.[a-z0-9]+)*", option)) and librdkafka_knows(option)
    return False


def test_the_setting_check_can_fail():
    assert is_setting("MODELOG_TOPIC_REPLICATION") and is_setting("MODELOG_KAFKA_SASL_MECHANISM")
    assert not is_setting("MODELOG_TOPIC_REPLICAS")
    assert not is_setting("MODELOG_KAFKA_SASL_MECHANISMZ")
    assert not is_setting("MODELOG_KAFKA_")


def test_every_modelog_name_in_deploy_is_a_setting_modelog_reads():
    names: dict[str, set[str]] = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for m in re.finditer(r"\bMODELOG_[A-Z0-9_]*([*<]?)", path.read_text()):
            if m[1]:  # a pattern in a comment: MODELOG_* or MODELOG_KAFKA_<OPTION>
                assert m[0][:-1] in (_config._PREFIX, _config._PASSTHROUGH), (path, m[0])
                continue
            names.setdefault(m[0], set()).add(str(path.relative_to(DEPLOY)))
    assert "MODELOG_KAFKA_BOOTSTRAP" in names and "MODELOG_KAFKA_SASL_PASSWORD" in names
    unknown = {n: sorted(files) for n, files in names.items() if not is_setting(n)}
    assert not unknown, f"not settings modelog reads (producers/wire/settings.py): {unknown}"


def compose_env(service: str) -> dict[str, str]:
    svc = compose()["services"][service]
    env: dict[str, str] = {}
    for name in svc.get("env_file", []):
        env.update(env_file(DEPLOY / name))
    env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()})
    return env


def configmap_env() -> dict[str, str]:
    (cm,) = k8s("ConfigMap")
    return dict(cm["data"])


def secret_env() -> dict[str, str]:
    (secret,) = k8s("Secret", "modelog-kafka")
    return dict(secret["stringData"])


def modelog_services() -> list[str]:
    return [n for n, s in compose()["services"].items() if s.get("image", "").startswith("modelog:")]


def test_compose_environments_load_as_settings():
    assert sorted(modelog_services()) == ["drift", "projector", "webhook"]
    for service in modelog_services():
        settings = Settings.load(env=compose_env(service))  # ConfigError on any unknown MODELOG_* name
        assert settings.replication == 3 and settings.bootstrap
        # the endpoint on every address of the container (the default, 127.0.0.1, is unreachable from
        # other containers); the healthcheck still reaches it on 127.0.0.1
        assert settings.processor_host == "0.0.0.0", service


def test_kubernetes_environments_load_as_settings():
    cm = configmap_env()
    assert all(isinstance(v, str) for v in cm.values()), "ConfigMap data values must be strings: quote them"
    settings = Settings.load(env=cm | secret_env())
    assert settings.replication == 3 and settings.bootstrap
    # the kubelet's httpGet probes and the Service reach the pod IP: a loopback bind would fail them
    assert settings.processor_host == "0.0.0.0"
    assert dict(settings.kafka_options) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "modelog", "sasl.password": "CHANGE-ME"}
    assert all(librdkafka_knows(o) for o in settings.kafka_options)


def test_sasl_passthrough_reaches_faust():
    from faust import SASLCredentials

    from modelog.processors.app import faust_credentials

    creds = faust_credentials(dict(Settings.load(env=configmap_env() | secret_env()).kafka_options))
    assert isinstance(creds, SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("modelog", "CHANGE-ME", "SCRAM-SHA-512")
    assert creds.ssl_context is not None  # SASL_SSL: TLS on


def test_compose_and_kubernetes_agree_on_topics():
    c, k = Settings.load(env=compose_env("projector")), Settings.load(env=configmap_env())
    assert (c.topic_prefix, c.partitions, c.replication) == (k.topic_prefix, k.partitions, k.replication)
    assert c.processor_port == k.processor_port != 0
    assert c.processor_host == k.processor_host
    assert (c.home, c.views_path) == (k.home, k.views_path)


# -- topics.sh creates exactly what ensure_topics creates ------------------------------------------

def created_by_code(env: dict[str, str], monkeypatch) -> dict[str, tuple[int, int, dict]]:
    """{topic: (partitions, replication, config)} that ensure_topics asks Kafka for under ``env``."""
    created = []

    class FakeAdmin:
        def __init__(self, conf):
            self.conf = conf

        def list_topics(self, timeout=None):
            return SimpleNamespace(topics={})

        def create_topics(self, new, request_timeout=None):
            created.extend(new)
            futures = {}
            for t in new:
                futures[t.topic] = concurrent.futures.Future()
                futures[t.topic].set_result(None)
            return futures

    monkeypatch.setattr(_topics, "AdminClient", FakeAdmin)
    monkeypatch.setattr(_topics, "_ensured", set())
    _topics.ensure_topics(Settings.load(env=env))
    return {t.topic: (t.num_partitions, t.replication_factor, dict(t.config)) for t in created}


def created_by_script(env: dict[str, str]) -> dict[str, tuple[int, int, dict]]:
    proc = subprocess.run(["bash", str(DEPLOY / "topics.sh"), "--dry-run"], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        args = shlex.split(line)
        assert args[0] == "kafka-topics.sh" and "--create" in args and "--if-not-exists" in args
        opts: dict[str, list[str]] = {}
        for flag, value in zip(args[1::1], args[2::1]):
            if flag.startswith("--") and not value.startswith("--"):
                opts.setdefault(flag, []).append(value)
        assert opts["--bootstrap-server"] == [env["MODELOG_KAFKA_BOOTSTRAP"]]
        config = dict(c.split("=", 1) for c in opts["--config"])
        assert len(config) == len(opts["--config"]), f"a config given twice: {line}"
        (topic,) = opts["--topic"]
        out[topic] = (int(opts["--partitions"][0]), int(opts["--replication-factor"][0]), config)
    return out


@pytest.mark.parametrize("case", ["compose", "kubernetes", "script-defaults", "unreplicated"])
def test_topics_sh_creates_what_ensure_topics_creates(case, monkeypatch):
    cm = configmap_env()
    env = {
        "compose": {k: v for k, v in compose_env("projector").items() if k.startswith("MODELOG_TOPIC_")
                    or k == "MODELOG_KAFKA_BOOTSTRAP"},
        "kubernetes": {k: v for k, v in cm.items() if k.startswith("MODELOG_TOPIC_") or k == "MODELOG_KAFKA_BOOTSTRAP"},
        # the script's defaults are the deployment's values
        "script-defaults": {"MODELOG_KAFKA_BOOTSTRAP": "b1:9092,b2:9092"},
        "unreplicated": {"MODELOG_KAFKA_BOOTSTRAP": "b1:9092", "MODELOG_TOPIC_PREFIX": "acme-",
                         "MODELOG_TOPIC_PARTITIONS": "2", "MODELOG_TOPIC_REPLICATION": "1"},
    }[case]
    code_env = dict(env)
    if case == "script-defaults":
        code_env |= {k: cm[k] for k in ("MODELOG_TOPIC_PARTITIONS", "MODELOG_TOPIC_REPLICATION")}
    script, code = created_by_script(env), created_by_code(code_env, monkeypatch)
    assert script == code
    assert len(code) == 5  # tracking, deadletter, monitoring, alerts, checkpoints


def test_topics_sh_configs_are_the_codes_constants(monkeypatch):
    env = {"MODELOG_KAFKA_BOOTSTRAP": "b1:9092"}
    script = created_by_script(env)
    settings = Settings.load(env=env)
    assert settings.topic_prefix == "modelog." and set(script) == set(settings.metadata_topics)
    base = {k: v for k, v in _topics.METADATA_TOPIC_CONFIG.items() if k != "min.insync.replicas"}
    for topic, (_, replication, config) in script.items():
        extra = _topics.LARGE_RECORDS if topic == settings.monitoring_topic else {}
        assert config == base | extra | {"min.insync.replicas": "2" if replication > 1 else "1"}
    assert script[settings.monitoring_topic][2]["max.message.bytes"] == "16777216"
    assert base["retention.ms"] == base["retention.bytes"] == "-1"


def test_topics_sh_refuses_bad_input():
    for env in ({}, {"MODELOG_KAFKA_BOOTSTRAP": "b:9092", "MODELOG_TOPIC_REPLICATION": "0"},
                {"MODELOG_KAFKA_BOOTSTRAP": "b:9092", "MODELOG_TOPIC_PARTITIONS": "six"}):
        proc = subprocess.run(["bash", str(DEPLOY / "topics.sh"), "--dry-run"], capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}, timeout=60)
        assert proc.returncode != 0 and not proc.stdout, env


# -- what the probes and MODELOG_HOME's placement rely on in the code ------------------------------

LIVENESS = (200, 200)   # (status before the projector's consumer joined its group, status after)
READINESS = (503, 200)


@contextlib.contextmanager
def http_endpoint(host: str = "127.0.0.1"):
    """The projector's HTTP server (processors/query_server.py) on a free port, over a store without positions."""
    from modelog.processors.query_server import QueryServer

    server = QueryServer(SimpleNamespace(positions=dict), host=host, port=0).start()
    try:
        yield server
    finally:
        server.stop()


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@functools.cache
def endpoint_status(path: str) -> tuple[int, int]:
    """GET ``path`` on the projector's HTTP server: (status before its consumer joined, status after)."""
    with http_endpoint() as server:
        out = []
        for ready in (False, True):
            server.ready = ready
            out.append(get_status(server.url + path))
    return tuple(out)


def test_the_endpoint_check_can_fail():
    assert endpoint_status("/health") == LIVENESS
    assert endpoint_status("/ready") == READINESS
    assert endpoint_status("/healthz") == (404, 404)


def test_a_runtime_file_naming_the_own_pid_is_stale(tmp_path):
    """Why MODELOG_HOME may live on the volume: after a crash, processor.json / drift.json name pid 1 and
    the restarted process is pid 1 again. modelog treats a file naming its own pid as stale (it starts),
    one naming another live pid not (it refuses: a processor already runs)."""
    from modelog.local.processes import running_drift
    from modelog.wire.home import drift_file, processor_file, running_processor

    settings = Settings.load(env={"MODELOG_HOME": str(tmp_path), "MODELOG_KAFKA_BOOTSTRAP": "b1:9092"})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        for pid, running in ((os.getpid(), False), (other.pid, True)):
            processor_file(settings).write_text(json.dumps(
                {"pid": pid, "db": str(settings.views_path), "sql_url": "http://127.0.0.1:9/sql"}))
            drift_file(settings).write_text(json.dumps({"pid": pid}))
            assert (running_processor(settings) is not None) is running, pid
            assert (running_drift(settings) is not None) is running, pid
    finally:
        other.kill()
        other.wait()


# -- compose ---------------------------------------------------------------------------------------

def kafka_services() -> dict[str, dict]:
    return {n: s for n, s in compose()["services"].items() if s.get("image", "").startswith("apache/kafka:")}


def listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        m = re.fullmatch(r"([A-Z_]+)://([^:]*):(\d+)", item.strip())
        assert m, item
        out[m[1]] = (m[2], int(m[3]))
    return out


def test_compose_kafka_is_a_pinned_three_voter_kraft_quorum():
    brokers = kafka_services()
    assert len(brokers) == 3
    images = {s["image"] for s in brokers.values()}
    assert len(images) == 1 and re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", images.pop())
    envs = {n: s["environment"] for n, s in brokers.items()}
    assert all(isinstance(v, str) for e in envs.values() for v in e.values())
    node_ids = {n: int(e["KAFKA_NODE_ID"]) for n, e in envs.items()}
    assert len(set(node_ids.values())) == 3
    (cluster_id,) = {e["CLUSTER_ID"] for e in envs.values()}
    import base64

    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID must be a base64 UUID (22 chars)"
    (voters,) = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs.values()}
    parsed = [re.fullmatch(r"(\d+)@([\w.-]+):(\d+)", v) for v in voters.split(",")]
    assert all(parsed) and len(parsed) == 3
    for m in parsed:
        name = m[2]
        assert name in brokers and brokers[name].get("hostname", name) == name
        assert node_ids[name] == int(m[1])
        env = envs[name]
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        assert listeners(env["KAFKA_LISTENERS"])[controller][1] == int(m[3])
        assert controller not in listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(protocols) == set(listeners(env["KAFKA_LISTENERS"]))


def test_compose_kafka_keeps_everything_and_replicates_as_modelog_does():
    brokers = kafka_services()
    modelog = Settings.load(env=compose_env("projector"))
    for name, svc in brokers.items():
        env = svc["environment"]
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == modelog.replication == len(brokers)
        # what ensure_topics sets on the topics it creates; one broker may be down
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == min(2, modelog.replication) < modelog.replication
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == len(brokers)
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == len(brokers)
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_LOG_RETENTION_MS"] == "-1" and env["KAFKA_LOG_RETENTION_BYTES"] == "-1"
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= int(_topics.LARGE_RECORDS["max.message.bytes"])
        # the data directory is a named volume of its own
        (mount,) = [v for v in svc["volumes"] if v.endswith(":" + env["KAFKA_LOG_DIRS"])]
        assert mount.split(":")[0] in compose()["volumes"]
    assert len({s["volumes"][0] for s in brokers.values()}) == len(brokers)
    # MODELOG_KAFKA_BOOTSTRAP lists every broker by the listener other brokers use
    inter = {f"{h}:{p}" for s in brokers.values() for name, (h, p) in
             listeners(s["environment"]["KAFKA_ADVERTISED_LISTENERS"]).items()
             if name == s["environment"]["KAFKA_INTER_BROKER_LISTENER_NAME"]}
    for service in modelog_services():
        assert set(compose_env(service)["MODELOG_KAFKA_BOOTSTRAP"].split(",")) == inter


def test_compose_modelog_services():
    services = compose()["services"]
    assert services["projector"]["command"][0] == "process"
    assert services["drift"]["command"][0] == "drift"
    assert services["webhook"]["command"][:2] == ["alerts", "webhook"]
    assert services["webhook"].get("profiles") == ["webhook"]  # optional
    images = set()
    for name in modelog_services():
        svc = services[name]
        images.add(svc["image"])
        build = svc["build"]
        assert (DEPLOY / build["context"] / "pyproject.toml").is_file()
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
        assert set(svc["depends_on"]) == set(kafka_services())
        assert all(d["condition"] == "service_healthy" for d in svc["depends_on"].values())
        settings = Settings.load(env=compose_env(name))
        # MODELOG_HOME on a mount of the service's own, and the image's VOLUME covered by one: Docker
        # would otherwise create a new anonymous volume for it on every `up` after a `down`
        assert compose_mount(svc, settings.home) is not None, name
        assert compose_mount(svc, PurePosixPath(dockerfile_volume())) is not None, name
    assert len(images) == 1
    projector = services["projector"]
    settings = Settings.load(env=compose_env("projector"))
    # the views file and MODELOG_HOME (processor.json: a file naming pid 1 is stale on the next start,
    # see test_a_runtime_file_naming_the_own_pid_is_stale) on the named volume
    views = compose_mount(projector, settings.views_path)
    assert views is not None and views[0] == "volume" and views[1] in compose()["volumes"]
    assert compose_mount(projector, settings.home) == views


def compose_mount(svc: dict, path) -> tuple[str, str] | None:
    """("volume", name) or ("tmpfs", mount point) of the deepest mount of ``svc`` holding ``path``."""
    path = PurePosixPath(path)
    mounts = [(PurePosixPath(m), ("tmpfs", m)) for m in svc.get("tmpfs", [])]
    mounts += [(PurePosixPath(v.split(":")[1]), ("volume", v.split(":")[0])) for v in svc.get("volumes", [])]
    holding = [(len(m.parts), what) for m, what in mounts if path.is_relative_to(m)]
    return max(holding)[1] if holding else None


def test_compose_projector_healthcheck_waits_for_the_consumer():
    projector = compose()["services"]["projector"]
    settings = Settings.load(env=compose_env("projector"))
    test = projector["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]  # the image's python: the venv's, first on PATH
    url = re.search(r"(http://127\.0\.0\.1:(\d+))(/\w+)", " ".join(test))
    assert url[2] == str(settings.processor_port)
    assert endpoint_status(url[3]) == READINESS  # healthy = the consumer has joined its group
    # the command itself, against a server bound as the container binds it (MODELOG_PROCESSOR_HOST):
    # it fails on 503, passes on 200
    with http_endpoint(settings.processor_host) as server:
        argv = [sys.executable] + [a.replace(url[1], server.url) for a in test[2:]]
        assert argv[1:] != test[2:]
        codes = []
        for ready in (False, True):
            server.ready = ready
            codes.append(subprocess.run(argv, capture_output=True, timeout=60).returncode)
    assert codes[0] != 0 and codes[1] == 0


# -- Kubernetes ------------------------------------------------------------------------------------

NAMESPACED = {"ConfigMap", "Secret", "StatefulSet", "Service", "Deployment"}


def test_k8s_objects_have_the_required_keys():
    objects = k8s_objects()
    assert {d["kind"] for _, d in objects} == {"Namespace"} | NAMESPACED
    (ns,) = k8s("Namespace")
    for path, d in objects:
        assert isinstance(d.get("apiVersion"), str) and isinstance(d.get("kind"), str), path
        assert isinstance(d["metadata"].get("name"), str) and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                                                                           d["metadata"]["name"]), path
        if d["kind"] in NAMESPACED:
            assert d["metadata"].get("namespace") == ns["metadata"]["name"], path
        if d["kind"] in ("StatefulSet", "Deployment"):
            assert d["apiVersion"] == "apps/v1"
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert d["spec"]["selector"]["matchLabels"].items() <= labels.items(), path


def test_kustomization_lists_every_manifest():
    (kust,) = documents(K8S / "kustomization.yaml")
    (ns,) = k8s("Namespace")
    assert kust["kind"] == "Kustomization" and kust["namespace"] == ns["metadata"]["name"]
    assert all((K8S / r).is_file() for r in kust["resources"])
    manifests = {p.name for p in yaml_paths() if p.parent == K8S and p.name != "kustomization.yaml"}
    assert set(kust["resources"]) == manifests - K8S_NOT_IN_KUSTOMIZATION
    assert K8S_NOT_IN_KUSTOMIZATION <= manifests


def workloads() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for kind in ("StatefulSet", "Deployment") for d in k8s(kind)}


def modelog_containers(workload: dict) -> list[dict]:
    return [c for c in workload["spec"]["template"]["spec"]["containers"] if c["image"].startswith("modelog:")
            and "command" not in c]


def container_env(container: dict, include_optional_secret: bool = True) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            (cm,) = k8s("ConfigMap", src["configMapRef"]["name"])
            env.update(cm["data"])
        if "secretRef" in src:
            found = k8s("Secret", src["secretRef"]["name"])
            assert found or src["secretRef"].get("optional") is True
            if found and include_optional_secret:
                env.update(found[0]["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "<from " + json.dumps(item.get("valueFrom")) + ">")
    return env


def service_link_env(namespace: str) -> dict[str, str]:
    """The variables Kubernetes adds for each Service of the namespace when enableServiceLinks is on."""
    env = {}
    for svc in k8s("Service"):
        if svc["metadata"]["namespace"] != namespace:
            continue
        base = svc["metadata"]["name"].upper().replace("-", "_")
        env[f"{base}_SERVICE_HOST"] = "10.0.0.1"
        env[f"{base}_SERVICE_PORT"] = str(svc["spec"]["ports"][0]["port"])
        env[f"{base}_PORT"] = f"tcp://10.0.0.1:{svc['spec']['ports'][0]['port']}"
    return env


def test_every_modelog_container_starts_with_its_environment():
    names = set()
    for name, w in workloads().items():
        pod = w["spec"]["template"]["spec"]
        # Services named modelog-* in the namespace would inject MODELOG_* variables modelog rejects
        assert pod.get("enableServiceLinks") is False, name
        for c in modelog_containers(w):
            names.add(c["name"])
            for with_secret in (True, False):
                env = container_env(c, with_secret)
                if pod.get("enableServiceLinks", True):
                    env |= service_link_env(w["metadata"]["namespace"])
                Settings.load(env=env)  # ConfigError for any unknown MODELOG_* name
    assert names == {"projector", "drift", "webhook"}


def dockerfile_user() -> tuple[int, int]:
    (user,) = [args for instr, args in dockerfile_stages()[-1] if instr == "USER"]
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def test_k8s_containers_have_resources_and_run_as_the_images_user():
    uid, gid = dockerfile_user()
    images = set()
    for name, w in workloads().items():
        pod = w["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid), name
        for c in pod["containers"]:
            images.add(c["image"])
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (name, c["name"], kind)
                assert all(isinstance(v, str) for v in c["resources"][kind].values())
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # the image compose builds (tag: modelog's version)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert images == {compose()["services"]["projector"]["image"]} == {f"modelog:{version}"}


def test_projector_statefulset_and_service():
    (sts,) = k8s("StatefulSet")
    (svc,) = k8s("Service")
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 1  # one DuckDB writer per views file
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    (projector,) = modelog_containers(sts)
    assert projector["args"][0] == "process"
    settings = Settings.load(env=container_env(projector))
    port = settings.processor_port
    assert port != 0
    # the views file and MODELOG_HOME (processor.json: a file naming pid 1 is stale on the next start,
    # see test_a_runtime_file_naming_the_own_pid_is_stale) on the volume claim
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (claim_path,) = [m["mountPath"] for m in projector["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert PurePosixPath(settings.views_path).is_relative_to(claim_path)
    assert PurePosixPath(settings.home).is_relative_to(claim_path)
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # no sidecar: the projector serves the pod network itself
    assert pod["containers"] == [projector]
    assert settings.processor_host == "0.0.0.0"
    # httpGet probes on MODELOG_PROCESSOR_PORT at the pod IP: startup and liveness on an endpoint that
    # answers 200 while the process lives, readiness on one that answers 503 until the consumer joined
    for probe, expected in (("startupProbe", LIVENESS), ("livenessProbe", LIVENESS), ("readinessProbe", READINESS)):
        spec = projector[probe]
        assert not {"exec", "tcpSocket", "grpc"} & set(spec), probe
        get = spec["httpGet"]
        assert container_port(projector, get["port"]) == port, probe
        assert get.get("scheme", "HTTP") == "HTTP" and "host" not in get, probe
        assert endpoint_status(get["path"]) == expected, probe
    # the Service straight at the projector's port
    (svc_port,) = svc["spec"]["ports"]
    assert container_port(projector, svc_port["targetPort"]) == port
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    ann = svc["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    # annotation-driven scrapers (kubernetes-service-endpoints) scrape each endpoint, a pod IP, at this port
    assert ann["prometheus.io/port"] == str(port)


def container_port(container: dict, port: int | str) -> int:
    """A probe's or a Service's port, a number or the name of one of ``container``'s ports, as a number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p["name"] == port]
    return number


def test_the_container_port_check_can_fail():
    container = {"ports": [{"name": "http", "containerPort": 8765}]}
    assert container_port(container, "http") == 8765 and container_port(container, 8080) == 8080
    with pytest.raises(ValueError, match="not enough values to unpack"):
        container_port(container, "metrics")


def test_no_sidecar_and_nothing_but_modelog_in_the_image():
    for name, w in workloads().items():
        for c in w["spec"]["template"]["spec"]["containers"]:
            assert "command" not in c, (name, c["name"])  # each runs the image's entrypoint, modelog
    # no OS packages beyond the base image's (socat served the removed sidecar)
    assert not any(i == "RUN" and re.search(r"\b(apt-get|apt|dpkg)\b", a) for i, a in dockerfile_stages()[-1])
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        assert "socat" not in path.read_text().lower(), path


def test_modelog_home_is_the_images_data_directory():
    """The drift and webhook pods mount nothing: their MODELOG_HOME must be the directory the image
    creates for its user (and compose mounts the projector's volume and the tmpfs there)."""
    home = dockerfile_home()
    assert configmap_env()["MODELOG_HOME"] == home == compose_env("projector")["MODELOG_HOME"]
    for name in ("modelog-drift", "modelog-webhook"):
        (c,) = modelog_containers(workloads()[name])
        assert not c.get("volumeMounts"), name
        assert str(Settings.load(env=container_env(c)).home) == home


def test_drift_and_webhook_deployments():
    drift, webhook = workloads()["modelog-drift"], workloads()["modelog-webhook"]
    # one drift worker, never two during a rollout (its state: faust tables; decision 0008)
    assert drift["spec"]["replicas"] == 1 and drift["spec"]["strategy"]["type"] == "Recreate"
    assert modelog_containers(drift)[0]["args"][0] == "drift"
    assert webhook["spec"]["replicas"] == 1
    (c,) = modelog_containers(webhook)
    assert c["args"][:2] == ["alerts", "webhook"]
    url_var = re.fullmatch(r"\$\((\w+)\)", c["args"][2])[1]
    (env,) = [e for e in c["env"] if e["name"] == url_var]
    assert "secretKeyRef" in env["valueFrom"] and not url_var.startswith("MODELOG_")


# -- Dockerfile ------------------------------------------------------------------------------------

@functools.cache
def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage, continuation lines joined, ARG defaults substituted in FROM."""
    text = (DEPLOY / "Dockerfile").read_text()
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "a continuation line ends the file"
    args, stages = {}, []
    for line in logical:
        instr, _, rest = line.strip().partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instr == "FROM":
            stages.append([("FROM", re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest))])
        else:
            assert stages, f"{instr} before FROM"
            stages[-1].append((instr, rest))
    return stages


def dockerfile_home() -> str:
    envs = " ".join(a for i, a in dockerfile_stages()[-1] if i == "ENV")
    return re.search(r"MODELOG_HOME=(\S+)", envs)[1]


def dockerfile_volume() -> str:
    (volume,) = [json.loads(a) for i, a in dockerfile_stages()[-1] if i == "VOLUME"]
    (path,) = volume
    return path


def test_dockerfile_runs_the_modelog_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    final = dockerfile_stages()[-1]
    (entrypoint,) = [json.loads(a) for i, a in final if i == "ENTRYPOINT"]
    assert entrypoint == ["modelog"] and "modelog" in project["scripts"]
    module, func = project["scripts"]["modelog"].split(":")
    assert callable(getattr(__import__(module, fromlist=[func]), func))
    # the console script is on PATH: the venv built in the first stage, copied whole
    envs = " ".join(a for i, a in final if i == "ENV")
    venv = re.search(r"PATH=(\S+)/bin:\$PATH", envs)[1]
    assert any(i == "COPY" and a.split()[-2:] == [venv, venv] for i, a in final)
    assert any(i == "RUN" and f"{venv}/bin/pip install ." in a for i, a in dockerfile_stages()[0])


def test_dockerfile_base_user_and_volume():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    stages = dockerfile_stages()
    minimum = re.fullmatch(r">=\s*3\.(\d+)", project["requires-python"])[1]
    for stage in stages:
        m = re.fullmatch(r"python:3\.(\d+)-slim[-\w]*(\s+AS\s+\w+)?", stage[0][1], re.I)
        assert m and int(m[1]) >= int(minimum), stage[0]
    uid, gid = dockerfile_user()
    assert uid > 0 and gid > 0  # numeric, non-root: Kubernetes can verify runAsNonRoot
    final = stages[-1]
    envs = " ".join(a for i, a in final if i == "ENV")
    home = dockerfile_home()
    assert dockerfile_volume() == home
    assert any(i == "RUN" and f"chown {uid}:{gid} {home}" in a for i, a in final)
    for name in re.findall(r"\bMODELOG_\w+", envs):
        assert is_setting(name)


def test_dockerfile_copies_everything_pip_install_needs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # a package folder is copied with its top-level folder (producers/wire with producers)
    needed = {"pyproject.toml", pyproject["project"]["readme"],
              *(d.split("/")[0] for d in pyproject["tool"]["setuptools"]["package-dir"].values())}
    copied = set()
    for instr, args in dockerfile_stages()[0]:
        if instr == "COPY" and not args.startswith("--from"):
            copied.update(args.split()[:-1])
    assert needed <= copied, f"not copied into the build stage: {needed - copied}"
    assert all((ROOT / p).exists() for p in needed)
    import fnmatch

    patterns = [p.strip() for p in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    for path in needed:
        assert not any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns), path


# -- kafka-acls.sh: least privilege per kind of client ------------------------------------------------------

def _acls(env: dict[str, str]) -> list[list[str]]:
    proc = subprocess.run(["bash", str(DEPLOY / "kafka-acls.sh"), "--dry-run"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def _grants(lines: list[list[str]]) -> set[tuple[str, str, str]]:
    """(principal, operation, resource) for every ACL line."""
    out = set()
    for args in lines:
        who = args[args.index("--allow-principal") + 1]
        ops = [args[i + 1] for i, a in enumerate(args) if a == "--operation"]
        if "--topic" in args:
            res = "topic:" + args[args.index("--topic") + 1]
        elif "--group" in args:
            res = "group:" + args[args.index("--group") + 1]
        else:
            res = "cluster"
        out |= {(who, op, res) for op in ops}
    return out


def test_kafka_acls_give_each_client_only_what_it_needs():
    g = _grants(_acls({"MODELOG_KAFKA_BOOTSTRAP": "b:9093", "MODELOG_TOPIC_PREFIX": "ml.",
                       "KAFKA_ACL_WRITERS": "trainer,server"}))
    for writer in ("User:trainer", "User:server"):
        mine = {(op, res) for who, op, res in g if who == writer}
        assert mine == {("Write", "topic:ml.tracking"), ("Describe", "topic:ml.tracking"),
                        ("Write", "topic:ml.monitoring"), ("Describe", "topic:ml.monitoring"),
                        ("IdempotentWrite", "cluster")}  # no Read: a writer cannot read the log
    proc = {(op, res) for who, op, res in g if who == "User:modelog-processor"}
    assert {("Read", f"topic:ml.{t}") for t in ("tracking", "deadletter", "monitoring", "alerts")} <= proc
    assert ("Write", "topic:ml.deadletter") in proc and ("Write", "topic:ml.alerts") in proc
    assert ("Write", "topic:ml.checkpoints") in proc  # its signed Merkle checkpoints
    auditor = {(op, res) for who, op, res in g if who == "User:modelog-auditor"}
    assert {op for op, _ in auditor} == {"Read", "Describe"} and ("Read", "topic:ml.checkpoints") in auditor
    # nobody may alter or delete modelog's topics: the log is the audit trail
    assert not {(who, op, res) for who, op, res in g if res.startswith("topic:ml.") and op in ("Delete", "Alter", "All")}
    alerts = {(op, res) for who, op, res in g if who == "User:modelog-alerts"}
    assert ("Read", "topic:ml.alerts") in alerts and not any(r.startswith("topic:ml.tracking") for _, r in alerts)


def test_kafka_acls_refuse_a_missing_bootstrap():
    proc = subprocess.run(["bash", str(DEPLOY / "kafka-acls.sh"), "--dry-run"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "MODELOG_KAFKA_BOOTSTRAP"}, timeout=30)
    assert proc.returncode != 0 and "MODELOG_KAFKA_BOOTSTRAP" in proc.stderr
