"""Quality gates for authors: each function returns problems, each with its fix.

Used by ``workbook dev check`` and by the tooling's own tests, so both agree.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from workbook import catalog, contract, mutants, paths, runner, stubs
from workbook.catalog import Exercise
from workbook.services import settings


def catalog_problems() -> list[str]:
    return catalog.problems(catalog.load())


def stub_problems(ids: list[str] | None = None) -> list[str]:
    return [
        f"{p.relative_to(paths.root())} is out of date with solutions/: run `workbook stubs`."
        for p in stubs.out_of_date(ids)
    ]


def solution_problems(exercise: Exercise) -> list[str]:
    """Every graded check passes on solutions/, and the points add up to the catalog's."""
    run = runner.grade([exercise.id], "solutions")
    found = [
        f"{exercise.id}: check {t['check']} fails on solutions/ ({t['outcome']}): {t['output']}"
        for t in run.tests if t["outcome"] != "passed"
    ]
    if not run.tests:
        found.append(f"{exercise.id}: graders/{exercise.id} has no graded checks (@pytest.mark.points).")
    total = run.summary.get("max_score", 0)
    if total != exercise.points:
        found.append(
            f"{exercise.id}: the graders are worth {total:g} points but catalog.toml says "
            f"{exercise.points}: make them agree."
        )
    return found


def shared_service_problems(exercise: Exercise) -> list[str]:
    """The graders pass twice in a row on one warm server (what mutant runs rely on).

    A grader that assumes a fresh server (a fixed experiment name, a count of all runs)
    would make every later run fail, and so "catch" mutants for the wrong reason.
    """
    from workbook import services

    if not any(s in services.SHAREABLE for s in exercise.services):
        return []
    with services.warm(exercise.services, settings.backend()):
        for again in (False, True):
            run = runner.grade([exercise.id], "solutions")
            failed = [t for t in run.tests if t["outcome"] != "passed"]
            if failed:
                why = (" on a server a first grading run already used: give each check its own "
                       "experiment / database names instead of assuming a fresh server") if again else ""
                return [
                    f"{exercise.id}: check {t['check']} fails on solutions/ ({t['outcome']}){why}: "
                    f"{t['output']}" for t in failed
                ]
    return []


def stub_grading_problems(exercise: Exercise) -> list[str]:
    """Every graded check reads "not started" on the untouched stub, scoring 0."""
    with tempfile.TemporaryDirectory(prefix="stubs-") as tmp:
        # Freshly generated stubs: exercises/ may hold a maintainer's own attempt.
        for stub in stubs.planned_stubs([exercise.id]):
            out = Path(tmp) / stub.destination.relative_to(paths.exercises_dir())
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(stub.content)
        run = runner.grade([exercise.id], tmp)
    found = [
        f"{exercise.id}: check {t['check']} should read 'not started' on the stub; got {t['outcome']}"
        for t in run.tests if t["outcome"] != "not started"
    ]
    if run.returncode == 0:
        found.append(f"{exercise.id}: pytest exits 0 on the untouched stub; it should fail.")
    return found


def mutant_problems(exercise: Exercise) -> list[str]:
    """Every known-wrong implementation fails the checks its entry names."""
    from workbook import services

    with services.warm(exercise.services, settings.backend()):
        return _mutant_problems(exercise)


def _mutant_problems(exercise: Exercise) -> list[str]:
    found = []
    for mutant in mutants.load(exercise.id):
        with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
            try:
                mutant.build(Path(tmp))
            except mutants.MutantError as exc:
                found.append(str(exc))
                continue
            run = runner.grade([exercise.id], tmp, extra_args=["-k", " or ".join(mutant.caught_by)])
        outcomes = run.outcomes()
        for check in mutant.caught_by:
            if check not in outcomes:
                found.append(f"mutant {exercise.id}/{mutant.name}: no check named {check} ran.")
            elif outcomes[check] == "passed":
                found.append(
                    f"mutant {exercise.id}/{mutant.name} ({mutant.description}) passes {check}: "
                    "strengthen that check."
                )
    return found


MIN_MUTANTS = 15


def contract_problems(exercise: Exercise) -> list[str]:
    """Every contract clause is covered by a check, and every covers marker names a clause."""
    return contract.load(exercise.id).problems()


def mutant_count_problems(exercise: Exercise) -> list[str]:
    """At least MIN_MUTANTS realistic wrong answers are kept for the exercise."""
    count = len(mutants.load(exercise.id))
    if count >= MIN_MUTANTS:
        return []
    return [
        f"{exercise.id}: tests/mutants/{exercise.id}/mutants.toml has {count} wrong answers; "
        f"keep at least {MIN_MUTANTS}, each a misconception of the topic with the checks that catch it."
    ]


def all_problems(progress=None) -> list[str]:
    """Run every gate over every ready exercise."""
    found = catalog_problems() + stub_problems()
    for exercise in (e for e in catalog.load() if e.ready):
        found.extend(contract_problems(exercise) + mutant_count_problems(exercise))
        for gate in (solution_problems, shared_service_problems, stub_grading_problems,
                     mutant_problems):
            if progress:
                progress(f"{exercise.id}: {gate.__doc__.splitlines()[0]}")
            found.extend(gate(exercise))
    return found
