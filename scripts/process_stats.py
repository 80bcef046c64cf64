"""The server's cost under load, read from /proc so that no psutil is needed. Linux only.

A cluster's supervisor does little itself; its workers, Redis and nginx do the work, so a
process is measured together with all its descendants.
"""

from __future__ import annotations

import os
import time


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may contain spaces and parentheses)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


class ProcessSampler:
    """CPU% and RSS of a process and its descendants over a window that starts on creation.

    CPU% is over the whole window and counts every thread, so 200% means both cores.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.peak_rss_kb = 0
        self._start = (time.monotonic(), self._cpu_ticks())

    def pids(self) -> list[int]:
        """The process and its descendants now: workers may come and go during a run."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue  # exited meanwhile
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _cpu_ticks(self) -> dict[int, int]:
        ticks = {}
        for pid in self.pids():
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
        return ticks

    def rss_kb(self) -> int:
        """Resident memory now, summed over the tree (shared pages count once per process)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(x.split()[1]) for x in f if x.startswith("VmRSS:")), 0)
            except OSError:
                continue
        return total

    def sample(self) -> None:
        """Call now and then during the run to catch the peak RSS."""
        self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())

    def result(self) -> dict[str, float]:
        """CPU% over the window so far, RSS now and at its peak, and how many processes."""
        t0, ticks0 = self._start
        wall = time.monotonic() - t0
        rss = self.rss_kb()
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        now = self._cpu_ticks()
        cpu = sum(t - ticks0.get(pid, 0) for pid, t in now.items()) / self.ticks
        return {
            "cpu_pct": 100.0 * cpu / wall if wall > 0 else 0.0,
            "rss_mb": rss / 1024,
            "peak_rss_mb": self.peak_rss_kb / 1024,
            "processes": len(now),
        }
