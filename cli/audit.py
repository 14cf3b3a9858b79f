"""``modelog audit verify``: is the log still what the processor read and checkpointed? (decision 0023)

Reads the checkpoints and every record of the projected topics back from the broker, recomputes each
partition's Merkle tree, and holds every checkpoint (and its signature) against it. Exit status 0 when
every checkpoint matches, 1 when a record was changed, removed, reordered or inserted since a checkpoint,
a checkpoint is falsified or forged, or there is no checkpoint to hold the log against.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import click


@click.group()
def audit() -> None:
    """Tamper evidence: hold the log against the processor's signed checkpoints (docs/security.md)."""


def _when(ms: int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(cp) -> str:
    if cp.trust == "signed":
        return f"signed by {cp.signer} ({cp.key_id})"
    return "UNSIGNED" if cp.trust == "unsigned" else f"{cp.trust.upper()}: {cp.detail}"


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--idle-timeout", default=10.0, show_default=True,
              help="Seconds without a record before a partition is taken as read to its end.")
@click.option("--witness", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A file kept where the broker's storage cannot be written: the checkpoints it holds are held "
                   "against the log too (a tail truncated together with its checkpoints shows), and after a "
                   "successful run it is updated with the latest ones.")
@click.pass_context
def audit_verify(ctx, as_json: bool, idle_timeout: float, witness: Path | None) -> None:
    """Recompute every partition's Merkle tree from the broker and check it against every checkpoint and
    its signature; report the first record changed, removed, reordered or inserted since a checkpoint."""
    from modelog.processors.audit import witnessed
    from modelog.processors.rebuild import _Bar
    from modelog.processors.verify import verify

    settings = ctx.obj["settings"]
    kept = []
    if witness is not None and witness.exists():
        try:
            kept = witnessed(json.loads(witness.read_text())["checkpoints"], str(witness))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"--witness {witness}: not a witness file of modelog audit verify ({exc})")
    bar = None if as_json else _Bar("audit verify")
    try:
        result = verify(settings, progress=bar, idle_timeout=idle_timeout, witness=kept)
    finally:
        if bar is not None:
            bar.close()
    rep = result.report
    if witness is not None and rep.ok:
        tmp = witness.with_name(witness.name + ".tmp")
        tmp.write_text(json.dumps({"checkpoints": rep.witness()}, indent=2))
        os.replace(tmp, witness)
    by_trust: dict[str, int] = {}
    for cp in result.checkpoints:
        label = f"signed by {cp.signer}" if cp.trust == "signed" else cp.trust
        by_trust[label] = by_trust.get(label, 0) + 1
    unsigned = by_trust.get("unsigned", 0)
    if as_json:
        click.echo(json.dumps({
            "ok": rep.ok, "records": rep.records, "partitions": rep.partitions,
            "checkpoints": rep.checkpoints - result.witnessed, "matched": rep.matched - result.witnessed,
            "witnessed": result.witnessed, "signatures": by_trust,
            "findings": [{"kind": f.kind, "topic": f.topic, "partition": f.partition, "offset": f.offset,
                          "detail": f.detail, "now": result.described.get((f.topic, f.partition, f.offset))}
                         for f in rep.findings],
            "last_checkpoint": None if rep.last is None else {
                "topic": rep.last.topic, "partition": rep.last.partition, "tree_size": rep.last.tree_size,
                "next_offset": rep.last.next_offset, "root_hash": rep.last.root_hash.hex(), "at": rep.last.at,
                "event_id": rep.last.event_id, "logged_at": _when(rep.last.logged_ms), "signer": rep.last.signer,
                "key_id": rep.last.key_id},
            "uncovered": {f"{t}/{p}": n for (t, p), n in sorted(rep.uncovered.items())},
        }, indent=2))
        sys.exit(0 if rep.ok else 1)
    sig = ", ".join(f"{n} {label}" for label, n in sorted(by_trust.items())) or "none"
    if rep.findings:
        click.echo(f"FAILED: the log does not match its checkpoints ({rep.records} records in {rep.partitions} "
                   f"partitions read, {rep.checkpoints} checkpoints: {sig})", err=True)
        for f in rep.findings:
            click.echo(f"  {f}", err=True)
            now = result.described.get((f.topic, f.partition, f.offset))
            if now:
                click.echo(f"    the record there now: {now}", err=True)
            if f.checkpoint is not None:
                click.echo(f"    checkpoint {_signed(f.checkpoint)}, logged {_when(f.checkpoint.logged_ms)}", err=True)
        sys.exit(1)
    if rep.matched == 0:
        click.echo(f"FAILED: no checkpoint to verify against ({rep.records} records in {rep.partitions} partitions "
                   "read): is a processor running? It checkpoints every MODELOG_CHECKPOINT_EVERY records and "
                   "MODELOG_CHECKPOINT_SECONDS", err=True)
        sys.exit(1)
    click.echo(f"verified: {rep.records} records in {rep.partitions} partitions match all "
               f"{rep.matched - result.witnessed} checkpoints ({sig})"
               + (f" and the {result.witnessed} the witness kept" if result.witnessed else ""))
    last = rep.last
    if last is None:
        click.echo("warning: no checkpoint on the log matched, only the witness's: was the checkpoints topic deleted?")
    else:
        click.echo(f"last checkpoint: {last.topic}/{last.partition}, {last.tree_size} records up to offset "
                   f"{last.next_offset - 1}, root {last.root_hash.hex()[:16]}…, {_signed(last)}, logged "
                   f"{_when(last.logged_ms)}")
    if rep.uncovered:
        n = sum(rep.uncovered.values())
        click.echo(f"not covered yet: {n} records after the last checkpoints ("
                   + ", ".join(f"{t}/{p}: {k}" for (t, p), k in sorted(rep.uncovered.items())) + ")")
    if unsigned:
        why = ("no key is registered for the processor (modelog init registers one)" if not result.processor_keys
               else "they were written before the processor had its key")
        click.echo(f"warning: {unsigned} checkpoints are unsigned ({why}): they show the log has not changed since "
                   "they were written, but anyone who can write to the broker could have written them")


__all__ = ["audit"]
