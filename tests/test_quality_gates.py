"""The graders of every ready exercise meet the grading standard (README, "For authors"):
every contract clause covered, pass on solutions, "not started" on stubs, enough realistic
wrong answers and every one of them rejected."""

from __future__ import annotations

import pytest

from workbook import catalog, devcheck, mutants

READY = [e for e in catalog.load() if e.ready]
IDS = [e.id for e in READY]


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_every_contract_clause_is_covered_by_a_check(exercise):
    """Each [clause] of the learner files has a covering check; each covers marker names a clause."""
    assert devcheck.contract_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_solutions_pass_every_check(exercise):
    """All graded checks pass on solutions/, and their points add up to the catalog's."""
    assert devcheck.solution_problems(exercise) == []


@pytest.mark.parametrize("exercise", [e for e in READY if "mlflow" in e.services or "postgres" in e.services],
                         ids=lambda e: e.id)
def test_graders_pass_twice_on_one_warm_server(exercise):
    """Mutant runs share one server: the graders must not assume a fresh one."""
    assert devcheck.shared_service_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_untouched_stub_is_not_started(exercise):
    """Every graded check reads "not started" on the generated stub, and pytest fails."""
    assert devcheck.stub_grading_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_every_mutant_is_rejected(exercise):
    """Each known-wrong implementation fails the checks its entry names."""
    assert devcheck.mutant_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_enough_realistic_wrong_answers(exercise):
    """Each ready exercise keeps at least 15 known-wrong implementations."""
    assert devcheck.mutant_count_problems(exercise) == []


def test_mutant_that_no_longer_applies_is_an_error(tmp_path):
    """A mutant whose text left the solution is reported, not silently graded as the solution."""
    stale = mutants.Mutant("ce4_2", "stale", "gone", "drift.py", (("text not in the file", ""),), ("x",))
    with pytest.raises(mutants.MutantError, match="not in solutions/ce4_2/drift.py any more"):
        stale.build(tmp_path)
