"""The learner's progress, kept by exercise id so reordering the course is safe."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbook import paths

HEADER = "DON'T EDIT THIS FILE! It holds your workbook progress; `workbook reset` changes it safely."


@dataclass
class State:
    hints_shown: dict[str, int] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    warning: str | None = None

    @staticmethod
    def file() -> Path:
        return paths.state_dir() / "state.json"

    @classmethod
    def load(cls) -> State:
        path = cls.file()
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(hints_shown=dict(data["hints_shown"]), results=dict(data["results"]))
        except (ValueError, KeyError, TypeError):
            return cls(warning=f"{path} was unreadable and has been started afresh.")

    def save(self) -> None:
        path = self.file()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"_": HEADER, "hints_shown": self.hints_shown, "results": self.results}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def record(self, exercise_id: str, summary: dict) -> None:
        ex = summary.get("exercises", {}).get(exercise_id)
        if ex:
            self.results[exercise_id] = {
                "score": ex["score"],
                "max_score": ex["max_score"],
                "status": ex["status"],
                "checked_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
