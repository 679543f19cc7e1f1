"""The memory a benchmark process used: its own peak resident set, read the one way every benchmark reads it."""

from __future__ import annotations

import resource
import sys

__all__ = ["GIB", "peak_rss_gib", "rusage_gib", "status_gib"]

GIB = 2**30


def peak_rss_gib() -> float:
    """This process's own peak resident set in GiB: the high-water mark of its address space (VmHWM).

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on exec Linux folds the outgoing address space's high-water
    mark into the process's ru_maxrss, and `subprocess` starts children with vfork, so the outgoing address
    space is the launcher's. A trial launched by a pytest process that had already peaked at 1.13 GiB
    reported 1.13 GiB whatever it used itself (RUSAGE_CHILDREN in the launcher, the max over reaped
    children, inherits the same figure). VmHWM belongs to the new address space exec creates: only the
    process's own pages, as a fresh pod or the warm trial server's fork would hold them.
    """
    peak = status_gib("VmHWM")
    return peak if peak is not None else rusage_gib()


def status_gib(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in GiB; None without /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024 / GIB  # kB
    except OSError:
        pass
    return None


def rusage_gib() -> float:
    """``ru_maxrss`` in GiB (on Linux the launcher's peak folded in; macOS reports bytes, others KiB)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss * (1 if sys.platform == "darwin" else 1024) / GIB
