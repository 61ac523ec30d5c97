"""Run an exercise's graders in a fresh pytest process and read back the score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbook import paths


@dataclass
class GradeRun:
    summary: dict
    returncode: int
    output: str

    @property
    def tests(self) -> list[dict]:
        return self.summary.get("tests", [])

    def outcomes(self) -> dict[str, str]:
        """check name (without parameters) -> worst outcome among its items."""
        result: dict[str, str] = {}
        for test in self.tests:
            name = test["check"].split("[")[0]
            if result.get(name, "passed") == "passed":
                result[name] = test["outcome"]
        return result


def grade(
    exercise_ids: list[str],
    target: str | os.PathLike = "exercises",
    *,
    extra_args: list[str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> GradeRun:
    """Run ``pytest graders/<id>...`` against ``target``; return the JSON summary.

    ``on_line`` receives pytest's output line by line as it is printed (for progress).
    """
    with tempfile.TemporaryDirectory(prefix="workbook-grade-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pytest",
            *[str(paths.graders_dir() / i) for i in exercise_ids],
            f"--target={target}",
            f"--workbook-report={report}",
            "-p", "no:cacheprovider",
            "--rootdir", str(paths.root()),
            *(extra_args or []),
        ]
        proc = subprocess.Popen(
            command, cwd=paths.root(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if on_line:
                on_line(line)
        returncode = proc.wait()
        output = "".join(lines)
        summary = json.loads(report.read_text()) if report.is_file() else {}
    if not summary and returncode not in (0, 1):
        raise RuntimeError(f"the graders did not run (pytest exit code {returncode}):\n{output}")
    return GradeRun(summary=summary, returncode=returncode, output=output)
