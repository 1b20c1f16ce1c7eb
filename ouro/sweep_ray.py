"""The Ray backend of ``ouro sweep``: each cell one Ray task.

Without ``--address`` the sweep starts a local Ray with ``--workers`` CPUs and stops it
at the end; with ``--address`` it connects to a running cluster, whose nodes must have
ouro installed (the same version). If Ray is already initialized in this process (a test,
a notebook), that Ray is used and left running.

A task runs its cell in place when the cell's directory is visible to the worker (one
machine, or a shared file system): it then resumes from checkpoints like a local cell.
A worker that cannot see the directory runs the cell in a temporary directory and sends
the finished run directory back as a tarball, which the driver unpacks into the cell.

A task that raises, or whose worker dies, is retried by Ray (``max_retries``); a cell
that still fails is reported with the reason, and the sweep goes on.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from pathlib import Path

from ouro.config import ConfigError
from ouro.store import atomic_write_text
from ouro.sweep import TICK_SECONDS, Job, Tracker, describe_error, run_cell


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("--backend ray: Ray is not installed; install it with: pip install 'ouro[ray]'") from None


def run_cell_anywhere(path: str, config_text: str) -> bytes | None:
    """Run one cell where it lies, or in a scratch directory whose contents are returned."""
    cell = Path(path)
    config = cell / "config.yaml"
    if config.is_file() and config.read_text() == config_text:
        run_cell(path)
        return None
    with tempfile.TemporaryDirectory(prefix="ouro-cell-") as tmp:
        scratch = Path(tmp) / "cell"
        atomic_write_text(scratch / "config.yaml", config_text)
        run_cell(str(scratch))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for item in sorted(scratch.iterdir()):
                if item.name != ".lock":
                    tar.add(item, arcname=item.name)
        return buf.getvalue()


def unpack_cell(data: bytes, path: Path) -> None:
    """Unpack a cell sent back by a worker that could not see the sweep directory."""
    path.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(path, filter="data")


def _connect(address: str | None, workers: int) -> bool:
    """Initialize Ray unless it already is; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ConfigError(f"--address: cannot start or reach {where}: {describe_error(e)}") from None
    return True


def run_ray(jobs: list[Job], workers: int, retries: int, tracker: Tracker, address: str | None = None) -> None:
    """Run the jobs as Ray tasks (one CPU each); failures are handed to the tracker."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    started = _connect(address, workers)
    task = ray.remote(run_cell_anywhere).options(num_cpus=1, max_retries=retries, retry_exceptions=True)
    refs: dict = {}
    try:
        refs = {task.remote(job.path, job.config_text): job for job in jobs}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=TICK_SECONDS)
            tracker.tick()
            for ref in ready:
                job = refs.pop(ref)
                try:
                    data = ray.get(ref)
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    tracker.fail(job.slug, describe_error(cause if isinstance(cause, BaseException) else e))
                except RayError as e:  # the worker or its node died, after Ray's retries
                    tracker.fail(job.slug, describe_error(e))
                else:
                    if data is not None:
                        unpack_cell(data, Path(job.path))
                    tracker.finished(job.slug)
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
