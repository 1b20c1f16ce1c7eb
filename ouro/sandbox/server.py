"""The sandbox server: forks the processes that run methods, and never runs a method itself.

Runs in a ``python -I -S -B`` that ``Sandbox`` starts (host.py): ``host._BOOTSTRAP``
loads this module, child, check and protocol there by path, as a private package, so
that nothing else of ``ouro`` is imported. The server imports the allowed modules once,
builds what sandboxed code gets instead of them (``ModuleView``, restricted builtins, a
guarded importer), checks once with a probe process which restrictions hold on this
host, then forks prepared processes (child.py) when the host asks and hands it their
pipes.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import types
from typing import Any, Sequence

import numpy as np

from .check import ALLOWED_IMPORTS, _attribute_denied
from .child import _RESULT_FD, _address_space_bytes, _confine, _limit, _spare_main, _write_fd
from .protocol import SandboxLimits, _close_all

# Modules sandboxed code may hold at run time (as views): the importable ones, the
# package ``scipy`` (holding only its allowed subpackages) and public namespaces that
# the allowed modules expose as attributes. Any other module is left out of a view.
_VIEW_MODULES: frozenset[str] = ALLOWED_IMPORTS | {
    "scipy", "numpy.lib.scimath",
    "scipy.stats.mstats", "scipy.stats.qmc", "scipy.stats.distributions", "scipy.stats.contingency",
}

# numpy 2 loads these lazily; a jailed child cannot read files, so the server imports
# them up front together with numpy.
_ALWAYS_PRELOADED: tuple[str, ...] = (
    "math", "statistics", "numpy", "numpy.random", "numpy.linalg", "numpy.fft", "numpy.polynomial",
)

# Modules that numpy functions import on first call (np.median imports numpy.ma): the
# server imports them so that these functions work in a jail that cannot read files.
# They are not importable from sandboxed code.
_SUPPORT_MODULES: tuple[str, ...] = ("numpy.ma", "numpy.ma.core", "numpy.ma.extras")

_SAFE_BUILTIN_NAMES: tuple[str, ...] = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "classmethod", "complex", "dict", "dir", "divmod", "enumerate", "filter", "float",
    "format", "frozenset", "hash", "hex", "int", "isinstance", "issubclass", "iter", "len",
    "list", "map", "max", "memoryview", "min", "next", "object", "oct", "ord", "pow",
    "print", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted",
    "staticmethod", "str", "sum", "super", "tuple", "zip", "Ellipsis", "NotImplemented",
)

_KEEP_STATUSES = 256            # exit statuses the server remembers for the host to ask about
_NOBODY = 65534


class ModuleView(types.SimpleNamespace):
    """What sandboxed code gets instead of a module.

    It holds the module's public functions, classes and constants and views of allowed
    submodules, and nothing else: no other modules, no denied names, no raw-memory
    ndarray subclasses. Assigning to it changes only this method's own copy.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.__name__ = name

    def __getattr__(self, attribute: str) -> Any:
        raise AttributeError(f"module '{self.__name__}' has no attribute '{attribute}' in the sandbox")

    def __repr__(self) -> str:
        return f"<sandboxed module '{self.__name__}'>"


def _build_views() -> dict[str, ModuleView]:
    """Views of every allowed module imported so far, nested like the real modules."""
    views: dict[str, ModuleView] = {}

    def view_of(module: types.ModuleType) -> ModuleView:
        name = module.__name__
        if name in views:
            return views[name]
        view = views[name] = ModuleView(name)
        for key, value in list(vars(module).items()):
            if _attribute_denied(key):
                continue
            if isinstance(value, types.ModuleType):
                if value.__name__ in _VIEW_MODULES:
                    setattr(view, key, view_of(value))
            elif name != "scipy" and not _raw_memory_class(key, value):
                setattr(view, key, value)
        return view

    for name in sorted(_VIEW_MODULES):
        if name in sys.modules:
            view_of(sys.modules[name])
    return views


def _raw_memory_class(key: str, value: object) -> bool:
    """ndarray subclasses whose constructors take a raw buffer (object dtype over bytes)."""
    if not (isinstance(value, type) and issubclass(value, np.ndarray)):
        return False
    return not ((key == "ndarray" and value is np.ndarray) or value is np.matrix)


def _guarded_getattr(obj: object, name: str, *default: object) -> object:
    """getattr for sandboxed code: the static rules again, and never a module."""
    if not isinstance(name, str) or _attribute_denied(name) or name == "ndarray":
        raise AttributeError(f"attribute {name!r} is not allowed in the sandbox")
    value = getattr(obj, name, *default)
    if isinstance(value, types.ModuleType):
        raise AttributeError(f"attribute {name!r} is a module, not allowed in the sandbox")
    return value


def _guarded_hasattr(obj: object, name: str) -> bool:
    try:
        _guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


class _Workspace:
    """The server's state: what children inherit (views, builtins, jail, uid)."""

    def __init__(self, jail: str, shared_fd: int) -> None:
        self.jail = jail
        self.shared_fd = shared_fd
        self.root = os.geteuid() == 0
        self.nobody = _nobody_ids()
        self.failed: dict[str, str] = {}
        self.exited: dict[int, int] = {}   # pid -> wait status of method processes reaped
        self.views: dict[str, ModuleView] = {}
        for name in _SUPPORT_MODULES:
            importlib.import_module(name)
        self.preload(_ALWAYS_PRELOADED)
        self.builtins = self._safe_builtins()

    def preload(self, modules: Sequence[str]) -> None:
        """Import allowed modules here, once, so that children never read a file."""
        missing = [name for name in modules
                   if name in ALLOWED_IMPORTS and name not in self.views and name not in self.failed]
        for name in missing:
            try:
                importlib.import_module(name)
            except Exception as exc:  # any failure in a library's import: report it, keep serving
                self.failed[name] = f"{type(exc).__name__}: {exc}"
        if missing:
            self.views = _build_views()
            gc.freeze()   # keeps the children's garbage collector off the server's pages

    def reap(self) -> None:
        """Collect every method process that has exited, keeping its status for ``exit_status``."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.exited[pid] = status
            while len(self.exited) > _KEEP_STATUSES:
                del self.exited[next(iter(self.exited))]

    def exit_status(self, pid: int) -> int | None:
        """The wait status of a process that closed its answer pipe without an answer:
        waited for up to ``_REAP_WAIT`` s (it may be exiting), then killed. None if it is
        not a child of this server."""
        self.reap()
        if pid in self.exited:
            return self.exited.pop(pid)
        try:
            return _reap(pid, kill=False)
        except ChildProcessError:
            return None

    def guarded_import(self, name: str, globals: object = None, locals: object = None,
                       fromlist: Sequence[str] | None = (), level: int = 0) -> ModuleView | None:
        """``__import__`` for sandboxed code: the allow-list, served from preloaded views.

        C code that imports while called from sandboxed code (ndarray.mean imports
        numpy._core._methods) goes through PyImport_Import, which looks ``__import__``
        up in the calling frame's builtins, passes a *list* as fromlist (the
        interpreter's import statement passes a tuple or None) and then reads the
        module from sys.modules itself. Such a call is answered with None when the
        module is already loaded: the C code proceeds, sandboxed code gains nothing.
        """
        if isinstance(fromlist, list):
            if name in sys.modules:
                return None
            raise ImportError(f"module '{name}' is not available in the sandbox")
        if level:
            raise ImportError("relative imports are not allowed in the sandbox")
        wanted = [name] if name in ALLOWED_IMPORTS else []
        if not wanted and fromlist and all(f"{name}.{item}" in ALLOWED_IMPORTS for item in fromlist):
            wanted = [f"{name}.{item}" for item in fromlist]
        if not wanted:
            raise ImportError(f"import of '{name}' is not allowed in the sandbox")
        for module in wanted:
            if module not in self.views:
                detail = self.failed.get(module, "it was not preloaded")
                raise ImportError(f"module '{module}' is not available in the sandbox: {detail}")
        return self.views[name if fromlist else name.split(".")[0]]

    def _safe_builtins(self) -> dict[str, object]:
        import builtins
        table: dict[str, object] = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
        for name, value in vars(builtins).items():
            if isinstance(value, type) and issubclass(value, BaseException):
                table[name] = value
        table["__build_class__"] = builtins.__build_class__
        table["__import__"] = self.guarded_import
        table["getattr"] = _guarded_getattr
        table["hasattr"] = _guarded_hasattr
        return table


def _nobody_ids() -> tuple[int, int]:
    try:
        import pwd
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return _NOBODY, _NOBODY


def _serve(jail: str, shared_fd: int, control_fd: int) -> None:
    """Main loop of the sandbox server: fork prepared processes for the host, and say how
    those that ended without an answer ended. It never runs, reads or answers for a method.

    Requests arrive as one JSON message each on the control socket:
    {"op": "fork", "tag", "count", "preload", "capacity", "scratch"}: import the modules
    named (allowed ones only), then fork ``count`` prepared processes mapping ``capacity``
    bytes of the data memfd, and send each as {"op": "spare", "tag", "pid"} with three
    descriptors: the write end of its job pipe, the read end of its answer pipe and a
    pidfd. {"op": "status", "pid"}: answer {"op": "status", "pid", "status"} with its wait
    status (None if unknown). The server exits when the host closes the socket.
    """
    sys.dont_write_bytecode = True
    control = socket.socket(fileno=control_fd)
    workspace = _Workspace(jail, shared_fd)
    _send_message(control, {"ready": True, "enforced": _probe_jail(workspace)})
    while True:
        try:
            packet = control.recv(1 << 16)
        except ConnectionResetError:
            packet = b""
        if not packet:
            return
        workspace.reap()
        request = json.loads(packet)
        if request["op"] == "fork":
            workspace.preload(list(request["preload"]))
            for _ in range(int(request["count"])):
                fds = _fork_spare(workspace, int(request["capacity"]), int(request["scratch"]))
                try:
                    socket.send_fds(control, [json.dumps({"op": "spare", "tag": request["tag"],
                                                          "pid": fds[0]}).encode()], list(fds[1:]))
                finally:
                    for fd in fds[1:]:
                        os.close(fd)
        elif request["op"] == "status":
            pid = int(request["pid"])
            _send_message(control, {"op": "status", "pid": pid, "status": workspace.exit_status(pid)})


def _send_message(control: socket.socket, message: dict[str, Any]) -> None:
    control.send(json.dumps(message).encode())


def _fork_spare(workspace: _Workspace, capacity: int, scratch: int) -> tuple[int, int, int, int]:
    """Fork a prepared process: (pid, write end of its job pipe, read end of its answer
    pipe, pidfd). The caller sends the three descriptors to the host and closes its copies."""
    job_read, job_write = os.pipe()
    result_read, result_write = os.pipe()
    _enlarge_pipe(result_read)   # a whole answer fits: one wakeup of the host instead of several
    _enlarge_pipe(job_write)     # and a whole job
    pid = os.fork()
    if pid == 0:
        os.close(job_write)
        os.close(result_read)
        _spare_main(job_read, result_write, workspace, capacity, scratch)
    os.close(job_read)
    os.close(result_write)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        _close_all([job_write, result_read])
        _reap(pid, kill=True)
        raise
    return pid, job_write, result_read, pidfd


def _enlarge_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer: fewer context switches when sending data."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass


def _collect(fd: int, deadline: float, cap: int) -> tuple[bytes, str | None]:
    """Read a child's answer until EOF: ('timeout' | 'overflow' | None) says how it ended."""
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"", "timeout"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks), None
        size += len(chunk)
        if size > cap:
            return b"", "overflow"
        chunks.append(chunk)


def _reap(pid: int, kill: bool) -> int:
    """Wait for a method's process (killing it first if asked, or if it lingers) and return its status."""
    if kill:
        _kill(pid)
    deadline = time.monotonic() + 2.0
    while True:
        done, status = os.waitpid(pid, 0 if kill else os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            _kill(pid)
            kill = True
        time.sleep(0.0002)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _probe_jail(workspace: _Workspace) -> dict[str, bool]:
    """Fork a jailed process once and report which restrictions actually hold here."""
    import socket

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.dup2(write_end, _RESULT_FD)
            baseline = _address_space_bytes()
            _confine(workspace, _RESULT_FD)
            _limit(SandboxLimits(cpu_seconds=2, wall_seconds=2, memory_mb=64), baseline)
            report = {
                "chroot": workspace.root,
                # true only where the process switched to nobody (as root); a non-root
                # host's method runs as the host's user, and says so
                "setuid_nobody": workspace.root and os.getuid() == workspace.nobody[0],
                "new_processes_blocked": _fork_blocked(),
                "file_reads_blocked": _open_blocked("/etc/passwd", os.O_RDONLY),
                "file_writes_blocked": _open_blocked("probe", os.O_WRONLY | os.O_CREAT),
                "sockets_blocked": _socket_blocked(socket),
            }
            _write_fd(_RESULT_FD, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        received, problem = _collect(read_end, time.monotonic() + 10.0, 1 << 16)
    finally:
        os.close(read_end)
    _reap(pid, kill=problem is not None)
    try:
        return dict(json.loads(received)) if problem is None else {"probe_failed": True}
    except ValueError:
        return {"probe_failed": True}


def _fork_blocked() -> bool:
    try:
        pid = os.fork()
    except OSError:
        return True
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return False


def _open_blocked(path: str, flags: int) -> bool:
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return True
    os.close(fd)
    if flags & os.O_CREAT:
        os.unlink(path)
    return False


def _socket_blocked(socket_module: types.ModuleType) -> bool:
    try:
        sock = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_STREAM)
    except OSError:
        return True
    sock.close()
    return False
