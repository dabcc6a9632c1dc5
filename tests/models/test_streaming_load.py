"""Streamed loading (tensor by tensor into meta-built models) against the whole-file load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from accelerate import init_empty_weights  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPConfig, CLIPModel, CLIPVisionModelWithProjection  # noqa: E402

from depthlab import DepthLabPipeline  # noqa: E402
from depthlab.models import loading  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden" / "checkpoints"
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden checkpoints not found at {GOLDEN}")


def old_load(paths: loading.CheckpointPaths, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """The previous loader: read every file whole into a dict, then assign it strictly."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from depthlab.models.components import ImageProjection

    if paths.layout == "original":
        files = {
            "vae": paths.marigold / "vae",
            "reference_unet": paths.depthlab / "reference_unet.pth",
            "estimation_unet": paths.depthlab / "denoising_unet.pth",
            "image_projection": paths.depthlab / "mapping_layer.pth",
        }
        unet_configs = {
            name: dict(UNet2DConditionModel.load_config(paths.marigold / "unet")) for name in files
        }
        vae_config, clip_folder = AutoencoderKL.load_config(paths.marigold / "vae"), paths.clip
        projection_config = {"in_features": 1024, "out_features": 1024}
    else:
        root = paths.root
        files = {
            name: root / name / "model.safetensors" for name in ("vae", "reference_unet", "estimation_unet")
        }
        files["image_projection"] = root / "image_projection" / "model.safetensors"
        unet_configs = {name: dict(UNet2DConditionModel.load_config(root / name)) for name in files}
        vae_config, clip_folder = AutoencoderKL.load_config(root / "vae"), root / "image_encoder"
        projection_config = ImageProjection.load_config(root / "image_projection")

    def state(path: Path) -> dict[str, torch.Tensor]:
        return loading.load_component_weights(path) if path.is_dir() else loading.load_state_dict_file(path)

    vae = loading.load_strict(
        loading.build_from_config(AutoencoderKL, vae_config), state(files["vae"]), "vae", dtype=dtype
    )
    unets = {
        name: loading.load_unet(unet_configs[name], channels, state(files[name]), name, dtype)
        for name, channels in (("reference_unet", 4), ("estimation_unet", 12))
    }
    projection = loading.load_strict(
        loading.build_from_config(ImageProjection, projection_config),
        state(files["image_projection"]),
        "projection",
        dtype=dtype,
    )
    clip = loading.load_clip_vision(clip_folder, dtype, loading.load_component_weights(clip_folder))
    return {"vae": vae, **unets, "image_encoder": clip, "image_projection": projection}


def assert_same_models(new: dict, old: dict) -> None:
    for name, model in old.items():
        a, b = new[name].state_dict(), model.state_dict()
        assert a.keys() == b.keys(), name
        for key in b:
            assert a[key].dtype == b[key].dtype and a[key].device.type == "cpu", f"{name}.{key}"
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stream") / "pipe"
    DepthLabPipeline.build_tiny(seed=3).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_save_pretrained_equals_whole_file_load(saved: Path, dtype: torch.dtype) -> None:
    paths = loading.resolve_checkpoints(saved)
    new = loading.load_pipeline_components(paths, False, dtype)
    assert_same_models(new, old_load(paths, dtype))


@needs_golden
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_original_layout_equals_whole_file_load(dtype: torch.dtype) -> None:
    paths = loading.resolve_checkpoints(GOLDEN)
    new = loading.load_pipeline_components(paths, False, dtype)
    assert_same_models(new, old_load(paths, dtype))
    assert set(new["weight_sources"]) == {
        "vae",
        "reference_unet",
        "estimation_unet",
        "image_encoder",
        "image_projection",
    }


def test_sharded_component_is_streamed_from_every_shard(saved: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(saved, tmp_path / "pipe")
    weights = folder / "estimation_unet" / "model.safetensors"
    state = load_file(str(weights))
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(weights.parent / name))
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (weights.parent / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    weights.unlink()
    assert len(loading.component_files(weights.parent)) == 2
    pipe = DepthLabPipeline.from_pretrained(folder)
    reference = DepthLabPipeline.from_pretrained(saved)
    for key, value in reference.estimation_unet.state_dict().items():
        assert torch.equal(pipe.estimation_unet.state_dict()[key], value), key
    (weights.parent / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(loading.CheckpointNotFoundError, match="model-00002-of-00002"):
        DepthLabPipeline.from_pretrained(folder)


def read_bytes() -> int:
    """Bytes this process has read through read(2)-like calls so far (``/proc/self/io`` rchar)."""
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_clip_text_tower_is_never_read(tmp_path: Path) -> None:
    # A full CLIPModel file whose text tower (large vocabulary) is most of the file.
    config = CLIPConfig(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 16000,
            "max_position_embeddings": 16,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
        },
        projection_dim=16,
    )
    folder = tmp_path / "clip"
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    file = folder / "model.safetensors"
    data_start, header = loading.streaming.safetensors_index(file)
    text_bytes = sum(
        int(entry["data_offsets"][1]) - int(entry["data_offsets"][0])
        for key, entry in header.items()
        if key.startswith(loading.CLIP_TEXT_PREFIXES)
    )
    vision_bytes = file.stat().st_size - data_start - text_bytes
    assert text_bytes > 10 * vision_bytes  # the check below can only pass if the text tower is skipped

    model = loading.build_from_config(CLIPVisionModelWithProjection, loading.clip_vision_config(folder))
    source = loading.clip_vision_source(folder)
    before = read_bytes()
    source.load_into(model, torch.float32)
    read = read_bytes() - before
    assert read < vision_bytes + data_start + 65536, (read, vision_bytes, text_bytes)

    # Garbage in the text-tower region changes nothing: its bytes are not used either.
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    with file.open("r+b") as handle:
        for key, entry in header.items():
            if key.startswith(loading.CLIP_TEXT_PREFIXES):
                begin, end = (int(v) for v in entry["data_offsets"])
                handle.seek(data_start + begin)
                handle.write(b"\xff" * (end - begin))  # NaN bit patterns
    again = loading.load_clip_vision(folder, torch.float32)
    for key, value in expected.items():
        assert torch.equal(again.state_dict()[key], value), key


def test_cast_from_memory_mapped_pth_keeps_every_value(tmp_path: Path) -> None:
    # Large tensors (their file pages are given back after the cast) and two keys sharing one
    # storage (the second is read after the first one's pages were dropped).
    big = torch.randn(512, 1024, generator=torch.Generator().manual_seed(0))
    state = {"a.weight": big, "b.weight": big, "c.weight": big[7:300] * 2}
    path = tmp_path / "state.pth"
    torch.save(state, path)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(1024, 512, bias=False), torch.nn.Linear(1024, 512, bias=False)
            self.c = torch.nn.Linear(1024, 293, bias=False)

    with init_empty_weights():
        model = Model()
    loading.WeightSource((path,), "state").load_into(model, torch.bfloat16)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value.to(torch.bfloat16)), key
