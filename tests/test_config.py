from pathlib import Path

import pytest
import yaml

from depthlab.config import (
    apply_overrides,
    deep_merge,
    get_path,
    load_config,
    packaged_configs,
    resolve_config,
    save_config,
)


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_layering_merges_mappings_and_replaces_lists(tmp_path):
    write(tmp_path / "a.yaml", {"x": {"p": 1, "q": [1, 2]}, "y": 1})
    write(tmp_path / "b.yaml", {"base_config": "a.yaml", "x": {"q": [3]}, "z": 2})
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "c.yaml", {"base_config": ["../b.yaml"], "x": {"p": 5}})
    config = load_config(sub / "c.yaml")
    assert config == {"x": {"p": 5, "q": [3]}, "y": 1, "z": 2}


def test_replace_marker_drops_inherited_keys():
    merged = deep_merge(
        {"dataset": {"name": "hypersim", "root": "r", "split_file": "s"}},
        {"dataset": {"_replace": True, "name": "synthetic", "length": 4}},
    )
    assert merged == {"dataset": {"name": "synthetic", "length": 4}}


def test_overrides_parse_yaml_values_and_create_sections():
    config = apply_overrides(
        {"optim": {"lr": 1.0, "betas": [0.9, 0.99]}, "run": {"resume": "latest"}},
        ["optim.lr=1e-4", "optim.betas=[0.5, 0.6]", "run.resume=null", "new.deep.key=true"],
    )
    assert config["optim"] == {"lr": 1e-4, "betas": [0.5, 0.6]}
    assert config["run"]["resume"] is None
    assert get_path(config, "new.deep.key") is True
    assert get_path(config, "new.missing", "d") == "d"


@pytest.mark.parametrize("bad", ["novalue", "=3", "optim.lr.x=1"])
def test_bad_overrides_raise(bad):
    with pytest.raises(ValueError):
        apply_overrides({"optim": {"lr": 1.0}}, [bad])


def test_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", {"base_config": "b.yaml"})
    write(tmp_path / "b.yaml", {"base_config": "a.yaml"})
    with pytest.raises(ValueError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_save_roundtrip(tmp_path):
    config = {"b": 1, "a": {"z": [1, 2], "y": None}}
    path = save_config(config, tmp_path / "out" / "config.yaml")
    assert load_config(path) == config


@pytest.mark.parametrize("name", ["base", "smoke_tiny", "finetune_lidar", "finetune_outpaint"])
def test_shipped_configs_load(name):
    config = load_config(name, kind="train")
    assert config["run"]["output_dir"]
    assert config["masks"]["components"]
    assert config["data"]["datasets"]


def test_smoke_config_layers_on_base():
    base = load_config("base", kind="train")
    smoke = load_config("smoke_tiny", kind="train")
    assert smoke["model"]["init"] == "tiny" and base["model"]["init"] == "marigold"
    assert smoke["objective"] == base["objective"]  # inherited
    assert smoke["validation"]["dataset"] == {
        "name": "synthetic",
        "length": 16,
        "height": 64,
        "width": 64,
        "seed": 1000,
    }


def test_packaged_names_resolve_and_unknown_names_list_them(tmp_path):
    names = packaged_configs()
    assert {"base", "smoke_tiny"} <= set(names["train"])
    assert {"base", "table2_nyu_500pts", "table3_ratios"} <= set(names["eval"])
    path = resolve_config("table2_nyu_500pts")  # unique across kinds
    assert path.name == "table2_nyu_500pts.yaml" and path.parent.name == "eval"
    assert path.parent.parent.parent.name == "depthlab"  # inside the package, not the clone's root
    assert resolve_config("base", "train").parent.name == "train"
    with pytest.raises(FileNotFoundError, match="both training and evaluation"):
        resolve_config("base")
    with pytest.raises(FileNotFoundError, match="table2_nyu_500pts") as error:
        load_config("table2_nyu", kind="eval")
    assert "\n" not in str(error.value) and "'table2_nyu'" in str(error.value)
    with pytest.raises(FileNotFoundError, match="neither a file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="kind"):
        load_config("base", kind="test")


def test_a_path_still_works_and_base_config_may_name_a_packaged_config(tmp_path):
    write(tmp_path / "mine.yaml", {"base_config": "table2_nyu_500pts", "limit": 3})
    mine = load_config(tmp_path / "mine.yaml", ["seed=4"], kind="eval")
    packaged = load_config("table2_nyu_500pts", kind="eval")
    assert mine == {**packaged, "limit": 3, "seed": 4}
    assert load_config(None, ["a.b=1"]) == {"a": {"b": 1}}


def test_eval_configs_layer_on_their_base():
    base = load_config("base", kind="eval")
    table = load_config("table2_nyu_500pts", kind="eval")
    assert set(base) <= set(table)
    assert table["protocols"] == ["points:500"]
