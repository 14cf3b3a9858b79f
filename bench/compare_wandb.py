"""W&B's side of ``bench/compare.py`` (run by it with the peers' venv, bench/.venv-peers; writes JSON).

W&B in offline mode (``WANDB_MODE=offline``): the SDK hands records to its local service process
(``wandb-core``), which writes ``wandb/offline-run-*/run-*.wandb``. Nothing is queryable without W&B's
cloud service (``wandb sync`` uploads later), so only logging is measured.

1. throughput: workload W, one ``run.log(20 metrics, step=...)`` per step, timed until the last
   ``run.finish()`` returned and every run's offline file exists; the files are then read back (their
   leveldb-style record log, parsed here with W&B's own protobuf classes) to count the metric points.
   CPU seconds and peak RSS of the training process and of ``wandb-core`` over that window;
2. durability: W in a paced loop; there is no server to stop, so ``wandb-core`` is killed (SIGKILL) in
   the middle, and ``--outage-s`` later the loop starts a new one (``wandb.teardown()``; ``wandb.setup()``);
   points acknowledged vs points in the offline files.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare_common import W, ProcessMeter, runner_parser, Stalls, children, cmdline, machine, pace, record_spawn, write_json  # noqa: E402


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("wandb", "protobuf")}


def core_pids() -> list[int]:
    return [p for p in children(os.getpid()) if "wandb-core" in cmdline(p)]


def records(path: Path):
    """Records of a ``.wandb`` file: a 7-byte header (':W&B', 0xBEE1, version), then leveldb-log blocks of
    32 KiB holding chunks (crc32 4 bytes, length 2, type 1: FULL/FIRST/MIDDLE/LAST). A torn tail ends the scan."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        return
    pos, block, buf = 7, 32768, None
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        body = data[pos + 7:pos + 7 + length]
        if len(body) < length:
            return
        pos += 7 + length
        if kind == 1:
            yield body
        elif kind == 2:
            buf = body
        elif kind == 3 and buf is not None:
            buf += body
        elif kind == 4 and buf is not None:
            yield buf + body
            buf = None
        else:
            return


def stored_points(root: Path) -> dict:
    """(run name, key, step) of every metric point in the offline files under ``root``."""
    from wandb.proto import wandb_internal_pb2 as pb

    points: set = set()
    rows = 0
    files = sorted(root.glob("wandb/offline-run-*/run-*.wandb"))
    for f in files:
        name = None
        for raw in records(f):
            rec = pb.Record()
            try:
                rec.ParseFromString(raw)
            except Exception:
                break
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                name = rec.run.display_name
            elif kind == "history":
                step = rec.history.step.num
                for it in rec.history.item:
                    key = it.key or ".".join(it.nested_key)
                    if key.startswith("metric_"):
                        rows += 1
                        points.add((name, key, step))
    return {"files": len(files), "rows": rows, "distinct": points}


def throughput(w: W, root: Path, m: ProcessMeter) -> dict:
    import wandb

    in_loop = 0.0
    files = []
    m.start()
    start = time.perf_counter()
    for r in range(w.runs):
        run = wandb.init(project="compare", name=f"w-{r}", config=w.param_dict(),
                         tags=[f"{k}:{v}" for k, v in w.tag_dict().items()], dir=str(root))
        for step in range(w.steps):
            values = w.values(r, step)
            t0 = time.perf_counter()
            run.log(values, step=step)
            in_loop += time.perf_counter() - t0
        run.finish()
        files.append(Path(run.dir).parent / f"run-{run.id}.wandb")
    missing = [str(f) for f in files if not f.exists()]
    total = time.perf_counter() - start
    rows = m.stop()
    return {"points": w.points, "seconds": total, "points_per_s": w.points / total,
            "us_per_point_in_loop": in_loop / w.points * 1e6, "offline_files": len(files),
            "offline_files_missing": missing, "processes": rows, "totals": ProcessMeter.totals(rows)}


def durability(w: W, root: Path, workdir: Path, pace_s: float, at_s: float, down_s: float) -> dict:
    import wandb

    logged: set = set()
    per_run_ok: dict = {}
    errors: list[str] = []
    outage = {"what": "SIGKILL to wandb-core (W&B's local service; offline mode has no server to stop); "
                      f"{down_s:.0f} s later the loop calls wandb.teardown() and wandb.setup() for a new one",
              "stop_at_s": None, "restart_at_s": None, "ready_at_s": None, "killed_pid": None}
    t0 = time.perf_counter()

    def kill() -> None:
        time.sleep(max(0.0, at_s - (time.perf_counter() - t0)))
        pids = core_pids()
        outage["stop_at_s"] = round(time.perf_counter() - t0, 2)
        if pids:
            outage["killed_pid"] = pids[0]
            os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    i = 0
    calls_raised = 0
    stalls = Stalls()
    restarted = False

    def maybe_restart() -> None:
        nonlocal restarted
        if restarted or outage["stop_at_s"] is None or time.perf_counter() - t0 < outage["stop_at_s"] + down_s:
            return
        restarted = True
        outage["restart_at_s"] = round(time.perf_counter() - t0, 2)
        try:
            wandb.teardown()
        except Exception as exc:
            outage["teardown_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        wandb.setup()
        for p in core_pids():
            record_spawn(workdir, p, "wandb-core")
        outage["ready_at_s"] = round(time.perf_counter() - t0, 2)

    for r in range(w.runs):
        name = f"d-{r}"
        per_run_ok[name] = True
        maybe_restart()
        try:
            with stalls("wandb.init"):
                run = wandb.init(project="compare-durability", name=name, config=w.param_dict(), dir=str(root))
        except Exception as exc:
            errors.append(f"run {r} init: {type(exc).__name__}: {str(exc)[:200]}")
            per_run_ok[name] = False
            for _ in range(w.steps):  # keep the training loop's clock
                pace(t0, i, pace_s)
                i += 1
                maybe_restart()
            continue
        for step in range(w.steps):
            pace(t0, i, pace_s)
            i += 1
            try:
                with stalls("run.log"):
                    run.log(w.values(r, step), step=step)
                logged.update((name, k, step) for k in w.keys)
            except Exception as exc:
                calls_raised += 1
                if per_run_ok[name]:
                    errors.append(f"run {r} step {step}: {type(exc).__name__}: {str(exc)[:200]}")
                per_run_ok[name] = False
        try:
            with stalls("run.finish"):
                run.finish()
        except Exception as exc:
            errors.append(f"run {r} finish: {type(exc).__name__}: {str(exc)[:200]}")
            per_run_ok[name] = False
    loop_s = time.perf_counter() - t0
    killer.join(5)
    stored = stored_points(root)
    acked = {p for p in logged if per_run_ok.get(p[0])}
    return {"variant": "offline, run.log per step", "pace_ms_per_step": pace_s * 1000, "outage": outage,
            "loop_s": round(loop_s, 2), "points_attempted": w.points, "points_logged": len(logged),
            "points_acknowledged": len(acked), "points_not_acknowledged_error_raised": w.points - len(acked),
            "points_stored": len(stored["distinct"]), "rows_stored": stored["rows"],
            "acknowledged_but_lost": len(acked - stored["distinct"]),
            "returned_ok_but_lost": len(logged - stored["distinct"]),
            "errors_raised": len(errors), "log_calls_raised": calls_raised, "errors": errors[:10],
            **stalls.as_dict()}


def main() -> None:
    ap = runner_parser(__doc__)
    args = ap.parse_args()

    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(args.workdir),
                      WANDB_CONFIG_DIR=str(args.workdir / "config"), WANDB_CACHE_DIR=str(args.workdir / "cache"),
                      WANDB_DATA_DIR=str(args.workdir / "data"))
    import wandb

    w = W(args.runs, args.steps)
    result: dict = {"system": "wandb", "versions": versions(), "machine": machine(), "workload": w.as_dict(),
                    "errors": [], "phase_s": {},
                    "notes": ["offline mode: data goes to local files only; not queryable without W&B's cloud "
                              "service (wandb sync), so no query figures"]}
    try:
        tp = time.perf_counter()
        t0 = time.perf_counter()
        wandb.setup()  # starts wandb-core; one-time, not in the timed window
        result["service_start_s"] = round(time.perf_counter() - t0, 2)
        for p in core_pids():
            record_spawn(args.workdir, p, "wandb-core")
        reps = []
        for rep in range(args.repeat):
            root = args.workdir / f"throughput-{rep}"
            root.mkdir(parents=True, exist_ok=True)
            m = ProcessMeter()
            m.add("training process (SDK)", os.getpid(), with_children=False)
            for p in core_pids():
                m.add("W&B service (wandb-core)", p)
            res = throughput(w, root, m)
            st = stored_points(root)
            res["verified_points_in_offline_files"] = len(st["distinct"])
            reps.append(res)
        best = sorted(reps, key=lambda r: r["points_per_s"])[len(reps) // 2]
        result["offline"] = {"variant": "offline, run.log per step", **best,
                             "repetitions": [{k: r[k] for k in ("points_per_s", "seconds", "us_per_point_in_loop")}
                                             for r in reps]}
        print(f"wandb offline: {best['points_per_s']:,.0f} points/s, {best['us_per_point_in_loop']:.1f} us/point",
              file=sys.stderr)
        result["phase_s"]["offline"] = round(time.perf_counter() - tp, 1)
        if args.durability:
            tp = time.perf_counter()
            root = args.workdir / "durability"
            root.mkdir(parents=True, exist_ok=True)
            try:
                result["durability"] = [durability(w, root, args.workdir, args.pace_ms / 1000, args.outage_at,
                                                   args.outage_s)]
            except Exception as exc:
                result["errors"].append(traceback.format_exc())
                result["durability"] = [{"variant": "offline", "error": f"{type(exc).__name__}: {exc}"}]
            result["phase_s"]["durability"] = round(time.perf_counter() - tp, 1)
    except Exception:
        result["errors"].append(traceback.format_exc())
        raise
    finally:
        try:
            wandb.teardown()
        except Exception:
            pass
        write_json(args.out, result)


if __name__ == "__main__":
    main()
