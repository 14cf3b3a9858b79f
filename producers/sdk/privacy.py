"""Sealing sensitive params, tags and dataset URIs before they are published (decision 0018).

A value is sensitive when the policy marks its key (the ``sensitive_fields`` view, set by
``modelog policy set --sensitive-param KEY``, ``--sensitive-dataset NAME`` for the URIs of a dataset's
versions) or the call says so (``sensitive=True``). A sensitive value
is sealed with the run's subject's data key (``start_run(subject=...)``): the event carries only
ciphertext. A sensitive value in a run without a subject is refused, never published in clear.

The policy is read from the views (through the processor's SQL endpoint, or the views file) and kept
for :data:`POLICY_TTL_S`. When it cannot be read: a run with a subject refuses to publish (it cannot know
what to seal); a run without one publishes as before (it could not seal anyway) -- so mark what is
sensitive before the runs that log it, and give those runs a subject.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from modelog.wire import rules as _rules
from modelog.wire.errors import ConfigError, ModelogError, ValidationError
from modelog.wire.keystore import KeyStore, keystore_for
from modelog.wire.sealing import seal
from modelog.wire import prediction_columns

if TYPE_CHECKING:
    from modelog.sdk.client import Client

POLICY_TTL_S = 30.0
RETRY_S = 5.0  # after a failed read, the next one is tried this much later (a run without a processor)
HIDDEN = "<sensitive value>"  # what an error message shows in place of a sensitive value


class Sealer:
    """One client's view of the sensitive-fields policy and its key store."""

    def __init__(self, client: Client, keys: KeyStore | None = None) -> None:
        self._client = client
        self._keys = keys
        self._lock = threading.Lock()
        self._policy: frozenset[tuple[str, str]] | None = None
        self._read_at = float("-inf")
        self._error = ""

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            self._keys = keystore_for(self._client.settings.home)
        return self._keys

    def policy(self) -> frozenset[tuple[str, str]] | None:
        """The (kind, key) pairs marked sensitive, or None when the views cannot be read. A feature column's key
        is :func:`feature_key` (model, column)."""
        with self._lock:
            age = time.monotonic() - self._read_at
            if self._policy is not None and age < POLICY_TTL_S or self._policy is None and age < RETRY_S:
                return self._policy
            from modelog.consumers.query import sql_arrow

            try:
                rows = sql_arrow("SELECT kind, key, model FROM sensitive_fields", self._client.settings).to_pylist()
            except ModelogError as exc:
                self._error, self._read_at = str(exc), time.monotonic()
                return None
            self._policy = frozenset((r["kind"], feature_key(r["model"], r["key"]) if r["kind"] == "feature"
                                      else r["key"]) for r in rows)
            self._read_at = time.monotonic()
            return self._policy

    def set_policy(self, marked: frozenset[tuple[str, str]]) -> None:
        """Use ``marked`` as the policy for the next :data:`POLICY_TTL_S` (a writer that just set it)."""
        with self._lock:
            self._policy, self._read_at = frozenset(marked), time.monotonic()

    def _marked(self, kind: str, keys, subject: str | None, explicit: bool) -> set[str]:
        if explicit:
            return set(keys)
        policy = self.policy()
        if policy is None:
            if subject is not None:
                raise ConfigError(f"cannot read the sensitive-fields policy ({self._error}); a run with a subject "
                                  "publishes only once it knows what to seal: start the processor "
                                  "(modelog process) or pass sensitive=True")
            return set()
        return {k for k in keys if (kind, k) in policy}

    def _key(self, subject: str | None, field: str):
        if subject is None:
            raise ValidationError(field, HIDDEN, "is sensitive (policy sensitive_fields, or sensitive=True): "
                                                 "start the run with subject=<the data subject's id> "
                                                 "(register_dataset: subject=...) to seal it")
        return self.keys.create(subject)

    def seal_params(self, params: list[dict], subject: str | None, explicit: bool = False) -> list[dict]:
        """``params`` (dicts with key, value, value_type) with the sensitive values sealed."""
        marked = self._marked("param", [p["key"] for p in params], subject, explicit)
        if not marked:
            return params
        out = []
        for p in params:
            if p["key"] in marked:
                field = f"params[{p['key']!r}]"
                token = seal(self._key(subject, field), f"param:{p['key']}", p["value"])
                _fits(token, _rules.MAX_PARAM_VALUE, field)
                p = {**p, "value": token}
            out.append(p)
        return out

    def seal_tags(self, tags: Mapping[str, str], subject: str | None, explicit: bool = False) -> dict[str, str]:
        """``tags`` (texts) with the sensitive values sealed."""
        marked = self._marked("tag", list(tags), subject, explicit)
        if not marked:
            return dict(tags)
        out = {}
        for k, v in tags.items():
            if k in marked:
                field = f"tags[{k!r}]"
                v = seal(self._key(subject, field), f"tag:{k}", v)
                _fits(v, _rules.MAX_TAG_VALUE, field)
            out[k] = v
        return out


    def seal_uri(self, dataset: str, version: str, uri: str, subject: str | None) -> str:
        """``uri`` of version ``version`` of ``dataset``, sealed when the policy marks the dataset sensitive.

        The AAD binds it to the dataset version (``uri:<name>@<version>``). The dataset's name and version
        stay in clear: lineage keys on them."""
        if not self._marked("dataset", [dataset], subject, False):
            return uri
        token = seal(self._key(subject, "uri"), uri_field(dataset, version), uri)
        _fits(token, _rules.MAX_URI, "uri")
        return token


    def sensitive_features(self, model: str) -> frozenset[str] | None:
        """The feature columns of ``model`` the policy marks sensitive; None when the policy cannot be read."""
        policy = self.policy()
        if policy is None:
            return None
        prefix = feature_key(model, "")
        return frozenset(k[len(prefix):] for kind, k in policy if kind == "feature" and k.startswith(prefix))

    def seal_features(self, model: str, columns: list[dict], request_ids: list[str], subjects: list[str | None],
                      marked: frozenset[str] | set[str]) -> tuple[list[dict], int]:
        """``columns`` (of a PredictionsLogged) with the FEATURE columns in ``marked`` sealed per row with that
        row's subject's data key; and how many values were withheld (a marked value of a row without a subject
        is published as missing, never in clear). Keys are looked up once per subject."""
        keys: dict[str, object] = {}
        withheld = 0
        out = []
        for col in columns:
            if col["role"] != "FEATURE" or col["name"] not in marked:
                out.append(col)
                continue
            nums, strs = (prediction_columns.lists(col, len(request_ids)) if prediction_columns.is_buffer(col)
                          else (col["numbers"], col["strings"]))
            kind, values = ("TEXT", strs) if strs else ("NUMBER", nums)
            sealed = []
            for rid, subject, v in zip(request_ids, subjects, values):
                if v is None:
                    sealed.append(None)
                elif subject is None:
                    sealed.append(None)
                    withheld += 1
                else:
                    if subject not in keys:
                        keys[subject] = self.keys.create(subject)
                    sealed.append(seal(keys[subject], feature_field(model, col["name"], rid), feature_text(v)))
            out.append({**col, "numbers": [], "strings": [], "values": None, "valid": None, "codes": None,
                        "dictionary": [], "sealed": {"kind": kind, "values": sealed}})
        return out, withheld


def feature_key(model: str, column: str) -> str:
    """How :meth:`Sealer.policy` names a model's feature column (model names may hold '/' and ':')."""
    return f"{model}\x1f{column}"


def feature_field(model: str, column: str, request_id: str) -> str:
    """The field one prediction's sealed feature value is sealed for (part of the AAD): bound to its row."""
    return f"feature:{model}/{column}/{request_id}"


def feature_text(value: float | str) -> str:
    """A feature value as the text that is sealed (numbers: Python's shortest round-trip repr)."""
    return repr(float(value)) if isinstance(value, float) else str(value)


def uri_field(dataset: str, version: str) -> str:
    """The field a dataset version's URI is sealed for (part of the AAD)."""
    return f"uri:{dataset}@{version}"


def _fits(token: str, limit: int, field: str) -> None:
    if len(token) > limit:
        raise ValidationError(field, HIDDEN, f"sealed, it takes {len(token)} characters; at most {limit} fit "
                                             f"(about {limit * 3 // 4 - 150} characters of plaintext)")


def erase(client: Client, subject: str, reason: str | None = None) -> list[str]:
    """Erase ``subject``: publish ``SubjectErased`` naming its data key, wait for the broker's
    acknowledgement, then delete the key from the key store. Returns the deleted key ids.

    In that order, so a failure leaves a state a retry completes: if the event is not acknowledged
    (DeliveryError) the key is still there; once it is, the processor shows every value sealed with the
    key as ``[erased]`` (and so does a rebuild) even before the key file is gone. The event holds the
    subject's id, the key id and ``reason``; never a key or a plaintext value.
    """
    from modelog.wire.keystore import check_subject

    check_subject(subject)
    if reason is not None:
        try:
            _rules.optional_text(reason)
        except ValueError as exc:
            raise ValidationError("reason", reason, str(exc)) from None
    found = client.sealer.keys.get(subject)
    key_ids = [found.key_id] if found else []
    client.publish("SubjectErased", "subject", f"subject:{subject}", subject=subject, key_ids=key_ids,
                   reason=reason)
    client.flush()
    client.sealer.keys.delete(subject)
    return key_ids


def set_sensitive(client: Client, params: list[str] = (), tags: list[str] = (), datasets: list[str] = (),
                  features: list[tuple[str, str]] = ()) -> None:
    """Replace the list of param and tag keys whose values, dataset names whose versions' URIs, and
    (model, feature column) pairs whose monitored values are personal data (global policy; only an admin
    may, once the log has one). Empty lists: nothing is sensitive any more (values sealed before stay
    sealed)."""
    fields = []
    for kind, keys in (("PARAM", params), ("TAG", tags), ("DATASET", datasets)):
        for k in keys:
            try:
                _rules.name(k)
            except ValueError as exc:
                raise ValidationError(f"sensitive {kind.lower()} key", k, str(exc)) from None
            fields.append({"kind": kind, "key": k, "model": None})
    for model, column in features:
        for what, v in (("model", model), ("column", column)):
            try:
                _rules.name(v)
            except ValueError as exc:
                raise ValidationError(f"sensitive feature {what}", v, str(exc)) from None
        fields.append({"kind": "FEATURE", "key": column, "model": model})
    client.publish("PolicySet", "policy", "policy:*", model=None, rules=[], rules_unchanged=True,
                   sensitive=fields)
    client.flush()
    client.sealer.set_policy(frozenset(
        (f["kind"].lower(), feature_key(f["model"], f["key"]) if f["model"] else f["key"]) for f in fields))
