"""Automatic mutation testing of a solution against its exercise's graders (cosmic-ray).

Each mutant is the reference solution with one small syntactic change made by a
cosmic-ray operator (``<`` for ``<=``, ``+`` for ``-``, ``True`` for ``False``,
a number off by one, a loop that never runs, an exception type replaced…). The
graders run on it (``pytest graders/<id> --target=<mutated copy> -x``); a
failing run kills the mutant. Only code inside ``### BEGIN/END SOLUTION``
regions is mutated: that is the learner's part, and what the graders judge.

A mutant that survives is either a blind spot of the graders (add or sharpen a
check) or equivalent to the solution (no input can tell them apart): list it in
``tests/mutants/<id>/equivalent.toml`` with one line saying why::

    [[equivalent]]
    operator = "core/ReplaceComparisonOperator_Lt_LtE"
    line = "if max(n, m) <= 10_000:"
    occurrence = 0            # optional: which match of this operator on this line
    reason = "both paths compute the same statistic; only the cut-over point moves"

Score = killed / (mutants - equivalent). Results go to
``benchmarks/results/mutation_<id>.json``; a run is resumable (the session
database lives in ``.workbook/mutation/<id>/``): kills are kept, survivors are
graded again (the graders may have been sharpened since), and a changed
solution starts a new session.
"""

from __future__ import annotations

import fcntl
import json
import queue
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbook import paths, stubs

#: cosmic-ray operators used: the classic sufficient set (arithmetic among + - * /,
#: every comparison, boolean and constant flips, off-by-one numbers, unary, loops,
#: exceptions, decorators). Bitwise/power/modulo variants of each arithmetic
#: operator would multiply the count without finding other gaps.
OPERATORS = re.compile(
    r"core/("
    r"ReplaceBinaryOperator_(Add|Sub|Mul|Div)_(Add|Sub|Mul|Div)"
    r"|ReplaceBinaryOperator_(FloorDiv|Mod|Pow)_(Add|Mul)"
    r"|ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Eq|NotEq|Lt|LtE|Gt|GtE)"
    r"|ReplaceComparisonOperator_(Is_IsNot|IsNot_Is|In_NotIn|NotIn_In)"
    r"|ReplaceUnaryOperator_\w+|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue"
    r"|ReplaceAndWithOr|ReplaceOrWithAnd|ReplaceBreakWithContinue|ReplaceContinueWithBreak"
    r"|ExceptionReplacer|NumberReplacer|RemoveDecorator|ZeroIterationForLoop"
    r")$"
)


@dataclass
class MutantResult:
    job_id: str
    operator: str
    file: str
    line: int
    source: str  # the solution's line, stripped
    occurrence: int  # index among this operator's mutations of this same line text
    outcome: str  # killed | survived | timeout | equivalent | no-change | error
    seconds: float = 0.0
    diff: str = ""
    reason: str = ""  # why it is equivalent


@dataclass
class Report:
    exercise: str
    mutants: list[MutantResult] = field(default_factory=list)
    seconds: float = 0.0
    baseline_seconds: float = 0.0
    operators: str = OPERATORS.pattern

    def count(self, outcome: str) -> int:
        return sum(m.outcome == outcome for m in self.mutants)

    @property
    def score(self) -> float:
        judged = [m for m in self.mutants if m.outcome in ("killed", "timeout", "survived")]
        if not judged:
            return 1.0
        return sum(m.outcome != "survived" for m in judged) / len(judged)

    def summary(self) -> dict:
        return {
            "exercise": self.exercise,
            "mutants": len(self.mutants),
            "killed": self.count("killed"),
            "timeout": self.count("timeout"),
            "survived": self.count("survived"),
            "equivalent": self.count("equivalent"),
            "no_change": self.count("no-change"),
            "error": self.count("error"),
            "score": round(self.score, 4),
            "seconds": round(self.seconds, 1),
            "baseline_seconds": round(self.baseline_seconds, 1),
        }

    def to_json(self) -> dict:
        return {
            "summary": self.summary(),
            "operators": self.operators,
            "survivors": [asdict(m) for m in self.mutants if m.outcome == "survived"],
            "equivalent": [asdict(m) for m in self.mutants if m.outcome == "equivalent"],
            "mutants": [
                {k: v for k, v in asdict(m).items() if k != "diff"} for m in self.mutants
            ],
        }


class MutationError(RuntimeError):
    """Mutation testing cannot run; the message says why."""


def solution_regions(text: str) -> list[tuple[int, int]]:
    """(first, last) line numbers of the solution regions of a file, markers excluded."""
    regions, start = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        if stubs.BEGIN.match(line):
            start = number
        elif stubs.END.match(line) and start is not None:
            regions.append((start + 1, number - 1))
            start = None
    return regions


def load_equivalents(exercise_id: str) -> list[dict]:
    path = paths.mutants_dir() / exercise_id / "equivalent.toml"
    if not path.is_file():
        return []
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("equivalent", [])
    for entry in entries:
        missing = {"operator", "line", "reason"} - set(entry)
        if missing:
            raise MutationError(f"{path}: an [[equivalent]] entry lacks {sorted(missing)}: {entry}")
    return entries


def _equivalent(result: MutantResult, entries: list[dict]) -> str | None:
    for entry in entries:
        if entry["operator"] == result.operator and entry["line"].strip() == result.source and (
            "occurrence" not in entry or entry["occurrence"] == result.occurrence
        ):
            return entry["reason"]
    return None


def _grader_command(exercise_id: str, target: Path, services: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", str(paths.graders_dir() / exercise_id),
        f"--target={target}", f"--services={services}", "-x", "-q",
        "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir", str(paths.root()),
    ]


def run(
    exercise_id: str,
    *,
    jobs: int = 1,
    services: str = "local",
    limit: int | None = None,
    fresh: bool = False,
    progress: Callable[[int, int, MutantResult], None] | None = None,
) -> Report:
    """Mutate the solution of ``exercise_id``, grade every mutant, and return the report."""
    source = paths.solutions_dir() / exercise_id
    if not source.is_dir():
        raise MutationError(f"solutions/{exercise_id} does not exist")
    work = paths.state_dir() / "mutation" / exercise_id
    work.parent.mkdir(parents=True, exist_ok=True)
    # Two runs on one exercise would mutate and re-copy each other's targets.
    lock = open(work.parent / f"{exercise_id}.lock", "w")  # noqa: SIM115 - held until the run ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise MutationError(
            f"another mutation run of {exercise_id} is going on (.workbook/mutation/{exercise_id}.lock); "
            "wait for it, or stop it first"
        ) from None
    from workbook import catalog
    from workbook import services as service_layer

    try:
        # Shareable services (an MLflow server, PostgreSQL, Redis) start once for every run.
        with service_layer.warm(catalog.get(exercise_id).services, services):
            return _locked_run(exercise_id, work, jobs=jobs, services=services, limit=limit,
                               fresh=fresh, progress=progress)
    finally:
        lock.close()


def _locked_run(exercise_id, work, *, jobs, services, limit, fresh, progress) -> Report:
    source = paths.solutions_dir() / exercise_id
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    learner_files = sorted(p.relative_to(source) for p in source.rglob("*.py")
                           if "__pycache__" not in p.parts)
    texts = {str(f): (source / f).read_text(encoding="utf-8") for f in learner_files}
    stamp = json.dumps({"files": texts, "operators": OPERATORS.pattern}, sort_keys=True)
    session = work / "session.sqlite"
    stamp_file = work / "stamp.json"
    if stamp_file.is_file() and stamp_file.read_text(encoding="utf-8") != stamp:
        shutil.rmtree(work)  # the solution changed since: start again
        work.mkdir(parents=True)

    # One copy of the solution per worker; worker 0's copy is the one the session records.
    copies = []
    for k in range(max(1, jobs)):
        copy = work / f"target{k}"
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(source, copy / exercise_id, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(copy)

    started = time.monotonic()
    import attrs
    from cosmic_ray.commands import init as cr_init
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import WorkDB, use_db

    baseline = subprocess.run(_grader_command(exercise_id, copies[0], services), cwd=paths.root(),
                              capture_output=True, text=True)
    baseline_seconds = time.monotonic() - started
    if baseline.returncode != 0:
        raise MutationError(
            f"the graders fail on the unmutated solution (exit {baseline.returncode}); fix that "
            f"first:\n{baseline.stdout[-3000:]}"
        )
    timeout = max(60.0, 3 * baseline_seconds)

    if not session.is_file():
        module_paths = [copies[0] / exercise_id / f for f in learner_files]
        with use_db(str(session), WorkDB.Mode.create) as db:
            cr_init(module_paths, db, {})
        stamp_file.write_text(stamp, encoding="utf-8")

    regions = {
        str(copies[0] / exercise_id / f): solution_regions(text) for f, text in texts.items()
    }
    equivalents = load_equivalents(exercise_id)
    report = Report(exercise_id, baseline_seconds=baseline_seconds)

    with use_db(str(session), WorkDB.Mode.open) as db:
        done = {r[0]: r[1] for r in db.results}
        items = []
        seen_lines: dict[tuple[str, str, str], int] = {}
        for item in sorted(db.work_items, key=lambda i: (str(i.mutations[0].module_path),
                                                          i.mutations[0].start_pos)):
            spec = item.mutations[0]
            if not OPERATORS.match(spec.operator_name):
                continue
            line = spec.start_pos[0]
            if not any(a <= line <= b for a, b in regions.get(str(spec.module_path), [])):
                continue
            path = Path(spec.module_path)
            text = path.read_text(encoding="utf-8").splitlines()[line - 1].strip()
            key = (spec.operator_name, str(path), text)
            occurrence = seen_lines.get(key, 0)
            seen_lines[key] = occurrence + 1
            result = MutantResult(item.job_id, spec.operator_name, str(path.relative_to(copies[0])),
                                  line, text, occurrence, "pending")
            reason = _equivalent(result, equivalents)
            if reason:
                result.outcome, result.reason = "equivalent", reason
            items.append((item, result))
        if limit is not None:
            items = items[:limit]
        report.mutants = [r for _, r in items]
        total = len(items)
        finished = 0

        def record(result: MutantResult, work_result) -> None:
            nonlocal finished
            if work_result.worker_outcome.value == "no-test":
                outcome = "no-change"
            elif work_result.worker_outcome.value != "normal":
                outcome = "error"
            elif work_result.test_outcome is None:
                outcome = "error"
            else:
                outcome = {"killed": "killed", "survived": "survived",
                           "incompetent": "killed"}[work_result.test_outcome.value]
                if outcome == "killed" and work_result.output == "timeout":
                    outcome = "timeout"
            if result.outcome != "equivalent":
                result.outcome = outcome
            result.diff = work_result.diff or ""
            finished += 1
            if progress:
                progress(finished, total, result)

        pending = []
        for item, result in items:
            previous = done.get(item.job_id)
            # A survivor is graded again on every resume: the graders may have been
            # sharpened since (that is what survivors are for); kills are kept.
            if previous is not None and previous.test_outcome is not None \
                    and previous.test_outcome.value == "survived":
                previous = None
            if previous is not None:
                record(result, previous)
            elif result.outcome == "equivalent":  # explained already: nothing to learn by grading it
                finished += 1
                if progress:
                    progress(finished, total, result)
            else:
                pending.append((item, result))

        free: queue.Queue[int] = queue.Queue()
        for k in range(len(copies)):
            free.put(k)

        def execute(item, result: MutantResult):
            # Each worker mutates and grades its own copy, so two mutants never meet.
            k = free.get()
            try:
                copy = copies[k]
                mutations = [
                    attrs.evolve(m, module_path=copy / Path(m.module_path).relative_to(copies[0]))
                    for m in item.mutations
                ]
                command = " ".join(shlex.quote(a) for a in _grader_command(exercise_id, copy, services))
                t0 = time.monotonic()
                outcome = mutate_and_test(mutations, command, timeout)
                result.seconds = time.monotonic() - t0
                return item, result, outcome
            finally:
                free.put(k)

        if pending:
            with ThreadPoolExecutor(max_workers=len(copies)) as pool:
                futures = [pool.submit(execute, item, result) for item, result in pending]
                for future in as_completed(futures):
                    item, result, outcome = future.result()
                    db.set_result(item.job_id, outcome)  # from this thread only: sqlite session
                    record(result, outcome)
    report.seconds = time.monotonic() - started
    return report


def write_report(report: Report, path: Path | None = None) -> Path:
    path = path or (paths.root() / "benchmarks" / "results" / f"mutation_{report.exercise}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def equivalent_entry(result: MutantResult) -> str:
    """A ready-to-paste equivalent.toml entry for a survivor (the reason left to write)."""
    return (
        "[[equivalent]]\n"
        f"operator = {json.dumps(result.operator)}\n"
        f"line = {json.dumps(result.source)}\n"
        f"occurrence = {result.occurrence}\n"
        'reason = "WHY no input can tell this mutant from the solution"\n'
    )
