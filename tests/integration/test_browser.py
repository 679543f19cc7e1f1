"""The UI in a real browser: what a person sees of a small real F1 run in Dagster's pages (headless Chromium).

One module fixture fills a fresh Dagster instance through the dagster CLI (driver_dnf only: tables, stores,
training table, a three-trial study, the best model, one day of predictions), serves it with
`kumo_assets.webserver` and opens Debian's Chromium through Playwright. Every test saves a full-page
screenshot under ``test-artifacts/browser/`` for people to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.conftest import F1_SPEC, REPO_ROOT
from tests.support.servers import free_port, running_server, venv_tool

pytestmark = pytest.mark.integration

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
VIEWPORT = {"width": 1600, "height": 1000}
QUERY = "f1/driver_dnf"
PARTITION = "2025-03-01"
# The smallest study that finishes one trial of each family (its first trials are one per family) and draws
# parameter importances (training.pictures: 3 complete trials; the median pruner waits for 4 before pruning).
N_TRIALS = 3
RUN_CONFIG = {"ops": {"f1__driver_dnf__study": {"config": {
    "mode": "fast", "n_trials": N_TRIALS, "parallelism": 2, "device": "cpu",
    "space": {"max_steps_per_epoch": 5, "epochs": [2, 2], "gbdt_trees": [20, 40]},
}}}}  # fmt: skip
WAIT_MS = 60_000  # the first page of a fresh server compiles its queries; a busy 2-core machine is slow
# The tallest scrolling element's hidden height: Dagster scrolls inside a panel, so a page screenshot alone
# shows only the viewport.
HIDDEN_HEIGHT_JS = """() => {
  let hidden = 0;
  for (const element of document.querySelectorAll('*')) {
    const style = getComputedStyle(element);
    if (/(auto|scroll)/.test(style.overflowY)) hidden = Math.max(hidden, element.scrollHeight - element.clientHeight);
  }
  return hidden;
}"""
PICTURES_LOADED_JS = """(fragment) => [...document.querySelectorAll('img')]
  .filter((img) => img.src.includes(fragment))
  .map((img) => ({src: img.src, loaded: img.complete && img.naturalWidth > 0}))"""


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if path is None:
        pytest.fail("Chromium was not found on PATH nor at /usr/bin/chromium: install Debian's with "
                    "`apt-get install chromium` (.ci/run does so when apt-get is available)", pytrace=False)  # fmt: skip
    return path


def dagster_cli(env: dict[str, str], *args: str) -> None:
    """The dagster CLI as `make demo` runs it (mirrors test_ingest_dagster's ``_dagster_cli``)."""
    completed = subprocess.run(
        [venv_tool("dagster"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def answers(url: str):
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return check


def dismiss_welcome(page: Page, wait_ms: float = 0) -> None:
    """Click away Dagster's "Join the Dagster community" modal (a fresh instance shows it once, ~1 s in)."""
    skip = page.get_by_role("button", name="Skip", exact=True)
    if wait_ms:
        try:
            skip.wait_for(state="visible", timeout=wait_ms)
        except PlaywrightTimeout:
            return
    elif not skip.is_visible():
        return
    skip.click()
    expect(skip).to_have_count(0)


def save_screenshot(page: Page, name: str) -> Path:
    """A screenshot of the whole page: the viewport grows by what Dagster's scrolling panel hides."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dismiss_welcome(page)
    hidden = page.evaluate(HIDDEN_HEIGHT_JS)
    if hidden > 0:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": VIEWPORT["height"] + hidden})
        page.wait_for_timeout(1000)  # React lays the taller page out again
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return path


def graph_setting(page: Page, item: str) -> None:
    """Pick ``item`` from the asset graph's settings menu (the gear at its bottom right), then close it."""
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(item)).click()
    page.keyboard.press("Escape")
    expect(page.get_by_role("menu")).to_have_count(0)


def pictures_loaded(page: Page, fragment: str) -> list[dict]:
    """Every ``<img>`` whose src contains ``fragment``, once there is one and all of them finished loading
    (or the wait ran out: the caller's assertion then names what the page has)."""
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            f"(fragment) => {{ const found = ({PICTURES_LOADED_JS})(fragment); "
            "return found.length > 0 && found.every((img) => img.loaded); }",
            arg=fragment,
        )
    return page.evaluate(PICTURES_LOADED_JS, fragment)


def right_edge(box: dict | None) -> float:
    assert box is not None, "the element is not laid out"
    return box["x"] + box["width"]


def expect_within_metadata(page: Page, row_key: str) -> None:
    """The metadata table holding ``row_key`` ends where the Metadata section does (its Table/Plots toggle's right
    edge): nothing in it runs past the page's right edge, where Dagster's panel would cut it off."""
    row = page.get_by_role("row").filter(has=page.get_by_text(row_key, exact=True)).first
    table = right_edge(row.locator("xpath=ancestor::table[1]").bounding_box())
    edge = right_edge(page.get_by_role("button", name="Plots").bounding_box())
    assert table <= edge + 4, (
        f"the metadata table ends at x={table:.0f}, past the section's edge at x={edge:.0f}"
    )


def expect_materialised(page: Page) -> None:
    """The Status section's "Latest materialization": a green success tag linking its run ("... ago")."""
    status = page.get_by_text("Latest materialization", exact=True).locator("xpath=..")
    expect(status.get_by_role("img", name="run_success")).to_be_visible()
    expect(status.get_by_role("link")).to_have_text(re.compile(r"ago$"))


@pytest.fixture(scope="module")
def ui_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh instance filled by a real run: everything upstream of driver_dnf's best model, then one day of
    its predictions."""
    root = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "DAGSTER_HOME": str(root / "dagster_home"), "KUMO_DATA_PLANE": str(root / "plane"),
           "KUMO_GRAPH_SPEC": str(F1_SPEC)}  # fmt: skip
    (root / "dagster_home").mkdir()
    run_config = root / "run.yaml"
    run_config.write_text(yaml.safe_dump(RUN_CONFIG))
    dagster_cli(env, "asset", "materialize", "--select", f'+key:"{QUERY}/best_model"', "-m",
                "kumo_assets.definitions", "-c", str(run_config))  # fmt: skip
    dagster_cli(env, "asset", "materialize", "--select", f'key:"{QUERY}/predictions"', "--partition",
                PARTITION, "-m", "kumo_assets.definitions")  # fmt: skip
    return env


@pytest.fixture(scope="module")
def ui_url(ui_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "kumo_assets.webserver", "-w", "workspace.yaml",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running_server(command, answers(f"{url}/server_info"), timeout=120, stop_signal=signal.SIGINT,
                        cwd=REPO_ROOT, env=ui_env):  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def browser(ui_url: str) -> Iterator[Browser]:
    executable = chromium_path()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT, base_url=ui_url)
            page.goto("/asset-groups")
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            page.wait_for_load_state("networkidle")
            dismiss_welcome(page, wait_ms=5000)  # the server remembers the skip for later pages
            page.close()
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, ui_url: str) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=ui_url)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True), lambda skip: skip.click())
    try:
        yield page
    finally:
        context.close()


def test_global_lineage_shows_groups_and_stages(page: Page):
    page.goto("/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    graph = page.locator("svg")
    for group in ["f1_tables", "f1_stores", "f1_driver_dnf"]:  # collapsed group nodes at first
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
    # What a person does to read every node at once: top-down layout, all groups open, more room.
    graph_setting(page, "vertical orientation")
    graph_setting(page, "Expand all groups")
    page.get_by_role("button", name="Hide navigation").click()
    page.reload()  # lays the opened graph out again, zoomed to fit
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for stage in ["training_table", "study", "best_model", "predictions", "graph_store", "feature_store"]:
        expect(graph.get_by_text(stage, exact=True).first).to_be_visible()
    for group in ["f1_tables", "f1_stores", "f1_driver_dnf"]:
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)  # the graph's zoom-to-fit animates
    save_screenshot(page, "lineage")


def test_training_table_page_shows_splits_labels_histogram_and_checks(page: Page):
    page.goto(f"/assets/{QUERY}/training_table")
    expect_materialised(page)
    for key, header in [("splits", "first anchor"), ("labels", "positive rate")]:  # a table per split
        table = page.get_by_role("row").filter(has=page.get_by_text(key, exact=True)).first
        expect(table.get_by_text(header, exact=True)).to_be_visible()
        for split in ["train", "val", "test"]:
            expect(table.get_by_role("cell", name=split, exact=True)).to_be_visible()
    audit = page.get_by_role("row").filter(has=page.get_by_text("leakage_audit", exact=True)).first
    expect(audit).to_contain_text("passed: rows")
    pictures = pictures_loaded(page, "label_distribution")
    assert len(pictures) == 1 and pictures[0]["loaded"], f"label histograms on the page: {pictures}"
    save_screenshot(page, "training_table")
    expect_within_metadata(page, "splits")  # the query wraps: no code block runs past the page's edge

    page.goto(f"/assets/{QUERY}/training_table?view=checks")
    expect(page.get_by_text("Succeeded", exact=True)).to_have_count(2)  # the list: both checks passed
    for check, description in [("labels_per_split", "labels per split"),
                               ("leakage_audit", "stops the training table from being written")]:  # fmt: skip
        page.get_by_text(check, exact=True).first.click()
        expect(page.get_by_text(re.compile(description)).first).to_be_visible()
        expect(page.get_by_text("Evaluation result")).to_be_visible()
        expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    save_screenshot(page, "training_table_checks")  # leakage_audit's: what a failure does, in words


def test_study_page_shows_leaderboard_pictures_and_check(page: Page):
    page.goto(f"/assets/{QUERY}/study")
    expect_materialised(page)
    leaderboard = page.get_by_role("row").filter(has=page.get_by_text("leaderboard", exact=True)).first
    for family in ["gnn", "gbdt"]:  # a trial of each family (two of one in a three-trial study)
        expect(leaderboard.get_by_role("cell", name=family, exact=True).first).to_be_visible()
    expect(leaderboard.get_by_role("cell", name="complete", exact=True)).to_have_count(N_TRIALS)
    pictures = pictures_loaded(page, "/kumo/pictures/")
    assert pictures and all(picture["loaded"] for picture in pictures), f"pictures on the page: {pictures}"
    for name in ["optimisation_history", "parameter_importances", "learning_curves"]:
        assert any(name in picture["src"] for picture in pictures), (name, pictures)
    save_screenshot(page, "study")
    expect_within_metadata(page, "leaderboard")  # pictures fit beside the longest key

    # live progress: the observations each epoch logged, drawn over time on the Plots toggle
    page.get_by_role("button", name="Plots").click()
    for series in ["epoch_val_auroc", "epoch_train_loss", "best_val_auroc", "finished_trials"]:
        expect(page.get_by_text(series, exact=True).first).to_be_visible()
    expect(page.get_by_text("best_trial", exact=True)).to_have_count(0)  # a label, not a series to chart
    save_screenshot(page, "study_plots")

    page.goto(f"/assets/{QUERY}/study?view=checks")
    expect(page.get_by_text("families_completed").first).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    save_screenshot(page, "study_checks")


def test_best_model_page_shows_leaderboard_roc_and_check(page: Page):
    page.goto(f"/assets/{QUERY}/best_model")
    expect_materialised(page)
    leaderboard = page.get_by_role("row").filter(has=page.get_by_text("leaderboard", exact=True)).first
    for text in ["baseline: own history", "holdout (test)", "published: RelGNN"]:
        expect(leaderboard.get_by_role("cell", name=text, exact=True).first).to_be_visible()
    # each number in context: the holdout's protocol beside it, published numbers marked not comparable
    served_row = leaderboard.get_by_role("row").filter(has_text=re.compile("^served: "))
    expect(served_row).to_contain_text("each row sees data up to its anchor")
    expect(leaderboard.get_by_role("row").filter(has_text="published: RelGNN")).to_contain_text(
        "not comparable"
    )
    published = page.get_by_role("row").filter(has=page.get_by_text("published", exact=True)).first
    expect(published).to_contain_text("not comparable")
    served = page.get_by_role("row").filter(has=page.get_by_text("served", exact=True)).first
    expect(served).to_contain_text(
        re.compile(r"(the study's best trial|beat the best trial alone) on validation")
    )
    pictures = pictures_loaded(page, "roc_curve")
    assert len(pictures) == 1 and pictures[0]["loaded"], f"ROC pictures on the page: {pictures}"
    assert "/kumo/pictures/" in pictures[0]["src"], pictures
    save_screenshot(page, "best_model")
    expect_within_metadata(page, "leaderboard")  # the table wraps inside the page: no column is cut off

    page.goto(f"/assets/{QUERY}/best_model?view=checks")
    expect(page.get_by_text("beats_trivial_baselines").first).to_be_visible()
    expect(page.get_by_text("Evaluation result")).to_be_visible()
    expect(page.get_by_text("Passed", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="own history", exact=True)).to_be_visible()  # the baselines it beat
    save_screenshot(page, "best_model_checks")


def test_automation_lists_schedule_and_sensors_stopped(page: Page):
    page.goto("/automation")
    for kind, name in [("schedules", "f1__driver_dnf__refresh_daily"), ("sensors", "new_data"),
                       ("sensors", "capacity_ahead_of_demand")]:  # fmt: skip
        link = page.locator(f'a[href$="/{kind}/{name}"]')
        expect(link).to_contain_text(name)
        item = link.locator("xpath=..")  # selection box, name, then the running switch
        expect(item.get_by_role("checkbox").last).not_to_be_checked()  # the switch is off: stopped
    save_screenshot(page, "automation")
