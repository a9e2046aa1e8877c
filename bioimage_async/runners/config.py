"""Runner configuration objects and the user config file.

The config file (TOML, ``[slurm]`` table) holds cluster defaults so users do not repeat them:
``$BIOIMAGE_ASYNC_CONFIG``, else ``$XDG_CONFIG_HOME/bioimage-async/config.toml`` (falling back to
``~/.config``); ``BIOIMAGE_ASYNC_NO_CONFIG=1`` ignores it (reproducible CI). A directly built
``SlurmConfig(...)`` is used verbatim; ``SlurmConfig.load(**overrides)`` merges file and overrides.
"""

from __future__ import annotations

import numbers
import os
import tempfile
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass(kw_only=True)
class RunnerConfig:
    """Settings shared by every backend.

    ``memory_budget`` bounds the bytes of blocks held in flight by this process (the in-flight
    count is lowered to fit); ``in_flight`` overrides the default count. ``tmp_root`` is where
    runs keep their folder (the journal of a local run, the protocol of a distributed one) (default: the system temp dir; for slurm it must be on a
    filesystem the nodes share), ``poll_interval`` the seconds between polls, ``python_executable``
    the workers' interpreter (default: this one), ``blocks_per_task`` how many blocks one
    distributed task processes (default: the work split into 4 tasks per worker), and
    ``keep_tmp`` keeps the run folder after a successful run. ``journal=False`` skips the
    journal of a local run (no run folder, so no ``resume_from`` after a crash).
    """

    tmp_root: str | None = None
    poll_interval: float = 0.5
    python_executable: str | None = None
    memory_budget: int = 256 * 1024 * 1024
    in_flight: int | None = None
    blocks_per_task: int | None = None
    keep_tmp: bool = False
    journal: bool = True

    def __post_init__(self) -> None:
        check_field_types(self)

    def tmp_root_or_default(self) -> str:
        """``tmp_root``, or the system's temp folder."""
        return self.tmp_root or tempfile.gettempdir()


#: annotation -> the value types it takes (a config file's TOML values are not checked by
#: the dataclass: "--exclusive" as extra_sbatch_args became one #SBATCH line per character,
#: gpus = true became --gpus=True, keep_tmp = "false" counted as true)
_FIELD_KINDS: dict[str, tuple[type, ...]] = {
    "int": (numbers.Integral,),
    "float": (numbers.Real,),
    "bool": (bool,),
    "str": (str, os.PathLike),
    "list[str]": (list,),
}


def check_field_types(config: Any) -> None:
    """Raise ConfigError naming the field whose value is not of its declared type."""
    for item in fields(config):
        value = getattr(config, item.name)
        parts = [p.strip() for p in str(item.type).split("|")]
        if value is None and "None" in parts:
            continue
        kinds = [k for p in parts if p != "None" for k in _FIELD_KINDS.get(p, (object,))]
        ok = isinstance(value, tuple(kinds))
        if isinstance(value, bool) and bool not in kinds and object not in kinds:
            ok = False  # True is an int to Python, not a count
        if ok and isinstance(value, list):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            raise ConfigError(
                f"{type(config).__name__}.{item.name} must be {' or '.join(parts)}, got "
                f"{value!r} ({type(value).__name__})"
            )
        if isinstance(value, os.PathLike):
            setattr(config, item.name, os.fspath(value))


def _default_known_hosts() -> str:
    return str(Path("~/.ssh/known_hosts").expanduser())


@dataclass(kw_only=True)
class SlurmConfig(RunnerConfig):
    """Configuration for slurm runs, locally (``host=None``) or over SSH from a workstation.

    Seed fields: partition, time, mem, cpus_per_task, gpus (``--gpus`` only when > 0), account,
    qos, constraint, shebang (first line an interpreter line; further lines are an activation
    preamble placed after the ``#SBATCH`` directives), max_array_size (None: ask the cluster),
    latency_wait (seconds to wait for the sentinel of a COMPLETED task on NFS),
    scheduler_poll_interval (seconds between squeue/sacct queries: the run folder is polled every
    ``poll_interval``, the scheduler less often to spare slurmctld).

    SSH fields: ``host`` (None runs sbatch here), ``port``, ``username``, ``client_keys`` (paths
    of private keys; None uses the SSH agent and default keys), ``known_hosts`` (host keys are
    checked against it; pass ``known_hosts=None`` explicitly to skip the check, which is unsafe),
    ``remote_python`` (the interpreter on the cluster; default ``python_executable`` or
    ``python3``), ``connect_timeout``, and the reconnect policy for dropped connections
    (``reconnect_attempts``, ``reconnect_backoff``, ``reconnect_max_delay`` seconds).
    """

    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus_per_task: int = 1
    gpus: int = 0
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    shebang: str | None = None
    max_array_size: int | None = None
    latency_wait: float = 120.0
    scheduler_poll_interval: float = 5.0
    host: str | None = None
    port: int = 22
    username: str | None = None
    client_keys: list[str] | None = None
    known_hosts: str | None = field(default_factory=_default_known_hosts)
    remote_python: str | None = None
    connect_timeout: float = 20.0
    reconnect_attempts: int = 8
    reconnect_backoff: float = 0.5
    reconnect_max_delay: float = 30.0
    extra_sbatch_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.client_keys, str):
            self.client_keys = [self.client_keys]
        if isinstance(self.extra_sbatch_args, str):  # one argument, not one per character
            self.extra_sbatch_args = [self.extra_sbatch_args]
        super().__post_init__()
        if self.shebang is not None and not self.shebang.lstrip().startswith("#!"):
            raise ConfigError(
                f"shebang must start with an interpreter line ('#!/bin/bash'), got "
                f"{self.shebang.splitlines()[0]!r}"
            )
        if self.cpus_per_task < 1 or self.gpus < 0:
            raise ConfigError("cpus_per_task must be >= 1 and gpus >= 0")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> SlurmConfig:
        """Defaults from the config file's ``[slurm]`` table, then ``overrides`` on top."""
        validate_field_names(overrides, "SlurmConfig.load() overrides")
        merged = dict(read_slurm_defaults(path))
        merged.update(overrides)
        return cls(**merged)


def slurm_field_names() -> list[str]:
    return [f.name for f in fields(SlurmConfig)]


def validate_field_names(values: dict[str, Any], where: str) -> None:
    unknown = sorted(set(values) - set(slurm_field_names()))
    if unknown:
        raise ConfigError(
            f"unknown field(s) {unknown} in {where}; valid SlurmConfig fields: "
            f"{', '.join(slurm_field_names())}"
        )


def config_file_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The user config file: ``path``, else $BIOIMAGE_ASYNC_CONFIG, else the XDG location."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("BIOIMAGE_ASYNC_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "bioimage-async" / "config.toml"


def _parse_toml(file: Path) -> dict[str, Any]:
    if not file.is_file():
        return {}
    try:
        with open(file, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"the config file {file} is not valid TOML: {err}") from err


def read_slurm_defaults(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``[slurm]`` table of the config file ({} when absent or BIOIMAGE_ASYNC_NO_CONFIG=1)."""
    if path is None and os.environ.get("BIOIMAGE_ASYNC_NO_CONFIG", "") not in ("", "0"):
        return {}
    file = config_file_path(path)
    data = _parse_toml(file)
    _check_top_level(data, file)
    section = data.get("slurm", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[slurm] in {file} must be a table")
    validate_field_names(section, f"the [slurm] table of {file}")
    return section


def _check_top_level(data: dict[str, Any], file: Path) -> None:
    """Settings outside [slurm] (or under a misspelt table) were dropped without a word, and
    jobs went to the default partition."""
    import difflib

    stray = sorted(k for k in data if k in slurm_field_names())
    if stray:
        raise ConfigError(
            f"{', '.join(stray)} in {file} sit outside any table; put them under [slurm]"
        )
    for name in data:
        if name != "slurm" and difflib.get_close_matches(name, ["slurm"], cutoff=0.6):
            raise ConfigError(f"the table [{name}] in {file} is not [slurm]; rename it to [slurm]")


def write_slurm_config(
    path: str | os.PathLike[str] | None = None, *, replace: bool = False, **values: Any
) -> str:
    """Create or update the ``[slurm]`` table of the user config file; returns its path.

    Fields are merged into the existing table (``replace=True`` replaces it), None values are
    skipped, names are validated, and other tables in the file are kept.
    """
    import tomli_w

    validate_field_names(values, "write_slurm_config()")
    file = config_file_path(path)
    data = _parse_toml(file)
    section = {} if replace else dict(data.get("slurm", {}))
    section.update({k: v for k, v in values.items() if v is not None})
    data["slurm"] = section
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as handle:
        tomli_w.dump(data, handle)
    return str(file)
