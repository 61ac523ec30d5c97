"""Sealed grading: the learner's module lives in a child process; the grader keeps the rest.

With ``--sealed`` (on by default under ``workbook grade``), ``load_module("drift")``
returns a *proxy* of the learner's module. The module itself is imported in a child
process (workbook/sealed_child.py) that runs

* with a time, memory, file-size and process-count limit (``resource.setrlimit``),
* in its own temporary working copy of the exercise's files,
* as an unprivileged user id of the run's own (in ``nobody``'s group) when the grader runs
  as root, in a private mount namespace where the checkout's graders/, solutions/, tests/
  and the grading run's private folders are hidden behind empty read-only folders,
* with Python sockets limited to loopback (an audit hook; the graders' services listen
  on loopback, so a network namespace, which would cut them off, is not used).

Every assertion, every reference computation and the report stay in the grader's
process. Arguments travel to the child pickled; results come back by value only when
they are plain data (builtins, numpy arrays and scalars, pandas objects, dates, paths),
read with an allow-list unpickler; anything else (an instance of the learner's class, a
bound method, a generator) stays in the child and comes back as a proxy whose attribute
reads, method calls and operators go across. A callable of the grader's passed to the
learner's code (a webhook callback) is called back in the grader.

A child that exits, hangs (the check's time limit) or forks away fails the check it was
in with one sentence; the next ``load_module`` starts a fresh child.

The first learner process is a fork of the grader made before any conftest or grader
module is imported (``prefork``), with numpy, pandas, scipy.stats and the solution's
library imports already loaded: it costs no interpreter start-up and no second import of
those. It then sets itself up as a spawned one (a fresh interpreter) would, see
sealed_child.forked. A learner object sent back as a proxy carries a snapshot of its plain
attributes, read without a round trip until the grader's next request to that process.

A learner's *whole program* that a grader starts itself (a uvicorn app, ``dvc repro``) goes
through ``learner_program``: under sealed grading as root it runs as the sandbox user too,
in a private mount namespace with the same folders hidden (its own folder kept visible),
writing only its own working folder.

Two helpers for checks that need more than a proxy: ``share_with_learner`` puts a graders'
helper module (the class of a model the graders pickled) on the learner's process's path,
since that process cannot see graders/; ``in_learner_process`` hands the learner's code an
object the grader can still change afterwards (through a proxy), where a plain argument
would be the learner's own copy.

Not done here: running the child inside a container when a Docker engine answers, and
blocking the network of programs the learner's code starts (only Python sockets of the
child itself are limited). A container would cost a ``docker run`` and a fresh
interpreter per learner process (the fork above cannot cross into a container; a fresh
interpreter alone costs ce4_2 about +33 % wall time, "sealed-spawn" in
benchmarks/results/sealed.json), and the child must still reach the graders'
services on the host's loopback (``--network host``), so it would add a PID namespace and
a root filesystem of its own, not network isolation. What the child has instead: another
process; an unprivileged user id of its own where the grader is root (it cannot write the
grader's files, signal or trace its processes, and its process limit is its own); a private
mount namespace with the checkout's graders/, solutions/, tests/, .git and the run's report
folders hidden; rlimits on address space,
CPU time, file size and processes; Python sockets limited to loopback. It can still see
other processes in /proc (the grader's command line included) and open non-Python sockets.
"""

from __future__ import annotations

import ast
import builtins
import collections
import collections.abc as abc
import contextlib
import dataclasses
import fcntl
import functools
import importlib
import importlib.util
import io
import json
import os
import pickle
import pwd
import select
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import types
import weakref
from pathlib import Path

from workbook import paths
from workbook.loader import ExerciseImportError

HEADER = struct.Struct(">Q")
MAX_REPLY = 256 * 1024 * 1024
START_TIMEOUT = 120.0
ENV_SEALED = "WORKBOOK_SEALED"
ENV_FORK = "WORKBOOK_SEALED_FORK"  # "0": every learner process is a fresh interpreter (see prefork)
ENV_HIDE = "WORKBOOK_SEALED_HIDE"  # extra folders the child must not see (os.pathsep-separated)
ENV_STATS = "WORKBOOK_SEALED_STATS"  # a file the session writes its request counts to when it ends

# Folders of the checkout the learner's process never sees.
HIDDEN_FOLDERS = ("graders", "solutions", "tests", "benchmarks", "notebooks", ".git", ".workbook", "infra")
PRELOAD = ("numpy", "pandas", "scipy.stats")
# git's "dubious ownership" check, between files of the grader (root) and of the learner's process:
# the grader's git accepts the sandbox user's repositories through SUDO_UID (git >= 2.35.2), the
# child's git accepts the grader's through a system config of its own (the graders' environment
# may point git elsewhere; those two variables are not passed on to the child).
CHILD_GIT_SYSTEM = "[safe]\n\tdirectory = *\n"
NOT_FORWARDED = {"GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM"}


class SealedError(Exception):
    """The learner's process ended, hung, or broke the protocol; the message says which."""


class UnsendableArgument(SealedError):
    """A value of the grader's could not be pickled for the learner's process (nothing was sent)."""


class UnreadableValue(SealedError):
    """The learner's process sent a value the grader does not accept (the protocol is intact)."""


class LearnerExit(Exception):
    """The learner's code called sys.exit() (or raised KeyboardInterrupt) in its process."""


OWN_UID_BASE = 1_500_000_000  # + the grader's pid (below 2**22): far above any login or system user


@dataclasses.dataclass
class Limits:
    memory: int = 6 * 1024**3  # address space, bytes
    cpu: int = 900  # CPU seconds of one child
    fsize: int = 64 * 1024**2  # largest file the child may write, bytes
    nproc: int = 64  # processes and threads of the child's user (when it is not root)
    user: str | None = "nobody"  # the user the child runs as when the grader is root
    own_uid: bool = True  # as nobody: with a user id of this run's own (see Session.sandbox_user)

    @classmethod
    def from_env(cls) -> Limits:
        limits = cls()
        for name in ("memory", "cpu", "fsize", "nproc"):
            value = os.environ.get(f"WORKBOOK_SEALED_{name.upper()}")
            if value:
                setattr(limits, name, int(value))
        user = os.environ.get("WORKBOOK_SEALED_USER")
        if user is not None:  # a named user runs as that user exactly; "" as the grader's own
            limits.user = user or None
            limits.own_uid = False
        return limits


# -- values going to the child -------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _library_places() -> tuple[str, ...]:
    found = sysconfig.get_paths()
    places = {found["stdlib"], found["purelib"], found["platlib"], str(paths.PACKAGE_DIR)}
    return tuple(os.path.join(p, "") for p in places if p)


def _library_file(filename: str | None) -> bool:
    return bool(filename) and filename.startswith(_library_places())


def _from_library(obj) -> bool:
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    return module is not None and _library_file(getattr(module, "__file__", None))


def _is_callback(obj) -> bool:
    """Callables of the grader's run in the grader: functions, methods, partials, callable objects."""
    if isinstance(obj, type) or isinstance(obj, Remote):
        return False
    if isinstance(obj, types.FunctionType) and _defined_in_a_class(obj):
        return False  # a method of a graders' class sent by value (ToChild): it travels with its class
    if isinstance(obj, (types.FunctionType, functools.partial)):
        return not (_from_library(obj) and "<locals>" not in getattr(obj, "__qualname__", "<locals>"))
    if isinstance(obj, types.MethodType):
        return True
    if isinstance(obj, types.BuiltinMethodType):
        return not isinstance(getattr(obj, "__self__", None), types.ModuleType)
    return callable(obj) and not _from_library(obj) and not _from_library(type(obj))


def _defined_in_a_class(function: types.FunctionType) -> bool:
    """``def`` in a class body (``ExplodingModel.fit``), not a plain or nested function."""
    owner, _, _ = function.__qualname__.rpartition(".")
    return bool(owner) and not owner.endswith("<locals>")


@functools.lru_cache(maxsize=1)
def _to_child_pickler():
    import cloudpickle

    class ToChild(cloudpickle.CloudPickler):
        def __init__(self, file, child: Child):
            super().__init__(file, protocol=5)
            self.child = child

        def persistent_id(self, obj):
            if isinstance(obj, Remote):
                if object.__getattribute__(obj, "_wb_child") is not self.child:
                    raise SealedError(
                        "an object of the learner's earlier process was passed to its new one; "
                        "that process ended in an earlier check.")
                return ("r", object.__getattribute__(obj, "_wb_id"))
            if _is_callback(obj):
                return ("c", self.child.callback_id(obj))
            if isinstance(obj, type) and not _from_library(obj):
                # A class of the graders' (a model that fails on purpose): sent by value,
                # since the child cannot import the graders.
                module = sys.modules.get(obj.__module__)
                if module is not None and obj.__module__ not in ("__main__", "builtins"):
                    with contextlib.suppress(Exception):
                        cloudpickle.register_pickle_by_value(module)
            return None

    return ToChild


# -- values coming back --------------------------------------------------------------------

ALLOWED_GLOBALS = {
    ("builtins", n) for n in ("set", "frozenset", "complex", "bytearray", "range", "slice", "Ellipsis",
                              "list", "dict", "tuple", "int", "float", "str", "bytes", "bool")
} | {
    ("datetime", n) for n in ("date", "datetime", "time", "timedelta", "timezone")
} | {
    ("decimal", "Decimal"), ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("uuid", "UUID"),
    ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pyarrow.lib", "_restore_array"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
} | {
    ("pandas", n) for n in (
        "DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "DatetimeIndex", "TimedeltaIndex",
        "CategoricalIndex", "PeriodIndex", "IntervalIndex", "Categorical", "CategoricalDtype",
        "DatetimeTZDtype", "PeriodDtype", "IntervalDtype", "StringDtype", "BooleanDtype",
        "Float32Dtype", "Float64Dtype", "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
        "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype", "Timestamp", "Timedelta",
        "Period", "Interval", "NA", "NaT", "ArrowDtype",
    )
}
# Modules whose public classes are all data (dtypes, arrays, date offsets).
ALLOWED_CLASS_MODULES = ("numpy.dtypes", "pandas.arrays", "pandas._libs.tslibs.offsets")


class FromChild(pickle.Unpickler):
    """Reads the child's replies: only allow-listed data types, and references to proxies."""

    def __init__(self, data: bytes, child: Child):
        super().__init__(io.BytesIO(data))
        self.child = child

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module in ALLOWED_CLASS_MODULES and name.isidentifier() and not name.startswith("_"):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise UnreadableValue(
            f"the learner's code returned a value of type {module}.{name}, which the grader only "
            "accepts as plain data (numbers, text, lists, dicts, numpy arrays, pandas objects) "
            "or as an object of the learner's own class.")

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 3 and pid[0] == "r" and type(pid[1]) is int:
            return self.child.proxy(pid[1], pid[2])
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "c" and type(pid[1]) is int:
            found = self.child.callbacks.get(pid[1])
            if found is not None:
                return found
        raise SealedError("the learner's process sent a reference the grader never gave it.")


# -- proxies -------------------------------------------------------------------------------

FORWARDED_DUNDERS = {"__dict__", "__name__", "__qualname__", "__doc__", "__wrapped__", "__self__"}


def _remote(name: str):
    def method(self, *args):
        return _child(self).request("op", name, (self, *args))

    method.__name__ = f"__{name}__"
    return method


def _child(proxy) -> Child:
    return object.__getattribute__(proxy, "_wb_child")


class Remote:
    """An object that lives in the learner's process; every use of it goes across."""

    __slots__ = ("_wb_child", "_wb_id", "_wb_snapshot", "_wb_epoch", "__weakref__")

    def __init__(self, child: Child, ident: int):
        object.__setattr__(self, "_wb_child", child)
        object.__setattr__(self, "_wb_id", ident)
        object.__setattr__(self, "_wb_snapshot", None)
        object.__setattr__(self, "_wb_epoch", -1)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__") and name not in FORWARDED_DUNDERS:
            raise AttributeError(name)
        child = _child(self)
        snapshot = object.__getattribute__(self, "_wb_snapshot")
        # The attribute's value as the child sent it with this object, while no request since
        # could have changed it (see sealed_child.Server.snapshot).
        if snapshot is not None and name in snapshot and child.dead is None \
                and object.__getattribute__(self, "_wb_epoch") == child.epoch:
            value = snapshot[name]
            return value.copy() if type(value) in (list, dict, set) else value
        return child.request("getattr", self, name)

    def __setattr__(self, name: str, value) -> None:
        _child(self).request("setattr", self, name, value)

    def __delattr__(self, name: str) -> None:
        _child(self).request("delattr", self, name)

    def __call__(self, *args, **kwargs):
        return _child(self).request("call", self, args, kwargs)

    def __iter__(self):
        return _child(self).request("op", "iter", (self,))

    def __next__(self):
        return _child(self).request("op", "next", (self,))

    def __repr__(self) -> str:
        try:
            return _child(self).request("op", "repr", (self,))
        except BaseException as exc:  # noqa: BLE001 - a repr must not fail the report
            if not isinstance(exc, Exception):
                raise
            return f"<{type(self).__name__} of the learner's code>"

    def __str__(self) -> str:
        return _child(self).request("op", "str", (self,))

    def __dir__(self):
        return _child(self).request("op", "dir", (self,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce_ex__(self, protocol):
        raise TypeError(f"a {type(self).__name__} of the learner's code cannot be pickled in the grader")

    def __del__(self):
        with contextlib.suppress(Exception):
            _child(self).released.append(object.__getattribute__(self, "_wb_id"))

    __len__ = _remote("len")
    __bool__ = _remote("bool")
    __hash__ = _remote("hash")
    __float__ = _remote("float")
    __int__ = _remote("int")
    __index__ = _remote("index")
    __format__ = _remote("format")
    __getitem__ = _remote("getitem")
    __setitem__ = _remote("setitem")
    __delitem__ = _remote("delitem")
    __contains__ = _remote("contains")
    __eq__ = _remote("eq")
    __ne__ = _remote("ne")
    __lt__ = _remote("lt")
    __le__ = _remote("le")
    __gt__ = _remote("gt")
    __ge__ = _remote("ge")
    __add__ = _remote("add")
    __sub__ = _remote("sub")
    __mul__ = _remote("mul")
    __truediv__ = _remote("truediv")
    __neg__ = _remote("neg")
    __abs__ = _remote("abs")
    __round__ = _remote("round")


@functools.lru_cache(maxsize=512)
def proxy_class(type_name: str, module: str, fields: tuple[str, ...] | None, flags: frozenset) -> type:
    """A proxy class named like the learner's class; a dataclass's proxy lists its fields."""
    name = type_name.rsplit(".", 1)[-1] if type_name else "object"
    namespace = {"__slots__": (), "__module__": module or "learner", "__qualname__": type_name or name}
    if fields is not None:
        valid = [f for f in fields if f.isidentifier()]
        namespace["__dataclass_fields__"] = dataclasses.make_dataclass(
            "Fields", valid).__dataclass_fields__
        namespace["__match_args__"] = tuple(valid)
    cls = type(name if name.isidentifier() else "RemoteObject", (Remote,), namespace)
    if "mapping" in flags:
        abc.Mapping.register(cls)
    elif "sequence" in flags:
        abc.Sequence.register(cls)
    return cls


# -- exceptions ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _exception_class(name: str, module: str, base: type) -> type:
    safe = name.rsplit(".", 1)[-1]
    return type(safe if safe.isidentifier() else base.__name__, (base,), {"__module__": module or "learner"})


def rebuild(description, depth: int = 0) -> BaseException:
    """The learner's exception, as an exception of the same builtin kind, with its message."""
    if not isinstance(description, dict):
        return SealedError("the learner's process sent an error the grader could not read.")
    name = str(description.get("type", "Exception"))
    module = str(description.get("module", ""))
    message = str(description.get("message", ""))
    if name in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
        code = description.get("exit_code")
        what = f"sys.exit({code!r})" if name == "SystemExit" else name
        exc: BaseException = LearnerExit(f"the learner's code raised {what}; a module must not end the program.")
    elif module == "workbook.loader" and name == "ExerciseImportError":
        exc = ExerciseImportError(message)
    else:
        exc = None
        for base_name in description.get("bases", []):
            base = getattr(builtins, str(base_name), None)
            if not (isinstance(base, type) and issubclass(base, Exception)):
                continue
            try:
                kind = base if base.__name__ == name else _exception_class(name, module, base)
                exc = kind(message)
                break
            except TypeError:  # a builtin that wants more arguments (UnicodeDecodeError)
                continue
        if exc is None:
            exc = _exception_class(name, module, Exception)(message)
    frames = description.get("frames") or []
    exc.remote_frames = [tuple(f) for f in frames if isinstance(f, (list, tuple)) and len(f) == 3]
    cause = description.get("cause")
    if cause is not None and depth < 5:
        exc.__cause__ = rebuild(cause, depth + 1)
    return exc


def _describe(exc: BaseException) -> dict:
    bases = [k.__name__ for k in type(exc).__mro__
             if getattr(builtins, k.__name__, None) is k and issubclass(k, BaseException)]
    return {"type": type(exc).__qualname__, "module": type(exc).__module__, "bases": bases,
            "message": str(exc)[:2000], "frames": [], "cause": None}


# -- the child -----------------------------------------------------------------------------


class Child:
    """One learner process and the pipes to it."""

    def __init__(self, session: Session, fork: bool = False):
        self.session = session
        self.callbacks: dict[int, object] = {}
        self._callback_ids: dict[int, int] = {}
        self.released: list[int] = []
        self.proxies: weakref.WeakValueDictionary[int, Remote] = weakref.WeakValueDictionary()
        self.dead: str | None = None
        self.sent_env: dict[str, str] = {}
        self.sent_cwd: str | None = None
        self.copied: set[str] = set()
        self.shared_version = 0  # the session's shared modules this child has (share_with_learner)
        self.epoch = 0
        self.env_seen: dict | None = None
        self.work = Path(tempfile.mkdtemp(prefix="workbook-sealed-"))
        self.home, self.tmp, self.target = self.work / "home", self.work / "tmp", self.work / "target"
        for folder in (self.home, self.tmp, self.target):
            folder.mkdir()
        self.output = self.work / "output.log"
        self.output.touch()
        (self.work / "gitconfig-system").write_text(CHILD_GIT_SYSTEM)
        self.uid, self.gid = session.sandbox_user()
        self._chown(self.work)
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        settings = {
            "rfd": to_child_r, "wfd": from_child_w, "home": str(self.home), "tmp": str(self.tmp),
            "memory": session.limits.memory, "cpu": session.limits.cpu, "fsize": session.limits.fsize,
            "nproc": session.nproc_limit(self.uid), "uid": self.uid, "gid": self.gid,
            "hide": session.hidden_folders() if self.uid is not None else [],
            "preload": list(PRELOAD),
        }
        command = [sys.executable, "-I", "-m", "workbook.sealed_child"]
        tag = os.environ.get("WORKBOOK_SEALED_TAG")  # lets tests find the child and its forks
        if tag:
            command.append(tag)
        env = session.child_env()
        env["GIT_CONFIG_SYSTEM"] = str(self.work / "gitconfig-system")
        if fork:
            self.proc = self._fork(settings, env, command)
        else:
            if settings["hide"] and shutil.which("unshare"):
                command = [shutil.which("unshare"), "--mount", "--propagation", "private", *command]
            else:
                settings["hide"] = []
            env["WORKBOOK_SEALED_SETTINGS"] = json.dumps(settings)
            with open(self.output, "ab") as out:
                self.proc = subprocess.Popen(
                    command, cwd=self.home, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    pass_fds=(to_child_r, from_child_w), start_new_session=True,
                )
        os.close(to_child_r)
        os.close(from_child_w)
        for fd in (self.to_child, self.from_child):  # fewer blocking writes for large frames
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        self.ready = False  # the child says so when it has set itself up (_await_ready)

    def _fork(self, settings: dict, env: dict[str, str], command: list[str]) -> Forked:
        """The learner's process as a fork of this one (see ``prefork``): no second interpreter start-up."""
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 1
            try:
                from workbook import sealed_child

                sealed_child.forked(settings, env, str(self.output), command)
                status = 0
            except BaseException:  # noqa: BLE001 - said in its output, seen by the grader as "did not start"
                with contextlib.suppress(BaseException):
                    import traceback

                    os.write(2, traceback.format_exc().encode(errors="replace"))
            finally:
                os._exit(status)
        return Forked(pid)

    def _await_ready(self) -> None:
        try:
            hello = self._receive(timeout=START_TIMEOUT)
        except BaseException as exc:
            self.kill(f"the learner's process did not start: {exc}")
            raise
        if not (isinstance(hello, tuple) and len(hello) == 3 and hello[0] == "ready"):
            self.kill("the learner's process did not start.")
            raise SealedError(f"the learner's process did not start: {self.tail()}")
        if self.uid is not None and hello[2] != self.uid:
            self.kill("the learner's process did not drop its privileges.")
            raise SealedError("the learner's process did not drop its privileges.")
        self.ready = True

    def _chown(self, path: Path) -> None:
        if self.uid is not None:
            _chown_tree(path, self.uid, self.gid)

    # -- learner files -------------------------------------------------------------------

    def exercise_copy(self, exercise_id: str, target: Path) -> Path:
        """The child's own copy of ``target/<exercise_id>/`` (regular files only, no links)."""
        if exercise_id not in self.copied:
            source, dest = target / exercise_id, self.target / exercise_id
            if source.is_dir():
                shutil.copytree(source, dest, symlinks=True, ignore=_links_and_caches(source))
            else:
                dest.mkdir()
            self._chown(dest)
            self.copied.add(exercise_id)
        return self.target

    # -- requests ------------------------------------------------------------------------

    unpickling = False

    def request(self, op: str, *args):
        if self.dead is not None:
            raise SealedError(self.dead)
        if self.unpickling:
            raise SealedError("the learner's process sent a reply that tries to run its own code in the grader.")
        if not self.ready:
            self._await_ready()
        self.epoch += 1  # snapshots read before this request may be out of date after it
        self.session.counts[op] += 1
        try:
            self._sync_context()
            if self.shared_version != self.session.shared_version:
                self._sync_shared()
            if self.released:
                ids, self.released[:] = list(self.released), []
                self._send(("release", ids))
            self._send((op, *args))
            return self._wait()
        except BaseException as exc:
            if hasattr(exc, "remote_frames") or isinstance(exc, UnsendableArgument):
                raise  # the learner's own exception (the child is fine), or nothing was sent
            if isinstance(exc, SealedError):
                self.kill(f"the learner's process ended in an earlier check: {exc}")
            else:
                self.kill(f"the learner's process was stopped when a check ended early ({type(exc).__name__}).")
            raise

    def _sync_context(self) -> None:
        seen = os.environ._data  # compared whole first: a dict comparison, no copy
        if seen == self.env_seen:
            try:
                if os.getcwd() == self.sent_cwd:
                    return
            except OSError:
                pass
        self.env_seen = dict(seen)
        env = self.session.env_changes()
        unset = [k for k in self.sent_env if k not in env]
        changed = {k: v for k, v in env.items() if self.sent_env.get(k) != v}
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = str(self.home)
        if changed or unset or cwd != self.sent_cwd:
            self._send(("context", cwd, changed, unset))
            self.sent_env, self.sent_cwd = dict(env), cwd
            self._wait()

    def _sync_shared(self) -> None:
        """Copy the graders' shared modules into this child's folder and put it on the child's sys.path."""
        folder = self.work / "shared"
        folder.mkdir(exist_ok=True)
        for name, data in self.session.shared.items():
            (folder / name).write_bytes(data)
        self._chown(folder)
        self._send(("path", str(folder)))
        self.shared_version = self.session.shared_version
        self._wait()

    def _wait(self):
        while True:
            reply = self._receive()
            if not isinstance(reply, tuple) or not reply:
                raise SealedError("the learner's process sent a malformed reply.")
            kind = reply[0]
            if kind == "ok" and len(reply) == 2:
                return reply[1]
            if kind == "error" and len(reply) == 2:
                raise rebuild(reply[1])
            if kind == "callback" and len(reply) == 4:
                self._serve_callback(*reply[1:])
                continue
            raise SealedError("the learner's process sent a malformed reply.")

    def _serve_callback(self, ident, args, kwargs) -> None:
        function = self.callbacks.get(ident) if type(ident) is int else None
        if function is None or not isinstance(args, tuple) or not isinstance(kwargs, dict) \
                or not all(isinstance(k, str) for k in kwargs):
            raise SealedError("the learner's process called back something the grader never gave it.")
        try:
            value = function(*args, **kwargs)
        except Exception as exc:
            self._send(("cb_error", _describe(exc)))
            return
        self._send(("cb_ok", value))

    def callback_id(self, function) -> int:
        ident = self._callback_ids.get(id(function))
        if ident is None or self.callbacks.get(ident) is not function:
            ident = len(self.callbacks) + 1
            self.callbacks[ident] = function
            self._callback_ids[id(function)] = ident
        return ident

    def proxy(self, ident: int, description) -> Remote:
        if not isinstance(description, dict):
            raise SealedError("the learner's process sent a malformed reference.")
        fields = description.get("fields")
        if fields is not None:
            fields = tuple(str(f) for f in fields)[:200]
        flags = frozenset(str(f) for f in description.get("flags", ()) if isinstance(f, str))
        cls = proxy_class(str(description.get("type", "object"))[:200], str(description.get("module", ""))[:200],
                          fields, flags)
        proxy = self.proxies.get(ident)
        if proxy is None or type(proxy) is not cls:
            if ident in self.released:  # released by a proxy that died, but sent again: keep it
                self.released[:] = [i for i in self.released if i != ident]
            proxy = cls(self, ident)
            self.proxies[ident] = proxy
        snapshot = description.get("snapshot")
        if isinstance(snapshot, dict):
            object.__setattr__(proxy, "_wb_snapshot", {k: v for k, v in snapshot.items() if type(k) is str})
            object.__setattr__(proxy, "_wb_epoch", self.epoch)
        return proxy

    # -- frames --------------------------------------------------------------------------

    def _send(self, message) -> None:
        buffer = io.BytesIO()
        try:
            _to_child_pickler()(buffer, self).dump(message)
        except SealedError:
            raise UnsendableArgument(str(sys.exc_info()[1])) from None
        except Exception as exc:
            raise UnsendableArgument(
                f"the grader could not send a value to the learner's process ({type(exc).__name__}: {exc})."
            ) from None
        data = buffer.getvalue()
        view = memoryview(HEADER.pack(len(data)) + data)
        while view:
            try:
                written = os.write(self.to_child, view)
            except BrokenPipeError:
                raise SealedError(self._ended()) from None
            view = view[written:]

    def _receive(self, timeout: float | None = None):
        header = self._read(HEADER.size, timeout)
        (size,) = HEADER.unpack(header)
        if size > MAX_REPLY:
            raise SealedError(f"the learner's process sent a reply of {size} bytes, more than the grader reads.")
        data = self._read(size, timeout)
        self.unpickling = True
        try:
            return FromChild(data, self).load()
        except UnreadableValue as exc:
            exc.remote_frames = []  # the reply was read whole: the learner's process is fine
            raise
        except SealedError:
            raise
        except RecursionError:
            raise SealedError("the learner's process sent a reply the grader could not read.") from None
        except Exception as exc:
            raise SealedError(f"the learner's process sent a reply the grader could not read ({exc}).") from None
        finally:
            self.unpickling = False

    def _read(self, size: int, timeout: float | None) -> bytes:
        buffer = bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(buffer) < size:
            ready, _, _ = select.select([self.from_child], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    raise SealedError(self._ended())
                if deadline is not None and time.monotonic() > deadline:
                    raise SealedError(f"the learner's process did not answer within {timeout:g} s.")
                continue
            chunk = os.read(self.from_child, min(size - len(buffer), 1 << 20))
            if not chunk:
                raise SealedError(self._ended())
            buffer += chunk
        return bytes(buffer)

    def _ended(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ("the learner's process closed its connection to the grader and went on running "
                    "(did its code fork away?); it was stopped.")
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            why = {"SIGXCPU": " (it used up its CPU time)", "SIGKILL": " (killed: out of memory, or stopped)",
                   "SIGSEGV": " (a crash)"}.get(name, "")
            text = f"the learner's process was ended by signal {name}{why}"
        else:
            text = f"the learner's process exited with status {code} (os._exit, or a crash)"
        tail = self.tail()
        return text + (f"; its last output: {tail}" if tail else ".")

    def tail(self, size: int = 300) -> str:
        try:
            with open(self.output, "rb") as out:
                out.seek(0, os.SEEK_END)
                out.seek(max(out.tell() - size, 0))
                return out.read().decode(errors="replace").strip().replace("\n", " ⏎ ")[-size:]
        except OSError:
            return ""

    def kill(self, reason: str) -> None:
        """Stop the child and everything it started; later requests fail with ``reason``."""
        if self.dead is None:
            self.dead = reason
        from workbook.strays import descendants

        pids = descendants(self.proc.pid) | {self.proc.pid}
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.uid is not None:
            # Orphans of the child re-parented to this (subreaper) process: the sandbox user's.
            for pid in descendants(os.getpid()):
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{pid}").st_uid == self.uid:
                        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        # Its forks, killed with it, are now this (subreaper) process's zombies: reap them, or
        # they would count against the sandbox user's process limit in the next child.
        deadline = time.monotonic() + 5
        for pid in pids - {self.proc.pid}:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.01)
        for fd in (self.to_child, self.from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.to_child = self.from_child = -1
        shutil.rmtree(self.work, ignore_errors=True)
        self.session.ended(self)


class Forked:
    """A forked learner process, with the part of subprocess.Popen's interface the Child uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (a reaper of strays): it has ended
                self.returncode = -signal.SIGKILL
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"learner process {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode


def _links_and_caches(root: Path):
    def ignore(folder, names):
        return [n for n in names if n == "__pycache__" or os.path.islink(os.path.join(folder, n))]

    return ignore


class Session:
    """The sealed grading of one pytest run: settings, the current child, the env baseline."""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits.from_env()
        self.baseline = dict(os.environ)
        self.child: Child | None = None
        self.spare: Child | None = None  # the next learner process, started when one was stopped
        self.children = 0
        self.closing = False
        self.counts: collections.Counter[str] = collections.Counter()  # requests sent, by kind
        self.shared: dict[str, bytes] = {}  # file name -> source of the graders' modules the learner's code imports
        self.shared_version = 0

    def sandbox_user(self) -> tuple[int | None, int | None]:
        """The (uid, gid) learner processes run as; (None, None): the grader's own user.

        By default (``user`` is nobody) a user id of this run's own, in nobody's group:
        RLIMIT_NPROC counts every process of a user across the machine, so with one shared
        ``nobody`` a learner's fork bomb in one grading run would make another run's honest
        learner code fail to fork or start (an instructor grading a class in parallel, or
        this project's own tests under xdist). The id has no passwd entry (USER is set to
        sealed_child.SANDBOX_NAME); it is unique while this grader process lives (its pid),
        among the grading runs of one PID namespace (two containers' graders with the same
        pid would share it: give each container its own user namespace, or WORKBOOK_SEALED_USER).
        """
        if os.getuid() != 0 or not self.limits.user:
            return None, None
        try:
            entry = pwd.getpwnam(self.limits.user)
        except KeyError:
            return None, None
        if self.limits.user == "nobody" and self.limits.own_uid:
            return OWN_UID_BASE + os.getpid(), entry.pw_gid
        return entry.pw_uid, entry.pw_gid

    def nproc_limit(self, uid: int | None) -> int | None:
        if uid is not None:
            return self.limits.nproc
        if os.getuid() == 0:
            return None  # root is not bound by RLIMIT_NPROC
        mine = sum(1 for p in Path("/proc").glob("[0-9]*/task/*") if _owner(p) == os.getuid())
        return mine + self.limits.nproc

    def hidden_folders(self) -> list[str]:
        root = paths.root()
        folders = [str(root / name) for name in HIDDEN_FOLDERS if (root / name).is_dir()]
        extra = os.environ.get(ENV_HIDE, "")
        folders += [f for f in extra.split(os.pathsep) if f and os.path.isdir(f)]
        return folders

    def child_env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ", "TERM")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update({"PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                    "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
        return env

    def env_changes(self) -> dict[str, str]:
        """Variables the graders set or changed since the run began (learner code may need them)."""
        base = self.baseline
        return {k: v for k, v in os.environ.items() if base.get(k) != v and k not in NOT_FORWARDED}

    def current(self) -> Child:
        if self.child is None or self.child.dead is not None:
            spare, self.spare = self.spare, None
            self.child = spare if spare is not None and spare.dead is None else Child(self)
            self.children += 1
        return self.child

    def ended(self, child: Child) -> None:
        """A learner process was stopped mid-run: start the next one now, so it warms up meanwhile."""
        if not self.closing and child is self.child and self.spare is None:
            with contextlib.suppress(Exception):
                self.spare = Child(self)

    def load(self, exercise_id: str, module: str, target: Path):
        child = self.current()
        copy = child.exercise_copy(exercise_id, Path(target))
        return child.request("load", exercise_id, module, str(copy))

    def close(self) -> None:
        self.closing = True
        for child in (self.child, self.spare):
            if child is not None:
                child.kill("the grading run ended.")
        self.child = self.spare = None
        stats = os.environ.get(ENV_STATS)
        if stats:  # benchmarks/bench_sealed.py: how many round trips, how many learner processes
            with contextlib.suppress(OSError):
                Path(stats).write_text(json.dumps({"requests": dict(self.counts), "children": self.children}))


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def enabled(config) -> bool:
    option = config.getoption("--sealed", default=None)
    if option is not None:
        return bool(option)
    return os.environ.get(ENV_SEALED, "") not in ("", "0")


def open_shared_temp(factory) -> None:
    """Let the sandbox user into pytest's temporary folders: graders share files with the learner's code."""
    original_base = factory.getbasetemp
    original_mktemp = factory.mktemp

    def getbasetemp():
        base = original_base()
        with contextlib.suppress(OSError):
            base.chmod(0o711)
        return base

    def mktemp(basename: str, numbered: bool = True):
        folder = original_mktemp(basename, numbered)
        with contextlib.suppress(OSError):
            folder.chmod(0o777)
        return folder

    factory.getbasetemp = getbasetemp
    factory.mktemp = mktemp


_active: Session | None = None  # the sealed grading of this process (set by SealedPlugin)


def sandbox_uid() -> int | None:
    """The user id the learner's code and programs run as in this run; None: the grader's own."""
    session = _active
    return session.sandbox_user()[0] if session is not None else None


def in_learner_process(value):
    """``value`` as an object the learner's code and the grader share, for a check that changes
    it after handing it over (a caller reusing its DataFrame once the learner's class has it).

    Outside sealed grading: ``value`` itself. Under sealed grading the learner's process
    holds only copies of what the grader sends, so a change made here afterwards would not
    reach it: ``value`` is sent once, kept there, and a proxy of it comes back. Pass the proxy
    to the learner's code (it gets that very object, not a copy) and change it through the
    proxy: ``frame["x"] += 5.0`` reads the column back, adds here, and sets it there.
    """
    session = _active
    if session is None:
        return value
    return session.current().request("hold", value)


def learner_getenv(name: str) -> str | None:
    """The environment variable ``name`` in the process the learner's code runs in (None: unset).

    For a check that the learner's code leaves the environment as it found it. Outside
    sealed grading that is the grader's own ``os.environ``. Under sealed grading the learner's
    code changes its own process's environment, which the grader's ``os.environ`` never sees,
    so the value is read there (the grader's own changes reach that process before each
    request, as for any call).
    """
    session = _active
    if session is None:
        return os.environ.get(name)
    return session.current().request("call", os.getenv, (name,), {})


def share_with_learner(*files: str | os.PathLike) -> None:
    """Let the learner's process import these modules of the graders' by their names.

    For a helper the learner's code needs without knowing it, such as the class of a model
    the graders pickled for the learner's code to load (``joblib.load`` imports its module).
    Under sealed grading the learner's process cannot see graders/: each file is copied into
    that process's own folder, which goes on its ``sys.path`` (this process's and every later
    one's, before its next request). Outside sealed grading, nothing to do: the learner's
    code runs in the grader's process, which imports them already. Share only helpers that
    reveal no expected value: the learner's code can read them.
    """
    session = _active
    if session is None:
        return
    for file in files:
        path = Path(file)
        session.shared[path.name] = path.read_bytes()
    session.shared_version += 1


def hand_to_learner(tree: str | os.PathLike) -> None:
    """Make a folder the graders built the learner's own, as if its code had made it.

    For a check that prepares files the learner's code then changes (a copy of a DVC cache,
    whose folders ``shutil.copytree`` copies as read-only to others). Under sealed grading
    as root, the tree is given to the sandbox user; otherwise there is nothing to do: the
    learner's code runs as the grader's own user.
    """
    session = _active
    uid, gid = session.sandbox_user() if session is not None else (None, None)
    if uid is not None and not _inside_folder(os.path.realpath(tree), paths.root().resolve()):
        _chown_tree(tree, uid, gid)


def _chown_tree(tree: str | os.PathLike, uid: int, gid: int | None) -> None:
    gid = -1 if gid is None else gid
    for folder, _dirs, files in os.walk(tree):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def learner_program(argv: list[str], *, cwd: str | os.PathLike | None = None,
                    env: dict[str, str] | None = None, reads: tuple = ()) -> tuple[list[str], str | None]:
    """The command line and working folder for a learner's whole program (a uvicorn app, ``dvc repro``).

    Graders and fixtures start such programs through this one helper (LocalProcess with
    ``learner=True``, ``serve_asgi``, ``run_learner_program``). Outside sealed grading, or
    when the grader does not run as root, the program runs as it is: ``(argv, cwd)``.
    Under sealed grading as root, it runs through ``python -m workbook.sealed_child --exec``
    as the sandbox user (Session.sandbox_user), in a private mount namespace where the grader's
    folders and the report are hidden, with the child's resource limits. The folders it
    reads (its ``--app-dir``, ``PYTHONPATH``, ``reads``) are made readable to that user,
    its working folder (``cwd``, a fresh one when None) writable by it; nothing in the
    checkout changes owner. The working folder of a program started without one is not
    removed here: it sits in the system's temporary folder, like the services' data.
    """
    session = _active
    uid, gid = session.sandbox_user() if session is not None else (None, None)
    if uid is None:
        return list(argv), (str(cwd) if cwd is not None else None)
    root = paths.root().resolve()
    if cwd is None:
        cwd = tempfile.mkdtemp(prefix="workbook-learner-program-")
    cwd = os.path.realpath(cwd)
    readable = [str(r) for r in reads]
    for flag in ("--app-dir", "--chdir"):
        if flag in argv[:-1]:
            readable.append(argv[argv.index(flag) + 1])
    readable += [p for p in (env or {}).get("PYTHONPATH", "").split(os.pathsep) if p]
    readable = [os.path.realpath(p) for p in readable if os.path.exists(p)]
    for folder in readable:  # grader-made folders (0700): the sandbox user reads them
        if not _inside_folder(folder, root):
            with contextlib.suppress(OSError):
                mode = os.stat(folder).st_mode
                os.chmod(folder, mode | 0o055 if os.path.isdir(folder) else mode | 0o044)
    if not _inside_folder(cwd, root):
        _chown_tree(cwd, uid, gid)
    settings = {
        "uid": uid, "gid": gid, "cwd": cwd, "home": cwd,
        "hide": session.hidden_folders(), "keep": sorted({*readable, cwd}),
        "memory": session.limits.memory, "cpu": session.limits.cpu, "fsize": session.limits.fsize,
        "nproc": None,  # a server's threads count too: the child's limit would starve it
    }
    command = [sys.executable, "-I", "-m", "workbook.sealed_child", "--exec", json.dumps(settings), "--", *argv]
    return command, cwd


def _inside_folder(path: str, folder: Path) -> bool:
    with contextlib.suppress(ValueError):
        return os.path.commonpath([path, str(folder)]) == str(folder)
    return False


def run_learner_program(argv: list[str], *, cwd=None, env: dict[str, str] | None = None,
                        reads: tuple = (), **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` of a learner's whole program, through ``learner_program``."""
    command, workdir = learner_program(argv, cwd=cwd, env=env, reads=reads)
    return subprocess.run(command, cwd=workdir, env=env, **kwargs)


_early: Session | None = None  # the session whose first learner process ``prefork`` started


def prefork(early_config) -> None:
    """Fork the first learner process from the grader before any grader or conftest is imported.

    Called by workbook.plugin's ``pytest_load_initial_conftests`` (first): at that point the
    grader's process holds pytest and the workbook package only. It imports numpy, pandas and
    scipy.stats (which the graders import anyway), then forks: the learner's process starts
    with them already imported instead of importing them again in a fresh interpreter (about
    a second of CPU, a quarter of a ce4_2 grading run). The fork then sets itself up as a
    spawned one would (sealed_child.forked). Later learner processes (after one was stopped)
    are spawned: by then the grader's memory holds the graders.
    """
    global _early
    options = early_config.known_args_namespace
    option = getattr(options, "sealed", None)
    wanted = bool(option) if option is not None else os.environ.get(ENV_SEALED, "") not in ("", "0")
    if (not wanted or _early is not None or os.environ.get(ENV_FORK, "1") == "0"
            or not hasattr(os, "fork") or getattr(options, "collectonly", False)
            or getattr(options, "help", False) or getattr(options, "version", False)):
        return
    if getattr(options, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the xdist controller runs no check; its workers fork their own
    for name in (*PRELOAD, *solution_imports(getattr(options, "file_or_dir", None) or [])):
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    session = Session()
    # A fork copies only the forking thread: with another thread running (one a preloaded
    # library started) a lock it holds would stay held in the fork. Spawn instead, now.
    fork = threading.active_count() == 1
    try:
        session.child = Child(session, fork=fork)
    except OSError:
        return
    session.children = 1
    _early = session


def solution_imports(args: list[str]) -> list[str]:
    """Library modules the reference solutions of the graded exercises import (trusted files).

    Imported by the grader before it forks the learner's process, so that the learner's
    process has them too (a learner's file mostly imports what the solution does). Only
    modules of the standard library and the installed packages, never the checkout's.
    """
    exercises = set()
    for arg in args:
        parts = Path(str(arg).split("::")[0]).parts
        if "graders" in parts[:-1]:
            exercises.add(parts[len(parts) - 1 - parts[::-1].index("graders") + 1])
    found: list[str] = []
    for exercise in sorted(exercises):
        folder = paths.root() / "solutions" / exercise
        for source in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            with contextlib.suppress(OSError, SyntaxError, ValueError):
                tree = ast.parse(source.read_text(encoding="utf-8"))
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found += [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        found.append(node.module)
                        found += [f"{node.module}.{alias.name}" for alias in node.names]
    wanted = []
    for name in dict.fromkeys(found):
        top = name.split(".")[0]
        if top in sys.modules and name in sys.modules:
            continue
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(top)
            if spec is not None and (spec.origin in ("built-in", "frozen") or _library_file(spec.origin)
                                     and not str(spec.origin).startswith(str(paths.PACKAGE_DIR))):
                wanted.append(name)
    return wanted


def _adopt_early() -> Session | None:
    global _early
    session, _early = _early, None
    return session


class SealedPlugin:
    """Registered by workbook.plugin under --sealed: owns the session's learner process."""

    def __init__(self, config):
        self.config = config
        global _active
        self.session = _active = _adopt_early() or Session()
        self.own_base: Path | None = None
        self.drops_privileges = self.session.sandbox_user()[0] is not None
        if self.drops_privileges:
            # git, run by the graders as root in folders the learner's process made, would
            # refuse them as "dubious ownership" (see CHILD_GIT_SYSTEM).
            # Folders the graders make (a clone, a sandbox) are the learner's to write in too.
            os.umask(0)
            sudo_uid = {"SUDO_UID": str(self.session.sandbox_user()[0])}
            os.environ.update(sudo_uid)
            self.session.baseline.update(sudo_uid)
            if not config.option.basetemp:
                # pytest's own temporary root (/tmp/pytest-of-root) is private and re-made
                # private by every run; the learner's process needs to reach the checks' folders.
                self.own_base = Path(tempfile.mkdtemp(prefix="workbook-sealed-pytest-"))
                self.own_base.chmod(0o711)
                config.option.basetemp = str(self.own_base / "tmp")

    def pytest_sessionstart(self, session) -> None:
        from workbook.strays import make_subreaper

        make_subreaper()  # a daemon the learner's code leaves becomes ours to stop
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None and self.drops_privileges:
            open_shared_temp(factory)

    def pytest_collection_finish(self, session) -> None:
        """Start the learner's process while the first checks set up (it imports numpy and pandas)."""
        if any("load_module" in getattr(item, "fixturenames", ()) for item in session.items):
            with contextlib.suppress(Exception):
                self.session.current()

    def pytest_report_header(self, config) -> list[str]:
        user, _ = self.session.sandbox_user()
        who = ("as the same user" if user is None else f"as {self.session.limits.user}"
               if not self.session.limits.own_uid else f"as a user id of its own ({user}, in nobody's group)")
        return [f"workbook: sealed grading: the learner's code runs in a separate process {who}"]

    def pytest_unconfigure(self, config) -> None:
        global _active
        if _active is self.session:
            _active = None
        self.session.close()
        if self.own_base is not None:
            shutil.rmtree(self.own_base, ignore_errors=True)
