"""The exercise notebooks: their "check your work" cell, and the JupyterLab that opens them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

from workbook import catalog, paths, runner
from workbook.catalog import Exercise
from workbook.state import State

FIRST_NAME = re.compile(r"`([^`]+)`")  # the function a "not started" message names
WORKSPACE = "workbook"  # JupyterLab opens /lab/workspaces/workbook: the current exercise's layout


def check(exercise_id: str, target: str | None = None) -> float:
    """Run the exercise's graders on your files, print one line per check and the next hint.

    Returns the points earned, so the notebook cell shows the score.
    """
    target = target or os.environ.get("WORKBOOK_TARGET", "exercises")
    run = runner.grade([exercise_id], target)
    summary = run.summary.get("exercises", {}).get(exercise_id)
    if not summary:
        print(run.output)
        raise RuntimeError(f"the graders of {exercise_id} ran no check; the output above says why")
    for line in check_lines(run.tests):
        print(line)
    print(f"\n{exercise_id}: {summary['score']:g}/{summary['max_score']:g} points — {summary['status']}")
    state = State.load()
    if target == "exercises":  # progress, as `workbook check` records it: your own files only
        state.record(exercise_id, run.summary)
        state.save()
    if summary["status"] != "done":
        _print_hint(exercise_id, state)
    return summary["score"]


def check_lines(tests: list[dict]) -> list[str]:
    """The check table of `workbook check`, as plain text.

    One line per check that ran, with its message; the checks that did not start (code not
    written yet) or were not run (after a time-out) one line each kind: "23 checks not
    started — start with `compute_stats`".
    """
    lines, last = [], None
    for test in tests:
        if test["outcome"] in ("not started", "not run"):
            continue
        mark = {"passed": "✓", "skipped": "-"}.get(test["outcome"], "✗")
        lines.append(f"{mark} {test['check']} ({test['score']:g}/{test['max_score']:g})")
        message = (test["outcome"], test["output"])
        if test["outcome"] != "passed" and test["output"]:
            lines.append(f"    {test['outcome']}: {'same as above' if message == last else test['output']}")
        last = message
    for outcome in ("not started", "not run"):
        left = [t for t in tests if t["outcome"] == outcome]
        if left:
            names = [m[1] for t in left if (m := FIRST_NAME.search(t["output"] or ""))]
            advice = f"start with `{names[0]}`" if outcome == "not started" and names else left[0]["output"]
            lines.append(f"· {len(left)} check{'s' if len(left) > 1 else ''} {outcome} — {advice}")
    return lines


def _print_hint(exercise_id: str, state: State) -> None:
    """The hint `workbook check` shows (the last one asked for, or the first)."""
    try:
        hints = catalog.get(exercise_id).hints
    except KeyError:
        return
    if hints:
        shown = state.hints_shown.get(exercise_id, 0)
        number = max(shown, 1)
        print(f"Hint {number}/{len(hints)}: {hints[number - 1]}")
        if shown < len(hints):
            print(f"(`workbook hint {exercise_id}` in a terminal shows the next hint.)")


# -- JupyterLab ------------------------------------------------------------------------------


def lab_workspace(exercise: Exercise) -> dict:
    """A JupyterLab workspace: the exercise's notebook on the left, its learner files on the right.

    JupyterLab 4 opens one document from a ``/lab/tree/PATH`` URL; several documents side
    by side are a layout, which JupyterLab restores from the workspace the URL names.
    """
    root = paths.root()
    notebook = exercise.notebook.relative_to(root).as_posix()
    files = [p.relative_to(root).as_posix() for p in exercise.learner_files(paths.exercises_dir())]
    notebook_widget = f"notebook:{notebook}"
    editor_widgets = [f"editor:{path}" for path in files]
    data: dict = {
        "layout-restorer:data": {
            "main": {
                "dock": {
                    "type": "split-area",
                    "orientation": "horizontal",
                    "sizes": [0.5, 0.5],
                    "children": [
                        {"type": "tab-area", "currentIndex": 0, "widgets": [notebook_widget]},
                        {"type": "tab-area", "currentIndex": 0, "widgets": editor_widgets},
                    ],
                },
                "current": notebook_widget,
            },
            "left": {"collapsed": False, "visible": True, "current": "filebrowser",
                     "widgets": ["filebrowser"]},
            "right": {"collapsed": True, "visible": True, "widgets": []},
            "relativeSizes": [0.18, 0.82, 0],
        },
        notebook_widget: {"data": {"path": notebook, "factory": "Notebook"}},
        "file-browser-filebrowser:cwd": {"path": f"exercises/{exercise.id}"},
    }
    for widget, path in zip(editor_widgets, files, strict=True):
        data[widget] = {"data": {"path": path, "factory": "Editor"}}
    return {"data": data, "metadata": {"id": f"/{WORKSPACE}"}}


def venv_bin() -> Path:
    """The folder of this environment's scripts (``.venv/bin``): pytest, workbook, jupyter."""
    return Path(sysconfig.get_path("scripts"))


def lab_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment, inherited by its terminals and kernels: this venv first on PATH."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(venv_bin())
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    if sys.prefix != sys.base_prefix:  # as `source .venv/bin/activate` would
        env["VIRTUAL_ENV"] = sys.prefix
    env["WORKBOOK_ROOT"] = str(paths.root())
    return env


def lab_command(exercise: Exercise, extra: list[str]) -> list[str]:
    """The JupyterLab command line: rooted at the repository, opening ``exercise`` side by side.

    Writes the workspace it opens under ``.workbook/lab/``. ``extra`` (JupyterLab's own
    options) comes last, so it wins over the defaults here.
    """
    workspaces = paths.state_dir() / "lab" / "workspaces"
    workspaces.mkdir(parents=True, exist_ok=True)
    _save_workspace(workspaces, lab_workspace(exercise))
    command = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={paths.root()}",
        f"--LabApp.workspaces_dir={workspaces}",
        f"--LabApp.default_url=/lab/workspaces/{WORKSPACE}",
        f"--ServerApp.terminado_settings=shell_command={shlex.join(terminal_shell())}",
        # No calls out of the machine (lab rooms and CI are often offline): no news feed,
        # no update check.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        command.append("--allow-root")  # containers and lab machines often run as root
    return [*command, *extra]


def terminal_shell() -> list[str]:
    """The shell of a JupyterLab terminal: yours, then this venv first on PATH.

    The environment alone is not enough: the shell's own start-up files run after it (a
    login shell's /etc/profile resets PATH, pyenv's or conda's lines in ~/.bashrc put their
    pytest first). So the shell reads a start-up file that sources yours and then does what
    ``source .venv/bin/activate`` does.
    """
    bin_dir = shlex.quote(str(venv_bin()))
    lines = [
        "# Written by `workbook lab` for its terminals; rewritten at each start.",
        "# Your own start-up file first, then the workbook's venv first on PATH (pytest, workbook).",
        '[ -f "$HOME/{rc}" ] && . "$HOME/{rc}"',
        f'export PATH={bin_dir}:"$PATH"',
    ]
    if sys.prefix != sys.base_prefix:
        lines.append(f"export VIRTUAL_ENV={shlex.quote(sys.prefix)}")
    folder = paths.state_dir() / "lab"
    folder.mkdir(parents=True, exist_ok=True)
    bash = shutil.which("bash")
    if bash:
        rcfile = folder / "bashrc"
        rcfile.write_text("\n".join(lines).replace("{rc}", ".bashrc") + "\n", encoding="utf-8")
        return [bash, "--rcfile", str(rcfile), "-i"]
    rcfile = folder / "shrc"  # POSIX sh reads $ENV when interactive
    rcfile.write_text("\n".join(lines).replace("{rc}", ".shrc") + "\n", encoding="utf-8")
    return ["env", f"ENV={rcfile}", shutil.which("sh") or "/bin/sh", "-i"]


def _save_workspace(folder: Path, workspace: dict) -> Path:
    from jupyterlab_server.workspaces_handler import WorkspacesManager

    return WorkspacesManager(str(folder)).save(WORKSPACE, json.dumps(workspace, indent=2))
