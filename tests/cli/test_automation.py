"""`kumo automation`: the listing parser, the table, and the command against real instances and `dagster`.

The real instance and the real `dagster` command line are exercised by tests/integration/test_readme.py
(`make demo` prints this table, and the commands it prints turn everything on).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.automation import Instigator, dagster_executable, parse_listing, render
from cli.main import main

SCHEDULES = """\
Repository __repository__
*************************
Schedule: f1__driver_dnf__refresh_daily [STOPPED]
Cron Schedule: 0 0 * * *
******************************************************
Schedule: f1__driver_top3__refresh_daily [RUNNING]
Cron Schedule: 30 6 * * *
"""
SENSORS = """\
Repository __repository__
*************************
Sensor: capacity_ahead_of_demand [STOPPED]
**************************
Sensor: new_data [RUNNING]
"""


def test_parse_listing_reads_names_states_and_crons():
    assert parse_listing(SCHEDULES) == [
        Instigator("schedule", "f1__driver_dnf__refresh_daily", False, "0 0 * * *"),
        Instigator("schedule", "f1__driver_top3__refresh_daily", True, "30 6 * * *"),
    ]
    assert parse_listing(SENSORS) == [
        Instigator("sensor", "capacity_ahead_of_demand", False),
        Instigator("sensor", "new_data", True),
    ]
    assert parse_listing("2026-01-01 - dagster.code_server - INFO - Started\n") == []


def test_render_lists_every_state_and_the_commands_for_what_is_off(monkeypatch):
    monkeypatch.delenv("KUMO_CAPACITY_BACKEND", raising=False)
    items = parse_listing(SCHEDULES) + parse_listing(SENSORS)
    text = render(items, Path("/inst"), "kumo_assets.definitions", ".venv/bin/dagster")
    lines = text.splitlines()
    assert lines[0] == "Automation in the Dagster instance /inst:"
    states = {line.split()[2]: line.split()[0] for line in lines[2:6]}
    assert states == {"f1__driver_dnf__refresh_daily": "off", "f1__driver_top3__refresh_daily": "on",
                      "capacity_ahead_of_demand": "off", "new_data": "on"}  # fmt: skip
    capacity = next(line for line in lines if "capacity_ahead_of_demand" in line and " off " in line)
    assert "every minute" in capacity and "KUMO_CAPACITY_BACKEND=dry-run" in capacity
    assert "0 0 * * *" in lines[2] and "driver_dnf's predictions and embeddings" in lines[2]
    assert lines[-3:] == [
        "  export DAGSTER_HOME=/inst",
        "  .venv/bin/dagster schedule start -m kumo_assets.definitions f1__driver_dnf__refresh_daily",
        "  .venv/bin/dagster sensor start -m kumo_assets.definitions capacity_ahead_of_demand",
    ]
    all_off = [Instigator(item.kind, item.name, False, item.cron) for item in items]
    assert render(all_off, Path("/inst"), "m", "dagster").splitlines()[-2:] == [
        "  dagster schedule start -m m --start-all",
        "  dagster sensor start -m m --start-all",
    ]  # every one of a kind off: one command for the kind (each command loads the code location)
    all_on = [Instigator(item.kind, item.name, True, item.cron) for item in items]
    assert "start" not in render(all_on, Path("/inst"), "m", "dagster")
    assert render(all_on, Path("/inst"), "m", "dagster").endswith("All on; the daemon that ticks them runs "
                                                                  "under `make dev`.")  # fmt: skip


def test_kumo_automation_reads_a_real_instance(tmp_path, monkeypatch, capsys):
    """A fresh instance: every schedule and sensor of the real Definitions listed as off, with its command."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert main(["automation"]) == 0
    out = capsys.readouterr().out
    assert f"Automation in the Dagster instance {home.resolve()}:" in out
    for name in ("f1__driver_dnf__refresh_daily", "capacity_ahead_of_demand", "new_data"):
        assert name in out
    commands = out.splitlines()[-2:]  # tests/integration/test_readme.py runs them and finds everything on
    assert commands == [f"  {dagster_executable()} {kind} start -m kumo_assets.definitions --start-all"
                        for kind in ("schedule", "sensor")]  # fmt: skip
    rows = [line.split() for line in out.splitlines()]
    states = [row[0] for row in rows if row[1:2] in (["schedule"], ["sensor"]) and row[0] in ("on", "off")]
    assert states == ["off"] * 5  # three refresh schedules, two sensors


@pytest.mark.parametrize("missing_home", [True, False])
def test_kumo_automation_fails_clearly(tmp_path, capsys, missing_home):
    """No instance folder, or a listing that fails (a module that does not exist): exit 2, the reason said."""
    home = tmp_path / "home"
    if not missing_home:
        home.mkdir()
    assert main(["automation", "--dagster-home", str(home), "--module", "no_such_definitions"]) == 2
    err = capsys.readouterr().err
    if missing_home:
        assert f"no Dagster instance at {home.resolve()}" in err
    else:
        assert "list -m no_such_definitions` failed (exit" in err and "no_such_definitions" in err
