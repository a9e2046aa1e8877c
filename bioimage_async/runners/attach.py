"""Rebuild a Run handle from its temp folder alone (another process, another day)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, InvalidArgumentError
from ..sources.base import SourceSpec
from .config import RunnerConfig
from .files import LocalFiles, RunFiles
from .launcher import Launcher
from .protocol import RunFolder
from .registry import backend_for_config, load_runner_backends, runner_backend
from .run import Run


async def folder_access(job_config: RunnerConfig | None) -> tuple[RunFiles, Launcher | None]:
    """How to reach a run folder: here, or through the connection its config names (a
    SlurmConfig with a host: the folder lives on the cluster); the launcher comes with it."""
    await load_runner_backends()
    hinted = backend_for_config(job_config)
    if hinted is not None and job_config is not None and hinted.remote_folders(job_config):
        files, launcher = await hinted.connect(job_config)
        return files, launcher
    return LocalFiles(), None


async def attach(
    tmp_folder: str, job_config: RunnerConfig | None = None, *, detach_on_cancel: bool = False
) -> Run:
    """The Run of ``tmp_folder``: ``await run.status()``, ``await run.wait()``, ``await run.cancel()``.

    For a run submitted over SSH, pass the same ``SlurmConfig(host=...)`` (the folder lives on the
    cluster). ``run.wait()`` returns the output source when it can be opened here, else its spec.
    The backend is the one recorded in the folder; an unknown one is an error.
    """
    files, launcher = await folder_access(job_config)
    try:
        folder = await RunFolder.open(files, tmp_folder)
        job_type = str(folder.manifest.data.get("job_type"))
        try:
            backend = runner_backend(job_type)
        except InvalidArgumentError:
            raise ConfigError(
                f"{tmp_folder} was written by the {job_type!r} backend, which is not registered "
                "in this process (register it with ba.register_runner before attaching)"
            ) from None
        if not backend.detachable:
            raise ConfigError(
                f"{tmp_folder} is a {job_type} run folder, which has no jobs to attach to; "
                f"finish it with resume_from={tmp_folder!r}"
            )
        config = backend.config(job_config if isinstance(job_config, backend.config_type) else None)
        if launcher is None:
            _, launcher = await backend.connect(config)
    except BaseException:
        if launcher is not None:
            await launcher.close()
        raise
    output_spec = SourceSpec.from_json(folder.manifest.data["sources"]["output"])
    result: Any = output_spec
    if isinstance(files, LocalFiles):
        from ..sources.registry import from_spec

        try:
            result = await from_spec(output_spec)
        except Exception:  # noqa: BLE001 - not reachable here: hand back the spec instead
            result = output_spec
    return Run(folder, launcher, config, backend, result=result, detach_on_cancel=detach_on_cancel)


async def missing_blocks(tmp_folder: str, job_config: RunnerConfig | None = None) -> list[int]:
    """The ids of the blocks a run folder has no done record for (sorted), whatever its backend:
    what ``resume_from=tmp_folder`` would run. Pass the run's SlurmConfig for a folder on a
    cluster reached over SSH."""
    files, launcher = await folder_access(job_config)
    try:
        return await (await RunFolder.open(files, tmp_folder)).missing_blocks()
    finally:
        if launcher is not None:
            await launcher.close()
