"""Contract clauses, covers markers, the coverage gate, and automatic mutation testing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write
from workbook import contract, devcheck, mutation, paths, stubs
from workbook.catalog import load as load_catalog
from workbook.cli import main

SOLUTION = '''
"""A demo module: ``double`` doubles [double-value]; ``spin`` returns one [spin]."""


def double(x: list[int] | int):
    """Return 2 * x; a list[str] or d[key] here is not a clause.

    Raises TypeError for a string [double-rejects-text].
    """
    ### BEGIN SOLUTION
    # [hidden-in-solution] is inside the region: the learner never reads it.
    if isinstance(x, str):
        raise TypeError("text")
    return 2 * x
    ### END SOLUTION


def spin():
    """Return 1."""
    ### BEGIN SOLUTION
    return 1
    ### END SOLUTION
'''

GRADER = '''
import pytest


@pytest.fixture
def demo(load_module):
    return load_module("mod")


@pytest.mark.points(2)
@pytest.mark.covers("double-value")
def test_double(demo):
    got = demo.double(3)
    assert got == 6, f"double(3) should be 6; got {got}"


@pytest.mark.points(1)
@pytest.mark.covers("spin")
def test_spin(demo):
    assert demo.spin() == 1


@pytest.mark.points(1)
@pytest.mark.covers("double-rejects-text")
def test_double_rejects_text(demo):
    with pytest.raises(TypeError):
        demo.double("a")
'''


@pytest.fixture
def contract_course(course):
    write(course / "solutions" / "demo" / "mod.py", SOLUTION)
    write(course / "graders" / "demo" / "test_demo.py", GRADER)
    write(course / "solutions" / "demo" / "pipeline.yaml", "stages: {}  # one stage per step [one-stage]\n")
    stubs.write()
    return course


def demo_exercise():
    return next(e for e in load_catalog() if e.id == "demo")


def test_clauses_are_read_from_docstrings_and_comments_of_the_stub(contract_course):
    """Ids in docstrings and comments count; type subscripts and solution-only comments do not."""
    found = contract.load("demo")
    assert sorted(found.clauses) == ["double-rejects-text", "double-value", "one-stage", "spin"]
    assert found.clauses["double-rejects-text"].file == "mod.py"
    assert "Raises TypeError for a string" in found.clauses["double-rejects-text"].text
    assert found.clauses["one-stage"].file == "pipeline.yaml"


def test_gate_names_each_uncovered_clause_with_its_fix(contract_course):
    """A clause no check covers is one problem naming the clause, file, line and the fix."""
    assert contract.load("demo").problems() == [
        'demo: clause [one-stage] (pipeline.yaml line 1: "one stage per step") is '
        'covered by no check: add a check with @pytest.mark.covers("one-stage").'
    ]


def test_gate_rejects_unknown_ids_and_graded_checks_covering_nothing(contract_course):
    """A marker naming no clause, and a graded check without covers, are problems."""
    grader = paths.graders_dir() / "demo" / "test_demo.py"
    text = grader.read_text().replace('@pytest.mark.covers("spin")\n', "")
    text = text.replace('covers("double-value")', 'covers("double-value", "one-stage", "tripple")')
    grader.write_text(text)
    problems = contract.load("demo").problems()
    assert any("covers [tripple], which no learner file states" in p for p in problems), problems
    assert any("test_spin is graded but covers no clause" in p for p in problems), problems
    assert any("clause [spin]" in p and "covered by no check" in p for p in problems), problems


def test_gate_rejects_a_clause_defined_twice(contract_course):
    """Two promises under one id are reported: each promise needs its own id."""
    source = paths.solutions_dir() / "demo" / "mod.py"
    source.write_text(source.read_text().replace('"""Return 1."""', '"""Return 1 [spin]."""'))
    stubs.write()
    assert any("clause [spin] is defined twice" in p for p in contract.load("demo").problems())


def test_gate_passes_when_every_clause_is_covered(contract_course):
    """No problem once every clause has a check; devcheck reports the same."""
    grader = paths.graders_dir() / "demo" / "test_demo.py"
    grader.write_text(grader.read_text().replace('covers("spin")', 'covers("spin", "one-stage")'))
    assert contract.load("demo").problems() == []
    assert devcheck.contract_problems(demo_exercise()) == []


def test_covers_must_name_literal_strings(contract_course):
    """A computed id would make the table depend on running pytest: refused with the line."""
    grader = paths.graders_dir() / "demo" / "test_demo.py"
    grader.write_text(grader.read_text().replace('covers("spin")', "covers(NAME)"))
    with pytest.raises(ValueError, match="covers\\(\\) takes literal strings"):
        contract.load("demo")


def test_dev_contract_prints_the_table_and_fails_on_gaps(contract_course, capsys):
    """`workbook dev contract ID` shows each clause with its checks and exits 1 on a gap."""
    assert main(["dev", "contract", "demo"]) == 1
    out = capsys.readouterr().out
    assert "[double-value]" in out and "test_double" in out and "nothing" in out
    grader = paths.graders_dir() / "demo" / "test_demo.py"
    grader.write_text(grader.read_text().replace('covers("spin")', 'covers("spin", "one-stage")'))
    assert main(["dev", "contract", "demo"]) == 0
    assert "4 clauses, each covered by a check" in capsys.readouterr().out


def test_too_few_mutants_is_a_problem(contract_course):
    """An exercise keeps at least MIN_MUTANTS realistic wrong answers."""
    problems = devcheck.mutant_count_problems(demo_exercise())
    assert problems and f"keep at least {devcheck.MIN_MUTANTS}" in problems[0]


def test_solution_regions_are_found():
    """Mutation touches only the lines between the markers."""
    text = "a\n    ### BEGIN SOLUTION\n    x\n    y\n    ### END SOLUTION\nb\n"
    assert mutation.solution_regions(text) == [(3, 4)]


@pytest.mark.timeout(300)
def test_mutation_run_kills_what_the_graders_see_and_reports_survivors(course):
    """End to end on the demo: graded mutants, a survivor listed with its diff, an equivalent honoured."""
    # The demo course's own solution and graders: a handful of mutants, so this stays quick.
    report = mutation.run("demo", services="local")
    outcomes = {(m.source, m.operator): m.outcome for m in report.mutants}
    assert outcomes[("return 2 * x", "core/ReplaceBinaryOperator_Mul_Add")] == "killed"
    assert outcomes[("return 1", "core/NumberReplacer")] == "killed"
    # double(-1) is hidden but graded: 2 * x -> 2 - x, killed by double(3) already.
    assert {m.outcome for m in report.mutants} <= {"killed", "survived", "timeout", "no-change"}
    survivors = [m for m in report.mutants if m.outcome == "survived"]
    equivalents = paths.mutants_dir() / "demo" / "equivalent.toml"
    equivalents.parent.mkdir(parents=True, exist_ok=True)
    equivalents.write_text("".join(
        mutation.equivalent_entry(m).replace("WHY no input can tell this mutant from the solution",
                                             "accepted in this test") for m in survivors
    ))
    again = mutation.run("demo", services="local")  # resumed: results come from the session
    assert again.count("survived") == 0
    assert again.count("equivalent") == len(survivors)
    assert again.score == 1.0
    written = json.loads(mutation.write_report(again, paths.root() / "m.json").read_text())
    assert written["summary"]["score"] == 1.0 and written["summary"]["mutants"] == len(again.mutants)


def test_a_second_mutation_run_of_one_exercise_is_refused(course):
    """Two runs would mutate and re-copy each other's targets: the second one says so and stops."""
    import fcntl

    lock_path = paths.state_dir() / "mutation" / "demo.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(mutation.MutationError, match="another mutation run of demo is going on"):
            mutation.run("demo", services="local")
