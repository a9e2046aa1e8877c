import tomllib

import pytest

import bioimage_async as ba


def test_config_file_path_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("BIOIMAGE_ASYNC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert ba.config_file_path() == tmp_path / "xdg" / "bioimage-async" / "config.toml"
    monkeypatch.setenv("BIOIMAGE_ASYNC_CONFIG", str(tmp_path / "c.toml"))
    assert ba.config_file_path() == tmp_path / "c.toml"
    assert ba.config_file_path(tmp_path / "x.toml") == tmp_path / "x.toml"


def test_write_slurm_config_merges_skips_none_and_keeps_other_tables(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[profile]\nname = "mine"\n')
    ba.write_slurm_config(path, partition="gpu", account=None)
    ba.write_slurm_config(path, time="01:00:00")
    data = tomllib.loads(path.read_text())
    assert data == {"profile": {"name": "mine"}, "slurm": {"partition": "gpu", "time": "01:00:00"}}
    ba.write_slurm_config(path, replace=True, qos="low")
    assert tomllib.loads(path.read_text())["slurm"] == {"qos": "low"}


def test_unknown_field_names_are_refused(tmp_path):
    with pytest.raises(ba.ConfigError, match="partitoin"):
        ba.write_slurm_config(tmp_path / "c.toml", partitoin="gpu")
    with pytest.raises(ba.ConfigError, match="valid SlurmConfig fields"):
        ba.SlurmConfig.load(tmp_path / "none.toml", bogus=1)


def test_load_merges_file_and_overrides_and_no_config_ignores_the_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    ba.write_slurm_config(path, partition="gpu", tmp_root="/shared", host="login")
    config = ba.SlurmConfig.load(path, partition="cpu")
    assert (config.partition, config.tmp_root, config.host) == ("cpu", "/shared", "login")
    monkeypatch.setenv("BIOIMAGE_ASYNC_CONFIG", str(path))
    monkeypatch.setenv("BIOIMAGE_ASYNC_NO_CONFIG", "1")
    assert ba.SlurmConfig.load().partition is None
    monkeypatch.setenv("BIOIMAGE_ASYNC_NO_CONFIG", "0")
    assert ba.SlurmConfig.load().partition == "gpu"


def test_direct_config_is_used_verbatim_and_validated():
    assert ba.SlurmConfig(partition="x").partition == "x"
    with pytest.raises(ba.ConfigError, match="interpreter line"):
        ba.SlurmConfig(shebang="module load gcc")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("gpus = true", "gpus"),
        ("cpus_per_task = 2.5", "cpus_per_task"),
        ('cpus_per_task = "4"', "cpus_per_task"),
        ('keep_tmp = "false"', "keep_tmp"),
        ('port = "2222"', "port"),
        ("extra_sbatch_args = [1, 2]", "extra_sbatch_args"),
    ],
)
def test_a_config_file_value_of_the_wrong_type_is_refused_naming_the_field(tmp_path, line, field):
    """TOML values reach the dataclass unchecked: gpus = true became '#SBATCH --gpus=True'."""
    path = tmp_path / "config.toml"
    path.write_text(f"[slurm]\n{line}\n")
    with pytest.raises(ba.ConfigError, match=f"SlurmConfig.{field} must be"):
        ba.SlurmConfig.load(path)


def test_extra_sbatch_args_as_one_string_is_one_argument(tmp_path):
    """Iterated as a string it gave one #SBATCH line per character."""
    path = tmp_path / "config.toml"
    path.write_text('[slurm]\nextra_sbatch_args = "--exclusive"\n')
    config = ba.SlurmConfig.load(path)
    assert config.extra_sbatch_args == ["--exclusive"]


@pytest.mark.parametrize("text", ['partition = "gpu"\n', '[slrum]\npartition = "gpu"\n'])
def test_settings_outside_the_slurm_table_are_refused(tmp_path, text):
    """They were dropped without a word and jobs went to the default partition."""
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ba.ConfigError, match=r"\[slurm\]"):
        ba.SlurmConfig.load(path)
