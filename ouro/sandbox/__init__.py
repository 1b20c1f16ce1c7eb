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

The code, one job per module:

- ``check``: the static check (layer 1) and the allow- and deny-lists it applies.
- ``host``: the caller's side: ``Sandbox``, ``run_methods``; it starts the server, holds
  the prepared processes it sends, gives each its method and reads its answer.
- ``server``: the sandbox server: its main loop, the workspace that builds what
  sandboxed code sees (module views, restricted builtins, the guarded importer: layer
  2), the forking of prepared processes, the start-up probe of the restrictions.
- ``child``: a method's process: getting ready, confinement and rlimits (layer 3),
  running the method and writing its answer.
- ``protocol``: what both sides share: ``SandboxLimits`` (sent with each job), the
  binary answer's format and the caps on its text.

The server loads ``protocol``, ``check``, ``child`` and ``server`` by path (see
``host._BOOTSTRAP``); they import only the standard library, numpy and each other, never
``host`` or the rest of ``ouro``.
"""

from .check import (ALLOWED_IMPORTS, DENIED_ATTRIBUTES, ENTRY_POINTS, FORBIDDEN_BUILTINS, MAX_SOURCE_CHARS,
                    check_source)
from .host import Sandbox, SandboxError, SandboxResult, default_sandbox, run_methods, shutdown
from .protocol import SandboxLimits

__all__ = [
    "ALLOWED_IMPORTS",
    "DENIED_ATTRIBUTES",
    "ENTRY_POINTS",
    "FORBIDDEN_BUILTINS",
    "MAX_SOURCE_CHARS",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "check_source",
    "default_sandbox",
    "run_methods",
    "shutdown",
]
