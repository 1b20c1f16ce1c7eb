"""The host side of the sandbox: ``Sandbox``, ``run_methods`` and ``default_sandbox``.

Runs in the caller's process. ``Sandbox`` runs the static check (check.py), starts the
server (server.py, in a ``python -I -S -B`` that loads its modules by path: see
``_BOOTSTRAP``), writes the data into the memfd that methods' processes map, holds the
prepared processes (child.py) the server sends, writes each its method, reads and checks
its answer (in protocol.py's format) and kills it; when the server dies or stops
answering, it starts a new one.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .check import ENTRY_POINTS, MAX_SOURCE_CHARS, _imported_modules, check_source
from .protocol import _ANSWER, _ANSWER_MAGIC, _KEEP_OUTPUT, _MAX_REASON, SandboxLimits, _close_all

_MIN_SCRATCH = 1 << 20          # bytes of heap a prepared process faults in: the data's size (one ...
_MAX_SCRATCH = 128 << 20        # ... full-size temporary, such as a sorted copy), within these bounds
_SPARES = 2                     # prepared processes kept waiting: one for the next method, one getting ready
_READY_TIMEOUT = 30.0           # seconds for a prepared process to get ready
_START_TIMEOUT = 60.0           # seconds for the server to start (imports numpy)
_PRELOAD_ALLOWANCE = 120.0      # seconds for the server to send a process when it must import (scipy.stats)
_FORK_TIMEOUT = 5.0             # ... and when it need not: a fork takes milliseconds
_REAP_WAIT = 2.0                # seconds the server waits for a process that ended without an answer to exit
_GRACE = 3.0                    # seconds the host allows the server beyond that, or for taking a request

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
# passed on the command line and loads the server's modules from this package's
# directory by path, as submodules of a private package ``_ouro_sandbox`` that holds
# nothing else (neither this module nor the ``ouro`` package is ever imported there).
_BOOTSTRAP = """\
import sys
sys.path.extend(sys.argv[5:])
import importlib.util as u
import types
sys.modules['_ouro_sandbox'] = types.ModuleType('_ouro_sandbox')
for n in ('protocol', 'check', 'child', 'server'):
    s = u.spec_from_file_location('_ouro_sandbox.' + n, sys.argv[1] + '/' + n + '.py')
    m = u.module_from_spec(s)
    sys.modules[s.name] = m
    s.loader.exec_module(m)
m._serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
"""


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
        command = [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, os.path.dirname(os.path.abspath(__file__)),
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
