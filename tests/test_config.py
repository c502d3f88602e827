from pathlib import Path

import pytest

from gtahuman.config import ConfigError, experiment_names, load_config


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    write(tmp_path / "base.yaml", "experiment: a\nrun:\n  seed: 1\n")
    write(tmp_path / "experiment" / "a.yaml", "description: row a\nrun:\n  seed: 2\n")
    write(tmp_path / "experiment" / "b.yaml", "extends: [a]\nbody:\n  num_betas: 10\neval:\n  protocol: 3dpw\n")
    write(tmp_path / "experiment" / "typo.yaml", "run:\n  sed: 3\n")
    return tmp_path


def test_layering_base_overlay_cli(config_dir):
    cfg = load_config([], config_dir)
    assert cfg.experiment == "a" and cfg.run.seed == 2 and cfg.description == "row a"
    cfg = load_config(["experiment=b", "run.seed=9"], config_dir)
    # b extends a (seed 2, description) and the command line wins over both
    assert cfg.run.seed == 9 and cfg.description == "row a" and cfg.eval.protocol == "3dpw"
    assert cfg.experiment == "b"


def test_cli_typo_names_key_and_suggests(config_dir):
    with pytest.raises(ConfigError) as err:
        load_config(["run.sede=3"], config_dir)
    msg = str(err.value)
    assert "run.sede" in msg and "command line" in msg and "did you mean 'seed'" in msg


def test_overlay_typo_names_file_and_key(config_dir):
    with pytest.raises(ConfigError) as err:
        load_config(["experiment=typo"], config_dir)
    msg = str(err.value)
    assert "run.sed" in msg and "typo.yaml" in msg


def test_wrong_type_names_key(config_dir):
    with pytest.raises(ConfigError, match=r"run\.seed"):
        load_config(["run.seed=many"], config_dir)


def test_unknown_experiment_lists_available(config_dir):
    with pytest.raises(ConfigError) as err:
        load_config(["experiment=nope"], config_dir)
    assert "a, b, typo" in str(err.value)


def test_bad_override_syntax(config_dir):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(["run.seed"], config_dir)


def test_repository_configs_all_load():
    names = experiment_names()
    assert "quickstart" in names
    for name in names:
        cfg = load_config([f"experiment={name}"])
        assert cfg.experiment == name
