"""``workbook gradebook DIR...``: many graded submissions in one CSV, and the class's pass rates.

Each DIR is the ``--out`` folder of one ``workbook grade`` run (or its ``results.json``);
the student is the folder's name. The CSV has one row per student and exercise (student,
exercise, points, max_points, status); the pass rates say, for each check, how many
students passed it — lowest first, the check most of the class fails on top.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path


class GradebookError(Exception):
    """A results.json is missing or malformed; the message names it."""


@dataclass
class Submission:
    student: str
    results: dict


def read(paths: list[str | Path]) -> list[Submission]:
    found = []
    for given in paths:
        path = Path(given)
        file = path / "results.json" if path.is_dir() else path
        student = (path if path.is_dir() else path.parent).resolve().name
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GradebookError(f"{file} not found: give the --out folders of `workbook grade`.") from None
        except ValueError as exc:
            raise GradebookError(f"{file} is not valid JSON ({exc}).") from None
        if not isinstance(data, dict) or not isinstance(data.get("exercises"), dict) \
                or not isinstance(data.get("tests"), list):
            raise GradebookError(f"{file} is not a results.json written by `workbook grade`.")
        found.append(Submission(student, data))
    names = [s.student for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GradebookError(f"two submissions are named {', '.join(twice)}: give each student its own folder.")
    return found


def rows(submissions: list[Submission]) -> list[dict]:
    table = []
    for sub in sorted(submissions, key=lambda s: s.student):
        for exercise, entry in sub.results["exercises"].items():
            table.append({
                "student": sub.student, "exercise": exercise,
                "points": f"{float(entry.get('score', 0)):g}",
                "max_points": f"{float(entry.get('max_score', 0)):g}",
                "status": entry.get("status", ""),
            })
    return table


def to_csv(table: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["student", "exercise", "points", "max_points", "status"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buffer.getvalue()


def pass_rates(submissions: list[Submission]) -> list[tuple[str, int, int]]:
    """(check name, students who passed it, students graded on it), lowest rate first."""
    passed: dict[str, int] = {}
    graded: dict[str, int] = {}
    for sub in submissions:
        for test in sub.results["tests"]:
            name = str(test.get("name", "?"))
            graded[name] = graded.get(name, 0) + 1
            passed[name] = passed.get(name, 0) + (test.get("status") == "passed")
    return sorted(((n, passed[n], graded[n]) for n in graded), key=lambda r: (r[1] / r[2], r[0]))
