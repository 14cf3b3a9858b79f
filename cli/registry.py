"""``modelog model|requests|deploy|access|policy``: the model registry from the command line.

The principal is MODELOG_PRINCIPAL (default: the OS user). Commands that wait for the processor
(``model register``, ``--wait``) need one running (``modelog process``).

Exit codes of governed changes with ``--wait``: 0 approved, 1 rejected (reason on stderr),
3 still pending when the timeout passed (e.g. waiting for an approver).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from modelog.cli.session import cli_client


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{what} must be KEY=VALUE (got {v!r})")
        out[key] = val
    return out


def _show(ctx: click.Context, query: str, fmt: str = "table") -> None:
    from modelog.cli import output as _output
    from modelog.consumers.query import sql_arrow

    result = sql_arrow(query, ctx.obj["settings"])
    click.echo({"table": _output.table, "csv": _output.to_csv, "json": _output.to_json}[fmt](result).rstrip("\n"))


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _finish(status, wait: bool) -> None:
    if not wait:
        click.echo(f"requested {status.action} on {status.model}: request {status.request_id} (pending)")
        return
    if status.status == "APPROVED":
        click.echo(f"approved: {status.reason} (request {status.request_id})")
        return
    if status.status == "REJECTED":
        click.echo(f"rejected: {status.reason} (request {status.request_id})", err=True)
        sys.exit(1)
    click.echo(f"still pending after the timeout (request {status.request_id}); "
               f"see `modelog requests list --model {status.model}`", err=True)
    sys.exit(3)


_wait = click.option("--wait", is_flag=True, help="Block until the processor decides; exit 0 approved, 1 rejected.")
_timeout = click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait with --wait.")
_comment = click.option("--comment", "-m", default=None, help="Why (kept in the audit trail).")
_fmt = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)


# -- models ---------------------------------------------------------------------------

@click.group()
def model() -> None:
    """Model versions: register, list, promote, alias, deprecate, archive, delete, annotate, download."""


@model.command("download")
@click.argument("name")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--version", "version", type=int, default=None, help="The version number.")
@click.option("--alias", default=None, help="The version this alias points at.")
@click.option("--stage", default=None, help="The latest version in this stage (e.g. production).")
@click.pass_context
def model_download(ctx, name, dest, version, alias, stage) -> None:
    """Download a model version's artifact to DEST, checked against its sha256 (one of --version/--alias/--stage)."""
    from modelog.sdk.artifacts import download, model_artifact

    if sum(v is not None for v in (version, alias, stage)) != 1:
        raise click.UsageError("give exactly one of --version, --alias or --stage")
    mv = model_artifact(name, ctx.obj["settings"], version=version, alias=alias, stage=stage)
    written = download(mv["run_id"], mv["artifact"], dest, ctx.obj["settings"])
    click.echo(f"{name} version {mv['version']} ({mv['artifact']} of run {mv['run_id']}) -> {written}")


@model.command("register")
@click.argument("name")
@click.option("--run", "run_id", default=None, help="Run that produced it (lineage).")
@click.option("--artifact", default=None, help="Path of the model among the run's artifacts.")
@click.option("--uri", default=None, help="Where the model's files are (if not a run artifact).")
@click.option("--semver", default=None, help="Semantic version, e.g. 1.2.0.")
@click.option("--description", default=None)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE")
@click.option("--no-wait", is_flag=True, help="Do not wait for the version number.")
@click.pass_context
def model_register(ctx, name, run_id, artifact, uri, semver, description, tags, no_wait) -> None:
    """Register a new version of model NAME and print its number."""
    with cli_client(ctx) as c:
        mv = c.registry.register_model(name, run_id=run_id, artifact=artifact, uri=uri, semver=semver,
                                       description=description, tags=_pairs(tags, "--tag"), wait=not no_wait)
    click.echo(f"registered {name} version {mv.version}" if mv.version else f"registered {name} (event {mv.event_id})")


@model.command("list")
@_fmt
@click.pass_context
def model_list(ctx, fmt) -> None:
    """Models and their latest, production version and aliases."""
    _show(ctx, "SELECT model, latest_version, version_count, production_version, aliases, updated_at "
               "FROM models ORDER BY model", fmt)


@model.command("show")
@click.argument("name")
@_fmt
@click.pass_context
def model_show(ctx, name, fmt) -> None:
    """Versions of model NAME with stage, aliases and source run."""
    _show(ctx, "SELECT version, stage, aliases, semver, run_id, registered_at, registered_by, description "
               f"FROM model_versions WHERE model = {_q(name)} ORDER BY version", fmt)


@model.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--to", "stage", required=True, type=click.Choice(["development", "staging", "production"]))
@_comment
@_wait
@_timeout
@click.pass_context
def model_promote(ctx, name, version, stage, comment, wait, timeout) -> None:
    """Request VERSION of NAME be moved to a stage (decided by the processor under the policy)."""
    with cli_client(ctx) as c:
        _finish(c.registry.promote(name, version, stage, comment=comment, wait=wait, timeout=timeout), wait)


@model.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int)
@_comment
@_wait
@_timeout
@click.pass_context
def model_alias(ctx, name, alias, version, comment, wait, timeout) -> None:
    """Request ALIAS (production, staging, champion, ...) point at VERSION of NAME."""
    with cli_client(ctx) as c:
        _finish(c.registry.set_alias(name, alias, version, comment=comment, wait=wait, timeout=timeout), wait)


@model.command("unalias")
@click.argument("name")
@click.argument("alias")
@_comment
@_wait
@_timeout
@click.pass_context
def model_unalias(ctx, name, alias, comment, wait, timeout) -> None:
    """Request ALIAS be removed from NAME."""
    with cli_client(ctx) as c:
        _finish(c.registry.remove_alias(name, alias, comment=comment, wait=wait, timeout=timeout), wait)


def _lifecycle(action: str, doc: str):
    @click.argument("name")
    @click.argument("version", type=int, required=action != "DELETE_MODEL")
    @_comment
    @_wait
    @_timeout
    @click.pass_context
    def command(ctx, name, version, comment, wait, timeout) -> None:
        with cli_client(ctx) as c:
            _finish(c.registry.request(name, action, version=version, comment=comment, wait=wait,
                                       timeout=timeout), wait)

    command.__doc__ = doc
    return command


model.command("deprecate")(_lifecycle("DEPRECATE", "Request VERSION of NAME be deprecated."))
model.command("archive")(_lifecycle("ARCHIVE", "Request VERSION of NAME be archived (never promoted again)."))
model.command("delete-version")(_lifecycle(
    "DELETE_VERSION", "Request a tombstone for VERSION of NAME: hidden from current views, history kept."))


@model.command("delete")
@click.argument("name")
@_comment
@_wait
@_timeout
@click.pass_context
def model_delete(ctx, name, comment, wait, timeout) -> None:
    """Request every version of NAME be deleted (tombstones; the log and audit views keep the history)."""
    with cli_client(ctx) as c:
        _finish(c.registry.delete_model(name, comment=comment, wait=wait, timeout=timeout), wait)


@model.command("annotate")
@click.argument("name")
@click.argument("version", type=int, required=False)
@click.option("--description", default=None)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE")
@click.option("--remove-tag", "remove", multiple=True, metavar="KEY")
@click.option("--annotation", "annotations", multiple=True, metavar="KEY=TEXT")
@click.pass_context
def model_annotate(ctx, name, version, description, tags, remove, annotations) -> None:
    """Set the description, tags or annotations of NAME (or of one VERSION). Not governed."""
    with cli_client(ctx) as c:
        c.registry.annotate(name, version, description=description, tags=_pairs(tags, "--tag"),
                            remove_tags=remove, annotations=_pairs(annotations, "--annotation"))
        c.flush()
    click.echo("annotated")


# -- requests -------------------------------------------------------------------------

@click.group()
def requests() -> None:
    """Governed change requests: list, approve, reject."""


@requests.command("list")
@click.option("--model", "model_name", default=None)
@click.option("--status", type=click.Choice(["PENDING", "APPROVED", "REJECTED"], case_sensitive=False), default=None)
@_fmt
@click.pass_context
def requests_list(ctx, model_name, status, fmt) -> None:
    """Requests with their status and the decision's reason (newest last)."""
    where = []
    if model_name:
        where.append(f"model = {_q(model_name)}")
    if status:
        where.append(f"status = {_q(status.upper())}")
    _show(ctx, "SELECT request_id, model, action, version, stage, alias, requested_by, requested_at, status, reason "
               "FROM requests" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY requested_at", fmt)


def _verdict(ctx, request_id: str, comment: str | None, verdict: str) -> None:
    from modelog.consumers.query import sql_arrow

    rows = sql_arrow(f"SELECT model, status FROM requests WHERE request_id = {_q(request_id)}",
                     ctx.obj["settings"]).to_pylist()
    if not rows:
        raise click.ClickException(f"no request {request_id} (see `modelog requests list`)")
    if rows[0]["status"] != "PENDING":
        raise click.ClickException(f"request {request_id} is already {rows[0]['status']}")
    with cli_client(ctx) as c:
        c.registry.approve(rows[0]["model"], request_id, comment, verdict=verdict)
    done = "approved" if verdict == "APPROVE" else "rejected"
    click.echo(f"{done} request {request_id} as {ctx.obj['settings'].principal}")


@requests.command("approve")
@click.argument("request_id")
@_comment
@click.pass_context
def requests_approve(ctx, request_id, comment) -> None:
    """Approve a pending request (counts if you hold the policy's role and are not the requester)."""
    _verdict(ctx, request_id, comment, "APPROVE")


@requests.command("reject")
@click.argument("request_id")
@_comment
@click.pass_context
def requests_reject(ctx, request_id, comment) -> None:
    """Reject a pending request."""
    _verdict(ctx, request_id, comment, "REJECT")


# -- deployments ----------------------------------------------------------------------

@click.group()
def deploy() -> None:
    """Deployments: which version serves where, since when, by whom; rollbacks."""


@deploy.command("record")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--env", "environment", required=True, help="Environment, e.g. prod, staging, prod-eu.")
@click.option("--endpoint", default=None)
@_comment
@click.pass_context
def deploy_record(ctx, name, version, environment, endpoint, comment) -> None:
    """Record that VERSION of NAME now serves in an environment."""
    with cli_client(ctx) as c:
        c.registry.record_deployment(name, version, environment, endpoint=endpoint, comment=comment)
    click.echo(f"recorded {name} version {version} in {environment}")


@deploy.command("rollback")
@click.argument("name")
@click.option("--env", "environment", required=True)
@click.option("--to", "to_version", type=int, default=None, help="Version to go back to (default: the previous).")
@_comment
@click.pass_context
def deploy_rollback(ctx, name, environment, to_version, comment) -> None:
    """Deploy an earlier version again (a new deployment event that points back)."""
    with cli_client(ctx) as c:
        v = c.registry.rollback(name, environment, to_version, comment=comment)
    click.echo(f"rolled back {name} in {environment} to version {v}")


@deploy.command("list")
@click.option("--all", "everything", is_flag=True, help="Every deployment ever, not only the current ones.")
@_fmt
@click.pass_context
def deploy_list(ctx, everything, fmt) -> None:
    """Current deployments (or the whole history with --all)."""
    view = "deployments" if everything else "current_deployments"
    _show(ctx, f"SELECT * FROM {view} ORDER BY model, environment, deployed_at", fmt)


# -- access and policy ----------------------------------------------------------------

@click.group()
def access() -> None:
    """Roles held by principals (admin, maintainer, approver, writer, reader): everywhere, per model or per experiment."""


def _scope_text(model_name: str | None, experiment: str | None) -> str:
    return f" for model {model_name}" if model_name else f" for experiment {experiment}" if experiment else " everywhere"


@access.command("grant")
@click.argument("principal")
@click.argument("role")
@click.option("--model", "model_name", default=None, help="Only for this model.")
@click.option("--experiment", default=None, help="Only for this experiment (its runs and everything logged in them).")
@click.pass_context
def access_grant(ctx, principal, role, model_name, experiment) -> None:
    """Give PRINCIPAL the ROLE (everywhere unless --model or --experiment). Admin only once the log has one."""
    with cli_client(ctx) as c:
        c.registry.grant(principal, role, model_name, experiment=experiment)
    click.echo(f"granted {role} to {principal}{_scope_text(model_name, experiment)}")


@access.command("revoke")
@click.argument("principal")
@click.argument("role")
@click.option("--model", "model_name", default=None, help="The model the role was granted for.")
@click.option("--experiment", default=None, help="The experiment the role was granted for.")
@click.pass_context
def access_revoke(ctx, principal, role, model_name, experiment) -> None:
    """Take the ROLE from PRINCIPAL, in the scope it was granted in."""
    with cli_client(ctx) as c:
        c.registry.revoke(principal, role, model_name, experiment=experiment)
    click.echo(f"revoked {role} from {principal}{_scope_text(model_name, experiment)}")


@access.command("list")
@_fmt
@click.pass_context
def access_list(ctx, fmt) -> None:
    _show(ctx, "SELECT * FROM role_assignments ORDER BY principal, role, model, experiment", fmt)


@click.group()
def policy() -> None:
    """The rules governed changes must pass (approvals, metric gates)."""


@policy.command("set")
@click.option("--model", "model_name", default=None, help="Policy of one model (default: the global policy).")
@click.option("--file", "path", type=click.Path(exists=True, path_type=Path), default=None,
              help="JSON file with a list of rules.")
@click.option("--require-approval", "approval", multiple=True, metavar="ACTION[:STAGE]=ROLE",
              help="e.g. PROMOTE:production=approver")
@click.option("--approvals", "approvals", type=click.IntRange(1, 100), default=None,
              help="Distinct approvers each --require-approval needs (default 1; never the requester).")
@click.option("--gate", "gates", multiple=True, metavar="ACTION[:STAGE]=METRIC OP THRESHOLD",
              help="e.g. 'PROMOTE:production=auc >= 0.8'")
@click.option("--require-signatures/--no-require-signatures", "signatures", default=None,
              help="Refuse (or accept again) unsigned events logged from now on (global; admins only after "
                   "modelog init). Alone, it leaves the rules as they are.")
@click.option("--sensitive-param", "sensitive_params", multiple=True, metavar="KEY",
              help="A param key whose values are personal data: writers seal them with the run's subject's "
                   "data key (global; replaces the list; alone, it leaves the rules as they are).")
@click.option("--sensitive-tag", "sensitive_tags", multiple=True, metavar="KEY",
              help="A tag key whose values are personal data (as --sensitive-param).")
@click.option("--sensitive-dataset", "sensitive_datasets", multiple=True, metavar="NAME",
              help="A dataset whose versions' URIs are personal data: writers seal the URI with the subject's "
                   "data key (log_dataset in a run with a subject, register_dataset(subject=...); as "
                   "--sensitive-param).")
@click.option("--sensitive-feature", "sensitive_features", multiple=True, metavar="MODEL=COLUMN",
              help="A monitored feature column of MODEL whose values are personal data: Monitor.log seals them "
                   "with each prediction's subject's data key (as --sensitive-param).")
@click.option("--no-sensitive", "no_sensitive", is_flag=True, help="Mark no field sensitive any more.")
@click.pass_context
def policy_set(ctx, model_name, path, approval, gates, signatures, approvals, sensitive_params, sensitive_tags,
               sensitive_datasets, sensitive_features, no_sensitive) -> None:
    """Replace the policy (global or of one model). With no rules, clears it."""
    marked = sensitive_params or sensitive_tags or sensitive_datasets or sensitive_features
    if marked or no_sensitive:
        if model_name or path or approval or gates or signatures is not None:
            raise click.BadParameter("--sensitive-param/--sensitive-tag/--sensitive-dataset/--sensitive-feature/"
                                     "--no-sensitive go alone (a global list)")
        if no_sensitive and marked:
            raise click.BadParameter("--no-sensitive clears the list: no --sensitive-param/--sensitive-tag/"
                                     "--sensitive-dataset/--sensitive-feature with it")
        features = []
        for spec in sensitive_features:
            model_part, sep, column = spec.rpartition("=")
            if not sep or not model_part or not column:
                raise click.BadParameter(f"{spec!r}: must be MODEL=COLUMN, e.g. credit-risk=postcode",
                                         param_hint="--sensitive-feature")
            features.append((model_part, column))
        from modelog.sdk.privacy import set_sensitive

        with cli_client(ctx) as c:
            set_sensitive(c, list(sensitive_params), list(sensitive_tags), list(sensitive_datasets), features)
        click.echo(f"sensitive fields: {len(sensitive_params)} param key(s), {len(sensitive_tags)} tag key(s), "
                   f"{len(sensitive_datasets)} dataset(s), {len(features)} feature column(s)")
        return
    if signatures is not None and not (path or approval or gates):
        if model_name:
            raise click.BadParameter("--require-signatures is global: no --model")
        with cli_client(ctx) as c:
            c.registry.require_signatures(signatures)
        click.echo("unsigned events will be " + ("refused" if signatures else "accepted (shown unverified)"))
        return
    if approvals is not None and not approval:
        raise click.BadParameter("--approvals counts the approvers of --require-approval rules: give one")
    rules = json.loads(path.read_text()) if path else []

    def target(spec: str) -> tuple[str, str | None, str]:
        head, sep, tail = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"expected ACTION[:STAGE]=..., got {spec!r}")
        action, _, stage = head.partition(":")
        return action.upper(), stage or None, tail.strip()

    for spec in approval:
        action, stage, role = target(spec)
        rules.append({"name": f"approval-{action.lower()}{'-' + stage if stage else ''}", "kind": "APPROVAL",
                      "action": action, "stage": stage, "role": role, "approvals": approvals})
    for spec in gates:
        action, stage, cond = target(spec)
        parts = cond.split()
        if len(parts) != 3:
            raise click.BadParameter(f"gate condition must be 'METRIC OP THRESHOLD', got {cond!r}")
        rules.append({"name": f"gate-{parts[0]}", "kind": "METRIC_GATE", "action": action, "stage": stage,
                      "metric": parts[0], "op": parts[1], "threshold": parts[2]})
    with cli_client(ctx) as c:
        c.registry.set_policy(rules, model_name, require_signatures=signatures)
    click.echo(f"policy for {model_name or 'every model'}: {len(rules)} rule(s)")


@policy.command("show")
@_fmt
@click.pass_context
def policy_show(ctx, fmt) -> None:
    _show(ctx, "SELECT * FROM policies ORDER BY scope, seq", fmt)


__all__ = ["access", "deploy", "model", "policy", "requests"]
