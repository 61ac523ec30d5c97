"""Write learner stubs (exercises/) from the reference solutions (solutions/).

Solution regions are marked the nbgrader way::

    def detect(self, data):
        \"\"\"Docstring stays.\"\"\"
        ### BEGIN SOLUTION
        ...reference code...
        ### END SOLUTION

In a Python file an indented region becomes ``raise NotImplementedError("YOUR
CODE HERE")`` (so the graders read "not started"); a region at module level,
and any region in another kind of file, becomes a ``# YOUR CODE HERE`` line.
In a JSON file (no comments there) a region is marked by members ``"#": "BEGIN SOLUTION",``
and ``"#": "END SOLUTION"`` of one object, and becomes ``"#": "YOUR CODE HERE"``: both
the solution and the stub stay valid JSON.
Everything outside the regions is copied as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from workbook import paths

BEGIN = re.compile(r"^(?P<indent>\s*)(#+|//|--)\s*BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*(#+|//|--)\s*END SOLUTION\s*$")
JSON_BEGIN = re.compile(r'^(?P<indent>\s*)"#":\s*"BEGIN SOLUTION",\s*$')
JSON_END = re.compile(r'^\s*"#":\s*"END SOLUTION"(?P<comma>,?)\s*$')
RAISE = 'raise NotImplementedError("YOUR CODE HERE")'
SKIP_NAMES = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}


class StubError(ValueError):
    """A solution file's regions are malformed; the message names the file and line."""


def make_stub(text: str, *, python: bool, name: str = "<text>") -> str:
    """Return ``text`` with every solution region replaced by its placeholder."""
    out: list[str] = []
    open_at: int | None = None
    indent = marker = ""
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        begin = BEGIN.match(line) or JSON_BEGIN.match(line)
        if begin:
            if open_at is not None:
                raise StubError(f"{name}:{number}: BEGIN SOLUTION inside the region opened at line {open_at}.")
            open_at, indent = number, begin.group("indent")
            marker = "json" if begin.re is JSON_BEGIN else (
                "#" if begin.group(2).startswith("#") else begin.group(2))
            continue
        end = END.match(line) or JSON_END.match(line)
        if end:
            if open_at is None:
                raise StubError(f"{name}:{number}: END SOLUTION without a BEGIN SOLUTION.")
            if marker == "json":
                comma = end.group("comma") if end.re is JSON_END else ""
                out.append(f'{indent}"#": "YOUR CODE HERE"{comma}\n')
            elif python and indent:
                out.append(f"{indent}{RAISE}\n")
            else:
                out.append(f"{indent}{marker} YOUR CODE HERE\n")
            open_at = None
            continue
        if open_at is None:
            out.append(line)
    if open_at is not None:
        raise StubError(f"{name}:{open_at}: BEGIN SOLUTION is never closed by END SOLUTION.")
    return "".join(out)


@dataclass(frozen=True)
class StubFile:
    source: Path
    destination: Path
    content: bytes


def planned_stubs(exercise_ids: list[str] | None = None) -> list[StubFile]:
    """Every file exercises/ should hold, generated from solutions/."""
    planned = []
    solutions = paths.solutions_dir()
    if not solutions.is_dir():
        raise StubError("this checkout has no solutions/ (a learner's release): stubs are "
                        "generated in the full workbook only.")
    for folder in sorted(p for p in solutions.iterdir() if p.is_dir()):
        if folder.name in SKIP_NAMES or (exercise_ids and folder.name not in exercise_ids):
            continue
        for source in sorted(folder.rglob("*")):
            if not source.is_file() or SKIP_NAMES & set(source.parts) or source.suffix == ".pyc":
                continue
            raw = source.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                content = raw
            else:
                content = make_stub(
                    text, python=source.suffix == ".py", name=str(source.relative_to(paths.root()))
                ).encode("utf-8")
            destination = paths.exercises_dir() / source.relative_to(solutions)
            planned.append(StubFile(source, destination, content))
    return planned


def out_of_date(exercise_ids: list[str] | None = None) -> list[Path]:
    """Stub files that differ from what the solutions generate (or are missing)."""
    return [
        stub.destination
        for stub in planned_stubs(exercise_ids)
        if not stub.destination.is_file() or stub.destination.read_bytes() != stub.content
    ]


def write(exercise_ids: list[str] | None = None) -> list[Path]:
    """Write the stubs; returns the files that changed."""
    changed = []
    for stub in planned_stubs(exercise_ids):
        if stub.destination.is_file() and stub.destination.read_bytes() == stub.content:
            continue
        stub.destination.parent.mkdir(parents=True, exist_ok=True)
        stub.destination.write_bytes(stub.content)
        changed.append(stub.destination)
    return changed


def stub_for(exercise_id: str, relative: str) -> bytes:
    """The pristine stub content of one learner file."""
    if not paths.solutions_dir().is_dir():  # a learner's release keeps copies of its starter files
        return (paths.starter_dir() / exercise_id / relative).read_bytes()
    for stub in planned_stubs([exercise_id]):
        if stub.destination == paths.exercises_dir() / exercise_id / relative:
            return stub.content
    raise FileNotFoundError(f"solutions/{exercise_id}/{relative} does not exist")
