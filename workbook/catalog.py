"""The catalog: one ordered list of every exercise (``catalog.toml``)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from workbook import paths

KINDS = ("design", "concept", "coding", "applied", "platform", "capstone", "self-test")
STATUSES = ("ready", "planned")
SERVICES = (
    "postgres", "redis", "prometheus", "alertmanager", "mlflow",
    "uvicorn", "webhook", "docker", "dvc", "git",
)
ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class CatalogError(ValueError):
    """The catalog file cannot be read; the message says where and how to fix it."""


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    section: str
    kind: str
    status: str
    files: tuple[str, ...]
    services: tuple[str, ...]
    points: int
    hints: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def grader_dir(self) -> Path:
        return paths.graders_dir() / self.id

    @property
    def notebook(self) -> Path:
        return paths.notebooks_dir() / f"{self.id}.ipynb"

    def learner_files(self, target: Path | None = None) -> list[Path]:
        base = (target or paths.exercises_dir()) / self.id
        return [base / name for name in self.files]


def load(path: Path | None = None) -> list[Exercise]:
    """Read the catalog, in course order. Raises CatalogError on a malformed file."""
    path = path or paths.catalog_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path} not found: run the workbook from its repository.") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path} is not valid TOML: {exc}") from None
    exercises = []
    for index, entry in enumerate(data.get("exercises", []), start=1):
        try:
            exercises.append(
                Exercise(
                    id=entry["id"],
                    title=entry["title"],
                    section=entry["section"],
                    kind=entry["kind"],
                    status=entry["status"],
                    files=tuple(entry["files"]),
                    services=tuple(entry.get("services", ())),
                    points=int(entry["points"]),
                    hints=tuple(entry.get("hints", ())),
                )
            )
        except KeyError as exc:
            raise CatalogError(
                f"{path}: exercise #{index} ({entry.get('id', '?')}) has no {exc.args[0]!r} field."
            ) from None
    return exercises


def get(exercise_id: str, exercises: list[Exercise] | None = None) -> Exercise:
    """The exercise with this id; a KeyError names close matches."""
    exercises = exercises if exercises is not None else load()
    for exercise in exercises:
        if exercise.id == exercise_id:
            return exercise
    known = ", ".join(e.id for e in exercises)
    raise KeyError(f"no exercise {exercise_id!r} in the catalog. Known ids: {known}")


def problems(exercises: list[Exercise]) -> list[str]:
    """Everything wrong with the catalog, each with its fix (empty when all is well)."""
    found = []
    seen: set[str] = set()
    for ex in exercises:
        where = f"catalog.toml: {ex.id}"
        if not ID_PATTERN.match(ex.id):
            found.append(f"{where}: id must be lower-case letters, digits and '_'.")
        if ex.id in seen:
            found.append(f"{where}: id is used twice. Give each exercise its own id.")
        seen.add(ex.id)
        if ex.kind not in KINDS:
            found.append(f"{where}: kind {ex.kind!r} is not one of {', '.join(KINDS)}.")
        if ex.status not in STATUSES:
            found.append(f"{where}: status {ex.status!r} is not one of {', '.join(STATUSES)}.")
        unknown = sorted(set(ex.services) - set(SERVICES))
        if unknown:
            found.append(f"{where}: unknown services {unknown}; known: {', '.join(SERVICES)}.")
        if not ex.hints or any(not h.strip() for h in ex.hints):
            found.append(
                f"{where}: has an empty hint. Provide a hint, or at least tell the learner "
                "why a hint isn't needed."
            )
        if ex.points <= 0:
            found.append(f"{where}: points must be positive.")
        if not ex.files:
            found.append(f"{where}: lists no learner files.")
        if ex.ready:
            found.extend(_ready_problems(ex, where))
    return found


def _ready_problems(ex: Exercise, where: str) -> list[str]:
    found = []
    for sol in ex.learner_files(paths.solutions_dir()):
        if not sol.is_file():
            found.append(f"{where}: solution file {sol.relative_to(paths.root())} is missing.")
    if not ex.grader_dir.is_dir() or not any(ex.grader_dir.glob("test_*.py")):
        found.append(f"{where}: is ready but graders/{ex.id}/ has no test_*.py.")
    if not ex.notebook.is_file():
        found.append(f"{where}: is ready but notebooks/{ex.id}.ipynb is missing.")
    return found
