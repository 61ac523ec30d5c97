"""The stub generator: solution regions become placeholders, everything else stays."""

from __future__ import annotations

import pytest

from workbook import paths, stubs

SOURCE = '''"""Module docstring."""

import math

### BEGIN SOLUTION
def helper():
    return 1
### END SOLUTION


def area(r):
    """Area of a circle of radius r."""
    # a guiding comment stays
    ### BEGIN SOLUTION
    return math.pi * r * r
    ### END SOLUTION
'''


def test_indented_region_becomes_not_implemented():
    """A region inside a function raises NotImplementedError at the region's indent."""
    stub = stubs.make_stub(SOURCE, python=True)
    assert '    raise NotImplementedError("YOUR CODE HERE")\n' in stub
    assert "math.pi" not in stub


def test_module_level_region_becomes_comment():
    """A module-level region becomes a comment, so the stub still imports."""
    stub = stubs.make_stub(SOURCE, python=True)
    assert "def helper" not in stub
    assert "\n# YOUR CODE HERE\n" in stub
    compile(stub, "stub.py", "exec")


def test_everything_outside_regions_is_kept():
    """Docstrings, signatures and guiding comments are copied as they are."""
    stub = stubs.make_stub(SOURCE, python=True)
    for kept in ('"""Module docstring."""', "def area(r):", '"""Area of a circle of radius r."""',
                 "# a guiding comment stays", "import math"):
        assert kept in stub


def test_non_python_region_uses_its_comment_marker():
    """YAML and Dockerfiles get a '# YOUR CODE HERE' line; other markers keep their style."""
    yaml = "spec:\n  ### BEGIN SOLUTION\n  replicas: 3\n  ### END SOLUTION\n"
    assert stubs.make_stub(yaml, python=False) == "spec:\n  # YOUR CODE HERE\n"
    sql = "SELECT\n-- BEGIN SOLUTION\n1\n-- END SOLUTION\n"
    assert stubs.make_stub(sql, python=False) == "SELECT\n-- YOUR CODE HERE\n"



def test_json_region_marked_by_members_stays_valid_json():
    import json

    text = '{\n  "title": "t",\n  "#": "BEGIN SOLUTION",\n  "panels": [1],\n  "#": "END SOLUTION"\n}\n'
    stub = stubs.make_stub(text, python=False)
    assert stub == '{\n  "title": "t",\n  "#": "YOUR CODE HERE"\n}\n'
    assert json.loads(text)["panels"] == [1] and json.loads(stub) == {"title": "t", "#": "YOUR CODE HERE"}

@pytest.mark.parametrize(
    "text, message",
    [
        ("### BEGIN SOLUTION\nx\n", "never closed"),
        ("x\n### END SOLUTION\n", "without a BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside the region"),
    ],
)
def test_malformed_regions_are_refused_with_the_line(text, message):
    """Unbalanced markers name the file and line instead of writing a broken stub."""
    with pytest.raises(stubs.StubError, match=message) as caught:
        stubs.make_stub(text, python=True, name="solutions/x/y.py")
    assert "solutions/x/y.py:" in str(caught.value)


def test_out_of_date_and_write(course):
    """`stubs --check` notices an edited stub; `stubs` rewrites it."""
    target = paths.exercises_dir() / "demo" / "mod.py"
    assert stubs.out_of_date() == []
    target.write_text("edited\n")
    assert stubs.out_of_date() == [target]
    assert stubs.write() == [target]
    assert stubs.out_of_date() == []


def test_repository_stubs_are_up_to_date(monkeypatch):
    """exercises/ in this repository matches what solutions/ generates."""
    monkeypatch.delenv("WORKBOOK_ROOT", raising=False)
    stale = stubs.out_of_date()
    assert not stale, f"run `workbook stubs`: out of date: {[str(p) for p in stale]}"
