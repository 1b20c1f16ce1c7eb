"""The sandbox: hostile methods are rejected with precise reasons and leave the host
untouched; honest methods return what they return in-process."""

from __future__ import annotations

import mmap
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from ouro.sandbox import host as sandbox_host
from ouro.sandbox import Sandbox, SandboxLimits, check_source, run_methods, shutdown

try:
    from tests import sandbox_corpus as corpus
except ImportError:
    import sandbox_corpus as corpus  # type: ignore[no-redef]

LIMITS = {
    "fast": SandboxLimits(cpu_seconds=2, wall_seconds=3, memory_mb=256, max_output=10_000),
    "cpu": SandboxLimits(cpu_seconds=1, wall_seconds=3, memory_mb=256, max_output=10_000),
    "wall": SandboxLimits(cpu_seconds=10, wall_seconds=2, memory_mb=256, max_output=10_000),
}
MARGIN = 3.0
SECRET = "OURO_SANDBOX_TEST_SECRET"


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(20240611).standard_normal((corpus.ROWS, corpus.COLS))


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Point tempfile at a directory of our own, so that its listing is ours to assert on."""
    folder = tmp_path_factory.mktemp("sandbox-tmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = saved


@pytest.fixture(scope="module")
def sandbox(private_tmp: Path):
    """One server for the module, started with a secret in the host environment."""
    os.environ[SECRET] = "must not be visible in the sandbox"
    box = Sandbox()
    box.start()
    yield box
    box.close()
    os.environ.pop(SECRET, None)
    assert list(private_tmp.iterdir()) == [], "the sandbox left files in the temp dir"


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("canary")
    (folder / "a.txt").write_text("original contents\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text("more\n")
    np.save(folder / "data.npy", np.arange(5.0))
    return folder


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else None)
            for path in sorted(folder.rglob("*"))}


@pytest.fixture
def untouched(canary: Path, private_tmp: Path, sandbox: Sandbox):
    """Asserts after the test that the canary, the working directory and the temp dir are as before."""
    before = (_tree(canary), sorted(os.listdir(os.getcwd())), sorted(os.listdir(private_tmp)))
    yield
    assert _tree(canary) == before[0], "files in the canary directory changed"
    assert sorted(os.listdir(os.getcwd())) == before[1], "files appeared in the working directory"
    assert sorted(os.listdir(private_tmp)) == before[2], "files appeared in the temp dir"


def _source(case: corpus.Case, canary: Path) -> str:
    return case.source.replace("CANARY", str(canary))


# --------------------------------------------------------------------------- hostile corpus


def test_corpus_is_large_enough() -> None:
    hostile = corpus.STATIC + corpus.RUNTIME + corpus.UNCHECKED
    assert len(hostile) >= 40
    assert len({case.name for case in hostile}) == len(hostile)


@pytest.mark.parametrize("case", corpus.STATIC, ids=lambda case: case.name)
def test_static_check_rejects(case: corpus.Case, sandbox: Sandbox, canary: Path, data: np.ndarray,
                              untouched: None) -> None:
    source = _source(case, canary)
    reason = check_source(source)
    assert reason is not None and case.reason in reason
    result = sandbox.run([source], data, LIMITS["fast"])[0]
    assert result.values is None and result.error == reason
    assert result.seconds == 0.0, "a statically rejected method must never run"


@pytest.mark.parametrize("case", corpus.RUNTIME, ids=lambda case: case.name)
def test_runtime_rejects(case: corpus.Case, sandbox: Sandbox, canary: Path, data: np.ndarray,
                         untouched: None) -> None:
    source = _source(case, canary)
    assert check_source(source) is None, "a runtime case must get past the static check"
    limits = LIMITS[case.limits]
    began = time.monotonic()
    result = sandbox.run([source], data, limits)[0]
    elapsed = time.monotonic() - began
    assert result.values is None
    assert result.error is not None and case.reason in result.error
    assert len(result.error) <= 500
    assert elapsed <= limits.wall_seconds + MARGIN
    assert not result.system_error


@pytest.mark.parametrize("case", corpus.UNCHECKED, ids=lambda case: case.name)
def test_runtime_layers_hold_without_static_check(case: corpus.Case, sandbox: Sandbox, canary: Path,
                                                  data: np.ndarray, untouched: None) -> None:
    limits = LIMITS[case.limits]
    began = time.monotonic()
    result = sandbox.run([_source(case, canary)], data, limits, static_check=False)[0]
    elapsed = time.monotonic() - began
    if case.reason.startswith("ok: "):   # the escape ran; what it returns says it failed
        assert result.error is None and result.values is not None
        assert np.all(result.values == float(case.reason[4:]))
    else:
        assert result.error is not None and case.reason in result.error
    assert not (canary / "pwned").exists()
    assert elapsed <= limits.wall_seconds + MARGIN


def test_restrictions_hold_on_this_host(sandbox: Sandbox) -> None:
    """The server's own probe: what a jailed process could not do here."""
    enforced = sandbox.enforcement
    for key in ("new_processes_blocked", "file_reads_blocked", "file_writes_blocked", "sockets_blocked"):
        assert enforced.get(key) is True, (key, enforced)
    if os.geteuid() == 0:
        assert enforced["chroot"] and enforced["setuid_nobody"]
    else:   # no chroot and no uid change without root, and the probe must not claim them
        assert not enforced["chroot"] and not enforced["setuid_nobody"]


def test_method_cannot_signal_its_server(sandbox: Sandbox, data: np.ndarray) -> None:
    """As root the jailed process is nobody: killing the server (or anything of root's) fails."""
    if os.geteuid() != 0:
        pytest.skip("without root the method runs as the same user: see test_server_death_is_survived")
    pid = sandbox.server_pid
    source = (
        "def estimate(x):\n"
        "    os = print.__self__.__import__('os')\n"
        "    os.kill(os.getppid(), 9)\n"
        "    return 0.0\n"
    )
    result = sandbox.run([source], data, LIMITS["fast"], static_check=False)[0]
    assert result.error is not None and "PermissionError" in result.error
    assert sandbox.server_pid == pid


# --------------------------------------------------------------------------- honest methods


def _in_process(source: str, data: np.ndarray) -> np.ndarray:
    """The same source run directly, as the reference a sandboxed run must reproduce."""
    namespace: dict[str, object] = {"__name__": "__sandbox__"}
    exec(compile(source, "<reference>", "exec"), namespace)
    if "estimate_batch" in namespace:
        return np.asarray(namespace["estimate_batch"](data), dtype=np.float64)  # type: ignore[operator]
    return np.array([namespace["estimate"](row) for row in data], dtype=np.float64)  # type: ignore[operator]


def test_honest_methods_match_references(sandbox: Sandbox, data: np.ndarray, untouched: None) -> None:
    sources = [
        corpus.TRIMMED_MEAN_BY_HAND, corpus.HUBER_M_ESTIMATOR, corpus.MEDIAN_OF_MEANS_BATCH,
        corpus.SCIPY_TRIM_MEAN_BATCH, corpus.STATISTICS_MEDIAN_WITH_PRINT, corpus.BOTH_ENTRY_POINTS,
        corpus.CLASS_AND_ISINSTANCE,
    ]
    for source in sources:
        assert check_source(source) is None
    results = sandbox.run(sources, data, SandboxLimits(wall_seconds=30))
    for result in results:
        assert result.error is None, result.error
        assert result.values is not None
        assert result.values.shape == (len(data),) and result.values.dtype == np.float64
    trimmed, huber, mom, scipy_trim, stat_median, both, winsor = (result.values for result in results)

    def close(actual: np.ndarray | None, expected: np.ndarray) -> None:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)

    close(trimmed, np.array([scipy.stats.trim_mean(row, 0.2) for row in data]))
    close(huber, _in_process(corpus.HUBER_M_ESTIMATOR, data))
    blocks = [np.median([row[i * 6:(i + 1) * 6].mean() for i in range(5)]) for row in data]
    close(mom, np.array(blocks))
    close(mom, _in_process(corpus.MEDIAN_OF_MEANS_BATCH, data))
    close(scipy_trim, scipy.stats.trim_mean(data, 0.1, axis=1))
    close(stat_median, np.median(data, axis=1))
    close(both, data.mean(axis=1))
    close(winsor, _in_process(corpus.CLASS_AND_ISINSTANCE, data))
    assert results[4].output == "median via the statistics module\n"
    huber_reference = np.array([scipy.stats.trim_mean(row, 0.0) for row in data])
    assert np.abs(huber - huber_reference).max() < 0.5   # sanity: a location estimate, not noise


def test_batch_isolates_methods(sandbox: Sandbox, canary: Path, data: np.ndarray, untouched: None) -> None:
    """Crashes, timeouts and monkeypatches in one batch cost the other methods nothing."""
    monkeypatch = (
        "import numpy as np\n"
        "np.mean = lambda *args, **kwargs: 0.0\n"
        "def estimate_batch(X):\n"
        "    return np.mean(X, axis=1) + 0.0 * X[:, 0]\n"
    )
    by_name = {case.name: _source(case, canary) for case in corpus.STATIC + corpus.RUNTIME}
    sources = [
        corpus.MEDIAN_OF_MEANS_BATCH, by_name["memory_bomb_numpy"], monkeypatch,
        corpus.BOTH_ENTRY_POINTS, by_name["infinite_loop_wall_limit"], by_name["os_system"],
        by_name["print_flood"], corpus.TRIMMED_MEAN_BY_HAND,
    ]
    limits = LIMITS["wall"]
    began = time.monotonic()
    results = sandbox.run(sources, data, limits)
    elapsed = time.monotonic() - began
    assert elapsed <= 2 * limits.wall_seconds + MARGIN
    assert [result.ok for result in results] == [True, False, True, True, False, False, False, True]
    assert "memory limit exceeded" in str(results[1].error)
    np.testing.assert_array_equal(results[2].values, np.zeros(len(data)))
    np.testing.assert_allclose(results[3].values, data.mean(axis=1), rtol=0, atol=1e-12)
    assert results[4].error == "timeout after 2 s"
    assert "forbidden import 'os'" in str(results[5].error)
    assert "output limit exceeded" in str(results[6].error)
    np.testing.assert_allclose(results[7].values, [scipy.stats.trim_mean(row, 0.2) for row in data],
                               rtol=0, atol=1e-12)


def test_writes_to_the_data_stay_with_the_method(sandbox: Sandbox, data: np.ndarray) -> None:
    """The data is mapped copy-on-write: a method that overwrites it changes nothing for the next."""
    vandal = "def estimate_batch(X):\n    X[:] = 0.0\n    return X[:, 0] + 1.0\n"
    original = data.copy()
    results = sandbox.run([vandal, corpus.BOTH_ENTRY_POINTS, vandal, corpus.BOTH_ENTRY_POINTS], data, LIMITS["fast"])
    np.testing.assert_array_equal(results[0].values, np.ones(len(data)))
    for result in results[1::2]:
        np.testing.assert_allclose(result.values, data.mean(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(data, original)


def test_data_of_any_shape_in_turn(sandbox: Sandbox) -> None:
    """Requests of growing and shrinking size each see exactly their own data."""
    rng = np.random.default_rng(7)
    for shape in [(200, 30), (5_000, 40), (3, 2), (20_000, 7), (1, 1)]:
        matrix = rng.standard_normal(shape)
        result = sandbox.run([corpus.BOTH_ENTRY_POINTS, corpus.TRIMMED_MEAN_BY_HAND], matrix, LIMITS["fast"])
        np.testing.assert_allclose(result[0].values, matrix.mean(axis=1), rtol=0, atol=1e-12)
        assert result[1].ok and result[1].values is not None and result[1].values.shape == (shape[0],)


def _shared_contents(box: Sandbox, shape: tuple[int, int]) -> np.ndarray:
    """What the host's shared memory holds now (white box: the memfd the data travels in)."""
    assert box._shared is not None and box._shared.mapping is not None
    view = np.frombuffer(box._shared.mapping, dtype=np.float64, count=shape[0] * shape[1])
    contents = view.reshape(shape).copy()
    del view   # a live view would pin the mapping
    return contents


def test_data_written_by_a_method_never_reaches_the_host(sandbox: Sandbox, data: np.ndarray) -> None:
    """A method's process maps the data copy-on-write from a read-only descriptor: what it
    writes stays in its own pages, so the host's array and the shared memory the next
    method reads are as they were, with no copy in between."""
    vandal = "def estimate_batch(X):\n    X[:] = 0.0\n    X.sort(axis=1)\n    return X[:, 0] + 1.0\n"
    original = data.copy()
    result = sandbox.run([vandal], data, LIMITS["fast"])[0]
    np.testing.assert_array_equal(result.values, np.ones(len(data)))
    np.testing.assert_array_equal(data, original)
    np.testing.assert_array_equal(_shared_contents(sandbox, data.shape), original)


def test_data_drawn_into_the_input_buffer_runs_in_place(sandbox: Sandbox, data: np.ndarray) -> None:
    """Data written into ``input_buffer`` is what every method sees, and ``run`` takes it
    where it lies: a copy that starts elsewhere (even inside the buffer) is moved to the
    start, the buffer itself is not rewritten."""
    with sandbox.input_buffer(*data.shape) as buffer:
        buffer[:] = data
        assert sandbox._shared is not None and sandbox._shared.holds(buffer)
        assert not sandbox._shared.holds(data) and not sandbox._shared.holds(buffer[1:])
        vandal = "def estimate_batch(X):\n    X[:] = 0.0\n    return X[:, 0] + 1.0\n"
        results = sandbox.run([corpus.BOTH_ENTRY_POINTS, vandal, corpus.BOTH_ENTRY_POINTS], buffer, LIMITS["fast"])
        for result in results[::2]:
            np.testing.assert_allclose(result.values, data.mean(axis=1), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(results[1].values, np.ones(len(data)))
        np.testing.assert_array_equal(buffer, data)   # the vandal wrote to its own pages
        tail = sandbox.run([corpus.BOTH_ENTRY_POINTS], buffer[5:], LIMITS["fast"])[0]
        np.testing.assert_allclose(tail.values, data[5:].mean(axis=1), rtol=0, atol=1e-12)


def test_the_input_buffer_holds_the_sandbox_for_its_thread(sandbox: Sandbox, data: np.ndarray) -> None:
    """Another thread's run waits until the ``with`` ends, so it cannot overwrite the data."""
    other = np.full_like(data, 3.0)
    finished = threading.Event()
    answers: list = []

    def run_other() -> None:
        answers.extend(sandbox.run([corpus.BOTH_ENTRY_POINTS], other, LIMITS["fast"]))
        finished.set()

    with sandbox.input_buffer(*data.shape) as buffer:
        buffer[:] = data
        thread = threading.Thread(target=run_other)
        thread.start()
        assert not finished.wait(1.0), "another thread ran while the buffer was held"
        mine = sandbox.run([corpus.BOTH_ENTRY_POINTS], buffer, LIMITS["fast"])[0]
        np.testing.assert_allclose(mine.values, data.mean(axis=1), rtol=0, atol=1e-12)
    thread.join(30)
    np.testing.assert_array_equal(answers[0].values, np.full(len(data), 3.0))


def test_a_larger_request_while_a_buffer_is_held(sandbox: Sandbox) -> None:
    """Growing the shared memory while a caller holds a view of it fails nothing: the view
    stays usable (other data run inside the ``with`` takes its place, as documented), and
    data written into it again still reaches the method."""
    small = np.arange(12.0).reshape(4, 3)
    with sandbox.input_buffer(4, 3) as buffer:
        large = np.random.default_rng(3).standard_normal((1 << 16, 40))   # 20 MB: beyond any earlier size
        result = sandbox.run([corpus.BOTH_ENTRY_POINTS], large, LIMITS["fast"])[0]
        np.testing.assert_allclose(result.values, large.mean(axis=1), rtol=0, atol=1e-12)
        buffer[:] = small
        again = sandbox.run([corpus.BOTH_ENTRY_POINTS], buffer, LIMITS["fast"])[0]
        np.testing.assert_allclose(again.values, small.mean(axis=1), rtol=0, atol=1e-12)
        rows = sandbox.run([corpus.BOTH_ENTRY_POINTS], buffer[1:], LIMITS["fast"])[0]   # the same pages, shifted
        np.testing.assert_allclose(rows.values, small[1:].mean(axis=1), rtol=0, atol=1e-12)


def test_the_server_holds_the_data_read_only(sandbox: Sandbox, data: np.ndarray) -> None:
    """Neither the server nor anything it forks can write to the data or map it writable."""
    sandbox.run([corpus.BOTH_ENTRY_POINTS], data, LIMITS["fast"])
    pid = sandbox.server_pid
    modes = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        if "ouro-sandbox-data" in os.readlink(f"/proc/{pid}/fd/{name}"):
            flags = Path(f"/proc/{pid}/fdinfo/{name}").read_text().split("flags:")[1].split()[0]
            modes.append(int(flags, 8) & os.O_ACCMODE)
    assert modes == [os.O_RDONLY]
    assert sandbox._shared is not None
    with pytest.raises(PermissionError):
        mmap.mmap(sandbox._shared.read_only_fd, sandbox._shared.size)   # shared and writable


def _forged(body: str) -> str:
    """A method that writes its own answer to the answer pipe (fd 3), bypassing the wrapper."""
    return ("def estimate_batch(X):\n"
            "    os = print.__self__.__import__('os')\n"
            "    n = X.shape[0]\n"
            "    def header(count, error, output):\n"
            "        return (b'OURO' + count.to_bytes(8, 'little', signed=True)\n"
            "                + error.to_bytes(4, 'little') + output.to_bytes(4, 'little'))\n"
            + "".join(f"    {line}\n" for line in body.splitlines())
            + "    return X[:, 0]\n")


@pytest.mark.parametrize("body, reason", [
    ("os.write(3, b'not an answer at all, only bytes')", "process sent a malformed result"),
    ("os.write(3, header(n, 0, 10**9))", "process sent a malformed result"),
    ("os.write(3, header(n + 1, 0, 0) + bytes(8 * (n + 1)))", "process sent a malformed result"),
    ("os.write(3, header(-1, 0, 0))", "process sent a malformed result"),
    ("os.write(3, header(n, 0, 0) + bytes(8 * (n // 2)))\nos._exit(0)",
     "process exited with code 0 without a complete result"),
    ("os.write(3, header(n, 0, 0) + b'\\xff' * (8 * n))", "non-finite result in 200 of 200 rows"),
])
def test_forged_answers_are_refused(sandbox: Sandbox, data: np.ndarray, body: str, reason: str) -> None:
    """The host reads the method's process directly and trusts nothing it sends: lengths are
    checked before anything is read, and values are checked for count and finiteness."""
    result = sandbox.run([_forged(body)], data, LIMITS["fast"], static_check=False)[0]
    assert result.values is None and result.error == reason and not result.system_error
    assert sandbox.run([corpus.BOTH_ENTRY_POINTS], data, LIMITS["fast"])[0].ok


def test_a_process_does_not_outlive_its_answer(sandbox: Sandbox, data: np.ndarray) -> None:
    """A process that sends a complete answer and keeps running is killed once it is read."""
    body = ("me = str(os.getpid()).encode()\n"
            "os.write(3, header(n, 0, len(me)) + me + bytes(8 * n))\n"
            "while True:\n"
            "    pass")
    began = time.monotonic()
    result = sandbox.run([_forged(body)], data, LIMITS["wall"], static_check=False)[0]
    assert time.monotonic() - began < LIMITS["wall"].wall_seconds
    assert result.ok and np.all(result.values == 0.0)
    stat = Path(f"/proc/{int(result.output)}/stat")
    deadline = time.monotonic() + 2.0
    while stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"


def test_a_forked_host_gets_its_own_server(sandbox: Sandbox, data: np.ndarray) -> None:
    """A fork of the host lets go of the parent's server and shared memory (never writing
    into them) and starts its own; the parent's sandbox carries on."""
    assert sandbox.run([corpus.BOTH_ENTRY_POINTS], data, LIMITS["fast"])[0].ok
    parent_server = sandbox.server_pid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            other = data[::-1] * 2.0
            result = sandbox.run([corpus.BOTH_ENTRY_POINTS], other, LIMITS["fast"])[0]
            good = (result.ok and np.allclose(result.values, other.mean(axis=1), rtol=0, atol=1e-12)
                    and sandbox.server_pid not in (None, parent_server))
            sandbox.close()
            os.write(write_end, b"1" if good else b"0")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    verdict = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert verdict == b"1"
    assert sandbox.server_pid == parent_server
    np.testing.assert_array_equal(_shared_contents(sandbox, data.shape), data)
    result = sandbox.run([corpus.BOTH_ENTRY_POINTS], data, LIMITS["fast"])[0]
    np.testing.assert_allclose(result.values, data.mean(axis=1), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- the server's lifecycle


def test_server_death_is_survived(sandbox: Sandbox, data: np.ndarray) -> None:
    pid = sandbox.server_pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    starts = sandbox.starts
    result = sandbox.run([corpus.MEDIAN_OF_MEANS_BATCH], data, LIMITS["fast"])[0]
    assert result.ok
    assert sandbox.starts == starts + 1 and sandbox.server_pid != pid


def test_a_method_whose_server_is_killed_under_it_runs_again(sandbox: Sandbox, data: np.ndarray) -> None:
    """A method's process dies with its server's process group; whether the method did it
    cannot be told, so it runs once more on a fresh server (and is charged if it happens again)."""
    sandbox.start()
    pid = sandbox.server_pid
    assert pid is not None
    starts = sandbox.starts
    busy = ("import numpy as np\n"
            "def estimate_batch(X):\n"
            "    total = 0\n"
            "    for i in range(10**7):\n"
            "        total += i\n"
            "    return np.mean(X, axis=1)\n")
    timer = threading.Timer(0.1, os.killpg, (pid, signal.SIGKILL))
    timer.start()
    result = sandbox.run([busy], data, SandboxLimits(cpu_seconds=10, wall_seconds=20, memory_mb=256))[0]
    timer.join()
    assert result.ok, result.error
    np.testing.assert_allclose(result.values, data.mean(axis=1), rtol=0, atol=1e-12)
    assert sandbox.starts == starts + 1 and sandbox.server_pid != pid


def test_unresponsive_server_is_replaced(sandbox: Sandbox, data: np.ndarray) -> None:
    """A server that stops answering does not stop the wall limit (the host enforces it on
    the method's process itself), and is killed when the host next needs a process from it;
    the rest run on a new one."""
    sandbox.start()
    pid = sandbox.server_pid
    assert pid is not None
    slow = "def estimate_batch(X):\n    total = 0\n    for i in range(10**9):\n        total += i\n    return X[:, 0]\n"
    limits = SandboxLimits(cpu_seconds=5, wall_seconds=1, memory_mb=256)
    timer = threading.Timer(0.3, os.kill, (pid, signal.SIGSTOP))
    timer.start()
    began = time.monotonic()
    # more methods than the host holds prepared processes for: the later ones need the server
    results = sandbox.run([slow] + [corpus.BOTH_ENTRY_POINTS] * 4, data, limits)
    elapsed = time.monotonic() - began
    timer.join()
    assert results[0].error == "timeout after 1 s"
    for result in results[1:]:
        assert result.ok, result.error
        np.testing.assert_allclose(result.values, data.mean(axis=1), rtol=0, atol=1e-12)
    assert elapsed <= limits.wall_seconds + sandbox_host._FORK_TIMEOUT + MARGIN
    assert sandbox.server_pid != pid


def test_temp_dir_holds_only_the_jail(sandbox: Sandbox, private_tmp: Path, data: np.ndarray) -> None:
    sandbox.run([corpus.BOTH_ENTRY_POINTS], data, LIMITS["fast"])
    entries = os.listdir(private_tmp)
    assert len(entries) == 1 and entries[0].startswith("ouro-sandbox-")
    assert os.stat(private_tmp / entries[0]).st_mode & 0o777 == 0o111


def test_run_methods_uses_a_default_sandbox(private_tmp: Path, data: np.ndarray) -> None:
    results = run_methods(["def estimate(x):\n    return 1.5\n", "import os\ndef estimate(x): return 0.0\n"],
                          data, LIMITS["fast"])
    assert results[0].ok and np.all(results[0].values == 1.5)
    assert results[1].error == "forbidden import 'os' (line 1)"
    shutdown()


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        SandboxLimits(cpu_seconds=0)
    with pytest.raises(ValueError):
        Sandbox().run(["def estimate(x):\n    return 0.0\n"], np.zeros(5))
    assert check_source(123) == "source is int, expected str"  # type: ignore[arg-type]
    assert "source too long" in str(check_source("#" * 200_000))
