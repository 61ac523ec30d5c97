"""JupyterLab as the learner sees it, in a real headless browser (Debian's chromium).

`workbook lab` starts on a copy of the repository in which the exercises before ce4_2 are
done, so ce4_2 is the current exercise. The browser opens it as `workbook lab` would, runs
every cell against the solutions, reads the check table, then opens a JupyterLab terminal
and runs `pytest graders/ce4_2 --target=solutions` there. Screenshots go to the test's
temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbook import catalog, paths
from workbook.notebook import venv_bin
from workbook.services.base import free_port

CHROMIUM = Path(os.environ.get("WORKBOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("WORKBOOK_CHROMEDRIVER", "/usr/bin/chromedriver"))
EXERCISE = "ce4_2"  # the fastest exercise to grade (a few seconds)
REPO = paths.PACKAGE_DIR.parent

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="the browser test needs selenium: pip install -e '.[dev]'")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER}: "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


def wait_for(what: str, condition, timeout: float, *, log: Path | None = None):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` otherwise."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except WebDriverException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\nJupyterLab's log:\n{log.read_text()[-3000:]}" if log else ""
            pytest.fail(f"{what} did not happen within {timeout:g} s{tail}")
        time.sleep(0.3)


def make_course(root: Path) -> None:
    """A copy of the repository where every ready exercise before ce4_2 is done."""
    for name in ("catalog.toml", "pyproject.toml", "nbgrader_config.py"):
        shutil.copy(REPO / name, root / name)
    for folder in ("exercises", "solutions", "graders", "notebooks"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    results = {}
    for exercise in catalog.load(root / "catalog.toml"):
        if exercise.id == EXERCISE:
            break
        if exercise.ready:  # the learner's files are the solution's, and graded done
            shutil.copytree(root / "solutions" / exercise.id, root / "exercises" / exercise.id,
                            dirs_exist_ok=True)
            results[exercise.id] = {"score": exercise.points, "max_score": exercise.points,
                                    "status": "done", "checked_at": "2026-01-01 00:00:00"}
    state = root / ".workbook" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"_": "test", "hints_shown": {}, "results": results}))


@pytest.fixture
def lab(tmp_path):
    """`workbook lab` on the copy, on a free port with a token; stopped by its pid afterwards."""
    root = tmp_path / "course"
    root.mkdir()
    make_course(root)
    port = free_port()
    token = "workbook-browser-test"
    log = tmp_path / "lab.log"
    # JupyterLab settings of the test's own (not this machine's user's): the terminal keeps
    # its text in the page (screen-reader mode) as well as on its canvas, so the test can read it.
    settings = tmp_path / "lab-settings"
    terminal_settings = settings / "@jupyterlab" / "terminal-extension" / "plugin.jupyterlab-settings"
    terminal_settings.parent.mkdir(parents=True)
    terminal_settings.write_text(json.dumps({"screenReaderMode": True}))
    env = {**os.environ, "WORKBOOK_ROOT": str(root), "WORKBOOK_TARGET": "solutions",
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbook.cli", "lab", f"--port={port}", "--no-browser",
             "--ip=127.0.0.1", f"--IdentityProvider.token={token}"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import httpx

        def answers() -> bool:
            assert proc.poll() is None, f"`workbook lab` exited early:\n{log.read_text()}"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2).is_success
            except httpx.TransportError:
                return False

        wait_for("JupyterLab answering", answers, 90, log=log)
        yield {"root": root, "url": f"http://127.0.0.1:{port}/?token={token}", "log": log}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server, its kernels and terminals
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def click_menu(driver, menu: str, item: str, submenu: str | None = None) -> None:
    """Click ``menu`` in JupyterLab's menu bar, then ``item`` (inside ``submenu`` if given)."""
    __tracebackhide__ = True

    def entry(selector: str, label: str):
        found = [e for e in driver.find_elements(By.CSS_SELECTOR, selector)
                 if e.is_displayed() and e.text.split("\n")[0].strip() == label]
        return found[0] if found else None

    wait_for(f"the {menu} menu", lambda: entry(".lm-MenuBar-item", menu), 10).click()
    if submenu:
        ActionChains(driver).move_to_element(
            wait_for(f"{menu} › {submenu}", lambda: entry(".lm-Menu-item", submenu), 10)).perform()
    wait_for(f"{menu} › {item}", lambda: entry(".lm-Menu-item", item), 10).click()


def test_learner_runs_the_current_exercise_and_its_graders_in_jupyterlab(lab, browser, tmp_path):
    """The current exercise opens as notebook + learner file side by side; Run All shows the
    check table; `pytest graders/ce4_2` in a JupyterLab terminal uses the venv and passes."""
    exercise = catalog.get(EXERCISE, catalog.load(lab["root"] / "catalog.toml"))
    learner_file = exercise.files[0]
    browser.get(lab["url"])

    # Side by side: the notebook on the left, the learner's file on the right.
    def panels():
        notebook = [e for e in browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel") if e.is_displayed()]
        editor = [e for e in browser.find_elements(By.CSS_SELECTOR, ".jp-FileEditor") if e.is_displayed()]
        cells = browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")
        return (notebook[0], editor[0]) if notebook and editor and cells else None

    notebook, editor = wait_for("the notebook and the learner file opening", panels, 60, log=lab["log"])
    tabs = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tabLabel") if e.is_displayed()}
    assert {f"{EXERCISE}.ipynb", Path(learner_file).name} <= tabs, f"both documents should be open; tabs: {tabs}"
    left, right = notebook.rect, editor.rect
    assert left["x"] + left["width"] <= right["x"] + 1 and left["width"] > 300 and right["width"] > 300, \
        f"the notebook should sit left of the learner file, both visible; got {left} and {right}"
    wait_for(f"the file browser showing exercises/{EXERCISE}/ of the repository", lambda: f"/exercises/{EXERCISE}" in
             browser.find_element(By.CSS_SELECTOR, ".jp-BreadCrumbs").text.replace(" ", ""), 30)
    wait_for("the kernel becoming idle", lambda: "Idle" in browser.find_element(
        By.ID, "jp-main-statusbar").text, 60, log=lab["log"])
    browser.save_screenshot(str(tmp_path / "1-opened.png"))

    # Run every cell; the last one prints the check table of the solutions.
    click_menu(browser, "Run", "Run All Cells")
    done = f"{EXERCISE}: {exercise.points:g}/{exercise.points:g} points — done"

    def last_output() -> str | None:
        errors = browser.find_elements(By.CSS_SELECTOR, '[data-mime-type="application/vnd.jupyter.error"]')
        if errors:
            pytest.fail(f"a cell raised an error:\n{errors[0].text}")
        cells = browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")
        text = "\n".join(o.text for o in cells[-1].find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
        return text if "points —" in text else None

    table = wait_for("the check table in the last cell", last_output, 180, log=lab["log"])
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})",  # the score line in the picture
                           browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")[-1])
    browser.save_screenshot(str(tmp_path / "2-checked.png"))
    assert done in table, f"the last cell should read {done!r}; it shows:\n{table}"
    assert table.count("✓ test_") >= 10 and "✗" not in table, f"one ✓ line per check expected:\n{table}"

    # A JupyterLab terminal: the venv's pytest, the graders pass.
    click_menu(browser, "File", "Terminal", submenu="New")
    terminal = wait_for("a terminal opening", lambda: browser.find_element(
        By.CSS_SELECTOR, ".jp-Terminal textarea.xterm-helper-textarea"), 30, log=lab["log"])
    output = tmp_path / "terminal.log"
    def screen() -> str:
        return browser.find_element(By.CSS_SELECTOR, ".jp-Terminal .xterm-accessibility-tree").get_attribute(
            "textContent")

    wait_for("the shell's prompt in the terminal", lambda: screen().strip(), 30, log=lab["log"])  # typed keys wait for it
    terminal.send_keys(f"(command -v pytest; pytest graders/{EXERCISE} --target=solutions; echo \"exit=$?\") "
                       f"2>&1 | tee {output}" + Keys.ENTER)
    text = wait_for("pytest finishing in the terminal",
                    lambda: output.is_file() and "exit=" in output.read_text() and output.read_text(),
                    180, log=lab["log"])
    wait_for("the score on the terminal's screen", lambda: "exit=" in screen(), 10)
    browser.save_screenshot(str(tmp_path / "3-terminal.png"))
    first_line = text.splitlines()[0]
    assert first_line == str(venv_bin() / "pytest"), \
        f"the terminal's pytest should be the venv's; got {first_line}"
    assert "exit=0" in text and " passed" in text and "done" in text, \
        f"`pytest graders/{EXERCISE} --target=solutions` should pass in the terminal; it printed:\n{text[-2000:]}"

    assert "No nbgrader_config.py" not in lab["log"].read_text()
    for shot in ("1-opened.png", "2-checked.png", "3-terminal.png"):
        assert (tmp_path / shot).stat().st_size > 10_000, f"{shot} should be a real screenshot"
