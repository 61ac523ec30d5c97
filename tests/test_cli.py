"""The `workbook` command on a small course."""

from __future__ import annotations

import json

from workbook import paths
from workbook.cli import main
from workbook.state import State


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_list_shows_every_item_with_status(course, capsys):
    """`workbook list` shows ready and planned items and the next exercise."""
    code, out = run(capsys, "list")
    assert code == 0
    assert "demo" in out and "not started" in out
    assert "later" in out and "planned" in out
    assert "0/1 ready exercises done; 1 more planned." in out
    assert "Next: demo" in out


def test_check_reports_not_started_then_done(course, capsys):
    """`workbook check` grades, records progress, shows a hint; a solved exercise is done."""
    code, out = run(capsys, "check", "demo")
    assert code == 1
    assert "demo: 0/4 points — not started" in out
    assert "Hint 1/2: first hint" in out
    (paths.exercises_dir() / "demo" / "mod.py").write_text(
        (paths.solutions_dir() / "demo" / "mod.py").read_text()
    )
    code, out = run(capsys, "check", "demo")
    assert code == 0
    assert "demo: 4/4 points — done" in out
    assert State.load().results["demo"]["status"] == "done"
    _, out = run(capsys, "list")
    assert "done" in out and "4/4" in out


def test_check_shows_failing_message(course, capsys):
    """A wrong answer shows the check's sentence under its name."""
    (paths.exercises_dir() / "demo" / "mod.py").write_text(
        "def double(x):\n    return x\n\ndef spin():\n    return 1\n"
    )
    code, out = run(capsys, "check", "demo")
    assert code == 1
    assert "double(3) should be 6; got 3" in out
    assert "in progress" in out


def test_hint_advances_one_at_a_time(course, capsys):
    """Each `workbook hint` shows the next hint; past the last it lists them all."""
    assert "Hint 1/2 for demo: first hint" in run(capsys, "hint", "demo")[1]
    assert "Hint 2/2 for demo: second hint" in run(capsys, "hint", "demo")[1]
    out = run(capsys, "hint", "demo")[1]
    assert "That was the last hint" in out and "1. first hint" in out


def test_reset_restores_stub_and_keeps_backup(course, capsys):
    """`workbook reset` restores the starter file and keeps the learner's copy."""
    learner = paths.exercises_dir() / "demo" / "mod.py"
    stub = learner.read_text()
    learner.write_text("my work\n")
    code, out = run(capsys, "reset", "demo")
    assert code == 0
    assert learner.read_text() == stub
    backups = list((paths.state_dir() / "backups" / "demo").rglob("mod.py"))
    assert [b.read_text() for b in backups] == ["my work\n"]


def test_unknown_or_planned_exercise_is_one_sentence(course, capsys):
    """Unknown ids and planned exercises give a sentence and exit code 2, not a traceback."""
    code, out = run(capsys, "check", "nope")
    assert code == 2 and "no exercise 'nope'" in out
    code, out = run(capsys, "check", "later")
    assert code == 2 and "planned and has no graders yet" in out


def test_stubs_check_fails_when_out_of_date(course, capsys):
    """`workbook stubs --check` exits 1 naming the stale file; `workbook stubs` fixes it."""
    (paths.exercises_dir() / "demo" / "mod.py").write_text("x = 1\n")
    code, out = run(capsys, "stubs", "--check")
    assert code == 1 and "exercises/demo/mod.py" in out
    assert run(capsys, "stubs")[0] == 0
    assert run(capsys, "stubs", "--check")[0] == 0


def test_corrupt_state_is_discarded_with_a_message(course, capsys):
    """An unreadable state file is started afresh, with a warning instead of a crash."""
    State.file().parent.mkdir(parents=True, exist_ok=True)
    State.file().write_text("{not json")
    code, out = run(capsys, "list")
    assert code == 0 and "unreadable" in out
    State().save()
    assert json.loads(State.file().read_text())["_"].startswith("DON'T EDIT THIS FILE!")


def test_doctor_lists_every_service_and_backend(capsys):
    """`workbook doctor` shows each service under both backends, with a path, an image or a fix."""
    from workbook.services import settings

    code, out = run(capsys, "doctor")
    for service in settings.SERVICES:
        assert service in out
    assert "local" in out and "docker" in out
    assert code in (0, 1)
    if code == 1:
        assert "apt-get install" in out or "workbook images build" in out or "dockerd" in out
