"""Results: one `Row` per figure, beside its target and ceiling; the table, the JSON file, the docs block, the plots."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    scenario: str
    backend: str
    metric: str
    value: float | None
    unit: str = ""
    target: float | None = None
    op: str = ">="  # how the value must compare with the target
    ceiling: float | None = None
    note: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "error" if self.note.startswith("error") else "skipped"
        if self.target is None:
            return ""
        met = self.value >= self.target if self.op == ">=" else self.value <= self.target
        return "met" if met else "MISSED"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("/s", "events/s", "req/s", "deliveries/s"):
        return f"{value:,.0f} {unit}"
    if unit == "%":
        return f"{value:.0f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f} {unit}".strip()


def cells(row: Row) -> list[str]:
    target = f"{row.op} {fmt(row.target, row.unit)}" if row.target is not None else ""
    ceiling = fmt(row.ceiling, row.unit) if row.ceiling is not None else ""
    return [row.scenario, row.backend, row.metric, fmt(row.value, row.unit), target, ceiling, row.status, row.note]


HEADER = ["scenario", "backend", "metric", "value", "target", "ceiling", "status", "note"]


def table(rows: list[Row]) -> str:
    """A plain-text table for the terminal."""
    lines = [HEADER] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER) - 1)]
    out = []
    for n, line in enumerate(lines):
        # widths stop before the last column, which is not padded
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1])
        if n == 0:
            out.append("  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(s.rstrip() for s in out)


def markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        c = cells(r)
        c[6] = {"MISSED": "**missed**", "met": "met"}.get(c[6], c[6])
        out.append("| " + " | ".join(x.replace("|", "/") for x in c) + " |")
    return "\n".join(out)


# --- the machine --------------------------------------------------------------------------------


def machine(postgres_version: str | None) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), 0
    )

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    from herald import __version__

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version,
        "herald": __version__,
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_fingerprint": source_fingerprint(),
        "uncommitted": (git("diff", "--name-only", "HEAD", "--", "src") + "\n"
                        + git("ls-files", "--others", "--exclude-standard", "src")).split(),
    }


def source_fingerprint() -> str:
    """A hash of the code being measured: every file under src/ as it is on disk now (others may be editing it)."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# --- the docs block -----------------------------------------------------------------------------


def docs_block(result: dict[str, Any], rows: list[Row], plots: list[Path], docs: Path) -> str:
    m = result["machine"]
    lines = [
        f"Run {m['date']} with `{result['command']}` ({result['mode']} mode, {result['seconds']:.0f} s).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}; "
        f"Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'not used'}; "
        f"Herald {m['herald']} at commit {m['commit'] or 'unknown'}"
        + (f" plus uncommitted changes to {', '.join(m['uncommitted'])}" if m.get("uncommitted") else "")
        + _changed(result)
        + f". Load average (1, 5, 15 min) before the run "
        f"{_load(m.get('load_before'))}, after {_load(m.get('load_after'))}.",
        "",
        markdown(rows),
        "",
    ]
    load = result["details"].get("load")
    if load:
        lines += [f"1-min load average at the end of each scenario ({m['nproc']} = every CPU busy): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in load.items()) + ".", ""]
    for plot in plots:
        lines.append(f"![{plot.stem}]({os.path.relpath(plot, docs.parent)})")
    return "\n".join(lines).rstrip() + "\n"


def _changed(result: dict[str, Any]) -> str:
    """Name the scenarios that started on other code than the run did (src/ edited meanwhile)."""
    first = result["machine"].get("src_fingerprint")
    later = [k for k, fp in result["details"].get("source", {}).items() if fp != first]
    return f" (src/ changed during the run: {', '.join(later)} ran newer code)" if later else ""


def _load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "unknown"


def write_docs(docs: Path, mode: str, block: str) -> None:
    """Replace the `mode` block between its markers, keeping the hand-written text around it."""
    begin, end = f"<!-- bench:{mode}:begin -->", f"<!-- bench:{mode}:end -->"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    fresh = f"{begin}\n{block}{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: fresh, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## Results ({mode})\n\n{fresh}\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text)


# --- plots --------------------------------------------------------------------------------------


def plots(rows: list[Row], details: dict[str, Any], img_dir: Path, mode: str) -> list[Path]:
    """Throughput against its ceiling, latency percentiles, worker RSS over time. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    img_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []

    bars = [r for r in rows if r.unit == "deliveries/s" and r.value is not None]
    if bars:
        fig, ax = plt.subplots(figsize=(8, 4))
        labels = [f"{r.scenario}\n{r.backend}\n{r.metric.replace('deliveries/s', '').strip(' ,')}" for r in bars]
        xs = range(len(bars))
        ax.bar([x - 0.2 for x in xs], [r.value for r in bars], 0.4, label="Herald")
        ax.bar([x + 0.2 for x in xs], [r.ceiling or 0 for r in bars], 0.4, label="ceiling (bare aiohttp client)")
        for x, r in zip(xs, bars, strict=True):
            if r.target is not None:
                ax.hlines(r.target, x - 0.45, x + 0.45, colors="red", linestyles="dashed")
        ax.set_xticks(list(xs), labels, fontsize=8)
        ax.set_ylabel("deliveries per second")
        ax.set_title("Durable throughput: publish to recorded log (dashed: target)")
        ax.legend(fontsize=8)
        made.append(_save(fig, img_dir / f"throughput-{mode}.png", plt))

    latency = details.get("latency", {})
    if latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = ["p50", "p90", "p95", "p99", "max"]
        width = 0.8 / len(latency)
        for i, (backend, pct) in enumerate(sorted(latency.items())):
            ax.bar([x + i * width for x in range(len(names))], [pct[n] for n in names], width, label=backend)
        ax.axhline(10, color="green", linestyle="dashed", linewidth=1, label="p50 target 10 ms")
        ax.axhline(50, color="red", linestyle="dashed", linewidth=1, label="p99 target 50 ms")
        ax.set_xticks([x + width * (len(latency) - 1) / 2 for x in range(len(names))], names)
        ax.set_ylabel("ms, publish sent to receiver hit")
        ax.set_title("Delivery latency at a steady 200 events/s")
        ax.legend(fontsize=8)
        made.append(_save(fig, img_dir / f"latency-{mode}.png", plt))

    memory = details.get("memory", {})
    if memory:
        fig, ax = plt.subplots(figsize=(7, 4))
        for backend, runs in sorted(memory.items()):
            for backlog, series in sorted(runs.items(), key=lambda kv: int(kv[0])):
                ax.plot([t for t, _ in series], [mb for _, mb in series], label=f"{backend}, {int(backlog):,} jobs")
        ax.axhline(200, color="red", linestyle="dashed", linewidth=1, label="target 200 MB")
        ax.set_xlabel("seconds since the worker started")
        ax.set_ylabel("worker RSS (MiB)")
        ax.set_ylim(bottom=0)
        ax.set_title("herald worker memory while draining a backlog")
        ax.legend(fontsize=8)
        made.append(_save(fig, img_dir / f"memory-{mode}.png", plt))
    return made


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
