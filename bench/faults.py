"""The fault campaign: kill, starve and feed garbage to a real modelog stack; check the views against what the
writers were acknowledged. One command; prints a table, writes JSON (docs/reliability.md keeps the latest table).

    python bench/faults.py [--only name1,name2] [--quick] [--out bench/results/faults.json] [--markdown FILE]
                           [--timeout 1800]

Scenarios come from ``bench/faults_kill.py`` (process kills, outages) and ``bench/faults_input.py`` (bad input
and resources; skipped when absent). Each module has ``SCENARIOS: {name: fn(args, workdir) -> dict}``; a
scenario returns ``{"scenario", "passed", "what", "figures", "notes"}``. Each runs in a child process of its
own, in a fresh workdir, bounded by ``--timeout`` seconds; an exception or a timeout is a failure with the
reason, and every process it started (the workdir's ``spawned.jsonl``) is ended after it. ``--quick`` scales
the counts down. Exit status 1 if any scenario failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_common import cleanup_spawned, machine, terminate_tree, write_json  # noqa: E402

MODULES = ("faults_kill", "faults_input")


def scenarios() -> dict:
    """Every scenario of the modules present, in their order."""
    found: dict = {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.update(module.SCENARIOS)
    return found


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--quick", action="store_true", help="scaled-down counts (a smoke run, not the figures)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "faults.json")
    ap.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds one scenario may take")
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)  # the child's: run one scenario
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap


def run_child(args: argparse.Namespace) -> None:
    """In the child process: run one scenario, write its result next to its workdir."""
    result_file = args.workdir / "result.json"
    try:
        result = scenarios()[args.child](args, args.workdir)
    except BaseException as exc:  # noqa: BLE001 -- a failure with its reason, not a crash of the campaign
        result = {"scenario": args.child, "passed": False, "what": "", "figures": {},
                  "notes": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    write_json(result_file, result)


def run_one(name: str, args: argparse.Namespace, root: Path) -> dict:
    """One scenario in a child process, in a fresh workdir, bounded in time; everything it started is ended."""
    workdir = root / name
    workdir.mkdir(parents=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--workdir", str(workdir),
           "--timeout", str(args.timeout)] + (["--quick"] if args.quick else [])
    t0 = time.perf_counter()
    with (workdir / "scenario.log").open("wb") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            child.wait(args.timeout)
        except subprocess.TimeoutExpired:
            terminate_tree(child.pid, timeout=10)
    seconds = time.perf_counter() - t0
    ended = cleanup_spawned(workdir)
    try:
        result = json.loads((workdir / "result.json").read_text())
    except (OSError, ValueError):
        tail = (workdir / "scenario.log").read_text(errors="replace")[-1500:]
        reason = f"timed out after {args.timeout:.0f} s" if child.returncode is None or seconds >= args.timeout \
            else f"exited {child.returncode} without a result"
        result = {"scenario": name, "passed": False, "what": "", "figures": {}, "notes": f"{reason}\n{tail}"}
    result["seconds"] = round(seconds, 1)
    if ended:
        result["left_running_and_ended"] = ended
    return result


def key_figures(figures: dict, limit: int = 6) -> str:
    """The scalar figures, ``k=v`` (lists and dicts are in the JSON)."""
    items = [f"{k}={v}" for k, v in figures.items() if isinstance(v, (int, float, str, bool)) or v == []]
    return ", ".join(items[:limit])


def table(results: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(r["scenario"], "yes" if r["passed"] else "**no**", key_figures(r.get("figures") or {}),
             f"{r['seconds']:.0f}") for r in results]


def markdown(results: list[dict], info: dict) -> str:
    load = info["machine"]["loadavg_1_5_15"]
    lines = [f"Run of {info['started_at']} ({'--quick' if info['quick'] else 'full counts'}; "
             f"{info['machine']['cpus']} CPUs, Python {info['machine']['python']}; load average at start "
             f"{' '.join(load or [])}, at end {' '.join(info['loadavg_end'] or [])})", "",
             "| scenario | passed | key figures | s |", "|---|---|---|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table(results)]
    failed = [r for r in results if not r["passed"]]
    lines += [""] + [f"* {r['scenario']} failed: {r['notes'].splitlines()[0] if r['notes'] else ''}" for r in failed]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    args = parser().parse_args()
    if args.child:
        run_child(args)
        return 0
    available = scenarios()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(available)}", file=sys.stderr)
        return 2
    info = {"started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
            "machine": machine()}
    root = Path(tempfile.mkdtemp(prefix="modelog-faults-"))
    results = []
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results.append(run_one(name, args, root))
        r = results[-1]
        print(f"{name}: {'passed' if r['passed'] else 'FAILED'} in {r['seconds']:.0f} s"
              + ("" if r["passed"] else f": {r['notes'][:300]}"), file=sys.stderr, flush=True)
    info["loadavg_end"] = machine()["loadavg_1_5_15"]
    rows = table(results)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("scenario", "passed", "key figures", "s"))]
    print(f"\nmodelog fault campaign — {info['machine']['cpus']} CPUs, load average "
          f"{' '.join(info['machine']['loadavg_1_5_15'] or [])} at start, {' '.join(info['loadavg_end'] or [])} at end")
    for row in [("scenario", "passed", "key figures", "s"), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {**info, "workdir": str(root), "results": results})
    print(f"\nwrote {args.out} (workdirs with the processes' logs under {root})")
    if args.markdown:
        args.markdown.write_text(markdown(results, info))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
