"""What a trial process pays before it trains: the import time of the trial entry point and the start-up time
of a trial process, for this tree and for a tree before the layout split (issue 20), in the same run.

    .venv/bin/python benchmarks/bench_imports.py [--before 392e665] [--repeats 5]

"before" is checked out as a temporary git worktree of ``--before`` (its trial modules lived in kumo_assets/).
Import time is the sum of the top-level cumulative times that ``python -X importtime`` reports; start-up is
the whole process's wall time (interpreter start, imports, exit). Best of ``--repeats`` for each.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AFTER_MODULES = (
    "training.trial_entry",
    "training.hpo_trial",
)  # what `python -m training.trial_entry` imports
BEFORE_MODULES = ("kumo_assets.trial_entry", "kumo_assets.hpo_trial")
REPORT = "import sys; print('DAGSTER', any(m.split('.')[0] == 'dagster' for m in sys.modules))"


def measure(tree: Path, modules: tuple[str, ...], repeats: int) -> dict[str, float | bool]:
    """Best import seconds (-X importtime), best process seconds, and whether dagster was imported."""
    code = f"import {', '.join(modules)}; {REPORT}"
    best_import, best_process, dagster, dagster_s = float("inf"), float("inf"), False, float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=tree, capture_output=True,
                              text=True, check=True)  # fmt: skip
        best_process = min(best_process, time.perf_counter() - started)
        top_level = [
            int(m.group(1)) for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| \S", done.stderr, re.M)
        ]
        best_import = min(best_import, sum(top_level) / 1e6)
        dagster = "DAGSTER True" in done.stdout
        own = [
            int(m.group(1))
            for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|\s+dagster$", done.stderr, re.M)
        ]
        dagster_s = min(dagster_s, sum(own) / 1e6)
    return {"import_s": best_import, "process_s": best_process, "dagster": dagster,
            "dagster_s": dagster_s if dagster else 0.0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="392e665", help="git ref of the tree before the layout split")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        before_tree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(before_tree), args.before], cwd=ROOT,
                       check=True)  # fmt: skip
        try:
            before = measure(before_tree, BEFORE_MODULES, args.repeats)
            after = measure(ROOT, AFTER_MODULES, args.repeats)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, check=True)
    print(f"trial entry point imports, best of {args.repeats} (python -X importtime; process = wall time)")
    print(f"{'tree':<26}{'imports s':>10}{'process s':>11}  dagster imported (its own import s)")
    for name, row in ((f"before ({args.before})", before), ("after (this tree)", after)):
        print(
            f"{name:<26}{row['import_s']:>10.2f}{row['process_s']:>11.2f}  {row['dagster']} ({row['dagster_s']:.2f})"
        )
    print(f"after/before: imports {after['import_s'] / before['import_s']:.2f}x, "
          f"process start-up {after['process_s'] / before['process_s']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
