"""The grading plugin, run for real on a small course with pytester."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import write


def grade(pytester: pytest.Pytester, course: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(str(course / "graders" / "demo"), "--rootdir", str(course), *args)


def grade_in_subprocess(pytester: pytest.Pytester, course: Path, target: Path) -> pytest.RunResult:
    """A run in its own interpreter: what happens at its exit is part of the test."""
    return pytester.runpytest_subprocess(
        str(course / "graders" / "demo"), "--rootdir", str(course), f"--target={target}", timeout=60
    )


def submission(tmp_path: Path, body: str) -> Path:
    """A folder laid out like exercises/ holding one learner attempt at demo/mod.py."""
    write(tmp_path / "attempt" / "demo" / "mod.py", body)
    return tmp_path / "attempt"


def test_untouched_stub_reads_not_started(pytester, course):
    """Every check of a stub reads "not started", scores 0, and pytest fails — no traceback."""
    result = grade(pytester, course)
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "*[[]not started[]] `double` still raises NotImplementedError*",
        "*workbook score*",
        "demo*0/3*checks*0/4*points*not started",
    ])
    assert "Traceback" not in result.stdout.str()


def test_solutions_target_scores_full_marks(pytester, course):
    """--target=solutions grades the reference implementation."""
    result = grade(pytester, course, "--target=solutions")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["demo*3/3*checks*4/4*points*done"])


def test_wrong_answer_message_is_the_graders_sentence(pytester, course, tmp_path):
    """A failed assertion shows the grader's message, not pytest's introspection."""
    target = submission(tmp_path, "def double(x):\n    return x + 4\n\ndef spin():\n    return 1\n")
    result = grade(pytester, course, f"--target={target}")
    result.stdout.fnmatch_lines(["*[[]failed[]] double(3) should be 6; got 7"])
    assert "assert 7 == 6" not in result.stdout.str()
    result.stdout.fnmatch_lines(["demo*1/3*checks*1/4*points*in progress"])


LOOPING = """
    import time

    def double(x):
        return 2 * x

    def spin():
        while True:
            try:
                time.sleep(0.05)
            except Exception:
                pass
"""


def test_infinite_loop_says_where_and_stops_the_learners_loop(pytester, course, tmp_path):
    """A loop that never ends hits the check's time limit even inside `except Exception`; the
    message names the learner's file, line and function, and the checks after it are not run
    (0 points, one line saying why) instead of each waiting for its own time limit."""
    target = submission(tmp_path, LOOPING)
    started = time.monotonic()
    result = grade(pytester, course, f"--target={target}", "--workbook-report=report.json")
    assert time.monotonic() - started < 20
    result.stdout.fnmatch_lines([
        "*[[]timeout[]] mod.py line 9, in `spin`: still running after 1 s, the check's time limit"
        " — an infinite loop?",
        "demo*1/3*checks*2/4*points*in progress",
        "demo: 1 checks not run — fix the time-out of `test_spin` first.",
    ])
    report = json.loads((pytester.path / "report.json").read_text())
    last = report["tests"][-1]
    assert (last["check"], last["outcome"], last["score"]) == ("test_double_negative", "not run", 0)


def test_keep_going_grades_every_check_after_a_timeout(pytester, course, tmp_path):
    """Instructor and CI grading (--keep-going) still grade the checks after a time-out."""
    target = submission(tmp_path, LOOPING)
    result = grade(pytester, course, f"--target={target}", "--keep-going")
    result.stdout.fnmatch_lines(["demo*2/3*checks*3/4*points*in progress"])
    assert "not run" not in result.stdout.str()


def test_exercise_budget_bounds_the_whole_exercise(pytester, course, tmp_path):
    """Under --keep-going, once an exercise's time budget is spent its other checks are not run."""
    target = submission(tmp_path, """
        def double(x):
            while True:
                pass

        def spin():
            return 1
    """)
    started = time.monotonic()
    result = grade(pytester, course, f"--target={target}", "--keep-going", "--exercise-budget=1.5")
    assert time.monotonic() - started < 20
    result.stdout.fnmatch_lines([
        "*[[]timeout[]] mod.py line 2, in `double`: still running when demo's time budget of 1.5 s"
        " ran out*",
        "demo*0/3*checks*0/4*points*",
        "demo: 2 checks not run — demo's time budget of 1.5 s was spent.",
    ])


def test_stray_thread_does_not_keep_the_run_alive(pytester, course, tmp_path):
    """A non-daemon thread started by learner code: the run still ends, with its score and a
    sentence naming the thread."""
    target = submission(tmp_path, """
        import threading
        import time

        def _forever():
            while True:
                time.sleep(0.1)

        threading.Thread(target=_forever, name="background-worker").start()

        def double(x):
            return 2 * x

        def spin():
            return 1
    """)
    result = grade_in_subprocess(pytester, course, target)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["demo*3/3*checks*4/4*points*done"])
    result.stderr.fnmatch_lines([
        "workbook: the run ends without waiting for 3 threads still running "
        "(`background-worker` from mod.py line 4 ×3)*"
    ])


def test_idle_thread_pool_is_not_reported(pytester, course, tmp_path):
    """An executor's idle workers (MLflow's artifact downloads leave some) end at exit on their
    own: no sentence about them, and the run ends with its score."""
    target = submission(tmp_path, """
        from concurrent.futures import ThreadPoolExecutor

        POOL = ThreadPoolExecutor(2)

        def double(x):
            return POOL.submit(lambda: 2 * x).result()

        def spin():
            return 1
    """)
    result = grade_in_subprocess(pytester, course, target)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["demo*3/3*checks*4/4*points*done"])
    assert "without waiting" not in result.stderr.str(), result.stderr.str()


def test_processes_started_by_learner_code_are_stopped(pytester, course, tmp_path):
    """Processes learner code starts — a child, and a daemon whose parent exited — are gone
    when the run ends."""
    pids = tmp_path / "pids"
    target = submission(tmp_path, f"""
        import subprocess

        def double(x):
            subprocess.Popen(["sleep", "600"], start_new_session=True)
            subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $! >> {pids}"], check=True)
            return 2 * x

        def spin():
            return 1
    """)
    result = grade_in_subprocess(pytester, course, target)
    assert result.ret == 0
    result.stderr.fnmatch_lines(["workbook: stopped 4 processes started during grading*"])
    daemons = [int(line) for line in pids.read_text().split()]
    assert len(daemons) == 2
    for pid in daemons:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the grading run"


def test_crash_in_learner_code_names_the_place(pytester, course, tmp_path):
    """An exception from learner code is one line: type, message, function and line."""
    target = submission(tmp_path, "def double(x):\n    return x / 0\n\ndef spin():\n    return 1\n")
    result = grade(pytester, course, f"--target={target}")
    result.stdout.fnmatch_lines(["*[[]error[]] ZeroDivisionError: division by zero (in `double`, mod.py line 2)"])


def test_syntax_error_is_reported_with_its_line(pytester, course, tmp_path):
    """A file Python cannot read fails every check with the line to fix."""
    target = submission(tmp_path, "def double(x)\n    return x\n")
    result = grade(pytester, course, f"--target={target}")
    result.stdout.fnmatch_lines(["*[[]error[]] *demo/mod.py line 1: *Python could not read the file."])


def test_missing_file_says_how_to_restore_it(pytester, course, tmp_path):
    """A target without the learner file says which file and how to get it back."""
    (tmp_path / "empty").mkdir()
    result = grade(pytester, course, f"--target={tmp_path / 'empty'}")
    result.stdout.fnmatch_lines(["*mod.py does not exist. Create it, or run `workbook reset demo`*"])


def test_json_report_has_gradescope_shape(pytester, course, tmp_path):
    """--workbook-report writes score, max_score and per-check name/score/status/output/visibility."""
    report = tmp_path / "report.json"
    grade(pytester, course, f"--workbook-report={report}")
    data = json.loads(report.read_text())
    assert (data["score"], data["max_score"]) == (0, 4)
    assert data["exercises"]["demo"]["status"] == "not started"
    by_check = {t["check"]: t for t in data["tests"]}
    assert set(by_check) == {"test_double", "test_spin", "test_double_negative"}
    first = by_check["test_double"]
    assert first["exercise"] == "demo" and first["max_score"] == 2 and first["score"] == 0
    assert first["status"] == "failed" and first["outcome"] == "not started"
    assert "NotImplementedError" in first["output"]
    assert first["visibility"] == "visible"
    assert by_check["test_double_negative"]["visibility"] == "after_published"


def test_header_prints_command_to_reproduce(pytester, course):
    """The report header names the graded folder and the command that reproduces the run."""
    result = grade(pytester, course, "--target=solutions")
    result.stdout.fnmatch_lines([
        f"workbook: grading {course / 'solutions'}",
        "workbook: reproduce with: pytest *graders/demo* --target=solutions",
    ])


def test_environment_variable_selects_target(pytester, course, monkeypatch):
    """WORKBOOK_TARGET selects the folder when --target is not given."""
    monkeypatch.setenv("WORKBOOK_TARGET", "solutions")
    assert grade(pytester, course).ret == 0


def test_tests_without_points_are_left_alone(pytester):
    """Ordinary tests in the same session keep pytest's usual report and get no score."""
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 3\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*assert (1 + 1) == 3*"])
    assert "workbook score" not in result.stdout.str()


def test_invalid_ini_timeout_names_its_source(pytester, course):
    """A bad check_timeout in the ini file says where it came from."""
    write(course / "pytest.ini", "[pytest]\ncheck_timeout = soon\n")
    result = grade(pytester, course, "-c", str(course / "pytest.ini"))
    assert "Invalid check_timeout 'soon' from ini file" in result.stdout.str() + result.stderr.str()
