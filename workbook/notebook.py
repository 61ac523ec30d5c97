"""Helpers for the exercise notebooks: the "check your work" cell."""

from __future__ import annotations

import os

from workbook import runner


def check(exercise_id: str, target: str | None = None) -> float:
    """Run the exercise's graders on your files and print one line per check.

    Returns the points earned, so the notebook cell shows the score.
    """
    target = target or os.environ.get("WORKBOOK_TARGET", "exercises")
    run = runner.grade([exercise_id], target)
    summary = run.summary.get("exercises", {}).get(exercise_id)
    if not summary:
        print(run.output)
        raise RuntimeError(f"the graders of {exercise_id} ran no check; the output above says why")
    marks = {"passed": "✓", "not started": "·"}
    for test in run.tests:
        line = f"{marks.get(test['outcome'], '✗')} {test['check']} ({test['score']:g}/{test['max_score']:g})"
        if test["outcome"] != "passed":
            line += f"\n    {test['outcome']}: {test['output']}"
        print(line)
    print(f"\n{exercise_id}: {summary['score']:g}/{summary['max_score']:g} points — {summary['status']}")
    return summary["score"]
