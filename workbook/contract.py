"""Contract clauses of an exercise, and the checks that cover them.

A *clause* is one promise a learner file makes: a formula, a default, a
parameter, a return field, an error, a side effect, a boundary. Its id is
written in square brackets at the end of the sentence that states it, in the
solution's docstrings (so the generated stub, which keeps docstrings, carries
it too)::

    The dataset has drifted when the share of drifted features is at least
    ``drift_share`` [share-boundary].

In files that are not Python (``dvc.yaml``, ``params.yaml``) a clause sits in
a ``#`` comment. Only what the learner can read counts: clauses are read from
the *stub*, so an id inside a solution region is not a clause.

A graded check names the clauses it covers with ``@pytest.mark.covers("id", ...)``.
The gate (``workbook dev check``, ``make test``): every clause is covered by at
least one check, every id a marker names is a clause, every graded check says
what it covers. ``workbook dev contract ID`` prints the clause -> checks table.

Markers are read from the grader files' source (decorators with literal
strings), so the table needs no pytest run and no services.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from workbook import paths, stubs

#: ``[id]`` not glued to a word or a closing bracket (so ``list[str]`` and ``a[i]`` are not clauses).
CLAUSE = re.compile(r"(?<![\w\]\[.'\"])\[([a-z][a-z0-9]*(?:-[a-z0-9]+)+|[a-z]{3,}[0-9]*)\]")


@dataclass(frozen=True)
class Clause:
    id: str
    file: str
    line: int
    text: str  # the sentence (or line) that states it, clause id removed


@dataclass
class Check:
    name: str
    file: str
    line: int
    covers: tuple[str, ...]
    graded: bool


@dataclass
class Contract:
    exercise: str
    clauses: dict[str, Clause] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def covered_by(self, clause_id: str) -> list[str]:
        return [c.name for c in self.checks if clause_id in c.covers]

    def problems(self) -> list[str]:
        """Each gap with its fix: uncovered clauses, unknown ids, checks that cover nothing."""
        found = [
            f"{self.exercise}: clause [{d}] is defined twice in the learner files; "
            "give each promise its own id." for d in self.duplicates
        ]
        if not self.clauses:
            found.append(
                f"{self.exercise}: the learner files state no contract clauses: mark each "
                "promise of the docstrings with its id, e.g. `... at least drift_share [share-boundary].`"
            )
        for clause in self.clauses.values():
            if not self.covered_by(clause.id):
                found.append(
                    f"{self.exercise}: clause [{clause.id}] ({clause.file} line {clause.line}: "
                    f"\"{_short(clause.text)}\") is covered by no check: add a check with "
                    f"@pytest.mark.covers(\"{clause.id}\")."
                )
        for check in self.checks:
            for name in check.covers:
                if name not in self.clauses:
                    found.append(
                        f"{self.exercise}: {check.file} line {check.line}: {check.name} covers "
                        f"[{name}], which no learner file states: fix the id or add the clause."
                    )
            if check.graded and not check.covers:
                found.append(
                    f"{self.exercise}: {check.file} line {check.line}: {check.name} is graded but "
                    "covers no clause: add @pytest.mark.covers(...) naming what it checks."
                )
        return found


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- clauses -------------------------------------------------------------------------------


def _python_texts(source: str) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a Python source."""
    found: list[tuple[int, str]] = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                doc = body[0].value
                # One entry per docstring line, so each clause gets its own line number.
                for offset, line in enumerate(source.splitlines()[doc.lineno - 1: doc.end_lineno]):
                    found.append((doc.lineno + offset, line))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
    return found


def _comment_texts(source: str) -> list[tuple[int, str]]:
    return [
        (number, line[line.index("#"):])
        for number, line in enumerate(source.splitlines(), start=1) if "#" in line
    ]


def clauses_in(text: str, *, python: bool, name: str) -> tuple[list[Clause], list[str]]:
    """The clauses a learner file's text states, and ids it states twice."""
    found: list[Clause] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    lines = (_python_texts if python else _comment_texts)(text)
    for number, line in sorted(lines):
        for match in CLAUSE.finditer(line):
            clause_id = match.group(1)
            if clause_id in seen:
                duplicates.append(clause_id)
                continue
            seen.add(clause_id)
            sentence = CLAUSE.sub("", line).strip().strip("#").strip()
            found.append(Clause(clause_id, name, number, sentence))
    return found, duplicates


def clauses(exercise_id: str) -> tuple[dict[str, Clause], list[str]]:
    """Clauses of an exercise, read from the stubs its solution generates."""
    result: dict[str, Clause] = {}
    duplicates: list[str] = []
    for stub in stubs.planned_stubs([exercise_id]):
        relative = stub.destination.relative_to(paths.exercises_dir() / exercise_id)
        try:
            text = stub.content.decode("utf-8")
        except UnicodeDecodeError:
            continue
        found, dup = clauses_in(text, python=stub.destination.suffix == ".py", name=str(relative))
        duplicates += dup
        for clause in found:
            if clause.id in result:
                duplicates.append(clause.id)
            result.setdefault(clause.id, clause)
    return result, duplicates


# -- checks --------------------------------------------------------------------------------


def _marker(decorator: ast.expr) -> tuple[str, ast.Call | None] | None:
    """('covers', call) for ``@pytest.mark.covers(...)``; ('points', None) for ``@pytest.mark.points``."""
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call else decorator
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute) \
            and target.value.attr == "mark":
        return target.attr, call
    return None


def checks_in(path: Path) -> list[Check]:
    """Test functions of a grader file with their ``covers`` ids and whether they are graded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.name.startswith("test"):
            continue
        covers: list[str] = []
        graded = False
        for decorator in node.decorator_list:
            marker = _marker(decorator)
            if marker is None:
                continue
            kind, call = marker
            graded |= kind == "points"
            if kind == "covers" and call is not None:
                for arg in call.args:
                    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                        raise ValueError(
                            f"{path} line {node.lineno}: covers() takes literal strings, "
                            "so the contract table can be read without running pytest"
                        )
                    covers.append(arg.value)
        found.append(Check(node.name, path.name, node.lineno, tuple(covers), graded))
    return found


def load(exercise_id: str) -> Contract:
    found, duplicates = clauses(exercise_id)
    contract = Contract(exercise_id, found, duplicates=duplicates)
    folder = paths.graders_dir() / exercise_id
    for path in sorted(folder.glob("test_*.py")) if folder.is_dir() else []:
        contract.checks.extend(checks_in(path))
    return contract
