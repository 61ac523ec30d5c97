"""Known-wrong implementations the graders must reject (``tests/mutants/<id>/mutants.toml``).

A mutant is the reference solution with a few exact text replacements, so it
stays in step with the solution: a replacement whose text is no longer in the
solution is an error, not a silently correct "mutant".
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from workbook import paths


class MutantError(ValueError):
    """A mutant cannot be built from the current solution."""


@dataclass(frozen=True)
class Mutant:
    exercise: str
    name: str
    description: str
    file: str
    replacements: tuple[tuple[str, str], ...]
    caught_by: tuple[str, ...]

    def build(self, target: Path) -> Path:
        """Write the exercise's solution, mutated, to ``target/<exercise>/``; return ``target``."""
        source = paths.solutions_dir() / self.exercise
        destination = target / self.exercise
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        path = destination / self.file
        text = path.read_text(encoding="utf-8")
        for old, new in self.replacements:
            count = text.count(old)
            if count == 0:
                raise MutantError(
                    f"mutant {self.exercise}/{self.name}: the text to replace is not in "
                    f"solutions/{self.exercise}/{self.file} any more:\n{old}\n"
                    "Update the mutant to the solution's current code."
                )
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
        return target


def load(exercise_id: str) -> list[Mutant]:
    path = paths.mutants_dir() / exercise_id / "mutants.toml"
    if not path.is_file():
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [
        Mutant(
            exercise=exercise_id,
            name=entry["name"],
            description=entry["description"],
            file=entry["file"],
            replacements=tuple((r["old"], r["new"]) for r in entry["replace"]),
            caught_by=tuple(entry["caught_by"]),
        )
        for entry in data.get("mutants", [])
    ]
