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
    """One line per check; a failure's message once (stubs repeat the same one)."""
    mark = {"passed": "[green]✓[/]", "not started": "[white]·[/]", "skipped": "[dim]-[/]"}
    last = None
    for test in tests:
        symbol = mark.get(test["outcome"], "[red]✗[/]")
        console.print(f" {symbol} {escape(test['check'])}  [dim]({test['score']:g}/{test['max_score']:g})[/]")
        message = (test["outcome"], test["output"])
        if test["outcome"] != "passed" and test["output"]:
            text = "same as above" if message == last else escape(test["output"])
            console.print(f"     [dim]{test['outcome']}:[/] {text}")
        last = message


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
    cmd_list(args)
    exercises, state = catalog.load(), State.load()
    current = current_exercise(exercises, state) or next(e for e in exercises if e.ready)
    notebook = current.notebook.relative_to(paths.root())
    command = [sys.executable, "-m", "jupyterlab", str(notebook), *args.lab_args]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in command:
        command.append("--allow-root")  # containers and lab machines often run as root
    console.print(f"Opening {notebook} in JupyterLab (Ctrl-C to stop)…")
    env = {**os.environ, "WORKBOOK_ROOT": str(paths.root())}
    try:
        return subprocess.call(command, cwd=paths.root(), env=env)
    except KeyboardInterrupt:
        return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from workbook.services import available, settings

    table = Table(title="Services: can each backend run it here?", title_justify="left")
    for column in ("service", "local", "docker"):
        table.add_column(column)
    ok_everywhere = True
    for service in settings.SERVICES:
        cells = []
        for backend in ("local", "docker"):
            ok, detail = available(service, backend)
            ok_everywhere &= ok
            cells.append(f"[green]✓[/] {escape(detail)}" if ok else f"[red]✗[/] {escape(detail)}")
        table.add_row(service, *cells)
    console.print(table)
    console.print(f"backend in use: --services / $WORKBOOK_SERVICES = {settings.backend()} "
                  "(auto: docker where its column is ✓, else local)")
    return 0 if ok_everywhere else 1


def cmd_images_build(args: argparse.Namespace) -> int:
    from workbook.services import images

    try:
        built = images.build_all(args.services or None, force=args.force, mirror=args.mirror,
                                 log=lambda text: console.print(text))
    except images.ImageBuildError as exc:
        raise CliError(str(exc)) from None
    console.print(f"built {len(built)} image(s)" + (f": {', '.join(built)}" if built else ""))
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


# -- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbook", description="MLOps Workbook: do the exercises, check yourself.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="show every exercise and your progress").set_defaults(func=cmd_list)

    check = sub.add_parser("check", help="grade one exercise and show the next hint")
    check.add_argument("id")
    check.add_argument("--target", default="exercises", help="exercises (default), solutions, or a folder")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments after --")
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

    lab = sub.add_parser("lab", help="print your progress and open JupyterLab on the current exercise")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER, help="extra JupyterLab arguments")
    lab.set_defaults(func=cmd_lab)

    sub.add_parser("doctor", help="which backend can run each service, and how to fix what is missing") \
        .set_defaults(func=cmd_doctor)

    img = sub.add_parser("images", help="offline stand-in images for the services").add_subparsers(
        dest="images_command", required=True)
    build = img.add_parser("build", help="build the Debian base and the missing service images")
    build.add_argument("services", nargs="*", help="only these services (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild images that exist")
    build.add_argument("--mirror", help="Debian mirror URL (default: the one apt uses here)")
    build.set_defaults(func=cmd_images_build)

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
    args = build_parser().parse_args(argv)
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
