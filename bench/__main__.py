"""`python -m bench [--quick | --full] [--only NAME,...] [--backend sqlite|postgresql|both] [--json FILE]`.

Runs the scenarios, prints every figure beside its target and ceiling, and writes the JSON results,
the block of docs/benchmarks.md for this mode, and the plots in docs/img/.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import orjson

from bench import browse, dashboard, fairness, fanout, latency, memory, publish, retention, scaleout, throughput
from bench.harness import PG_ADMIN_URL, Context, postgres_available
from bench.report import ROOT, Row, docs_block, machine, plots, source_fingerprint, table, write_docs

SCENARIOS = {m.NAME: m for m in (throughput, latency, publish, browse, memory, scaleout, retention, dashboard,
                                 fairness, fanout)}
DOCS = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small sizes, whole run under 5 minutes (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the big tables (tens of minutes)")
    p.set_defaults(mode="quick")
    p.add_argument("--only", default="", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--json", type=Path, default=None,
                   help="results file (default bench/results/latest.json, latest-full.json with --full,"
                        " partial.json with --only)")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md and docs/img/")
    p.add_argument("--profile", action="store_true", help="py-spy the Herald process during the throughput scenario")
    p.add_argument("--keep-logs", type=Path, default=None, help="copy every process's output into this folder")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.names = names
    args.partial = bool(args.only)
    return args


@contextlib.contextmanager
def one_at_a_time(wait: float = 900) -> Iterator[None]:
    """Two benchmark runs on one machine spoil each other's figures: the second waits for the first (bounded)."""
    with open(Path(tempfile.gettempdir()) / "herald-bench.lock", "w") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit("another benchmark run still holds the machine; giving up") from None
                print("another benchmark run is going on; waiting for it to finish", flush=True)
                time.sleep(10)
        yield


def main(argv: list[str]) -> int:
    args = parse(argv)
    with one_at_a_time():
        return run(args, argv)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    exe = Path(sys.executable)
    command = shlex.join([str(exe.relative_to(ROOT) if exe.is_relative_to(ROOT) else exe), "-m", "bench", *argv])
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    pg_version = None
    if "postgresql" in backends:
        if postgres_available():
            pg_version = _pg_version()
        else:
            print(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (set HERALD_BENCH_POSTGRES_URL): skipping it")
    ctx = Context(args.mode, profile=args.profile, keep_logs=args.keep_logs)
    rows: list[Row] = []
    before = machine(pg_version) | {"load_before": os.getloadavg()}
    if before["load_before"][0] > 0.5 * (os.cpu_count() or 1):
        print(f"note: the machine is busy before the run (load {before['load_before'][0]:.2f}); figures will be lower")
    started = time.monotonic()
    for name in args.names:
        scenario = SCENARIOS[name]
        for backend in [b for b in backends if b in scenario.BACKENDS]:
            if backend == "postgresql" and pg_version is None:
                rows.append(Row(name, backend, "-", None, note="PostgreSQL not reachable"))
                continue
            print(f"== {name} on {backend} ({args.mode})", flush=True)
            ctx.detail("source", f"{name}/{backend}", source_fingerprint())
            t0 = time.monotonic()
            try:
                got = scenario.run(ctx, backend)
            except Exception as exc:  # noqa: BLE001 - one failed scenario must not hide the others' figures
                traceback.print_exc()
                got = [Row(name, backend, "-", None, note=f"error: {str(exc).splitlines()[0][:160]}")]
            rows += got
            ctx.detail("load", f"{name}/{backend}", round(os.getloadavg()[0], 2))
            print(table(got), f"\n   ({time.monotonic() - t0:.0f} s)\n", flush=True)
    seconds = time.monotonic() - started

    print(table(rows))
    print(f"\nwhole run: {seconds:.0f} s")
    result = {
        "mode": args.mode, "command": command, "seconds": round(seconds, 1),
        "machine": before | {"load_after": os.getloadavg()}, "rows": [r.as_dict() for r in rows],
        "details": ctx.details,
    }
    default = "partial.json" if args.partial else ("latest.json" if args.mode == "quick" else "latest-full.json")
    out = args.json or ROOT / "bench" / "results" / default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"results: {out}")
    if not args.no_docs and not args.partial:
        made = plots(rows, ctx.details, IMG, args.mode)
        write_docs(DOCS, args.mode, docs_block(result, rows, made, DOCS))
        print(f"docs: {DOCS}" + "".join(f"\nplot: {p}" for p in made))
    return 1 if any(r.status == "error" for r in rows) else 0


def _pg_version() -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
