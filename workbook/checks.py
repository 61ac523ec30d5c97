"""Small assertion helpers for graders: each failure says what was expected and what came back."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


def field(obj: Any, name: str, *, what: str) -> Any:
    """``obj.name`` or ``obj[name]``: graders accept attribute and mapping reports alike."""
    __tracebackhide__ = True
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
    elif hasattr(obj, name):
        return getattr(obj, name)
    available = sorted(obj) if isinstance(obj, Mapping) else sorted(
        n for n in dir(obj) if not n.startswith("_")
    )
    raise AssertionError(
        f"{what} should have a field {name!r}; got a {type(obj).__name__} with {available}"
    )


def number(value: Any, *, what: str) -> float:
    """``value`` as a float; a clear failure when it is not a number."""
    __tracebackhide__ = True
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} should be a number; got {value!r}") from None


def assert_close(actual: Any, expected: float, *, what: str, rel: float = 1e-6, abs_: float = 1e-9) -> None:
    """``actual`` equals ``expected`` within tolerance, or fail naming both."""
    __tracebackhide__ = True
    got = number(actual, what=what)
    if not math.isclose(got, expected, rel_tol=rel, abs_tol=abs_):
        raise AssertionError(f"{what} should be {expected:.6g}; got {got:.6g}")


class Raised:
    """What `learner_error` caught: ``.value`` is the exception."""

    value: BaseException


@contextmanager
def learner_error(*kinds: type[BaseException], what: str) -> Iterator[Raised]:
    """Like ``pytest.raises`` for the learner's errors, but a stub's NotImplementedError
    passes through, so an untouched exercise reads "not started", not "failed"."""
    __tracebackhide__ = True
    raised = Raised()
    expected = kinds or (Exception,)
    try:
        yield raised
    except NotImplementedError:
        raise
    except expected as exc:
        raised.value = exc
        return
    raise AssertionError(f"{what} should raise an error; it returned normally")


def require_started(exercise_id: str, folder, files: list[str]) -> None:
    """Raise NotImplementedError ("not started") when every learner file is still the stub.

    For exercises whose files are not Python (dvc.yaml, Dockerfiles), where no stub
    function can raise by itself.
    """
    from pathlib import Path

    from workbook import stubs

    pristine = []
    for name in files:
        path = Path(folder) / name
        try:
            pristine.append(path.read_bytes() == stubs.stub_for(exercise_id, name))
        except FileNotFoundError:
            pristine.append(not path.exists())
    if all(pristine):
        raise NotImplementedError(f"{', '.join(files)} are still the starter files")
