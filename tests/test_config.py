import json

import pytest
import yaml

from medgan.config import ParamsError, load_params, start_run


@pytest.fixture
def params_dir(tmp_path):
    d = tmp_path / "params" / "nb"
    d.mkdir(parents=True)
    (d / "default.yaml").write_text(yaml.safe_dump(
        {"seed": 1, "data": {"root": None, "image_size": 64}, "train": {"steps": 100, "lr": 2e-4}}))
    (d / "smoke.yaml").write_text("base: default\ntrain:\n  steps: 3\n")
    (d / "paper.yaml").write_text("base: default\ndata:\n  image_size: 128\n")
    (d / "typo.yaml").write_text("base: default\ntrain:\n  stepz: 3\n")
    (d / "loop.yaml").write_text("base: loop\n")
    return tmp_path / "params"


def test_profiles_inherit_and_override(params_dir):
    smoke = load_params("nb", "smoke", params_dir=params_dir)
    assert smoke.train.steps == 3 and smoke.train.lr == 2e-4 and smoke.data.image_size == 64
    assert smoke.profile == "smoke"
    paper = load_params("nb", "paper", {"train.steps": 7}, data_root="/data/x", params_dir=params_dir)
    assert paper.data.image_size == 128 and paper.train.steps == 7 and paper.data.root == "/data/x"
    assert load_params("nb", "default", ["train.lr=0.1"], params_dir=params_dir).train.lr == 0.1


def test_errors_name_the_file_and_key(params_dir):
    with pytest.raises(ParamsError, match=r"typo\.yaml: unknown parameter 'train\.stepz'"):
        load_params("nb", "typo", params_dir=params_dir)
    with pytest.raises(ParamsError, match="unknown parameter 'train.step'"):
        load_params("nb", "default", {"train.step": 1}, params_dir=params_dir)
    with pytest.raises(ParamsError, match="loop"):
        load_params("nb", "loop", params_dir=params_dir)
    with pytest.raises(ParamsError, match="not found"):
        load_params("nb", "nope", params_dir=params_dir)
    with pytest.raises(KeyError, match="'train.batch' is not defined"):
        load_params("nb", "default", params_dir=params_dir).train.batch


def test_start_run_writes_params_and_environment(params_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_ROOT", str(tmp_path))
    run = start_run("nb", "smoke", {"seed": 9}, run_dir=tmp_path / "run")
    assert yaml.safe_load((tmp_path / "run" / "params.yaml").read_text())["seed"] == 9
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert "torch" in env["packages"] and env["device"]
    card = run.card()
    assert card["seeds"] == {"seed": 9} and card["profile"] == "smoke"
    assert "phantom" in card["data source"]


def test_override_values_are_yaml_1_2_scalars_of_the_profiles_kind():
    from medgan.config import ParamsError, load_params

    params = load_params("00_quickstart", "default", ["train.lr=1e-3", "train.betas=[0.0, 0.99]", "device=cpu"])
    assert params.train.lr == 0.001 and isinstance(params.train.lr, float)
    assert list(params.train.betas) == [0.0, 0.99] and params.device == "cpu"
    with pytest.raises(ParamsError, match=r"train\.steps='many' is text, the profile's value 1500 is a number"):
        load_params("00_quickstart", "default", ["train.steps=many"])
    with pytest.raises(ParamsError, match=r"train\.betas=0\.5 is a number"):
        load_params("00_quickstart", "default", ["train.betas=0.5"])
