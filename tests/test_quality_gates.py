"""The graders of every ready exercise: pass on solutions, "not started" on stubs, reject every mutant."""

from __future__ import annotations

import pytest

from workbook import catalog, devcheck, mutants

READY = [e for e in catalog.load() if e.ready]
IDS = [e.id for e in READY]


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_solutions_pass_every_check(exercise):
    """All graded checks pass on solutions/, and their points add up to the catalog's."""
    assert devcheck.solution_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_untouched_stub_is_not_started(exercise):
    """Every graded check reads "not started" on the generated stub, and pytest fails."""
    assert devcheck.stub_grading_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_every_mutant_is_rejected(exercise):
    """Each known-wrong implementation fails the checks its entry names."""
    assert devcheck.mutant_problems(exercise) == []


@pytest.mark.parametrize("exercise", READY, ids=IDS)
def test_enough_mutants(exercise):
    """Each ready exercise keeps at least 4 known-wrong implementations."""
    assert len(mutants.load(exercise.id)) >= 4, f"add mutants to tests/mutants/{exercise.id}/mutants.toml"


def test_mutant_that_no_longer_applies_is_an_error(tmp_path):
    """A mutant whose text left the solution is reported, not silently graded as the solution."""
    stale = mutants.Mutant("ce4_2", "stale", "gone", "drift.py", (("text not in the file", ""),), ("x",))
    with pytest.raises(mutants.MutantError, match="not in solutions/ce4_2/drift.py any more"):
        stale.build(tmp_path)
