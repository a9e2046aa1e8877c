"""The runner seam: one registered ``RunnerBackend`` object per backend.

A backend owns its ``job_type`` name (also the CLI's ``--job-type`` choice), its config type and
default config, how it runs a task, how a run folder of its own is reattached, and its policies
(whether its runs outlive the caller, how long to wait for a finished task's sentinel). The
``job_type`` strings, ``attach`` and the CLI are derived from this registry, so a new backend is
one new module plus one registration line::

    class ThreadBackend(RunnerBackend):
        name = "thread"; distributed = False
        def runner(self, config): return ThreadRunner(config)

    ba.register_runner(ThreadBackend())

The built-in backends (``local``, ``subprocess``, ``slurm``) are registered lazily from
``BUILTIN_MODULES``; each module exposes ``RUNNER_BACKEND`` and imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._registry import Registry
from ..errors import ConfigError, InvalidArgumentError
from .config import RunnerConfig

if TYPE_CHECKING:
    from .base import Runner
    from .files import RunFiles
    from .launcher import Launcher

BUILTIN_MODULES = ("local", "subprocess", "slurm")


class RunnerBackend:
    """One way of running a BlockTask, with its config type and policies."""

    #: The ``job_type`` (and ``--job-type``) name.
    name: str = ""
    description: str = ""
    #: The config class ``job_config`` must be an instance of.
    config_type: type[RunnerConfig] = RunnerConfig
    #: Whether blocks run in processes that reopen the sources from their specs.
    distributed: bool = True
    #: Whether a run goes on without its caller (``wait=False``, ``attach``).
    detachable: bool = True
    #: Whether cancelling the caller's wait leaves the run going by default.
    detach_on_cancel: bool = False
    #: Whether a failed or cancelled run can be finished with ``resume_from=``.
    resumable: bool = True
    #: Tasks per worker when the work is cut into tasks: more balance the load where a task
    #: starts in milliseconds; one each where starting a task costs scheduling time.
    tasks_per_worker: int = 4

    def config(self, given: RunnerConfig | None) -> RunnerConfig:
        """The config to run with: ``given`` (type-checked) or this backend's default."""
        if given is None:
            return self.config_type()
        if not isinstance(given, self.config_type):
            raise ConfigError(
                f"job_type={self.name!r} needs a ba.{self.config_type.__name__} as job_config, "
                f"got {type(given).__name__}"
            )
        return given

    def runner(self, config: RunnerConfig) -> Runner:
        """The runner of a distributed backend (a local one overrides this)."""
        from .distributed import DistributedRunner

        return DistributedRunner(config, self)

    def tmp_root(self, config: RunnerConfig) -> str:
        """Where run folders go: ``config.tmp_root`` or the system's temp folder."""
        return config.tmp_root_or_default()

    async def connect(self, config: RunnerConfig) -> tuple[RunFiles, Launcher]:
        """Where this backend's run folders live and how their tasks start (distributed)."""
        raise NotImplementedError(f"the {self.name} backend has no run folders")

    async def read_manifest(self, config: RunnerConfig, path: str) -> dict[str, Any]:
        """The manifest of one of this backend's run folders (connecting where it lives)."""
        from .protocol import RunFolder

        files, launcher = await self.connect(config)
        try:
            return (await RunFolder.open(files, path)).manifest.data
        finally:
            await launcher.close()

    def remote_folders(self, config: RunnerConfig) -> bool:
        """Whether ``config`` puts run folders on another machine (attach connects first)."""
        return False

    def latency_wait(self, config: RunnerConfig) -> float:
        """Seconds to wait for the sentinel of a task its scheduler reports finished."""
        return 5.0

    def scheduler_poll_interval(self, config: RunnerConfig) -> float:
        """Seconds between scheduler queries (the run folder is polled more often)."""
        return 0.0

    def __repr__(self) -> str:
        return f"<RunnerBackend {self.name!r}>"


_RUNNERS: Registry[RunnerBackend] = Registry(
    "runner backend", __package__ or "bioimage_async.runners", BUILTIN_MODULES, "RUNNER_BACKEND"
)


async def load_runner_backends() -> None:
    """Load the built-in backends in a thread (an op's first run must not stall its loop)."""
    await _RUNNERS.load_off_loop()


def register_runner(backend: RunnerBackend, *, replace: bool = False) -> RunnerBackend:
    """Add a runner backend (``replace=True`` swaps out one of the same name)."""
    return _RUNNERS.register(backend, replace=replace)


def unregister_runner(name: str) -> None:
    _RUNNERS.unregister(name)


def runner_backends() -> list[RunnerBackend]:
    return _RUNNERS.all()


def job_types() -> tuple[str, ...]:
    return tuple(b.name for b in runner_backends())


def runner_backend(job_type: str) -> RunnerBackend:
    """The backend of ``job_type``; an unknown name is an error, never a fallback."""
    backend = _RUNNERS.get(job_type) if isinstance(job_type, str) else None
    if backend is None:
        raise InvalidArgumentError(f"job_type must be one of {job_types()}, got {job_type!r}")
    return backend


def backend_for_config(config: RunnerConfig | None) -> RunnerBackend | None:
    """The backend whose config type is the most specific match for ``config``."""
    if config is None:
        return None
    matches = [b for b in runner_backends() if isinstance(config, b.config_type)]
    if not matches:
        return None
    return max(matches, key=lambda b: len(b.config_type.__mro__))
