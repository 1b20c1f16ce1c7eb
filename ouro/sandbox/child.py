"""A method's process: forked from the server, prepared ahead of its method, confined,
and given one method only.

Everything here runs in the processes that the server forks for each method
(``_confine``, ``_limit`` and ``_write_fd`` also in the probe process it forks once at
start, see ``server._probe_jail``). ``_spare_main`` is a process's whole life: map the
host's data (copy on write) and fault it in, fault in scratch memory, run a method of
our own once (``_warm_up``), confine itself (``_confine``), say it is ready, read its
job, apply the job's rlimits (``_limit``), run the method with the server's restricted
builtins and module views (``_evaluate``), write the answer (``_answer``, in protocol's
format) and exit. The server loads this module by path, with check and protocol
(``host._BOOTSTRAP``).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import resource
import signal
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import numpy as np

from .check import _FILENAME, ENTRY_POINTS, MAX_SOURCE_CHARS
from .protocol import _ANSWER, _ANSWER_MAGIC, _KEEP_OUTPUT, _MAX_REASON, SandboxLimits

if TYPE_CHECKING:
    from .server import _Workspace

_RESULT_FD = 3                  # the one descriptor a method's process may write to
_JOB_FD = 4                     # where a prepared process reads its job (closed before user code)
_MADV_POPULATE_READ = 22        # Linux 5.14+; not exported by the mmap module before Python 3.12


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


def _write_fd(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        view = view[os.write(fd, view):]


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
