"""Tests of the workbook tooling itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


DEMO_SOLUTION = '''
def double(x):
    """Return 2 * x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION


def spin():
    """Return 1."""
    ### BEGIN SOLUTION
    return 1
    ### END SOLUTION
'''

DEMO_GRADER = '''
import pytest


@pytest.fixture
def demo(load_module):
    return load_module("mod")


@pytest.mark.points(2)
def test_double(demo):
    got = demo.double(3)
    assert got == 6, f"double(3) should be 6; got {got}"


@pytest.mark.points(1)
@pytest.mark.timeout(1)
def test_spin(demo):
    assert demo.spin() == 1


@pytest.mark.points(1)
@pytest.mark.hidden
def test_double_negative(demo):
    assert demo.double(-1) == -2
'''

DEMO_CATALOG = '''
[[exercises]]
id = "demo"
title = "A demo exercise"
section = "1 Demo"
kind = "coding"
status = "ready"
files = ["mod.py"]
services = []
points = 4
hints = ["first hint", "second hint"]

[[exercises]]
id = "later"
title = "A planned exercise"
section = "2 Later"
kind = "coding"
status = "planned"
files = ["later.py"]
services = []
points = 1
hints = ["later hint"]
'''


@pytest.fixture
def course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small workbook (catalog, solution, grader, notebook) with WORKBOOK_ROOT pointing at it."""
    root = tmp_path / "course"
    write(root / "catalog.toml", DEMO_CATALOG)
    write(root / "solutions" / "demo" / "mod.py", DEMO_SOLUTION)
    write(root / "graders" / "demo" / "test_demo.py", DEMO_GRADER)
    write(root / "notebooks" / "demo.ipynb", "{}")
    monkeypatch.setenv("WORKBOOK_ROOT", str(root))
    monkeypatch.delenv("WORKBOOK_TARGET", raising=False)
    from workbook import stubs

    stubs.write()
    return root
