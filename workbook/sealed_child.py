"""The process a sealed grading run imports the learner's module in (``python -m workbook.sealed_child``).

It starts trusted: it reads its settings, hides the grader's folders from itself (a
private mount namespace, when started under ``unshare --mount``), sets its resource
limits, drops to an unprivileged user when it runs as root, and only then imports the
learner's file. From there on nothing it says is trusted: the grader reads its replies
with an allow-list unpickler (workbook/sealed.py) and keeps every assertion itself.

Protocol: frames of an 8-byte big-endian length and a pickle, on two pipes. The grader
sends requests, the child answers ``("ok", value)`` or ``("error", description)``; while a
request runs, the child may ask the grader to call one of the grader's callables
(``("callback", id, args, kwargs)``), answered by ``("cb_ok", value)`` or ``("cb_error", …)``.
Values that are plain data travel by value; anything else stays here and travels as a
reference ``("r", id, descriptor)`` that the grader turns into a proxy.
"""

from __future__ import annotations

import builtins
import collections.abc as abc
import contextlib
import ctypes
import dataclasses
import datetime
import decimal
import io
import json
import operator
import os
import pathlib
import pickle
import pwd
import resource
import signal
import socket
import struct
import sys
import traceback
import uuid

HEADER = struct.Struct(">Q")
MAX_FRAME = 512 * 1024 * 1024
MAX_TEXT = 2000
SANDBOX_NAME = "learner"  # $USER of a sandbox user id that has no passwd entry

OPS = {
    "len": len, "iter": iter, "next": next, "bool": bool, "str": str, "repr": repr,
    "float": float, "int": int, "index": operator.index, "hash": hash, "dir": dir,
    "format": format, "getitem": operator.getitem, "setitem": operator.setitem,
    "delitem": operator.delitem, "contains": operator.contains, "eq": operator.eq,
    "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "neg": operator.neg, "abs": abs, "round": round, "vars": vars,
}

_plain_types: set[type] | None = None


def plain_types() -> set[type]:
    """Types sent by value: builtins and the numpy/pandas data types the grader can read back."""
    global _plain_types
    if _plain_types is None:
        found: set[type] = {
            type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set,
            frozenset, range, slice, type(Ellipsis), datetime.date, datetime.datetime,
            datetime.time, datetime.timedelta, datetime.timezone, decimal.Decimal,
            pathlib.PosixPath, pathlib.PurePosixPath, uuid.UUID, pickle.PickleBuffer,
        }
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            found.add(numpy.ndarray)
        pandas = sys.modules.get("pandas")
        if pandas is not None:
            found.update({
                pandas.DataFrame, pandas.Series, pandas.Index, pandas.RangeIndex, pandas.MultiIndex,
                pandas.DatetimeIndex, pandas.TimedeltaIndex, pandas.CategoricalIndex,
                pandas.Categorical, pandas.Timestamp, pandas.Timedelta, type(pandas.NaT),
                type(pandas.NA), pandas.Period, pandas.Interval,
            })
        _plain_types = found
    return _plain_types


_library_places: tuple[str, ...] | None = None


def is_library_global(obj) -> bool:
    """A class or function of an installed library, pickled by name (the grader checks the name)."""
    global _library_places
    if not (isinstance(obj, type) or callable(obj)):
        return False
    # Pickled by name only if its name finds it: an instance (a callable one too, an ASGI app)
    # is not, and becomes a proxy.
    name = getattr(obj, "__qualname__", None)
    if not isinstance(name, str):
        return False
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    filename = getattr(module, "__file__", None) if module is not None else None
    if module is builtins:
        return True
    if not filename:
        return False
    if _library_places is None:
        import sysconfig

        found = sysconfig.get_paths()
        _library_places = tuple({found["stdlib"], found["purelib"], found["platlib"]})
    return filename.startswith(_library_places)


def is_plain(obj) -> bool:
    """Sent by value: builtins, dates, paths, and anything of numpy, pandas and pyarrow.

    The grader reads those back with an allow-list; a library object outside it (a pandas
    GroupBy) fails that one request with a sentence.
    """
    kind = type(obj)
    if kind in plain_types():
        return True
    module = getattr(kind, "__module__", "") or ""
    return module.split(".")[0] in ("numpy", "pandas", "pyarrow")


class Callback:
    """A callable of the grader's, passed to the learner's code: calling it asks the grader."""

    def __init__(self, server: Server, ident: int):
        self._server, self._id = server, ident

    def __call__(self, *args, **kwargs):
        return self._server.call_back(self._id, args, kwargs)

    def __repr__(self) -> str:
        return f"<grader callable #{self._id}>"


class Held:
    """A value the grader asked this process to keep: sent back as a reference, never by value."""

    def __init__(self, value):
        self.value = value


class Server:
    def __init__(self, rfd: int, wfd: int):
        self.rfile = os.fdopen(rfd, "rb", buffering=0)
        self.wfile = os.fdopen(wfd, "wb", buffering=0)
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> reference id, while the object is kept
        self.next_id = 1
        self.home = os.getcwd()
        self.snapping: set[int] = set()
        self.snap_budget = SNAPSHOT_BUDGET

    # -- frames --------------------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.rfile.read(left)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def receive(self):
        (size,) = HEADER.unpack(self._read_exact(HEADER.size))
        if size > MAX_FRAME:
            raise EOFError
        data = self._read_exact(size)
        unpickler = pickle.Unpickler(io.BytesIO(data))
        unpickler.persistent_load = self._persistent_load
        return unpickler.load()

    def send(self, message) -> None:
        self.snapping, self.snap_budget = set(), SNAPSHOT_BUDGET
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=5)
        pickler.persistent_id = self._persistent_id
        try:
            pickler.dump(message)
        except Exception as exc:
            buffer = io.BytesIO()
            pickler = pickle.Pickler(buffer, protocol=5)
            pickler.persistent_id = self._persistent_id
            pickler.dump(("error", describe(exc)))
        data = buffer.getvalue()
        self.wfile.write(HEADER.pack(len(data)) + data)

    def _persistent_load(self, pid):
        kind, ident = pid
        if kind == "r":
            return self.objects[ident]
        if kind == "c":
            return Callback(self, ident)
        raise pickle.UnpicklingError(f"unknown reference {kind!r}")

    def _persistent_id(self, obj):
        if isinstance(obj, Callback):
            return ("c", obj._id)
        if type(obj) is Held:
            return ("r", self.keep(obj.value), descriptor(obj.value))
        if is_plain(obj) or is_library_global(obj):
            return None
        return ("r", self.keep(obj), descriptor(obj, self.snapshot(obj)))

    def snapshot(self, obj) -> dict | None:
        """The object's plain instance attributes as they are now, sent along with its reference.

        The grader reads them from this copy, without a round trip, until its next request
        (which may change them). Only what reading the attribute would return without running
        any of the learner's code: entries of the instance's ``__dict__`` that no data
        descriptor (a property) of its class shadows, on classes that do not override
        ``__getattribute__``. Only scalars, references to other objects, and small flat
        lists, tuples, sets and dicts of those: never a large array or frame.
        """
        kind = type(obj)
        if (self.snap_budget <= 0 or id(obj) in self.snapping or isinstance(obj, type)
                or kind.__getattribute__ is not object.__getattribute__):
            return None
        try:
            state = object.__getattribute__(obj, "__dict__")
        except Exception:  # noqa: BLE001 - no __dict__ (slots), or a learner's property named so
            return None
        if type(state) is not dict:
            return None
        self.snapping.add(id(obj))
        shadowed = data_descriptors(kind)
        found = {}
        for name, value in list(state.items())[:SNAPSHOT_FIELDS]:
            if type(name) is str and name not in shadowed and self.snappable(value, 1):
                found[name] = value
        return found or None

    def snappable(self, value, depth: int) -> bool:
        kind = type(value)
        if kind in SCALARS:
            self.snap_budget -= 1
            return kind is not str or len(value) <= SNAPSHOT_TEXT
        module = getattr(kind, "__module__", "") or ""
        if module == "numpy" and getattr(value, "ndim", None) == 0 and getattr(value, "dtype", None) is not None \
                and value.dtype.kind in "biufcmM":
            self.snap_budget -= 1
            return True  # a numpy scalar
        if kind in (list, tuple, set, frozenset, dict):
            if depth > 1 or len(value) > SNAPSHOT_ITEMS:
                return False
            self.snap_budget -= len(value)
            if kind is dict:
                return all(type(k) in SCALARS and self.snappable(v, depth + 1) for k, v in value.items())
            return all(self.snappable(v, depth + 1) for v in value)
        # Another object of the learner's: a reference (with its own snapshot, budget allowing).
        return not (is_plain(value) or is_library_global(value) or isinstance(value, (type, Callback)))

    def keep(self, obj) -> int:
        ident = self.ids.get(id(obj))
        if ident is not None and self.objects.get(ident) is obj:
            return ident
        ident = self.next_id
        self.next_id += 1
        self.objects[ident] = obj
        self.ids[id(obj)] = ident
        return ident

    # -- requests ------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                message = self.receive()
            except EOFError:
                return
            self.handle(message)

    def handle(self, message) -> None:
        op, args = message[0], message[1:]
        if op == "release":
            for ident in args[0]:
                obj = self.objects.pop(ident, None)
                if obj is not None and self.ids.get(id(obj)) == ident:
                    del self.ids[id(obj)]
            return
        try:
            value = self.run(op, *args)
        except BaseException as exc:  # the learner's exception, sys.exit included
            self.send(("error", describe(exc)))
            return
        self.send(("ok", value))

    def run(self, op: str, *args):
        if op == "context":
            cwd, env_set, env_unset = args
            os.environ.update(env_set)
            for name in env_unset:
                os.environ.pop(name, None)
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir(self.home)
            return None
        if op == "load":
            from workbook.loader import load_exercise

            exercise_id, module, target = args
            return load_exercise(exercise_id, module, target)
        if op == "getattr":
            obj, name = args
            return _lists(getattr(obj, name))
        if op == "setattr":
            obj, name, value = args
            setattr(obj, name, value)
            return None
        if op == "delattr":
            obj, name = args
            delattr(obj, name)
            return None
        if op == "call":
            function, call_args, call_kwargs = args
            return _lists(function(*call_args, **call_kwargs))
        if op == "op":
            name, operands = args
            if name == "iter":
                return iter(operands[0])
            return _lists(OPS[name](*operands))
        if op == "path":  # a folder of the graders' shared modules (sealed.share_with_learner)
            (folder,) = args
            if folder not in sys.path:
                sys.path.append(folder)
            import importlib

            importlib.invalidate_caches()
            return None
        if op == "hold":  # kept here, sent back as a reference even when plain (sealed.in_learner_process)
            return Held(args[0])
        if op == "ping":
            return "pong"
        raise ValueError(f"unknown request {op!r}")

    def call_back(self, ident: int, args, kwargs):
        """Ask the grader to call its callable ``ident``; serve nested requests meanwhile."""
        self.send(("callback", ident, args, kwargs))
        while True:
            message = self.receive()
            if message[0] == "cb_ok":
                return message[1]
            if message[0] == "cb_error":
                raise rebuild(message[1])
            self.handle(message)


def _lists(value):
    if type(value) in (type({}.keys()), type({}.values()), type({}.items())):
        return list(value)
    return value


SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
SNAPSHOT_BUDGET = 4000  # values sent in snapshots, per reply
SNAPSHOT_FIELDS = 256  # attributes per object
SNAPSHOT_ITEMS = 256  # items of one list, tuple, set or dict
SNAPSHOT_TEXT = 4096  # characters of one text


_shadowed: dict[type, frozenset] = {}


def data_descriptors(kind: type) -> frozenset:
    """Names a class (or a base) binds to a data descriptor (a property): those read through code."""
    found = _shadowed.get(kind)
    if found is None:
        names = set()
        for klass in kind.__mro__:
            for name, attr in vars(klass).items():
                kind_of_attr = type(attr)
                if hasattr(kind_of_attr, "__set__") or hasattr(kind_of_attr, "__delete__"):
                    names.add(name)
        found = _shadowed[kind] = frozenset(names)
    return found


def descriptor(obj, snapshot: dict | None = None) -> dict:
    kind = type(obj)
    flags = []
    with contextlib.suppress(Exception):
        if isinstance(obj, abc.Mapping):
            flags.append("mapping")
        elif isinstance(obj, abc.Sequence) and not isinstance(obj, (str, bytes)):
            flags.append("sequence")
        if isinstance(obj, abc.Iterator):
            flags.append("iterator")
        if isinstance(obj, type):
            flags.append("type")
    fields = None
    with contextlib.suppress(Exception):
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = [f.name for f in dataclasses.fields(obj)]
    return {
        "type": _text(getattr(kind, "__qualname__", "object"), 200),
        "module": _text(getattr(kind, "__module__", ""), 200),
        "flags": flags,
        "fields": fields,
        "snapshot": snapshot,
    }


def _text(value, limit: int = MAX_TEXT) -> str:
    try:
        text = value if isinstance(value, str) else str(value)
    except BaseException:  # a learner's __str__ that raises
        text = "<unprintable>"
    return text if len(text) <= limit else text[:limit] + " …"


def describe(exc: BaseException, depth: int = 0) -> dict:
    """An exception as plain data: its type, builtin bases, message, learner frames, cause."""
    kind = type(exc)
    bases = [k.__name__ for k in kind.__mro__
             if getattr(builtins, k.__name__, None) is k and issubclass(k, BaseException)]
    frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(exc.__traceback__)][-20:]
    cause = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    exit_code = None
    if isinstance(exc, SystemExit):
        exit_code = exc.code if isinstance(exc.code, int) else _text(exc.code, 200)
    return {
        "type": _text(kind.__qualname__, 200),
        "module": _text(kind.__module__, 200),
        "bases": bases,
        "message": _text(exc),
        "frames": frames,
        "exit_code": exit_code,
        "cause": describe(cause, depth + 1) if cause is not None and depth < 4 else None,
    }


def rebuild(description: dict) -> BaseException:
    """An exception the grader described (a callback of its raised): its builtin kind, its message."""
    for name in description.get("bases", []):
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            return kind(description.get("message", ""))
    return RuntimeError(description.get("message", ""))


# -- start-up: hide, limit, drop privileges -------------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 1, 2, 4, 8, 32, 4096, 8192, 16384


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                  data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _blocked_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The shallowest folder above ``path`` that the user ``uid`` cannot pass through."""
    parts = pathlib.PurePath(path).parts
    for depth in range(2, len(parts) + 1):
        folder = str(pathlib.PurePath(*parts[:depth]))
        info = os.stat(folder)
        bit = 0o100 if info.st_uid == uid else 0o010 if info.st_gid == gid else 0o001
        if not info.st_mode & bit:
            return folder
    return None


def expose(needed: list[str], staging: str | None, uid: int, gid: int) -> None:
    """Let the unprivileged user reach ``needed`` folders (the interpreter under /root, say).

    In the private mount namespace, a folder others cannot pass through is replaced by an
    empty tmpfs holding only the needed entries (bind mounts of the originals, reached
    through a handle opened before the tmpfs covered them): the user reaches the
    interpreter, and sees nothing else of that folder. ``staging`` is not used any more.
    """
    for _ in range(8):  # nested blocked folders are handled one level per round
        blocked: dict[str, set[str]] = {}
        for path in needed:
            real = os.path.realpath(path)
            if not os.path.exists(real):
                continue
            ancestor = _blocked_ancestor(real, uid, gid)
            if ancestor is not None and ancestor != real:
                rest = pathlib.PurePath(real).relative_to(ancestor).parts
                blocked.setdefault(ancestor, set()).add(rest[0])
        if not blocked:
            return
        for ancestor, names in sorted(blocked.items()):
            handles = [(name, os.open(os.path.join(ancestor, name), os.O_PATH))
                       for name in sorted(names) if os.path.isdir(os.path.join(ancestor, name))]
            _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0711")
            for name, handle in handles:
                os.mkdir(os.path.join(ancestor, name), 0o755)
                _mount(f"/proc/self/fd/{handle}", os.path.join(ancestor, name), None, MS_BIND | MS_REC)
                os.close(handle)


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder


def hide(paths: list[str], keep: list[str] = ()) -> list[str]:
    """Mount an empty read-only tmpfs over each folder (needs a private mount namespace).

    A ``keep`` path inside a hidden folder stays where it is (a bind mount of itself on the
    empty folder): a learner's program reads its own files in solutions/, and nothing else there.
    """
    hidden = []
    libc = ctypes.CDLL(None, use_errno=True)
    flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for path in paths:
        if not os.path.isdir(path):
            continue
        kept = [k for k in (os.path.realpath(k) for k in keep) if os.path.exists(k)
                and _inside(k, os.path.realpath(path))]
        if not kept:
            if libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=4k,mode=0555") == 0:
                hidden.append(path)
            continue
        handles = [(k, os.path.isdir(k), os.open(k, os.O_PATH)) for k in kept]
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755")
        for kept_path, is_dir, handle in handles:
            if is_dir:
                os.makedirs(kept_path, 0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(kept_path), 0o755, exist_ok=True)
                open(kept_path, "a").close()  # noqa: SIM115 - the mount point of a file
            _mount(f"/proc/self/fd/{handle}", kept_path, None, MS_BIND | MS_REC)
            os.close(handle)
        _mount("tmpfs", path, "tmpfs", MS_REMOUNT | flags, "size=64k,mode=0755")
        hidden.append(path)
    return hidden


def limit(settings: dict) -> None:
    def set_limit(which, value):
        if value is None:
            return
        soft, hard = resource.getrlimit(which)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))

    set_limit(resource.RLIMIT_AS, settings.get("memory"))
    set_limit(resource.RLIMIT_CPU, settings.get("cpu"))
    set_limit(resource.RLIMIT_FSIZE, settings.get("fsize"))
    set_limit(resource.RLIMIT_NPROC, settings.get("nproc"))
    set_limit(resource.RLIMIT_CORE, 0)
    # A file past RLIMIT_FSIZE makes write() fail (OSError) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def drop_privileges(uid: int | None, gid: int | None) -> None:
    if uid is None or os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid if gid is not None else uid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("could not drop root privileges")
    try:
        pwd.getpwuid(uid)
    except KeyError:  # a user id of the run's own (sealed.Session.sandbox_user): no passwd entry
        os.environ["USER"] = os.environ["LOGNAME"] = SANDBOX_NAME  # getpass.getuser(), git, MLflow


def guard_network() -> None:
    """Python sockets of the learner's code may reach loopback only (an audit hook)."""

    def loopback(address) -> bool:
        if isinstance(address, tuple) and address:
            host = str(address[0])
            return host in ("localhost", "::1", "") or host.startswith("127.") or host == "0.0.0.0"
        return True  # AF_UNIX paths and the like

    def hook(event, args):
        if event in ("socket.connect", "socket.sendto", "socket.bind") and len(args) >= 2:
            sock, address = args[0], args[1]
            family = getattr(sock, "family", None)
            if family in (socket.AF_INET, socket.AF_INET6) and not loopback(address):
                raise PermissionError(
                    f"sealed grading: network access beyond loopback is refused ({address!r})")
        elif event == "socket.getaddrinfo" and args:
            host = args[0]
            if isinstance(host, bytes):
                host = host.decode(errors="replace")
            if host not in (None, "", "localhost", "::1") and not str(host).startswith("127."):
                raise PermissionError(
                    f"sealed grading: network access beyond loopback is refused ({host!r})")

    sys.addaudithook(hook)


def setup_and_serve(settings: dict) -> None:
    """Hide the grader's folders, set the limits, drop privileges, then serve the grader."""
    rfd, wfd = settings["rfd"], settings["wfd"]
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    if settings.get("hide") and os.getuid() == 0:
        hide(settings["hide"])
        needed = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(__file__)),
                  settings["home"], *settings.get("reach", [])]
        staging = os.path.join(os.path.dirname(settings["home"]), "mnt")
        os.makedirs(staging, exist_ok=True)
        expose(needed, staging, settings["uid"], settings["gid"])
    for name in settings.get("preload", []):
        with contextlib.suppress(Exception):
            __import__(name)
    limit(settings)
    drop_privileges(settings.get("uid"), settings.get("gid"))
    os.chdir(settings["home"])
    os.environ["HOME"] = settings["home"]
    os.environ["TMPDIR"] = settings["tmp"]
    import tempfile

    tempfile.tempdir = settings["tmp"]
    if settings.get("network_guard", True):
        guard_network()
    cache_compiled_sources()
    sys.argv = ["sealed"]
    server = Server(rfd, wfd)
    server.send(("ready", os.getpid(), os.getuid()))
    server.serve()


def cache_compiled_sources() -> None:
    """Compile a source once per process: every check loads the learner's file afresh.

    No bytecode is written here (nothing of the child's may land next to the sources), so
    without this each of a grader's checks would compile the learner's file again. Keyed by
    path and content: an edited file is compiled again.
    """
    from importlib.machinery import SourceFileLoader

    original = SourceFileLoader.source_to_code
    compiled: dict[tuple[str, bytes], object] = {}

    def source_to_code(self, data, path, *, _optimize=-1):
        key = (str(path), bytes(data))
        code = compiled.get(key)
        if code is None:
            code = original(self, data, path, _optimize=_optimize)
            if len(compiled) < 256:
                compiled[key] = code
        return code

    SourceFileLoader.source_to_code = source_to_code


def main() -> None:
    settings = json.loads(os.environ.pop("WORKBOOK_SEALED_SETTINGS"))
    setup_and_serve(settings)


# -- started as a fork of the grader (workbook.sealed.prefork) -------------------------------

CLONE_NEWNS = 0x00020000
MS_PRIVATE = 1 << 18


def _stat_fields() -> list[bytes]:
    """/proc/self/stat from field 3 on (after the command name, which may hold spaces)."""
    with open("/proc/self/stat", "rb") as stat:
        data = stat.read()
    return data[data.rindex(b")") + 2:].split()


def _rewrite_block(start: int, end: int, text: bytes = b"") -> None:
    """Overwrite the process's original argument or environment strings (what /proc shows)."""
    if not 0 < start < end:
        return
    text = text[: end - start - 1]
    ctypes.memset(start, 0, end - start)
    ctypes.memmove(start, text, len(text))


def become_child(env: dict[str, str], output: str, command: list[str], keep: set[int]) -> None:
    """Turn a fork of the grader into a process like a freshly started child.

    Own session; stdin from /dev/null, stdout and stderr to the output log; every other
    file of the grader's closed; default signal handling; only the child's environment (the
    grader's original one zeroed where /proc shows it); the command line of a spawned child;
    the module search path of ``python -I``, without pytest's import hooks.
    """
    import gc

    # The grader's objects are never collected here: a collection would touch (and so copy)
    # every page of the fork, and could close, by number, a file of the grader's whose number
    # the child reuses.
    gc.freeze()
    os.setsid()
    out = os.open(output, os.O_WRONLY | os.O_APPEND)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    import faulthandler

    faulthandler.disable()
    signal.setitimer(signal.ITIMER_REAL, 0)
    for number in (signal.SIGTERM, signal.SIGALRM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGUSR2, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    fields = _stat_fields()
    # Fields 48-51 of /proc/PID/stat: arg_start, arg_end, env_start, env_end.
    arg_start, arg_end, env_start, env_end = (int(f) for f in fields[45:49])
    _rewrite_block(env_start, env_end)
    _rewrite_block(arg_start, arg_end, b"\0".join(c.encode() for c in command) + b"\0")
    sys.argv = ["sealed"]
    places = tuple({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix)})
    sys.path[:] = [p for p in sys.path if p and os.path.realpath(p).startswith(places)]
    sys.path_importer_cache.clear()
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not (getattr(type(f), "__module__", "") or "").startswith(("_pytest", "pytest"))]
    sys.dont_write_bytecode = True


def private_mounts() -> None:
    """``unshare --mount --propagation private``: mounts made from here on stay in this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNS): {os.strerror(errno)}")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)


def forked(settings: dict, env: dict[str, str], output: str, command: list[str]) -> None:
    """The body of a learner process forked from the grader (workbook.sealed.prefork)."""
    become_child(env, output, command, {settings["rfd"], settings["wfd"]})
    if settings.get("hide") and os.getuid() == 0:
        private_mounts()
    setup_and_serve(settings)


# -- a learner's whole program (workbook.sealed.learner_program) ------------------------------


def exec_program(settings: dict, argv: list[str]) -> None:
    """Hide the grader's folders, set limits, drop to the sandbox user, then become ``argv``.

    ``python -m workbook.sealed_child --exec SETTINGS -- ARGV...``, started as root: a
    uvicorn app or ``dvc repro`` of the learner's runs like the sealed child's code, without
    sight of graders/, solutions/ (but its own folder), tests/ or the report, and without
    write access to anything of the grader's.
    """
    if os.getuid() == 0:
        private_mounts()
        hide(settings.get("hide", []), keep=settings.get("keep", []))
        needed = [sys.base_prefix, sys.prefix, *settings.get("keep", []), *settings.get("reach", [])]
        expose(needed, None, settings["uid"], settings["gid"])
    limit(settings)
    drop_privileges(settings.get("uid"), settings.get("gid"))
    with contextlib.suppress(OSError, AttributeError):  # a change of user cleared it: die with the grader
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.chdir(settings["cwd"])
    if settings.get("home"):
        os.environ["HOME"] = settings["home"]
    os.execvp(argv[0], argv)


def _exec_main(args: list[str]) -> None:
    settings = json.loads(args[0])
    if len(args) < 3 or args[1] != "--":
        raise SystemExit("usage: python -m workbook.sealed_child --exec SETTINGS -- ARGV...")
    exec_program(settings, args[2:])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--exec"]:
        _exec_main(sys.argv[2:])
    main()
    os._exit(0)
