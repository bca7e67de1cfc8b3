"""Optional (--profile): sample a Herald process with py-spy during a scenario and summarise where its time goes."""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def record(pid: int, out: Path) -> Iterator[None]:
    """py-spy record for as long as the block runs: collapsed stacks of the thread holding the GIL (so CPU work,
    not idle waits), no line numbers. Nothing if py-spy is missing."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy is not installed: no profile (pip install py-spy)")
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--format", "raw", "--nolineno", "--gil", "--nonblocking", "--rate", "100",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _package(frame: str) -> str:
    """`fn (site-packages/sqlalchemy/engine/base.py)` -> `sqlalchemy`; Herald's own code by module."""
    where = frame.rsplit("(", 1)[-1].rstrip(")")
    parts = where.replace("\\", "/").split("/")
    if parts and parts[0] == "herald":
        return "/".join(parts[:2]).removesuffix(".py")
    return parts[0].removesuffix(".py") if parts else where


def summarise(raw: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Share of samples by the package of the innermost frame, by innermost function, and by Herald function
    (inclusive). py-spy shows a coroutine resumed by the event loop, or code in a SQLAlchemy greenlet, without
    its callers, so the inclusive shares are lower bounds; the by-package view is the dependable one."""
    leaf_pkg: collections.Counter[str] = collections.Counter()
    leaf_fn: collections.Counter[str] = collections.Counter()
    herald_fn: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf_pkg[_package(frames[-1])] += n
        leaf_fn[frames[-1]] += n
        for f in set(frames):
            if "(herald/" in f and "(herald/cli/" not in f and "(herald/__main__.py)" not in f:
                herald_fn[f] += n
    if not total:
        return {}

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {"by_package": share(leaf_pkg), "by_function": share(leaf_fn), "herald_inclusive": share(herald_fn)}
