"""Rebuild a Run handle from its temp folder alone (another process, another day)."""

from __future__ import annotations

from typing import Any

from ..sources.base import SourceSpec
from .config import RunnerConfig, SlurmConfig
from .files import LocalFiles, RunFiles
from .launcher import Launcher
from .protocol import RunFolder
from .run import Run


async def attach(
    tmp_folder: str, job_config: RunnerConfig | None = None, *, detach_on_cancel: bool = False
) -> Run:
    """The Run of ``tmp_folder``: ``await run.status()``, ``await run.wait()``, ``await run.cancel()``.

    For a run submitted over SSH, pass the same ``SlurmConfig(host=...)`` (the folder lives on the
    cluster). ``run.wait()`` returns the output source when it can be opened here, else its spec.
    """
    files: RunFiles
    launcher: Launcher
    if isinstance(job_config, SlurmConfig) and job_config.host is not None:
        from .slurm import SlurmRunner

        files, launcher = await SlurmRunner(job_config).connect()
    else:
        files = LocalFiles()
        launcher = None  # type: ignore[assignment]
    folder = await RunFolder.open(files, tmp_folder)
    job_type = folder.manifest.data.get("job_type")
    if launcher is None:
        if job_type == "slurm":
            from .slurm import SlurmLauncher
            from .ssh import LocalShell

            config = job_config if isinstance(job_config, SlurmConfig) else SlurmConfig.load()
            job_config = config
            launcher = SlurmLauncher(config, LocalShell())
        else:
            from .subprocess import SubprocessLauncher

            job_config = job_config or RunnerConfig()
            launcher = SubprocessLauncher(job_config)
    assert job_config is not None
    output_spec = SourceSpec.from_json(folder.manifest.data["sources"]["output"])
    result: Any = output_spec
    if isinstance(files, LocalFiles):
        from ..sources.registry import from_spec

        try:
            result = await from_spec(output_spec)
        except Exception:  # noqa: BLE001 - not reachable here: hand back the spec instead
            result = output_spec
    return Run(folder, launcher, job_config, result=result, detach_on_cancel=detach_on_cancel)
