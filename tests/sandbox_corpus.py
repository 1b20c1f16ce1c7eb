"""Hostile, broken and honest methods for the sandbox tests.

Each hostile case is a method source and a substring its rejection reason must
contain. ``CANARY`` in a source stands for the path of a directory of files the test
watches; ``ROWS`` is the number of replications the tests pass (reasons quote it).

STATIC cases must be refused by ``check_source`` and never run. RUNTIME cases pass the
static check and must be refused by what happens when they run. UNCHECKED cases are
run with the static check switched off, to show the run-time layers (restricted
builtins, module views, rlimits, chroot) holding on their own; their sources use
escapes that the static check would have stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

ROWS = 200
COLS = 30


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    reason: str
    limits: str = "fast"   # "fast" (cpu 2 s, wall 3 s, 256 MB), "cpu" (cpu 1 s), "wall" (cpu 10 s, wall 2 s)


def _case(name: str, source: str, reason: str, limits: str = "fast") -> Case:
    return Case(name, source.strip("\n") + "\n", reason, limits)


STATIC: list[Case] = [
    # shell and processes
    _case("os_system", """
import os
def estimate(x):
    os.system("touch CANARY/pwned")
    return 0.0
""", "forbidden import 'os' (line 1)"),
    _case("subprocess_run", """
import subprocess
def estimate(x):
    subprocess.run(["sh", "-c", "echo pwned > CANARY/pwned"])
    return 0.0
""", "forbidden import 'subprocess' (line 1)"),
    _case("os_fork_from_import", """
from os import fork
def estimate(x):
    fork()
    return 0.0
""", "forbidden import 'os' (line 1)"),
    _case("pty_spawn", """
import pty
def estimate(x):
    pty.spawn("/bin/sh")
    return 0.0
""", "forbidden import 'pty' (line 1)"),
    _case("os_kill_parent", """
import os, signal
def estimate(x):
    os.kill(os.getppid(), signal.SIGKILL)
    return 0.0
""", "forbidden import 'os' (line 1)"),
    _case("signal_ignore_cpu_limit", """
import signal
signal.signal(signal.SIGXCPU, signal.SIG_IGN)
def estimate(x):
    return 0.0
""", "forbidden import 'signal' (line 1)"),
    _case("sys_exit", """
import sys
def estimate(x):
    sys.exit(0)
""", "forbidden import 'sys' (line 1)"),
    _case("sleep_past_timeout", """
import time
def estimate_batch(X):
    time.sleep(100)
    return X.mean(axis=1)
""", "forbidden import 'time' (line 1)"),
    # files
    _case("open_read", """
def estimate(x):
    return float(len(open("/etc/passwd").read()))
""", "forbidden builtin 'open' (line 2)"),
    _case("open_write_canary", """
def estimate(x):
    with open("CANARY/a.txt", "w") as handle:
        handle.write("overwritten")
    return 0.0
""", "forbidden builtin 'open' (line 2)"),
    _case("pathlib_write", """
from pathlib import Path
def estimate(x):
    Path("CANARY/pwned").write_text("x")
    return 0.0
""", "forbidden import 'pathlib' (line 1)"),
    _case("np_save", """
import numpy as np
def estimate_batch(X):
    np.save("CANARY/x.npy", X)
    return X.mean(axis=1)
""", "forbidden attribute 'numpy.save' (line 3)"),
    _case("np_load", """
import numpy as np
def estimate_batch(X):
    return np.load("CANARY/data.npy")[: len(X)]
""", "forbidden attribute 'numpy.load' (line 3)"),
    _case("np_fromfile", """
import numpy as np
def estimate(x):
    return float(np.fromfile("/etc/passwd", dtype=np.uint8).sum())
""", "forbidden attribute 'numpy.fromfile' (line 3)"),
    _case("ndarray_tofile", """
def estimate(x):
    x.tofile("CANARY/x.bin")
    return 0.0
""", "forbidden attribute 'tofile' (line 2)"),
    _case("np_savetxt", """
import numpy as np
def estimate_batch(X):
    np.savetxt("CANARY/x.txt", X)
    return X.mean(axis=1)
""", "forbidden attribute 'numpy.savetxt' (line 3)"),
    _case("from_numpy_import_load", """
from numpy import load
def estimate(x):
    return float(load("CANARY/data.npy")[0])
""", "forbidden name 'numpy.load' (line 1)"),
    _case("loadtxt_alias", """
import numpy
reader = numpy.loadtxt
def estimate(x):
    return 0.0
""", "forbidden attribute 'numpy.loadtxt' (line 2)"),
    _case("np_memmap", """
import numpy as np
def estimate(x):
    m = np.memmap("CANARY/a.txt", mode="r+")
    return 0.0
""", "forbidden attribute 'numpy.memmap' (line 3)"),
    # network
    _case("socket_connect", """
import socket
def estimate(x):
    socket.create_connection(("example.com", 80))
    return 0.0
""", "forbidden import 'socket' (line 1)"),
    _case("urllib_fetch", """
import urllib.request
def estimate(x):
    urllib.request.urlopen("http://example.com")
    return 0.0
""", "forbidden import 'urllib.request' (line 1)"),
    # import tricks
    _case("subclasses_chain", """
def estimate(x):
    for klass in ().__class__.__base__.__subclasses__():
        if klass.__name__ == "_wrap_close":
            klass.__init__.__globals__["system"]("touch CANARY/pwned")
    return 0.0
""", "forbidden attribute '__class__' (line 2)"),
    _case("function_globals", """
def estimate(x):
    return float(len(estimate.__globals__))
""", "forbidden attribute '__globals__' (line 2)"),
    _case("globals_call", """
def estimate(x):
    return float(len(globals()["__builtins__"]))
""", "forbidden builtin 'globals' (line 2)"),
    _case("sys_modules", """
import sys
def estimate(x):
    sys.modules["os"].system("id")
    return 0.0
""", "forbidden import 'sys' (line 1)"),
    _case("import_builtins", """
import builtins
def estimate(x):
    return float(len(builtins.open("/etc/passwd").read()))
""", "forbidden import 'builtins' (line 1)"),
    _case("importlib_import", """
import importlib
def estimate(x):
    importlib.import_module("os").system("id")
    return 0.0
""", "forbidden import 'importlib' (line 1)"),
    _case("dunder_import_call", """
def estimate(x):
    __import__("os").system("id")
    return 0.0
""", "forbidden builtin '__import__' (line 2)"),
    _case("builtins_name", """
def estimate(x):
    __builtins__["open"]("CANARY/a.txt", "w")
    return 0.0
""", "forbidden name '__builtins__' (line 2)"),
    _case("getattr_computed", """
import numpy as np
def estimate_batch(X):
    getattr(np, "sa" + "ve")("CANARY/x.npy", X)
    return X.mean(axis=1)
""", "getattr is allowed only when called with a literal attribute name (line 3)"),
    _case("getattr_dunder_literal", """
def estimate(x):
    klass = getattr(x, "__class__")
    return 0.0
""", "forbidden attribute '__class__' (line 2)"),
    _case("type_subclasses", """
def estimate(x):
    return float(len(type.__subclasses__(object)))
""", "forbidden builtin 'type' (line 2)"),
    _case("numpy_dict", """
import numpy as np
def estimate_batch(X):
    np.__dict__["save"]("CANARY/x.npy", X)
    return X.mean(axis=1)
""", "forbidden attribute 'numpy.__dict__' (line 3)"),
    _case("numpy_lib", """
import numpy as np
def estimate(x):
    np.lib.npyio.DataSource("CANARY").open("a.txt")
    return 0.0
""", "forbidden attribute 'numpy.lib' (line 3)"),
    _case("numpy_ctypeslib", """
import numpy as np
def estimate(x):
    np.ctypeslib.load_library("libc", "/lib")
    return 0.0
""", "forbidden attribute 'numpy.ctypeslib' (line 3)"),
    _case("numpy_private_core", """
import numpy as np
def estimate(x):
    return float(len(dir(np._core.multiarray)))
""", "forbidden attribute 'numpy._core' (line 3)"),
    _case("scipy_stats_spec", """
import scipy.stats
def estimate(x):
    scipy.stats.__spec__.loader.get_data("/etc/passwd")
    return 0.0
""", "forbidden attribute 'scipy.stats.__spec__' (line 3)"),
    _case("statistics_sys", """
import statistics
def estimate(x):
    statistics.sys.modules["os"].system("id")
    return 0.0
""", "forbidden attribute 'statistics.sys' (line 3)"),
    _case("scipy_other_subpackage", """
from scipy import io
def estimate(x):
    io.savemat("CANARY/x.mat", {"x": x})
    return 0.0
""", "forbidden import 'scipy.io' (line 1)"),
    _case("numpy_testing", """
import numpy as np
def estimate(x):
    np.testing.assert_equal(1, 1)
    return 0.0
""", "forbidden attribute 'numpy.testing' (line 3)"),
    _case("eval_call", """
def estimate(x):
    return eval("__import__('os').system('id')")
""", "forbidden builtin 'eval' (line 2)"),
    _case("exec_call", """
def estimate(x):
    exec("import os")
    return 0.0
""", "forbidden builtin 'exec' (line 2)"),
    _case("compile_call", """
def estimate(x):
    code = compile("1", "f", "eval")
    return 0.0
""", "forbidden builtin 'compile' (line 2)"),
    _case("vars_call", """
import numpy as np
def estimate(x):
    return float(len(vars(np)))
""", "forbidden builtin 'vars' (line 3)"),
    _case("setattr_monkeypatch", """
import numpy as np
setattr(np, "mean", lambda *a, **k: 0.0)
def estimate(x):
    return 0.0
""", "forbidden builtin 'setattr' (line 2)"),
    _case("breakpoint_call", """
def estimate(x):
    breakpoint()
    return 0.0
""", "forbidden builtin 'breakpoint' (line 2)"),
    _case("generator_frame_escape", """
def estimate(x):
    gen = (v for v in x)
    return float(len(gen.gi_frame.f_back.f_globals))
""", "forbidden attribute 'gi_frame' (line 3)"),
    _case("traceback_frame_escape", """
def estimate(x):
    try:
        1 / 0
    except ZeroDivisionError as exc:
        frame = exc.__traceback__.tb_frame
    return 0.0
""", "forbidden attribute '__traceback__' (line 5)"),
    _case("match_class_attribute", """
def estimate(x):
    match x:
        case object(__class__=klass):
            return 0.0
    return 1.0
""", "forbidden attribute '__class__' (line 3)"),
    # raw memory
    _case("object_array_over_buffer", """
import numpy as np
def estimate(x):
    fake = np.ndarray((2,), dtype=object, buffer=x)
    return 0.0
""", "forbidden attribute 'numpy.ndarray' (allowed only inside isinstance/issubclass) (line 3)"),
    _case("ndarray_class_alias", """
import numpy as np
def estimate(x):
    make = np.ndarray
    return 0.0
""", "forbidden attribute 'numpy.ndarray' (allowed only inside isinstance/issubclass) (line 3)"),
    _case("array_interface_spoof", """
import numpy as np
class Pointer:
    __array_interface__ = {"shape": (1,), "typestr": "<f8", "data": (8, False)}
def estimate(x):
    return float(np.asarray(Pointer())[0])
""", "forbidden name '__array_interface__' (line 3)"),
    _case("ndarray_ctypes_pointer", """
def estimate(x):
    return float(x.ctypes.data)
""", "forbidden attribute 'ctypes' (line 2)"),
    _case("resize_without_refcheck", """
def estimate(x):
    y = x.copy()
    y.resize(10**6, refcheck=False)
    return 0.0
""", "forbidden attribute 'resize' (line 3)"),
    _case("type_builtin", """
def estimate(x):
    klass = type(x)
    return 0.0
""", "forbidden builtin 'type' (line 2)"),
    _case("ctypes_import", """
import ctypes
def estimate(x):
    ctypes.CDLL(None).system(b"id")
    return 0.0
""", "forbidden import 'ctypes' (line 1)"),
    _case("pickle_loads", """
import pickle
def estimate(x):
    pickle.loads(b"cos\\nsystem\\n(S'id'\\ntR.")
    return 0.0
""", "forbidden import 'pickle' (line 1)"),
    # broken sources
    _case("syntax_error", """
def estimate(x)
    return 0.0
""", "syntax error: expected ':' (line 1)"),
    _case("missing_entry_point", """
def estimator(x):
    return 0.0
""", "no top-level function named estimate_batch or estimate"),
    _case("star_import", """
from numpy import *
def estimate(x):
    return float(mean(x))
""", "star import from 'numpy' is not allowed (line 1)"),
    _case("relative_import", """
from . import secrets
def estimate(x):
    return 0.0
""", "relative import is not allowed (line 1)"),
]


RUNTIME: list[Case] = [
    _case("infinite_loop_cpu_limit", """
def estimate_batch(X):
    while True:
        pass
""", "cpu time limit exceeded (1 s)", "cpu"),
    _case("infinite_loop_wall_limit", """
def estimate_batch(X):
    while True:
        pass
""", "timeout after 2 s", "wall"),
    _case("numpy_spin_wall_limit", """
import numpy as np
def estimate_batch(X):
    while True:
        np.sort(np.repeat(X, 10, axis=0), axis=1)
""", "timeout after 2 s", "wall"),
    _case("memory_bomb_numpy", """
import numpy as np
def estimate_batch(X):
    return np.ones(10**11)[: len(X)]
""", "memory limit exceeded (256 MB)"),
    _case("memory_bomb_list_growth", """
def estimate(x):
    hoard = []
    while True:
        hoard.append([0.0] * 100_000)
""", "memory limit exceeded (256 MB)"),
    _case("memory_bomb_bytes", """
def estimate(x):
    blob = b"x" * 10**10
    return 0.0
""", "memory limit exceeded (256 MB)"),
    _case("recursion_bomb", """
def deeper(n):
    return deeper(n + 1)
def estimate(x):
    return deeper(0)
""", "exception: RecursionError: maximum recursion depth exceeded (line 2)"),
    _case("nested_repr_recursion", """
def estimate(x):
    nest = []
    for _ in range(200_000):
        nest = [nest]
    return float(len(repr(nest)))
""", "exception: RecursionError"),
    _case("huge_output_array", """
import numpy as np
def estimate_batch(X):
    return np.zeros(len(X) * 1000)
""", "wrong shape (200000,) for 200 rows"),
    _case("huge_string_result", """
def estimate_batch(X):
    return "x" * 10**7
""", "returned str, expected an array of 200 numbers"),
    _case("print_flood", """
def estimate(x):
    while True:
        print("spam" * 100)
""", "output limit exceeded: printed more than 10000 characters"),
    _case("print_flood_swallowed", """
def estimate_batch(X):
    for _ in range(10_000):
        try:
            print("spam" * 100)
        except BaseException:
            pass
    return X.mean(axis=1)
""", "output limit exceeded: printed more than 10000 characters"),
    _case("all_nan", """
import numpy as np
def estimate_batch(X):
    return X.mean(axis=1) * np.nan
""", "non-finite result in 200 of 200 rows"),
    _case("some_inf", """
import math
def estimate(x):
    return math.inf if x[0] > 0 else float(x.mean())
""", "non-finite result in"),
    _case("string_per_row", """
def estimate(x):
    return "the mean"
""", "returned str, expected a number (row 0)"),
    _case("none_per_row", """
def estimate(x):
    x.mean()
""", "returned None, expected a number (row 0)"),
    _case("bool_per_row", """
def estimate(x):
    return True
""", "returned bool, expected a number (row 0)"),
    _case("array_per_row", """
import numpy as np
def estimate(x):
    return np.array([x.mean()])
""", "returned ndarray, expected a number (row 0)"),
    _case("list_of_wrong_length", """
def estimate_batch(X):
    return [1.0, 2.0, 3.0]
""", "wrong shape (3,) for 200 rows"),
    _case("wrong_shape_2d", """
def estimate_batch(X):
    return X[:, :2]
""", "wrong shape (200, 2) for 200 rows"),
    _case("none_batch", """
def estimate_batch(X):
    X.mean(axis=1)
""", "returned None, expected an array of 200 numbers"),
    _case("complex_result", """
def estimate_batch(X):
    return X.mean(axis=1) + 1j
""", "returned values of dtype complex128, expected numbers"),
    _case("ragged_result", """
def estimate_batch(X):
    return [[1.0], [1.0, 2.0]]
""", "returned list that is not an array of numbers"),
    _case("zero_division", """
def estimate(x):
    return 1 / 0
""", "exception: ZeroDivisionError: division by zero (line 2)"),
    _case("raise_custom", """
def estimate(x):
    raise ValueError("refusing to estimate")
""", "exception: ValueError: refusing to estimate (line 2)"),
    _case("raise_system_exit", """
def estimate(x):
    raise SystemExit(3)
""", "exception: SystemExit: 3 (line 2)"),
    _case("module_level_raise", """
broken = 1 / 0
def estimate(x):
    return 0.0
""", "exception: ZeroDivisionError: division by zero (line 1)"),
    _case("os_without_import", """
def estimate(x):
    return float(os.getpid())
""", "exception: NameError: name 'os' is not defined (line 2)"),
    _case("entry_point_not_callable", """
estimate_batch = 3
def estimate(x):
    return 0.0
""", "estimate_batch is int, not a function"),
    _case("huge_exception_message", """
def estimate(x):
    raise ValueError("x" * 10**7)
""", "exception: ValueError: xxxx"),
]


UNCHECKED: list[Case] = [
    _case("import_os", """
import os
def estimate(x):
    os.system("touch CANARY/pwned")
    return 0.0
""", "exception: ImportError: import of 'os' is not allowed in the sandbox (line 1)"),
    _case("open_builtin", """
def estimate(x):
    open("CANARY/a.txt", "w").write("overwritten")
    return 0.0
""", "exception: NameError: name 'open' is not defined (line 2)"),
    _case("numpy_save_from_view", """
import numpy as np
def estimate_batch(X):
    np.save("CANARY/x.npy", X)
    return X.mean(axis=1)
""", "exception: AttributeError: module 'numpy' has no attribute 'save' in the sandbox (line 3)"),
    _case("statistics_sys_from_view", """
import statistics
def estimate(x):
    statistics.sys.modules["os"].system("touch CANARY/pwned")
    return 0.0
""", "exception: AttributeError: module 'statistics' has no attribute 'sys' in the sandbox (line 3)"),
    _case("getattr_runtime_guard", """
import numpy as np
def estimate(x):
    name = "lo" + "ad"
    return float(getattr(np, name)("CANARY/data.npy")[0])
""", "exception: AttributeError: attribute 'load' is not allowed in the sandbox (line 4)"),
    _case("subclasses_os_system", """
def estimate(x):
    for klass in ().__class__.__base__.__subclasses__():
        if klass.__name__ == "_wrap_close":
            status = klass.__init__.__globals__["system"]("touch CANARY/pwned")
            return 0.0 if status == 0 else 1.0
    raise LookupError("no _wrap_close")
""", "ok: 1.0"),
    _case("real_builtins_import_os_system", """
def estimate(x):
    os = print.__self__.__import__("os")
    status = os.system("echo pwned > CANARY/pwned")
    return 0.0 if status == 0 else 1.0
""", "ok: 1.0"),
    _case("real_builtins_open_write", """
def estimate(x):
    real_open = print.__self__.open
    real_open("CANARY/a.txt", "w").write("overwritten")
    return 0.0
""", "exception: OSError: [Errno 24] Too many open files"),
    _case("real_builtins_read_passwd", """
def estimate(x):
    return float(len(print.__self__.open("/etc/passwd").read()))
""", "exception: OSError: [Errno 24] Too many open files"),
    _case("fork_via_globals", """
def estimate(x):
    os = print.__self__.__import__("os")
    os.fork()
    return 0.0
""", "exception: BlockingIOError: [Errno 11] Resource temporarily unavailable (line 3)"),
    _case("socket_via_real_import", """
def estimate(x):
    socket = print.__self__.__import__("socket")
    socket.create_connection(("127.0.0.1", 9))
    return 0.0
""", "exception: OSError: [Errno 24] Too many open files"),
    _case("raise_rlimit_back", """
def estimate(x):
    resource = print.__self__.__import__("resource")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    return 0.0
""", "exception: ValueError: not allowed to raise maximum limit (line 3)"),
    _case("tofile_at_runtime", """
def estimate(x):
    x.tofile("CANARY/x.bin")
    return 0.0
""", "exception: SystemError: <method 'tofile' of 'numpy.ndarray' objects> returned NULL"),
    _case("environment_secret", """
def estimate(x):
    os = print.__self__.__import__("os")
    return 1.0 if "OURO_SANDBOX_TEST_SECRET" in os.environ else 2.0
""", "ok: 2.0"),
    _case("list_host_files", """
def estimate(x):
    os = print.__self__.__import__("os")
    return float(len(os.listdir("/")))
""", "exception: OSError: [Errno 24] Too many open files"),
]


# Honest methods: each passes and must match an in-process reference.

TRIMMED_MEAN_BY_HAND = """
import math

def estimate(x):
    # 20% trimmed mean, written out: sort, drop floor(0.2 n) from each end, average
    ordered = sorted(float(v) for v in x)
    n = len(ordered)
    k = int(math.floor(0.2 * n))
    kept = ordered[k:n - k]
    return math.fsum(kept) / len(kept)
"""

HUBER_M_ESTIMATOR = """
import numpy as np

def estimate(x, c=1.345, tol=1e-10, max_iter=200):
    # Huber M-estimator of location by iteratively reweighted means, MAD scale
    mu = np.median(x)
    scale = np.median(np.abs(x - mu)) / 0.6744897501960817
    if scale == 0:
        return float(mu)
    for _ in range(max_iter):
        r = (x - mu) / scale
        w = np.minimum(1.0, c / np.maximum(np.abs(r), 1e-300))
        new = np.sum(w * x) / np.sum(w)
        if abs(new - mu) < tol * scale:
            return float(new)
        mu = new
    return float(mu)
"""

MEDIAN_OF_MEANS_BATCH = """
import numpy as np

def estimate_batch(X, blocks=5):
    # median of means over 5 equal blocks, for every replication at once
    rows, n = X.shape
    size = n // blocks
    means = X[:, : size * blocks].reshape(rows, blocks, size).mean(axis=2)
    return np.median(means, axis=1)
"""

SCIPY_TRIM_MEAN_BATCH = """
from scipy import stats

def estimate_batch(X):
    return stats.trim_mean(X, 0.1, axis=1)
"""

STATISTICS_MEDIAN_WITH_PRINT = """
import statistics
print("median via the statistics module")

def estimate(x):
    return statistics.median(x.tolist())
"""

BOTH_ENTRY_POINTS = """
import numpy as np

def estimate(x):
    return 0.0

def estimate_batch(X):
    return np.mean(X, axis=1)
"""

CLASS_AND_ISINSTANCE = """
import numpy as np
from numpy.random import default_rng

class Winsorizer:
    def __init__(self, q):
        self.q = q

    def __call__(self, x):
        lo, hi = np.quantile(x, [self.q, 1 - self.q])
        return np.clip(x, lo, hi)

WINSORIZE = Winsorizer(0.1)

def estimate(x):
    assert isinstance(x, np.ndarray)
    if __name__ == "__main__":
        raise RuntimeError("not run as a script")
    noise = default_rng(0).normal(size=3)   # seeded: deterministic
    return float(np.mean(WINSORIZE(x)) + 0.0 * noise.sum())
"""
