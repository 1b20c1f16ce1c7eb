"""The sandbox for model-written methods: a static check, then a jailed child process.

A method written by a model arrives as Python source that defines ``estimate(x)``
(one sample, a 1-D float64 array, to one float) or ``estimate_batch(X)`` (one sample
per row, to one float per row), preferred when both exist. None of that source ever
runs in the caller's process. Three layers stand between it and the host:

1. ``check_source``, on the AST: imports from an allow-list only, no dunder or private
   attributes, no ``open``/``exec``/``eval``/``type``/..., no numpy file I/O or raw
   memory. A rejected source never runs, and the reason names the line.
2. In the child, the code sees restricted builtins, an importer honouring the same
   allow-list, and *views* of the allowed modules: namespaces holding their public
   functions and classes but no other modules and no file-I/O functions.
3. The operating system. A sandbox server is spawned (never forked) from a clean
   interpreter (``-I -S -B``, a minimal environment, its own process group) and
   imports numpy once. Each method then runs in its own process forked from that
   server, so a crash or a monkeypatch stays with its own method and the server
   itself never runs user code. That process is prepared ahead of its method (forked,
   data and scratch memory faulted in, a small method of our own run to warm it up,
   confined: when the host runs as root, chrooted into an empty directory as
   ``nobody``), and runs one method only; when the method arrives it gets rlimits
   (CPU, address space, no new processes, no file writes, no new file descriptors, no
   core files) and only then runs it.

The server hands each prepared process's pipes to the host (as descriptors over a
unix socket, with a pidfd to kill it by), and the host talks to the process directly:
it writes the method, reads the answer, enforces the wall-clock limit and kills the
process once it has answered. A method therefore costs two hand-offs (host to its
process and back), and the server's work (forking replacements, importing modules)
happens between methods. The host keeps two prepared processes and orders their
replacements after a call's last answer, or while a method runs when more follow.
The server is asked for a process's exit status only when it ended without an answer;
if the server itself stops answering, the host kills its process group and starts a
new one for the methods left.

Data goes in through a memfd that the host writes and each method's process maps
privately (copy on write) from a read-only descriptor; values come back as raw float64
bytes after a fixed binary header of lengths: nothing is ever unpickled, and nothing a
method's process sends is parsed as anything but lengths, text and numbers.

The server stays up between calls (one per host process, started on first use), so
the interpreter and numpy start once per session rather than once per call; that
start (about 0.2 s here) costs far more than the work of a 10,000-replication
trimmed mean (benchmarks/sandbox_throughput.py).

Linux only (``resource``, ``/proc``, ``fork``, ``chroot``, ``memfd_create``, and pidfds
from Linux 5.3). docs/sandbox.md says what this protects against and what it does not.
"""

from __future__ import annotations

import ast
import atexit
import functools
import gc
import importlib
import importlib.util
import json
import math
import mmap
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, NoReturn, Sequence

import numpy as np

__all__ = [
    "ALLOWED_IMPORTS",
    "ENTRY_POINTS",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "check_source",
    "run_methods",
    "shutdown",
]

ENTRY_POINTS: tuple[str, ...] = ("estimate_batch", "estimate")

ALLOWED_IMPORTS: frozenset[str] = frozenset({
    "math", "statistics",
    "numpy", "numpy.random", "numpy.linalg", "numpy.fft", "numpy.polynomial",
    "scipy.stats", "scipy.special",
})

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

# Builtins that are neither callable nor nameable in sandboxed code. ``type`` and
# ``id`` are here because a class object plus an address is what raw-memory tricks
# with numpy need; ``getattr``/``hasattr`` are allowed only with a literal name.
FORBIDDEN_BUILTINS: frozenset[str] = frozenset({
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
    "setattr", "delattr", "input", "breakpoint", "help", "exit", "quit", "type", "id",
    "copyright", "credits", "license",
})

# Attribute names refused on any object, statically and at run time. Besides these,
# every name starting with "_" is refused (dunders and private internals alike).
DENIED_ATTRIBUTES: frozenset[str] = frozenset({
    # file I/O, pickling and printing of files in numpy and scipy
    "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt",
    "fromfile", "tofile", "fromregex", "memmap", "open_memmap", "dump", "dumps", "DataSource",
    "openfile", "fromtextfile", "recfromcsv", "recfromtxt", "info", "source", "lookfor",
    "show_config", "show_runtime", "test",
    # namespaces and tools that reach files, processes or raw memory
    "lib", "ctypeslib", "ctypes", "testing", "f2py", "distutils", "rec", "recarray",
    "as_strided", "LowLevelCallable", "resize", "mro",
    # modules that allowed modules import for themselves
    "os", "sys", "subprocess", "builtins", "importlib", "socket", "pickle", "shutil",
    "pathlib", "io", "signal", "inspect", "gc", "threading", "multiprocessing",
    "resource", "tempfile", "platform", "posix",
    # frames, code and generator internals: the classic road to a module's globals
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await",
    "ag_frame", "ag_code", "ag_await", "f_back", "f_globals", "f_locals", "f_builtins",
    "f_code", "f_trace", "tb_frame", "tb_next",
    # process calls, named so that a stray reference fails with a precise reason
    "system", "popen", "fork", "kill", "environ", "getenv",
})

# Dunder methods a class in sandboxed code may define. Array protocols
# (``__array_interface__`` and friends) are absent on purpose: they hand numpy raw
# pointers.
_SAFE_DUNDER_METHODS: frozenset[str] = frozenset({
    "__init__", "__call__", "__repr__", "__str__", "__len__", "__iter__", "__next__",
    "__getitem__", "__contains__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
    "__ge__", "__hash__", "__bool__",
})

_SAFE_BUILTIN_NAMES: tuple[str, ...] = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "classmethod", "complex", "dict", "dir", "divmod", "enumerate", "filter", "float",
    "format", "frozenset", "hash", "hex", "int", "isinstance", "issubclass", "iter", "len",
    "list", "map", "max", "memoryview", "min", "next", "object", "oct", "ord", "pow",
    "print", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted",
    "staticmethod", "str", "sum", "super", "tuple", "zip", "Ellipsis", "NotImplemented",
)

MAX_SOURCE_CHARS = 100_000
_FILENAME = "<method>"
_RESULT_FD = 3                  # the one descriptor a method's process may write to
_JOB_FD = 4                     # where a prepared process reads its job (closed before user code)
_MADV_POPULATE_READ = 22        # Linux 5.14+; not exported by the mmap module before Python 3.12
_MIN_SCRATCH = 1 << 20          # bytes of heap a prepared process faults in: the data's size (one ...
_MAX_SCRATCH = 128 << 20        # ... full-size temporary, such as a sorted copy), within these bounds
_SPARES = 2                     # prepared processes kept waiting: one for the next method, one getting ready
_READY_TIMEOUT = 30.0           # seconds for a prepared process to get ready
_KEEP_OUTPUT = 2_000            # characters of printed output kept in a result
_MAX_REASON = 500               # characters of a rejection reason
_START_TIMEOUT = 60.0           # seconds for the server to start (imports numpy)
_PRELOAD_ALLOWANCE = 120.0      # seconds for the server to send a process when it must import (scipy.stats)
_FORK_TIMEOUT = 5.0             # ... and when it need not: a fork takes milliseconds
_REAP_WAIT = 2.0                # seconds the server waits for a process that ended without an answer to exit
_GRACE = 3.0                    # seconds the host allows the server beyond that, or for taking a request
_KEEP_STATUSES = 256            # exit statuses the server remembers for the host to ask about
_NOBODY = 65534

# A method's answer, as its process writes it to the host: this header (magic, number of
# values or -1 when there are none, bytes of the error text, bytes of the printed
# output), then the error and the output (UTF-8), then the values (little-endian
# float64). Fixed-size binary, so that the host parses nothing the process could shape
# into anything but lengths, text and numbers.
_ANSWER = struct.Struct("<4sqII")
_ANSWER_MAGIC = b"OURO"

# The server's whole environment. One BLAS thread (a method's process may not start
# threads: RLIMIT_NPROC counts them). glibc malloc serves large blocks from the heap and
# never trims it, so that the scratch memory a prepared process faults in is what the
# method's arrays reuse.
_CHILD_ENV = {
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1", "LC_ALL": "C.UTF-8",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
    "MALLOC_TOP_PAD_": str(16 << 20),
}

# Runs in a fresh ``python -I -S -B``: finds numpy and scipy through the directories
# passed on the command line and loads this very file as a private module.
_BOOTSTRAP = """\
import sys
sys.path.extend(sys.argv[5:])
import importlib.util as u
s = u.spec_from_file_location('_ouro_sandbox_server', sys.argv[1])
m = u.module_from_spec(s)
sys.modules[s.name] = m
s.loader.exec_module(m)
m._serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
"""


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one method's evaluation (all replications of it).

    cpu_seconds: CPU time (RLIMIT_CPU, which counts whole seconds: the limit is
        rounded to the nearest second, at least one).
    wall_seconds: wall-clock time from process start to result, enforced by killing.
    memory_mb: address space the method may add on top of the loaded interpreter,
        numpy and the data (RLIMIT_AS = baseline + memory_mb).
    max_output: characters the method may print; more is a rejection.
    """

    cpu_seconds: float = 10.0
    wall_seconds: float = 15.0
    memory_mb: int = 1024
    max_output: int = 65_536

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "wall_seconds", "memory_mb", "max_output"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be positive")


@dataclass
class SandboxResult:
    """The outcome of one method.

    values: shape (R,), float64, all finite, or None when rejected.
    error: why the method was rejected, or None.
    seconds: wall time of its evaluation (0 when the static check rejected it).
    output: the start of what it printed.
    system_error: True when the sandbox itself failed (its server could not start),
        so the method was never judged: a verifier should score it as unscored, not
        rejected.
    """

    values: np.ndarray | None
    error: str | None
    seconds: float = 0.0
    output: str = ""
    system_error: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class SandboxError(RuntimeError):
    """The sandbox itself is unusable (its server cannot start)."""


# --------------------------------------------------------------------------- static check


def check_source(source: str, entry_points: Sequence[str] = ENTRY_POINTS) -> str | None:
    """Return why ``source`` may not run, or None if it passes the static check.

    The check is the first line of defence and the one that gives the most precise
    reasons; the run-time layers catch what it cannot see.
    """
    if not isinstance(source, str):
        return f"source is {type(source).__name__}, expected str"
    return _analyse(source, tuple(entry_points))[0]


@functools.lru_cache(maxsize=1024)
def _analyse(source: str, entry_points: tuple[str, ...]) -> tuple[str | None, frozenset[str]]:
    """(reason or None, allowed modules it imports): one parse serves the check and the
    server's preloading, and a source judged again (a new batch of data) is not re-parsed."""
    if len(source) > MAX_SOURCE_CHARS:
        return f"source too long ({len(source)} characters, limit {MAX_SOURCE_CHARS})", frozenset()
    try:
        tree = ast.parse(source, _FILENAME)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})", frozenset()
    except ValueError as exc:  # e.g. null bytes in the source
        return f"syntax error: {exc}", frozenset()
    checker = _Checker()
    checker.visit(tree)
    imports = frozenset(checker.imports)
    if checker.problems:
        (line, _), message = min(checker.problems, key=lambda problem: problem[0])
        return f"{message} (line {line})", imports
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if not defined.intersection(entry_points):
        return "no top-level function named " + " or ".join(entry_points), imports
    return None, imports


def _imported_modules(source: str) -> frozenset[str]:
    """Allowed modules that ``source`` imports: the server preloads them."""
    if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
        return frozenset()
    return _analyse(source, ENTRY_POINTS)[1]


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _attribute_denied(name: str) -> bool:
    return name.startswith("_") or name in DENIED_ATTRIBUTES


class _Checker(ast.NodeVisitor):
    """Collects (line, message) for every construct outside what sandboxed code may use."""

    def __init__(self) -> None:
        self.problems: list[tuple[tuple[int, int], str]] = []   # ((line, end column), message)
        self.imports: set[str] = set()
        self.aliases: dict[str, str] = {}   # local name -> module (or module.attr) it stands for
        self.approved: set[int] = set()     # ids of nodes made legal by their context

    def flag(self, node: ast.AST, message: str) -> None:
        where = (getattr(node, "lineno", 0), getattr(node, "end_col_offset", 0) or 0)
        self.problems.append((where, message))

    def check_identifier(self, node: ast.AST, name: str | None) -> None:
        if name is not None and _is_dunder(name):
            self.flag(node, f"forbidden name '{name}'")

    # imports -------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                self.flag(node, f"forbidden import '{alias.name}'")
                continue
            self.imports.add(alias.name)
            self.check_identifier(node, alias.asname)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "relative import is not allowed")
            return
        for alias in node.names:
            qualified = f"{module}.{alias.name}"
            if alias.name == "*":
                self.flag(node, f"star import from '{module}' is not allowed")
                continue
            if qualified in ALLOWED_IMPORTS:
                self.imports.add(qualified)
            elif module in ALLOWED_IMPORTS:
                if _attribute_denied(alias.name) or alias.name == "ndarray":
                    self.flag(node, f"forbidden name '{qualified}'")
                    continue
                self.imports.add(module)
            else:
                parent = any(allowed.startswith(module + ".") for allowed in ALLOWED_IMPORTS)
                self.flag(node, f"forbidden import '{qualified if parent else module}'")
                continue
            self.check_identifier(node, alias.asname)
            self.aliases[alias.asname or alias.name] = qualified

    # names and attributes ----------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name in FORBIDDEN_BUILTINS:
            self.flag(node, f"forbidden builtin '{name}'")
        elif name in ("getattr", "hasattr") and id(node) not in self.approved:
            self.flag(node, f"{name} is allowed only when called with a literal attribute name")
        elif name == "ndarray" and id(node) not in self.approved:
            self.flag(node, "forbidden name 'ndarray' (allowed only inside isinstance/issubclass)")
        elif _is_dunder(name) and not (name == "__name__" and isinstance(node.ctx, ast.Load)):
            self.flag(node, f"forbidden name '{name}'")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        qualified = self.qualify(node)
        shown = qualified or name
        if name == "ndarray":
            if id(node) not in self.approved:
                self.flag(node, f"forbidden attribute '{shown}' (allowed only inside isinstance/issubclass)")
        elif _attribute_denied(name):
            self.flag(node, f"forbidden attribute '{shown}'")
        elif qualified and qualified.count(".") == 1 and qualified.startswith("scipy."):
            if qualified not in ALLOWED_IMPORTS:
                self.flag(node, f"forbidden attribute '{qualified}'")
        self.generic_visit(node)

    def qualify(self, node: ast.Attribute) -> str | None:
        """'numpy.load' for ``np.load`` after ``import numpy as np``; None if not rooted in an import."""
        parts: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name) and current.id in self.aliases:
            return ".".join([self.aliases[current.id], *reversed(parts)])
        return None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr"):
            literal = node.args[1] if len(node.args) >= 2 else None
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                self.approved.add(id(func))
                if _attribute_denied(literal.value) or literal.value == "ndarray":
                    self.flag(node, f"forbidden attribute '{literal.value}'")
        if isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass") and len(node.args) == 2:
            classes = node.args[1]
            for element in classes.elts if isinstance(classes, ast.Tuple) else [classes]:
                self.approved.add(id(element))
        for keyword in node.keywords:
            if keyword.arg in ("buffer", "buf"):
                self.flag(node, f"keyword argument '{keyword.arg}' is not allowed")
        self.generic_visit(node)

    # definitions and binding forms -----------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_identifier(node, node.name)
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.approved.add(id(statement))
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        method = id(node) in self.approved
        if _is_dunder(node.name) and not (method and node.name in _SAFE_DUNDER_METHODS):
            self.flag(node, f"forbidden name '{node.name}'")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node: ast.arg) -> None:
        self.check_identifier(node, node.arg)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        self.check_identifier(node, node.arg)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self.check_identifier(node, node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            self.check_identifier(node, name)

    visit_Nonlocal = visit_Global

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:   # `case C(attr=x)` reads x = subject.attr
            if _attribute_denied(name) or name == "ndarray":
                self.flag(node, f"forbidden attribute '{name}'")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self.check_identifier(node, node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self.check_identifier(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.check_identifier(node, node.rest)
        self.generic_visit(node)


# --------------------------------------------------------------------------- host side


class _ServerGone(Exception):
    """The sandbox server died, closed its socket or stopped answering."""


class _Ended(Exception):
    """A method's process closed its end of a pipe: it exited, crashed or was killed."""


class _Late(Exception):
    """A deadline passed."""


class _NoSpare(Exception):
    """Prepared processes kept dying before their method ran (the server itself is alive)."""


class _NotStarted(Exception):
    """A process ended before it had read its method: no code of the method ran in it."""


class _DiedWithServer(Exception):
    """A process ended without an answer, and its server was gone when asked why.

    Whether the method caused it cannot be told: a process that was sent SIGKILL with
    its server's whole group still takes in pipe data that arrives before it dies.
    """

    def __init__(self, reason: str, seconds: float) -> None:
        super().__init__(reason)
        self.seconds = seconds


def _wait_for(fd: int, events: int, deadline: float) -> None:
    """Block until ``fd`` is ready for ``events`` or raise _Late at ``deadline``.

    poll, not select: a host with many open files may hand out descriptors above
    select's limit of 1024.
    """
    poller = select.poll()
    poller.register(fd, events)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Late()
        if poller.poll(math.ceil(remaining * 1000)):
            return


class _Pipe:
    """Reads a method's answer from a non-blocking pipe, never past a deadline.

    ``expected`` bytes are asked of the first read, so that a whole answer sitting in
    the pipe is taken in one system call.
    """

    def __init__(self, fd: int, expected: int) -> None:
        self.fd = fd
        self.expected = expected
        self.buffer = bytearray()

    def read_exact(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            try:
                chunk = os.read(self.fd, max(size - len(self.buffer), self.expected, 1 << 16))
            except BlockingIOError:
                _wait_for(self.fd, select.POLLIN, deadline)
                continue
            if not chunk:
                raise _Ended()
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    """Write all of ``data`` to a non-blocking pipe; _Ended when the reader is gone, _Late at ``deadline``."""
    view = memoryview(data)
    while len(view):
        try:
            view = view[os.write(fd, view[: 1 << 20]):]
        except BlockingIOError:
            _wait_for(fd, select.POLLOUT, deadline)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Ended() from exc


class _Control:
    """The host's end of the socket to the server: one JSON message per packet, with the
    descriptors of a prepared process alongside when the server sends one."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    def send(self, message: dict[str, Any], deadline: float) -> None:
        packet = json.dumps(message).encode()
        while True:
            try:
                self.sock.send(packet)
                return
            except BlockingIOError:
                try:
                    _wait_for(self.sock.fileno(), select.POLLOUT, deadline)
                except _Late:
                    raise _ServerGone("stopped reading its requests") from None
            except OSError as exc:
                raise _ServerGone("closed its socket") from exc

    def receive(self, deadline: float | None) -> tuple[dict[str, Any], list[int]] | None:
        """The next message and its descriptors; None at once when ``deadline`` is None and
        nothing is waiting."""
        while True:
            try:
                packet, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
                break
            except BlockingIOError:
                if deadline is None:
                    return None
                try:
                    _wait_for(self.sock.fileno(), select.POLLIN, deadline)
                except _Late:
                    raise _ServerGone("stopped answering") from None
            except OSError as exc:
                raise _ServerGone("closed its socket") from exc
        if not packet and not fds:
            raise _ServerGone("closed its socket")
        try:
            message = json.loads(packet)
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            _close_all(fds)
            raise _ServerGone(f"sent a malformed message: {exc}") from exc
        return message, fds

    def close(self) -> None:
        self.sock.close()


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@dataclass(frozen=True)
class _Needs:
    """What a request needs of a prepared process: the modules its methods import, the
    bytes of its data, and how much scratch memory to fault in for it."""

    modules: frozenset[str]
    data_bytes: int
    scratch_bytes: int


@dataclass
class _Order:
    """Prepared processes asked of the server under one tag, and what they will hold."""

    modules: frozenset[str]   # every module the server had been asked to import by then
    capacity: int             # bytes of the data memfd they map
    due: int                  # how many have not arrived yet
    imports: bool             # the server must import modules first (may take seconds)

    def serves(self, needs: _Needs) -> bool:
        return needs.modules <= self.modules and needs.data_bytes <= self.capacity


@dataclass
class _Spare:
    """A prepared process as the host holds it: the write end of its job pipe, the read
    end of its answer pipe and a pidfd (a handle that cannot name another process once
    this one is gone, so killing through it is never a race with pid reuse)."""

    pid: int
    job_fd: int
    result_fd: int
    pidfd: int
    order: _Order

    def close(self) -> None:
        """Kill the process (whether it is waiting, running or already gone) and close our ends.

        The server, its parent, reaps it."""
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.forget()

    def forget(self) -> None:
        """Close our descriptors only (in a forked host, where the process is the parent's)."""
        _close_all([fd for fd in (self.job_fd, self.result_fd, self.pidfd) if fd >= 0])
        self.job_fd = self.result_fd = self.pidfd = -1


def _site_dirs() -> list[str]:
    """Directories that hold numpy and scipy: the only paths the server adds to sys.path."""
    dirs: list[str] = []
    for name in ("numpy", "scipy"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            folder = os.path.dirname(os.path.dirname(spec.origin))
            if folder not in dirs:
                dirs.append(folder)
    return dirs


def _make_jail_dir() -> str:
    """An empty directory that the server runs in and that children are chrooted to.

    Mode 0o111: it can be entered but neither listed nor written, not even by its owner
    (without a chmod, which sandboxed code cannot reach).
    """
    path = tempfile.mkdtemp(prefix="ouro-sandbox-")
    os.chmod(path, 0o111)
    return path


def _remove_jail_dir(path: str) -> None:
    try:
        os.chmod(path, 0o700)
        os.rmdir(path)
    except FileNotFoundError:
        pass


class _SharedData:
    """The memfd the data travels in: the host writes each request's data into it.

    The host maps it read-write and keeps it for its whole lifetime (server restarts
    included), so that a request costs one memcpy and no page faults or re-mapping. The
    server gets only a read-only descriptor of it (``read_only_fd``, opened anew through
    /proc), so that neither the server nor any process it forks can map it writable or
    write to it: a method's process maps it copy-on-write, and what it writes into its
    data stays in its own pages.
    """

    def __init__(self) -> None:
        self.fd = os.memfd_create("ouro-sandbox-data", os.MFD_CLOEXEC)
        self.read_only_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
        self.size = 0
        self.mapping: mmap.mmap | None = None
        self.address = 0   # where the mapping starts in this process
        self._retired: list[tuple[int, int]] = []   # (address, size) of mappings a caller's view kept alive

    def reserve(self, nbytes: int) -> None:
        """Make the memfd at least ``nbytes`` long (it never shrinks: processes prepared
        for a larger size keep a valid mapping)."""
        if nbytes <= self.size:
            return
        size = max(nbytes, 2 * self.size, 1 << 20)
        self._release_mapping()
        os.ftruncate(self.fd, size)
        self.mapping = mmap.mmap(self.fd, size)
        self.mapping.write(bytes(size))   # no holes: every page exists before a process maps it
        self.size = size
        probe = np.frombuffer(self.mapping, dtype=np.uint8, count=1)
        self.address = probe.ctypes.data
        del probe   # a live view would keep the mapping from being closed or replaced

    def view(self, rows: int, cols: int) -> np.ndarray:
        """The first ``rows * cols`` float64 values of the memfd, as a (rows, cols) array."""
        self.reserve(rows * cols * 8)
        assert self.mapping is not None
        return np.frombuffer(self.mapping, dtype=np.float64, count=rows * cols).reshape(rows, cols)

    def holds(self, matrix: np.ndarray) -> bool:
        """Whether ``matrix`` already lies where a method's process reads its data: at the
        start of the current mapping, contiguous (a view from ``view``)."""
        return (self.mapping is not None and matrix.flags.c_contiguous and matrix.dtype == np.float64
                and matrix.nbytes <= self.size and matrix.ctypes.data == self.address)

    def write(self, matrix: np.ndarray) -> None:
        """Put ``matrix`` at the start of the memfd, unless it is there already."""
        if self.holds(matrix):
            return
        if self._in_retired_mapping(matrix):
            matrix = matrix.copy()   # the same pages under another address: a direct copy could overlap itself
        target = self.view(1, matrix.size).reshape(-1)
        target[:] = matrix.reshape(-1)
        del target

    def _in_retired_mapping(self, matrix: np.ndarray) -> bool:
        start = matrix.ctypes.data
        return any(base <= start < base + size for base, size in self._retired)

    def _release_mapping(self) -> None:
        """Let go of the current mapping. A caller may still hold a view of it (from
        ``Sandbox.input_buffer``): then it stays valid, and is unmapped with its last view."""
        if self.mapping is None:
            return
        try:
            self.mapping.close()
        except BufferError:
            self._retired.append((self.address, self.size))
        self.mapping = None

    def close(self) -> None:
        self._release_mapping()
        _close_all([self.fd, self.read_only_fd])


class Sandbox:
    """A sandbox server and the methods to run code in it.

    One server process serves any number of ``run`` calls (one at a time; calls from
    several threads queue on a lock). It is started on first use, restarted whenever it
    dies, and stopped by ``close`` (also on interpreter exit for the default instance).

    The server only forks prepared processes and hands their pipes to the host (over a
    unix socket, as descriptors); the host then gives a process its method and reads the
    answer itself, so a method costs two hand-offs (host to its process and back) rather
    than four, and the server works between methods, not while the host waits. The
    server is asked for a process's exit status only when it ended without an answer.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()   # re-entered by ``run`` inside ``input_buffer``
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: _Control | None = None
        self._jail: str | None = None
        self._shared: _SharedData | None = None
        self._spares: list[_Spare] = []        # prepared processes held, oldest first
        self._orders: dict[int, _Order] = {}   # tag -> processes asked for and not all arrived
        self._next_tag = 0
        self._modules: frozenset[str] = frozenset()   # asked of this server to import so far
        self._owner = os.getpid()
        self.enforcement: dict[str, bool] = {}
        self.start_seconds: float | None = None
        self.starts = 0

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the server now (otherwise the first ``run`` does). Raises SandboxError."""
        with self._lock:
            self._adopt()
            self._ensure_server()

    def close(self) -> None:
        """Stop the server and remove its directory. The sandbox restarts on next use."""
        with self._lock:
            self._adopt()
            self._stop_server()
            if self._shared is not None:
                self._shared.close()
                self._shared = None
            if self._jail is not None:
                _remove_jail_dir(self._jail)
            self._jail = None

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def server_pid(self) -> int | None:
        """Process id of the running server (also its process group), if any."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _adopt(self) -> None:
        """In a fork of the process that owns the server, let go of the parent's server.

        The descriptors here are copies: they are closed without killing anything (the
        processes are the parent's), and the shared memory is the parent's too, which this
        process must never write into. A new server, memfd and jail follow on first use.
        """
        if self._owner == os.getpid():
            return
        for spare in self._spares:
            spare.forget()
        if self._control is not None:
            self._control.close()
        if self._shared is not None:
            self._shared.close()
        self._proc, self._control, self._jail, self._shared = None, None, None, None
        self._spares, self._orders, self._modules = [], {}, frozenset()
        self._owner = os.getpid()

    def _shared_data(self) -> _SharedData:
        if self._shared is None:
            self._shared = _SharedData()
        return self._shared

    def _ensure_server(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop_server()
        if self._jail is None or not os.path.isdir(self._jail):
            self._jail = _make_jail_dir()
        shared = self._shared_data()
        host_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        began = time.monotonic()
        command = [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, os.path.abspath(__file__),
                   self._jail, str(shared.read_only_fd), str(server_end.fileno()), *_site_dirs()]
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=dict(_CHILD_ENV), cwd=self._jail, close_fds=True,
                pass_fds=(shared.read_only_fd, server_end.fileno()), start_new_session=True,
            )
        except OSError as exc:
            host_end.close()
            raise SandboxError(f"cannot start the sandbox server: {exc}") from exc
        finally:
            server_end.close()
        self._proc, self._control = proc, _Control(host_end)
        try:
            received = self._control.receive(began + _START_TIMEOUT)
            assert received is not None
            hello, fds = received
            _close_all(fds)
        except _ServerGone as exc:
            self._stop_server(graceful=False)
            raise SandboxError(f"the sandbox server did not start: {exc}") from exc
        self.enforcement = {key: bool(value) for key, value in dict(hello.get("enforced", {})).items()}
        self.start_seconds = time.monotonic() - began
        self.starts += 1

    def _stop_server(self, graceful: bool = True) -> None:
        """End the server: by closing its socket when graceful, and in any case by killing
        its process group (the prepared processes with it)."""
        for spare in self._spares:
            spare.close()
        self._spares, self._orders, self._modules = [], {}, frozenset()
        proc, control, self._proc, self._control = self._proc, self._control, None, None
        if control is not None:
            control.close()   # the server exits at the end of its input
        if proc is None:
            return
        if graceful and proc.poll() is None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # its children too, should any be left
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    # running ----------------------------------------------------------------------------------
    @contextmanager
    def input_buffer(self, rows: int, cols: int) -> Iterator[np.ndarray]:
        """A (rows, cols) float64 array in the memory that methods' processes read their data from.

        Data written into it and passed to ``run`` within the ``with`` reaches each method
        without a copy (a 10,000 x 50 sample is 4 MB: about 0.7 ms to copy, a fifth of
        what a trimmed mean costs on it). The sandbox stays with this thread for the whole
        ``with``: another thread's ``run`` waits, so nothing overwrites the data (a ``run``
        of other data within the ``with`` does: it travels through the same memory).
        After the ``with`` the array's contents are undefined; do not write into it then.
        """
        if rows < 1 or cols < 1:
            raise ValueError(f"input_buffer needs a positive shape, got ({rows}, {cols})")
        with self._lock:
            self._adopt()
            yield self._shared_data().view(rows, cols)

    def run(
        self,
        sources: Sequence[str],
        data: np.ndarray,
        limits: SandboxLimits | None = None,
        *,
        entry_points: Sequence[str] = ENTRY_POINTS,
        static_check: bool = True,
    ) -> list[SandboxResult]:
        """Evaluate each source on every row of ``data``; one result per source, in order.

        ``static_check=False`` skips the AST check so that tests can show the run-time
        layers holding on their own; never turn it off for real proposals.
        """
        limits = limits or SandboxLimits()
        matrix = _as_data(data)
        results: list[SandboxResult | None] = [None] * len(sources)
        pending: list[int] = []
        for index, source in enumerate(sources):
            reason = check_source(source, entry_points) if static_check else _basic_problem(source)
            if reason is None:
                pending.append(index)
            else:
                results[index] = SandboxResult(None, reason)
        if pending:
            modules = frozenset().union(*(_imported_modules(sources[i]) for i in pending))
            scratch = min(max(_MIN_SCRATCH, matrix.nbytes), _MAX_SCRATCH)
            needs = _Needs(modules, matrix.nbytes, scratch)
            with self._lock:
                self._adopt()
                self._shared_data().write(matrix)
                self._run_pending(pending, sources, matrix.shape, limits, needs, tuple(entry_points), results)
        return [result or SandboxResult(None, "sandbox returned no result", system_error=True)
                for result in results]

    def _run_pending(self, pending: list[int], sources: Sequence[str], shape: tuple[int, int],
                     limits: SandboxLimits, needs: _Needs, entry_points: tuple[str, ...],
                     results: list[SandboxResult | None]) -> None:
        """Run the methods one by one, each in a prepared process of its own.

        A failure to get a process (the server died or stopped answering) is retried once
        with a fresh server, and after that reported as a system error for the methods
        left. A method whose process died together with the server is run again on a
        fresh server under the same single retry, and after that charged with the death.
        After the last method the server is asked for replacements, which it forks while
        the caller does other work.
        """
        retried = False
        position = 0
        while position < len(pending):
            index = pending[position]
            replace = needs if position + 1 < len(pending) else None
            try:
                self._ensure_server()
                results[index] = self._run_one(sources[index], shape, limits, needs, entry_points, replace)
            except (SandboxError, _ServerGone) as exc:
                self._stop_server(graceful=False)
                if not retried:
                    retried = True
                    continue
                for left in pending[position:]:
                    results[left] = SandboxResult(None, f"sandbox unavailable: {exc}", system_error=True)
                return
            except _DiedWithServer as exc:
                self._stop_server(graceful=False)
                if not retried:
                    retried = True
                    continue
                results[index] = SandboxResult(None, str(exc), exc.seconds)
            except _NoSpare as exc:
                results[index] = SandboxResult(None, f"sandbox could not prepare a process: {exc}")
            position += 1
        try:
            self._top_up(needs)
        except _ServerGone:
            self._stop_server(graceful=False)   # the next call starts a new one

    def _run_one(self, source: str, shape: tuple[int, int], limits: SandboxLimits, needs: _Needs,
                 entry_points: tuple[str, ...], replace: _Needs | None) -> SandboxResult:
        """Run one method in a prepared process; in another one if the first ended before
        reading it (as when the server's process group was killed between calls)."""
        problems: list[str] = []
        while True:
            spare = self._take_spare(needs)
            try:
                return self._run_in(spare, source, shape, limits, entry_points, replace)
            except _NotStarted as exc:   # asking how it ended raises _ServerGone if the server went with it
                problems.append(f"{exc} ({_status_reason(self._exit_status(spare.pid), limits)})")
            if len(problems) >= 2:
                raise _NoSpare("; ".join(problems))

    def _run_in(self, spare: _Spare, source: str, shape: tuple[int, int], limits: SandboxLimits,
                entry_points: tuple[str, ...], replace: _Needs | None) -> SandboxResult:
        """Give ``spare`` its method, read its answer, and kill it: it runs one method only.

        When more methods follow (``replace``), a replacement is ordered as soon as this
        one has its job, so that the server forks it while the method runs.
        """
        rows = shape[0]
        began = time.monotonic()
        deadline = began + limits.wall_seconds
        job = json.dumps({"source": source, "rows": rows, "cols": shape[1], "limits": asdict(limits),
                          "entry_points": list(entry_points)}).encode() + b"\n"
        try:
            try:
                _write_all(spare.job_fd, job, deadline)
            except _Ended:
                raise _NotStarted("it ended before reading its method") from None
            if replace is not None:
                try:
                    self._order(1, replace)
                except _ServerGone:
                    pass   # noticed, and the server replaced, when the next process is taken
            error, values, output = _read_answer(spare.result_fd, rows, deadline)
            return SandboxResult(values, error, time.monotonic() - began, output)
        except _Late:
            return SandboxResult(None, f"timeout after {limits.wall_seconds:g} s", time.monotonic() - began)
        except _Ended:
            if _unread_bytes(spare.job_fd):   # the job is still in the pipe: the method never started
                raise _NotStarted("it ended before reading its method") from None
            try:   # only its parent, the server, can read its exit status
                status = self._exit_status(spare.pid)
            except _ServerGone as exc:
                raise _DiedWithServer(self._server_death_reason(exc), time.monotonic() - began) from None
            return SandboxResult(None, _status_reason(status, limits), time.monotonic() - began)
        finally:
            spare.close()   # also closes the job pipe, kept open until here for _unread_bytes

    def _server_death_reason(self, exc: _ServerGone) -> str:
        proc = self._proc
        try:   # a server that closed its socket is exiting: give it a moment to report how
            code = proc.wait(timeout=1.0) if proc is not None and "closed" in str(exc) else None
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return f"sandbox server {exc} while running this method; it was killed"
        if code < 0:
            return f"sandbox server killed by signal {-code} while running this method"
        return f"sandbox server exited with code {code} while running this method"

    # prepared processes -------------------------------------------------------------------------
    def _take_spare(self, needs: _Needs) -> _Spare:
        """The oldest held process that serves ``needs`` and is ready (ordered now if none is).

        Processes that cannot serve (another data size, fewer modules) are killed. A
        process that dies while getting ready is replaced; a second such death in a row
        gives up on this method (_NoSpare). Asking the server how the process ended also
        shows whether the server itself is gone (_ServerGone), as when its whole process
        group was killed.
        """
        problems: list[str] = []
        while True:
            self._collect_spares(None)
            spare = self._pop_spare(needs)
            if spare is None:
                if not any(order.serves(needs) for order in self._orders.values()):
                    self._order(1, needs)
                self._collect_spares(self._spare_deadline())
                continue
            problem = _await_ready(spare)
            if not problem:
                return spare
            status = self._exit_status(spare.pid)
            spare.close()
            problems.append(f"{problem} ({_status_reason(status, SandboxLimits())})")
            if len(problems) >= 2:
                raise _NoSpare("; ".join(problems))

    def _pop_spare(self, needs: _Needs) -> _Spare | None:
        while self._spares:
            spare = self._spares.pop(0)
            if spare.order.serves(needs):
                return spare
            spare.close()
        return None

    def _spare_deadline(self) -> float:
        """How long the server may take to send a process: importing a module such as
        scipy.stats may take seconds, a fork alone milliseconds."""
        importing = any(order.imports for order in self._orders.values())
        return time.monotonic() + (_PRELOAD_ALLOWANCE if importing else _FORK_TIMEOUT)

    def _order(self, count: int, needs: _Needs) -> None:
        """Ask the server for ``count`` more prepared processes serving ``needs``; they
        arrive as messages that ``_collect_spares`` picks up."""
        assert self._control is not None and self._shared is not None
        imports = not needs.modules <= self._modules
        self._modules |= needs.modules
        tag = self._next_tag
        self._next_tag += 1
        self._orders[tag] = _Order(self._modules, self._shared.size, count, imports)
        self._control.send({"op": "fork", "tag": tag, "count": count, "preload": sorted(self._modules),
                            "capacity": self._shared.size, "scratch": needs.scratch_bytes},
                           time.monotonic() + _GRACE)

    def _top_up(self, needs: _Needs) -> None:
        """Order what keeps ``_SPARES`` processes serving ``needs`` held or on their way
        (those sent but not yet taken in are still counted as due on their order)."""
        if self._control is None:   # the server was stopped during the call: the next call starts one
            return
        have = sum(spare.order.serves(needs) for spare in self._spares)
        have += sum(order.due for order in self._orders.values() if order.serves(needs))
        if have < _SPARES:
            self._order(_SPARES - have, needs)

    def _collect_spares(self, deadline: float | None) -> None:
        """Take in the processes the server has sent: those waiting now (``deadline`` None),
        or wait until at least one arrives."""
        assert self._control is not None
        while True:
            received = self._control.receive(deadline)
            if received is None:
                return
            if self._accept(*received) and deadline is not None:
                deadline = None   # one arrived: take in any others already waiting, then return

    def _accept(self, message: dict[str, Any], fds: list[int]) -> bool:
        """Hold a process the server sent; True if the message was one."""
        order = self._orders.get(message.get("tag", -1)) if message.get("op") == "spare" else None
        if order is None or len(fds) != 3 or not isinstance(message.get("pid"), int):
            _close_all(fds)
            return False
        job_fd, result_fd, pidfd = fds
        os.set_blocking(job_fd, False)
        os.set_blocking(result_fd, False)
        self._spares.append(_Spare(message["pid"], job_fd, result_fd, pidfd, order))
        order.due -= 1
        if order.due <= 0:
            del self._orders[message["tag"]]
        return True

    def _exit_status(self, pid: int) -> int | None:
        """The wait status of a process that ended, from the server (None if it does not know it)."""
        assert self._control is not None
        deadline = time.monotonic() + _REAP_WAIT + _GRACE
        self._control.send({"op": "status", "pid": pid}, deadline)
        while True:
            received = self._control.receive(deadline)
            assert received is not None
            message, fds = received
            if message.get("op") == "status" and message.get("pid") == pid:
                status = message.get("status")
                return status if isinstance(status, int) else None
            self._accept(message, fds)   # a process that arrived meanwhile


def _status_reason(status: int | None, limits: SandboxLimits) -> str:
    """Why a process with this wait status ended without a complete answer."""
    if status is None:
        return "process ended without a complete result"
    if os.WIFSIGNALED(status):
        return _signal_reason(os.WTERMSIG(status), limits)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return f"process exited with code {code} without a complete result"


def _unread_bytes(fd: int) -> int:
    """Bytes written into a pipe and not yet read from it (asked of either end)."""
    import fcntl
    import termios
    count = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count)
    except OSError:
        return 0
    return int.from_bytes(count, sys.byteorder)


def _await_ready(spare: _Spare) -> str:
    """Wait for a prepared process's "r" (sent once it is confined); why it is not ready, or ""."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while True:
        try:
            byte = os.read(spare.result_fd, 1)   # usually there long ago: no poll needed
            return "" if byte == b"r" else "it died while getting ready"
        except BlockingIOError:
            try:
                _wait_for(spare.result_fd, select.POLLIN, deadline)
            except _Late:
                return f"not ready after {_READY_TIMEOUT:g} s"
        except OSError as exc:
            return f"its pipe failed: {exc}"


def _read_answer(fd: int, rows: int, deadline: float) -> tuple[str | None, np.ndarray | None, str]:
    """(error, values, output) from a method's process. _Ended if it ends before a whole
    answer, _Late at ``deadline``.

    The process is untrusted: its header is a fixed binary record whose lengths are
    checked before anything else is read, its text is decoded leniently, and its values
    are checked for count and finiteness here, whatever it claims. Nothing is parsed as
    anything but bytes, numbers and text.
    """
    pipe = _Pipe(fd, _ANSWER.size + 8 * rows)
    magic, count, error_size, output_size = _ANSWER.unpack(pipe.read_exact(_ANSWER.size, deadline))
    if (magic != _ANSWER_MAGIC or count not in (-1, rows) or (count == -1) != (error_size > 0)
            or error_size > 4 * _MAX_REASON or output_size > 4 * _KEEP_OUTPUT):
        return "process sent a malformed result", None, ""
    body = pipe.read_exact(error_size + output_size + 8 * max(count, 0), deadline)
    output = body[error_size:error_size + output_size].decode("utf-8", "replace")[:_KEEP_OUTPUT]
    if count < 0:
        return body[:error_size].decode("utf-8", "replace")[:_MAX_REASON], None, output
    values = np.frombuffer(body, dtype="<f8", offset=error_size + output_size).astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        return f"non-finite result in {bad} of {rows} rows", None, output
    return None, values, output


def _enlarge_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer: fewer context switches when sending data."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass


def _as_data(data: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(data, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(f"data must be a non-empty 2-D array (replications, n), got shape {matrix.shape}")
    return matrix


def _basic_problem(source: object) -> str | None:
    """The checks that hold even when the static check is switched off."""
    if not isinstance(source, str):
        return f"source is {type(source).__name__}, expected str"
    if len(source) > MAX_SOURCE_CHARS:
        return f"source too long ({len(source)} characters, limit {MAX_SOURCE_CHARS})"
    return None


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox that ``run_methods`` uses."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
            atexit.register(shutdown)
        return _default


def run_methods(
    sources: list[str],
    data: np.ndarray,
    limits: SandboxLimits | None = None,
    *,
    entry_points: Sequence[str] = ENTRY_POINTS,
) -> list[SandboxResult]:
    """Evaluate model-written methods on ``data`` (R, n): one SandboxResult per source.

    Sources failing the static check never run. The others run one after another, each
    in its own jailed process; a method that crashes, hangs or misbehaves is rejected
    with a reason and costs the others nothing.
    """
    return default_sandbox().run(sources, data, limits, entry_points=entry_points)


def shutdown() -> None:
    """Stop the default sandbox's server (it restarts on next use)."""
    if _default is not None:
        _default.close()


# --------------------------------------------------------------------------- server side
#
# Everything below runs in the sandbox server, a ``python -I -S -B`` started by
# Sandbox, or in the processes it forks for each method.


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


class _OutputLimit(BaseException):
    """Raised by print once a method has printed more than it may (not an Exception,
    so that ``except Exception`` in sandboxed code does not swallow it)."""


class _CappedOutput:
    """sys.stdout and sys.stderr of a method's process: counts, keeps the start, refuses past the cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.head: list[str] = []
        self.kept = 0
        self.exceeded = False

    def write(self, text: str) -> int:
        text = str(text)
        self.size += len(text)
        if self.size > self.limit:
            self.exceeded = True
            raise _OutputLimit(f"printed more than {self.limit} characters")
        if self.kept < _KEEP_OUTPUT:
            piece = text[: _KEEP_OUTPUT - self.kept]
            self.head.append(piece)
            self.kept += len(piece)
        return len(text)

    def flush(self) -> None:
        return None

    def text(self) -> str:
        return "".join(self.head)


class _Rejected(Exception):
    """A result of the wrong type, shape or finiteness: carries the reason."""


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


def _write_fd(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        view = view[os.write(fd, view):]


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


def _signal_reason(number: int, limits: SandboxLimits) -> str:
    if number == signal.SIGXCPU:
        return f"cpu time limit exceeded ({math.ceil(limits.cpu_seconds)} s)"
    if number == signal.SIGXFSZ:
        return "file size limit exceeded (tried to write a file)"
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "unknown"
    reason = f"process killed by signal {number} ({name})"
    if number in (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV):
        reason += ", likely out of memory or a crash"
    return reason


# --------------------------------------------------------------------------- a method's process


def _spare_main(job_fd: int, result_fd: int, workspace: _Workspace, capacity: int, scratch: int) -> NoReturn:
    """Body of a prepared method process. Never returns.

    Get ready (map and fault in ``capacity`` bytes of data, fault in ``scratch`` bytes of
    heap, warm up, confine), say "r", wait for the job, apply the job's limits, run the
    method, answer, exit. The host holds the other ends of both pipes.
    """
    code = 1
    try:
        data_map = _map_data(workspace.shared_fd, capacity)
        job_fd, result_fd = _fcntl_dup(job_fd), _fcntl_dup(result_fd)
        os.dup2(result_fd, _RESULT_FD)
        os.dup2(job_fd, _JOB_FD)
        _prefault_heap(scratch)
        _warm_up(workspace)
        baseline = _address_space_bytes()   # /proc is out of reach after the chroot
        _confine(workspace, _JOB_FD)
        _write_fd(_RESULT_FD, b"r")
        job = json.loads(_read_line(_JOB_FD, MAX_SOURCE_CHARS * 8 + 4096))
        os.close(_JOB_FD)
        limits = SandboxLimits(**job["limits"])
        rows, cols = int(job["rows"]), int(job["cols"])
        try:
            _limit(limits, baseline)
        except (OSError, ValueError) as exc:
            _answer(f"sandbox setup failed: {exc}", None, "")
        else:
            if data_map is None or len(data_map) < rows * cols * 8:
                raise RuntimeError("the data mapping is smaller than the data")
            data = np.frombuffer(data_map, dtype=np.float64, count=rows * cols).reshape(rows, cols)
            _answer(*_evaluate(job["source"], data, limits, tuple(job["entry_points"]), workspace))
        os.close(_RESULT_FD)   # the host sees the end now, not after this process's teardown
        code = 0
    finally:
        os._exit(code)


def _fcntl_dup(fd: int) -> int:
    """A copy of ``fd`` numbered above the slots it is about to be moved to."""
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD, 10)


def _map_data(shared_fd: int, size: int) -> mmap.mmap | None:
    """A private (copy-on-write) mapping of the first ``size`` bytes of the host's data, faulted in now.

    Private: whatever the method writes into its data stays its own (the descriptor is
    read-only, so no shared writable mapping of it could be made). The host writes each
    request's data into the same pages, which this mapping keeps seeing until the method
    writes to them.
    """
    if size == 0:
        return None
    data_map = mmap.mmap(shared_fd, size, access=mmap.ACCESS_COPY)
    try:
        data_map.madvise(_MADV_POPULATE_READ)
    except OSError:   # kernels before 5.14: touch one byte per page instead
        np.frombuffer(data_map, dtype=np.uint8)[:: mmap.PAGESIZE].sum()
    return data_map


def _prefault_heap(size: int) -> None:
    """Fault in ``size`` bytes of heap and free them: with the server's malloc settings
    (no mmap for large blocks, no trimming) the method's arrays reuse these pages
    instead of faulting on the critical path.

    A page costs the same fault here or in the method; faulting in more than a method
    uses costs CPU in every process, which on a small machine competes with the methods
    and the host (twice the data's size cost about 1.5 ms more per process than once).
    """
    scratch = np.empty(size // 8, dtype=np.float64)
    scratch.view(np.uint8)[:: mmap.PAGESIZE] = 0
    del scratch


# A method of our own that each prepared process runs once while getting ready, through
# the same path as every method (compile, exec with the sandbox's builtins and module
# views, the entry point, the checks on its result). After a fork, the first pass along
# that path writes to pages the process still shares with the server (reference counts,
# caches, allocator pools), and each such write is a copy-on-write fault: measured here,
# compiling and running a six-line method took 0.5-0.7 ms more in a fresh fork than
# after this warm-up. It calls no numpy function beyond those the path itself uses:
# warming a guess at what the method will call cost 2.5 ms of CPU per process for about
# 0.4 ms less on the method, and that CPU competes with the host and the methods on a
# small machine.
_WARM_UP_SOURCE = """
import numpy as np

def estimate_batch(X):
    return X[:, 0]
"""


def _warm_up(workspace: _Workspace) -> None:
    """Run ``_WARM_UP_SOURCE`` as a method would run (our code only, before confinement)."""
    data = np.linspace(-1.0, 1.0, 64).reshape(8, 8)
    _evaluate(_WARM_UP_SOURCE, data, SandboxLimits(), ENTRY_POINTS, workspace)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _read_line(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise EOFError("job ended early")
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)
        if size > limit:
            raise ValueError("job too long")


def _confine(workspace: _Workspace, last_fd: int) -> None:
    """Confine this process before any user code runs; OSError if any step fails.

    Descriptors: 0-2 on /dev/null, then the answer pipe (and the job pipe until the job
    is read), nothing else. As root: chroot into the empty jail and become nobody,
    which also makes RLIMIT_NPROC bind (the kernel exempts root from it).
    """
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for fd in _open_descriptors():
        if fd > last_fd:
            try:
                os.close(fd)
            except OSError:   # the descriptor that listed /proc/self/fd is already gone
                pass
    if workspace.root:
        os.chroot(workspace.jail)
        os.chdir("/")
        os.setgroups([])
        os.setgid(workspace.nobody[1])
        os.setuid(workspace.nobody[0])
    else:
        os.chdir(workspace.jail)


def _limit(limits: SandboxLimits, baseline: int) -> None:
    """Apply the method's rlimits: after this, no new processes, files, descriptors or core
    files, ``memory_mb`` more address space than ``baseline`` and ``cpu_seconds`` more CPU
    time than this process has used getting ready."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    cpu = max(math.ceil(used), round(used + limits.cpu_seconds))   # RLIMIT_CPU counts whole seconds
    memory = baseline + int(limits.memory_mb) * (1 << 20)
    for limit, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, 0),
                         (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_NOFILE, _RESULT_FD + 1),
                         (resource.RLIMIT_AS, memory)):
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _open_descriptors() -> list[int]:
    """This process's open descriptors (listing /proc is far cheaper than closing every number)."""
    try:
        return sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except FileNotFoundError:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return list(range(soft if 0 < soft < (1 << 16) else (1 << 16)))


def _address_space_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        pages = int(statm.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _answer(error: str | None, values: np.ndarray | None, output: str) -> None:
    """Write the whole answer (see ``_ANSWER``) in one system call where the pipe allows,
    so that the host wakes once."""
    error_bytes = (error or "")[:_MAX_REASON].encode("utf-8", "replace")
    output_bytes = output[:_KEEP_OUTPUT].encode("utf-8", "replace")
    payload = b"" if values is None else np.ascontiguousarray(values, dtype="<f8").tobytes()
    count = -1 if values is None else len(payload) // 8
    header = _ANSWER.pack(_ANSWER_MAGIC, count, len(error_bytes), len(output_bytes))
    chunks = [memoryview(chunk) for chunk in (header, error_bytes, output_bytes, payload) if chunk]
    while chunks:
        written = os.writev(_RESULT_FD, chunks)
        while chunks and written >= len(chunks[0]):
            written -= len(chunks.pop(0))
        if chunks and written:
            chunks[0] = chunks[0][written:]


def _evaluate(source: str, data: np.ndarray, limits: SandboxLimits, entry_points: tuple[str, ...],
              workspace: _Workspace) -> tuple[str | None, np.ndarray | None, str]:
    """Run the method on all rows: (error, values, printed output). Catches everything it runs."""
    sink = _CappedOutput(limits.max_output)
    sys.stdout = sys.stderr = sink  # type: ignore[assignment]
    warnings.simplefilter("ignore")
    namespace: dict[str, object] = {"__builtins__": workspace.builtins, "__name__": "__sandbox__"}
    try:
        exec(compile(source, _FILENAME, "exec"), namespace)
        name, function = _entry_point(namespace, entry_points)
        values = _call_batch(function, data) if name.endswith("_batch") else _call_rows(function, data)
        if sink.exceeded:
            return _output_reason(limits), None, sink.text()
        return None, values, sink.text()
    except _Rejected as exc:
        return str(exc), None, sink.text()
    except BaseException as exc:  # user code may raise anything, SystemExit included
        if sink.exceeded:
            return _output_reason(limits), None, sink.text()
        return _describe(exc, limits), None, sink.text()


def _entry_point(namespace: dict[str, object], entry_points: tuple[str, ...]) -> tuple[str, Callable[..., Any]]:
    for name in entry_points:
        if name in namespace:
            function = namespace[name]
            if not callable(function):
                raise _Rejected(f"{name} is {type(function).__name__}, not a function")
            return name, function
    raise _Rejected("no function named " + " or ".join(entry_points))


def _call_batch(function: Callable[..., Any], data: np.ndarray) -> np.ndarray:
    rows = data.shape[0]
    result = function(data)
    if result is None or isinstance(result, (str, bytes, bool, int, float, complex, np.generic)):
        raise _Rejected(f"returned {_type_name(result)}, expected an array of {rows} numbers")
    try:
        array = np.asarray(result)
    except (ValueError, TypeError) as exc:
        raise _Rejected(f"returned {_type_name(result)} that is not an array of numbers: {exc}") from None
    if array.dtype.kind not in "iuf":
        raise _Rejected(f"returned values of dtype {array.dtype}, expected numbers")
    if array.shape != (rows,):
        raise _Rejected(f"wrong shape {array.shape} for {rows} rows")
    values = array.astype(np.float64)
    _check_finite(values)
    return values


def _call_rows(function: Callable[..., Any], data: np.ndarray) -> np.ndarray:
    values = np.empty(data.shape[0], dtype=np.float64)
    for row in range(data.shape[0]):
        values[row] = _number(function(data[row]), row)
    _check_finite(values)
    return values


def _number(value: object, row: int) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise _Rejected(f"returned bool, expected a number (row {row})")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        return float(value)
    raise _Rejected(f"returned {_type_name(value)}, expected a number (row {row})")


def _check_finite(values: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise _Rejected(f"non-finite result in {bad} of {values.shape[0]} rows")


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _output_reason(limits: SandboxLimits) -> str:
    return f"output limit exceeded: printed more than {limits.max_output} characters"


def _describe(exc: BaseException, limits: SandboxLimits) -> str:
    """A one-line reason for an exception, with the line of the method it came from."""
    if isinstance(exc, MemoryError):
        return f"memory limit exceeded ({limits.memory_mb} MB)"
    try:
        text = " ".join(str(exc).split())[:300]
    except Exception:  # a user-defined __str__ may fail
        text = "<unprintable>"
    line = exc.lineno if isinstance(exc, SyntaxError) else _user_line(exc)
    reason = f"exception: {type(exc).__name__}" + (f": {text}" if text else "")
    return reason + (f" (line {line})" if line else "")


def _user_line(exc: BaseException) -> int | None:
    line = None
    trace = exc.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == _FILENAME:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


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
                "setuid_nobody": os.getuid() != 0,
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
