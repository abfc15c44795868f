"""CPU time and memory of a process tree, read from /proc; CPU pinning.

CPU is the sum over every thread of every process in the tree of ``/proc/<pid>/task/<tid>/
schedstat``'s first field (nanoseconds on CPU, https://docs.kernel.org/scheduler/sched-stats.html),
which resolves a single stream's few milliseconds; ``utime + stime`` from ``/proc/<pid>/stat``
(clock ticks, proc(5)) is kept beside it because it also counts threads that already exited.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

_TICK = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        if stat is None:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants that are alive now."""
    kids = _children()
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.append(pid)
        todo.extend(kids.get(pid, []))
    return seen


class Sample(NamedTuple):
    sched_ns: int
    stat_ns: int
    rss_kb: int
    hwm_kb: int
    pids: int
    per_pid_ns: dict[int, int]  # schedstat per process, to see how work spreads over workers


def sample(pids: list[int]) -> Sample:
    sched = stat_ns = rss = hwm = 0
    alive = 0
    per_pid: dict[int, int] = {}
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat is None:
            continue
        alive += 1
        fields = stat[stat.rindex(")") + 2 :].split()
        stat_ns += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _TICK
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            tids = []
        own = 0
        for tid in tids:
            text = _read(f"/proc/{pid}/task/{tid}/schedstat")
            if text:
                own += int(text.split()[0])
        sched += own
        per_pid[pid] = own
        status = _read(f"/proc/{pid}/status") or ""
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return Sample(sched, stat_ns, rss, hwm, alive, per_pid)


def cpu_seconds(before: Sample, after: Sample) -> float:
    """CPU used between two samples of the same tree.

    schedstat is exact but forgets threads that ended in between; when the tick-based figure is
    clearly larger (more than two ticks per process and 5 %), threads came and went: trust it.
    """
    sched = (after.sched_ns - before.sched_ns) / 1e9
    stat = (after.stat_ns - before.stat_ns) / 1e9
    slack = 2 * max(1, after.pids) / _TICK
    if stat > sched * 1.05 + slack:
        return stat
    return sched


def split(before: Sample, after: Sample) -> list[float]:
    """CPU seconds of each process between two samples, busiest first."""
    spent = [(ns - before.per_pid_ns.get(pid, 0)) / 1e9 for pid, ns in after.per_pid_ns.items()]
    return sorted((round(s, 3) for s in spent if s > 0.0005), reverse=True)


def pin(pid: int, cpus: set[int]) -> bool:
    """Pin every thread of ``pid`` (new threads inherit it); False where the OS says no."""
    ok = True
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            ok = False
    return ok


def pinned_exec(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning a child before it runs anything, or None to leave it free."""
    if cpus is None:
        return None
    frozen = set(cpus)

    def pin_self() -> None:
        os.sched_setaffinity(0, frozen)

    return pin_self


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))
