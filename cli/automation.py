"""`kumo automation`: which schedules and sensors are on in a Dagster instance, and how to turn on the rest.

kumo automation [--dagster-home DIR] [--module kumo_assets.definitions]

The state is read from the instance by Dagster's own command line (``dagster schedule list`` and
``dagster sensor list`` on the code location), run as subprocesses: `cli` imports no Dagster (the layer rules
in pyproject.toml). The instance is ``--dagster-home``, else ``$DAGSTER_HOME``, else ``$KUMO_HOME/dagster``
(``./.kumo/dagster``), as the Makefile sets it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Instigator",
    "add_automation_command",
    "parse_listing",
    "render",
    "run_automation",
    "turn_on_commands",
]

DEFINITIONS_MODULE = "kumo_assets.definitions"  # the code location of workspace.yaml and the Makefile
FAILED = 2
_LINE = re.compile(r"^(Schedule|Sensor): (\S+) \[(\w+)\]\s*$")
_CRON = re.compile(r"^Cron Schedule: (.+?)\s*$")


@dataclass(frozen=True)
class Instigator:
    """One schedule or sensor of the code location and its state in the instance."""

    kind: str  # "schedule" or "sensor"
    name: str
    running: bool
    cron: str | None = None


def add_automation_command(commands: argparse._SubParsersAction) -> None:
    """The ``automation`` sub-command and its options."""
    automation = commands.add_parser(
        "automation", help="which refresh schedules and sensors are on, and the commands that turn them on"
    )
    automation.add_argument(
        "--dagster-home", type=Path, default=None, help="default: $DAGSTER_HOME, else $KUMO_HOME/dagster"
    )
    automation.add_argument("--module", default=DEFINITIONS_MODULE, help="the Definitions' module (-m)")


def dagster_home(explicit: Path | None = None) -> Path:
    """The instance folder, resolved as the Makefile resolves it."""
    if explicit is not None:
        return explicit.resolve()
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).resolve()
    return (Path(os.environ.get("KUMO_HOME") or ".kumo") / "dagster").resolve()


def dagster_executable() -> str:
    """This environment's `dagster` command, relative to the working directory when it lies under it."""
    path = Path(sys.executable).parent / "dagster"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_listing(text: str) -> list[Instigator]:
    """The schedules or sensors in the output of ``dagster schedule list`` / ``dagster sensor list``."""
    found: list[Instigator] = []
    for line in text.splitlines():
        if match := _LINE.match(line):
            kind, name, state = match.groups()
            found.append(Instigator(kind.lower(), name, state.upper() == "RUNNING"))
        elif (match := _CRON.match(line)) and found and found[-1].kind == "schedule":
            last = found[-1]
            found[-1] = Instigator(last.kind, last.name, last.running, match.group(1))
    return found


def what_it_does(item: Instigator) -> str:
    """One line on what a schedule or sensor does when it is on."""
    if item.kind == "schedule":
        query = item.name.split("__")[1] if item.name.count("__") >= 2 else "its query"
        return f"cron {item.cron or '?'} (UTC): the latest day of {query}'s predictions and embeddings"
    if item.name == "capacity_ahead_of_demand":
        backend = os.environ.get("KUMO_CAPACITY_BACKEND") or "dry-run"
        action = ("keeps headroom pods up" if backend == "kubernetes"
                  else "only records it in capacity/plan.json")  # fmt: skip
        return (f"every minute: plans the nodes open studies' next trials need; "
                f"KUMO_CAPACITY_BACKEND={backend} {action}")  # fmt: skip
    if item.name == "new_data":
        every = os.environ.get("KUMO_NEW_DATA_INTERVAL_SECONDS") or "60"
        return f"every {every} s: when a source changes, rebuilds what went stale, then rescores"
    return ""


def render(items: list[Instigator], home: Path, module: str, dagster: str) -> str:
    """The table of states, then the commands that turn on what is off."""
    width = max([len("name"), *(len(item.name) for item in items)])
    lines = [f"Automation in the Dagster instance {home}:",
             f"  {'state':<5}  {'kind':<8}  {'name':<{width}}  what it does when on"]  # fmt: skip
    for item in items:
        state = "on" if item.running else "off"
        lines.append(f"  {state:<5}  {item.kind:<8}  {item.name:<{width}}  {what_it_does(item)}")
    commands = turn_on_commands(items, module, dagster)
    if commands:
        lines.append("Turn on what is off (the daemon that ticks them runs under `make dev`):")
        lines.append(f"  export DAGSTER_HOME={home}")
        lines += [f"  {command}" for command in commands]
    else:
        lines.append("All on; the daemon that ticks them runs under `make dev`.")
    return "\n".join(lines)


def turn_on_commands(items: list[Instigator], module: str, dagster: str) -> list[str]:
    """The `dagster` commands that turn on what is off: one ``--start-all`` per kind when all of that kind
    are off (each command loads the code location, ~10 s), else one per instigator that is off."""
    commands = []
    for kind in ("schedule", "sensor"):
        of_kind = [item for item in items if item.kind == kind]
        off = [item for item in of_kind if not item.running]
        if off and len(off) == len(of_kind):
            commands.append(f"{dagster} {kind} start -m {module} --start-all")
        else:
            commands += [f"{dagster} {kind} start -m {module} {item.name}" for item in off]
    return commands


def run_automation(args: argparse.Namespace) -> int:
    """Print the table; 0 when the instance answered, `FAILED` when a listing failed."""
    home = dagster_home(args.dagster_home)
    if not home.is_dir():
        print(f"kumo: no Dagster instance at {home}: `make demo` creates it, or set DAGSTER_HOME",
              file=sys.stderr)  # fmt: skip
        return FAILED
    dagster = dagster_executable()
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def listing(kind: str) -> subprocess.CompletedProcess:
        return subprocess.run([dagster, kind, "list", "-m", args.module], env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    # One after the other: two `dagster` processes opening a fresh instance at once race to create its
    # SQLite storage (the second failed in CI).
    done = [listing(kind) for kind in ("schedule", "sensor")]
    for kind, completed in zip(("schedule", "sensor"), done, strict=True):
        if completed.returncode != 0:
            print(f"kumo: `dagster {kind} list -m {args.module}` failed (exit {completed.returncode}):\n"
                  f"{(completed.stdout + completed.stderr)[-3000:]}", file=sys.stderr)  # fmt: skip
            return FAILED
    items = [item for completed in done for item in parse_listing(completed.stdout)]
    print(render(items, home, args.module, dagster))
    return 0
