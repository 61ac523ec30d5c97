"""Threads and processes a learner's code leaves behind do not outlive a grading run.

A background worker started at import (a non-daemon thread) would keep pytest from
exiting after the last check; a helper process forked per check would stay after the
run. When a run that graded checks ends, this plugin

* stops every process started during the run that is still there (the grading process
  is made a *child subreaper* on Linux, so even double-forked daemons are found as its
  descendants), and reaps them; the services the fixtures started are stopped before;
* ends the interpreter without waiting for non-daemon threads started during the run
  (Python would wait for them forever), once pytest has written its report.

Each says what it did in one sentence on stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36


def make_subreaper() -> bool:
    """Orphaned descendants of this process become its children instead of init's (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":  # a zombie: already dead, only waiting to be reaped
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def stop_processes(pids: set[int]) -> None:
    """SIGKILL each process, then reap those that are this process's children."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours to reap (its parent is still alive)
                break
            if done:
                break
            time.sleep(0.01)


def _thread_origin(thread: threading.Thread) -> str:
    """``drift.py line 12`` for the function a thread runs, when Python can tell."""
    function = getattr(thread, "_target", None) or type(thread).run
    code = getattr(function, "__code__", None)
    if code is None:
        return ""
    return f" from {Path(code.co_filename).name} line {code.co_firstlineno}"


def _pool_worker(thread: threading.Thread) -> bool:
    """A worker of a concurrent.futures thread pool."""
    return getattr(getattr(thread, "_target", None), "__module__", None) == "concurrent.futures.thread"


_sessions = 0  # pytest sessions configured in this process and not yet ended


class Strays:
    """The pytest plugin (registered by workbook.plugin).

    Only the outermost pytest session of a process acts: a session run inside another
    one (pytester's in-process runs) must not stop what the outer session started.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.threads: set[int] = set()
        self.processes: set[int] = set()
        self.outermost = False
        self.graded = False
        self.exitstatus = 0

    def pytest_configure(self, config: pytest.Config) -> None:
        global _sessions
        self.outermost = _sessions == 0
        _sessions += 1
        if self.outermost:
            self.threads = {t.ident for t in threading.enumerate()}
            self.processes = descendants(self.pid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.outermost and not self.graded and item.get_closest_marker("points") is not None:
            self.graded = True  # from the first graded check on, learner code runs
            make_subreaper()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.exitstatus = int(exitstatus)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """After every other plugin (the fixtures stop their services first)."""
        global _sessions
        _sessions -= 1
        if not (self.outermost and self.graded) or os.getpid() != self.pid:
            return
        left = descendants(self.pid) - self.processes
        if left:
            stop_processes(left)
            shown = ", ".join(str(p) for p in sorted(left)[:5]) + (", …" if len(left) > 5 else "")
            plural = "process" if len(left) == 1 else "processes"
            _say(f"workbook: stopped {len(left)} {plural} started during grading and still running "
                 f"(pid {shown}); a learner file should not leave processes behind.")
        threads = [
            t for t in threading.enumerate()
            if t.is_alive() and not t.daemon and t.ident not in self.threads
            and t is not threading.current_thread()
        ]
        if threads:
            # An executor's workers (MLflow downloads artifacts with one, in the graders' process
            # too) idle until the interpreter joins them at exit: nothing to tell the learner,
            # though a busy one would still hold the exit up, so the guard below covers them.
            told = [t for t in threads if not _pool_worker(t)]
            kinds = Counter(f"`{t.name}`{_thread_origin(t)}" for t in told)
            names = ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in kinds.items())
            plural = "thread" if len(told) == 1 else "threads"
            if told:
                _say(f"workbook: the run ends without waiting for {len(told)} {plural} still "
                     f"running ({names}); make such a thread a daemon, or stop it when its work is done.")
            status = self.exitstatus
            # Runs when the interpreter starts shutting down, before it joins the threads.
            threading._register_atexit(lambda: _exit_now(status))


def _say(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _exit_now(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
