"""Import a learner's module from a target folder (exercises/, solutions/, a fork).

Graders and notebooks never ``import exercises...`` directly: they ask for a
module by exercise id, and the target decides which implementation they get.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from workbook import paths


class ExerciseImportError(ImportError):
    """The learner's file is missing or cannot be imported; the message says why."""


def module_path(exercise_id: str, module: str, target: str | os.PathLike | None = None) -> Path:
    return paths.resolve_target(target) / exercise_id / f"{module}.py"


def load_exercise(
    exercise_id: str, module: str, target: str | os.PathLike | None = None
) -> ModuleType:
    """Import ``<target>/<exercise_id>/<module>.py`` afresh and return it.

    Each call re-executes the file, so a notebook picks up the learner's
    latest edit without restarting the kernel.
    """
    path = module_path(exercise_id, module, target)
    if not path.is_file():
        raise ExerciseImportError(
            f"{_shown(path)} does not exist. Create it, or run "
            f"`workbook reset {exercise_id}` to restore the starter file."
        )
    digest = hashlib.sha1(str(path.parent.parent).encode()).hexdigest()[:8]
    name = f"_workbook_{digest}_{exercise_id}_{module}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    # Sibling files of the exercise (helpers the learner adds) import by plain name.
    folder = str(path.parent)
    sys.path.insert(0, folder)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ExerciseImportError(
            f"{_shown(path)} line {exc.lineno}: {exc.msg}. Python could not read the file."
        ) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        line = _learner_line(exc, path)
        raise ExerciseImportError(
            f"importing {_shown(path)} failed{line}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return mod


def _learner_line(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" at line {frames[-1].lineno}" if frames else ""


def _shown(path: Path) -> str:
    """A path as the learner knows it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(paths.root()))
    except ValueError:
        return str(path)
