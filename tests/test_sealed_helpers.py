"""Helpers graders use under sealed grading: shared helper modules, and objects both sides change."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sealed grading needs Linux")

DEMO = '''
class Keeper:
    def __init__(self, frame):
        self.frame = frame

    def total(self):
        return float(self.frame["x"].sum())


def helper_value():
    import workbook_test_shared_helper

    return workbook_test_shared_helper.VALUE


def set_variable(name, value):
    import os

    os.environ[name] = value
'''


def test_shared_modules_and_objects_held_in_the_learners_process(tmp_path, monkeypatch):
    """share_with_learner: the learner's process imports a graders' module it cannot see;
    in_learner_process: a frame the grader changes after handing it over changes there too."""
    import pandas as pd

    from workbook import sealed

    monkeypatch.setattr(sealed, "_active", None)
    plain = pd.DataFrame({"x": [1.0, 2.0]})
    assert sealed.in_learner_process(plain) is plain, "outside sealed grading the value itself"
    assert sealed.sandbox_uid() is None

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mod.py").write_text(DEMO)
    helper = tmp_path / "helpers" / "workbook_test_shared_helper.py"
    helper.parent.mkdir()
    helper.write_text("VALUE = 42\n")
    session = sealed.Session()
    monkeypatch.setattr(sealed, "_active", session)
    try:
        sealed.share_with_learner(helper)
        mod = session.load("demo", "mod", tmp_path)
        assert mod.helper_value() == 42

        held = sealed.in_learner_process(pd.DataFrame({"x": [1.0, 2.0]}))
        keeper = mod.Keeper(held)
        held["x"] += 5.0  # read back, added here, set there
        assert keeper.total() == 13.0, "the learner's object holds the very frame the grader changed"

        copied = pd.DataFrame({"x": [1.0, 2.0]})
        other = mod.Keeper(copied)
        copied["x"] += 5.0
        assert other.total() == 3.0, "a frame sent by value is the learner's own copy"

        variable = "WORKBOOK_TEST_LEARNER_VARIABLE"
        assert sealed.learner_getenv(variable) is None
        mod.set_variable(variable, "set by the learner")
        assert sealed.learner_getenv(variable) == "set by the learner" and variable not in os.environ, (
            "learner_getenv reads the learner's process's environment, which the grader's does not share"
        )

        helper.write_text("VALUE = 7\n")  # shared again: a fresh learner process gets the new file
        sealed.share_with_learner(helper)
        session.child.kill("a test ended it")
        assert session.load("demo", "mod", tmp_path).helper_value() == 7
    finally:
        session.close()


class ExplodingModel:
    """A graders' class (this test module is not importable by the learner's process)."""

    def fit(self, X, y):
        raise RuntimeError("training diverged")


def test_a_graders_class_travels_with_its_methods(tmp_path, monkeypatch):
    """An instance of a graders' class reaches the learner's code by value, its methods with it:
    ``model.fit(X, y)`` there runs the class's own ``fit``, bound to the instance, and raises its error."""
    from workbook import sealed

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mod.py").write_text("def train(model):\n    return model.fit([[1.0]], [0])\n")
    session = sealed.Session()
    monkeypatch.setattr(sealed, "_active", session)
    try:
        mod = session.load("demo", "mod", tmp_path)
        with pytest.raises(RuntimeError, match="training diverged"):
            mod.train(ExplodingModel())
    finally:
        session.close()



def _sandbox_uid_of_another_run(user: str | None) -> str:
    """The sandbox user id a grader process of its own picks, with WORKBOOK_SEALED_USER=user."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "WORKBOOK_SEALED_USER"}
    if user is not None:
        env["WORKBOOK_SEALED_USER"] = user
    code = "from workbook import sealed; print(sealed.Session().sandbox_user()[0])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


@pytest.mark.skipif(os.getuid() != 0, reason="a sandbox user exists only for a grader run as root")
def test_each_grading_run_has_a_sandbox_user_of_its_own():
    """RLIMIT_NPROC counts a user's processes across the machine: two grading runs at once (a
    class graded in parallel, this suite under xdist) must not share one, or one learner's fork
    bomb would make another's honest code fail to fork."""
    import pwd

    from workbook import sealed

    mine, group = sealed.Session(sealed.Limits()).sandbox_user()
    nobody = pwd.getpwnam("nobody")
    assert mine not in (None, 0, nobody.pw_uid) and group == nobody.pw_gid
    assert int(_sandbox_uid_of_another_run(None)) not in (mine, 0, nobody.pw_uid), (
        "two grader processes got the same sandbox user id"
    )
    assert _sandbox_uid_of_another_run("") == "None", "WORKBOOK_SEALED_USER='' keeps the grader's own user"
    assert int(_sandbox_uid_of_another_run("nobody")) == nobody.pw_uid, "a user named there is used as it is"
