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


class Server:
    def __init__(self, rfd: int, wfd: int):
        self.rfile = os.fdopen(rfd, "rb", buffering=0)
        self.wfile = os.fdopen(wfd, "wb", buffering=0)
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> reference id, while the object is kept
        self.next_id = 1
        self.home = os.getcwd()

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
        if is_plain(obj) or is_library_global(obj):
            return None
        return ("r", self.keep(obj), descriptor(obj))

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


def descriptor(obj) -> dict:
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

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE, MS_REC = 1, 2, 4, 8, 4096, 8192, 16384


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


def expose(needed: list[str], staging: str, uid: int, gid: int) -> None:
    """Let the unprivileged user reach ``needed`` folders (the interpreter under /root, say).

    In the private mount namespace, a folder others cannot pass through is replaced by an
    empty tmpfs holding only the needed entries (bind mounts of the originals): the user
    reaches the interpreter, and sees nothing else of that folder.
    """
    for _ in range(8):  # nested blocked folders are handled one level per round
        blocked: dict[str, set[str]] = {}
        for path in needed:
            real = os.path.realpath(path)
            ancestor = _blocked_ancestor(real, uid, gid)
            if ancestor is not None and ancestor != real:
                rest = pathlib.PurePath(real).relative_to(ancestor).parts
                blocked.setdefault(ancestor, set()).add(rest[0])
        if not blocked:
            return
        for ancestor, names in sorted(blocked.items()):
            moved = []
            for number, name in enumerate(sorted(names)):
                spot = os.path.join(staging, f"{len(os.listdir(staging))}-{number}")
                os.mkdir(spot)
                source = os.path.join(ancestor, name)
                if os.path.isdir(source):
                    _mount(source, spot, None, MS_BIND | MS_REC)
                    moved.append((spot, name))
            _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0711")
            for spot, name in moved:
                os.mkdir(os.path.join(ancestor, name), 0o755)
                _mount(spot, os.path.join(ancestor, name), None, MS_MOVE)


def hide(paths: list[str]) -> list[str]:
    """Mount an empty read-only tmpfs over each folder (needs a private mount namespace)."""
    hidden = []
    libc = ctypes.CDLL(None, use_errno=True)
    for path in paths:
        if not os.path.isdir(path):
            continue
        flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        if libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags, b"size=4k,mode=0555") == 0:
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


def main() -> None:
    settings = json.loads(os.environ.pop("WORKBOOK_SEALED_SETTINGS"))
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
    sys.argv = ["sealed"]
    server = Server(rfd, wfd)
    server.send(("ready", os.getpid(), os.getuid()))
    server.serve()


if __name__ == "__main__":
    main()
    os._exit(0)
