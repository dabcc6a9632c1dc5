"""Checkpoint discovery and strict loading (original layout, save_pretrained layout, hub ids)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

from depthlab import DepthLabPipeline  # noqa: E402
from depthlab.models.loading import (  # noqa: E402
    HUB_IDS,
    CheckpointError,
    CheckpointNotFoundError,
    find_checkpoints,
    load_state_dict_file,
    resolve_checkpoints,
)

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden" / "checkpoints"
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden checkpoints not found at {GOLDEN}")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "pipe"
    DepthLabPipeline.build_tiny(seed=1).save_pretrained(folder)
    return folder


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_save_pretrained_layout_is_recognised(saved: Path) -> None:
    paths = resolve_checkpoints(saved)
    assert paths.layout == "depthlab" and paths.root == saved
    assert find_checkpoints(saved) == paths
    assert (saved / "estimation_unet" / "model.safetensors").is_file()
    assert not (saved / "text_encoder").exists()  # nothing loaded that guidance 1 does not need


@pytest.mark.parametrize("change", ["missing", "unexpected", "mis-shaped"])
def test_strict_loading_names_the_tensor(saved: Path, tmp_path: Path, change: str) -> None:
    folder = copy_tree(saved, tmp_path / "pipe")
    weights = folder / "estimation_unet" / "model.safetensors"
    state = load_file(str(weights))
    key = "conv_in.weight"
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        state["extra_head.weight"] = torch.zeros(2)
        key = "extra_head.weight"
    else:
        state[key] = torch.zeros(3, 3)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=rf"{change}: .*{key}"):
        DepthLabPipeline.from_pretrained(folder)


@needs_golden
def test_original_layout_loads_strictly(tmp_path: Path) -> None:
    pipe = DepthLabPipeline.from_pretrained(GOLDEN)
    assert pipe.text_encoder is None and pipe.tokenizer is None
    assert pipe.estimation_unet.config.in_channels == 12 and pipe.reference_unet.config.in_channels == 4
    assert pipe.reference_unet.conv_norm_out is None  # the unused output head is explicitly removed

    folder = copy_tree(GOLDEN, tmp_path / "ckpt")
    pth = folder / "DepthLab" / "denoising_unet.pth"
    state = torch.load(pth, weights_only=True)
    state["down_blocks.0.resnets.0.conv1.weight"] = state["down_blocks.0.resnets.0.conv1.weight"][:, :1]
    torch.save(state, pth)
    with pytest.raises(
        CheckpointError, match=r"denoising_unet.pth.*mis-shaped: down_blocks.0.resnets.0.conv1.weight"
    ):
        DepthLabPipeline.from_pretrained(folder)


@needs_golden
def test_original_layout_missing_part_is_named(tmp_path: Path) -> None:
    folder = copy_tree(GOLDEN, tmp_path / "ckpt")
    (folder / "DepthLab" / "mapping_layer.pth").unlink()
    with pytest.raises(CheckpointNotFoundError, match="mapping_layer.pth") as info:
        DepthLabPipeline.from_pretrained(folder)
    assert "hf download" in str(info.value)
    assert find_checkpoints(folder) is None


def test_pth_files_are_loaded_with_weights_only(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weight": Payload()}, handle)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_state_dict_file(path)


def test_hub_ids_missing_offline_gives_instructions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEPTHLAB_CHECKPOINTS", raising=False)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointNotFoundError) as info:
        DepthLabPipeline.from_pretrained(None)
    message = str(info.value)
    for repo in HUB_IDS.values():
        assert repo in message
    assert find_checkpoints(None) is None


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        DepthLabPipeline.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError, match="marigold-depth-v1-0"):
        DepthLabPipeline.from_pretrained(tmp_path / "empty")


def test_environment_variable_is_used(saved: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEPTHLAB_CHECKPOINTS", str(saved))
    assert find_checkpoints(None).root == saved
    assert isinstance(DepthLabPipeline.from_pretrained(None), DepthLabPipeline)


@needs_golden
def test_hub_ids_resolve_from_the_huggingface_cache(tmp_path: Path, monkeypatch) -> None:
    """The hub path with tiny stand-ins: a huggingface_hub cache holding the three repos."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    parts = {
        "marigold": GOLDEN / "marigold-depth-v1-0",
        "clip": GOLDEN / "CLIP-ViT-H-14-laion2B-s32B-b79K",
        "depthlab": GOLDEN / "DepthLab",
    }
    for key, source in parts.items():
        repo = cache / ("models--" + HUB_IDS[key].replace("/", "--"))
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        target = repo / "snapshots" / commit
        # the DepthLab repo keeps its .pth files in a sub-folder; they are searched for
        shutil.copytree(
            source, target / ("checkpoints/DepthLab" if key == "depthlab" else ""), dirs_exist_ok=True
        )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DEPTHLAB_CHECKPOINTS", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    paths = find_checkpoints(None)
    assert paths is not None and paths.layout == "original"
    assert paths.depthlab.name == "DepthLab" and paths.depthlab.parent.name == "checkpoints"
    pipe = DepthLabPipeline.from_pretrained(None)
    reference = DepthLabPipeline.from_pretrained(GOLDEN)
    for name, value in reference.estimation_unet.state_dict().items():
        assert torch.equal(pipe.estimation_unet.state_dict()[name], value), name


def test_hub_id_forms_are_understood(tmp_path: Path) -> None:
    from depthlab.models.loading import _hub_repo_ids

    assert _hub_repo_ids(None) == HUB_IDS and _hub_repo_ids("hub") == HUB_IDS
    assert _hub_repo_ids("me/DepthLab-ft") == {**HUB_IDS, "depthlab": "me/DepthLab-ft"}
    assert _hub_repo_ids(("a/m", "b/c", "c/d")) == {"marigold": "a/m", "clip": "b/c", "depthlab": "c/d"}
    assert _hub_repo_ids({"clip": "x/y"})["clip"] == "x/y"
    assert _hub_repo_ids(tmp_path) is None
    with pytest.raises(ValueError, match="source"):
        _hub_repo_ids({"vae": "x/y"})
    with pytest.raises(ValueError, match="3 hub ids"):
        _hub_repo_ids(["a/b"])
