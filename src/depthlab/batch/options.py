"""The settings of a batch run as one plain dataclass (what ``depthlab complete``'s flags fill in)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BatchOptions", "NOT_RECORDED", "RayOptions", "describe_difference", "digest", "item_seed"]

# fields that change neither what is computed nor what is written: left out of the recorded settings
NOT_RECORDED = ("formats", "overwrite", "progress", "device", "low_memory")
# fields only output writers read (recorded per format, see depthlab.batch.writers.format_settings)
WRITING_ONLY = ("out_scale", "cmap", "vmin", "vmax", "colorbar", "unit", "intrinsics", "ply_region")


@dataclass
class BatchOptions:
    """How every item of a batch is read, completed and written.

    Attributes:
        formats: outputs to write, a subset of ``npy`` (float32 depth), ``png16`` (16-bit PNG of
            ``depth * out_scale``), ``color`` (colourised PNG), ``panel`` (RGB | input | result).
        depth_scale: stored value / scale = depth, for integer depth files (1000: mm -> m).
        depth_key: array name inside a ``.npz`` depth file.
        mask_convention: what white/1 means in mask files: ``known`` or ``fill``.
        alpha: RGB alpha channel: ``composite`` onto black or ``drop``.
        out_scale: scale of the 16-bit PNG output (default: ``depth_scale``).
        cmap / vmin / vmax / colorbar / unit: colour pictures (``color``, ``panel``).
        keep: a mask protocol (``"points:500"``, ``"ratio:5"``, ...): make sparse input from the
            read depth first (:func:`depthlab.masks.sparsify` with ``seed``, the same for every
            item, as the API call); None: use the depth as read.
        intrinsics: camera of the images for ``ply`` (``"fx,fy,cx,cy"`` or a K file, see
            :func:`depthlab.geometry.load_camera`; checked against each image's size).
        ply_region: ``ply`` points: ``unknown`` (the completed region only, default) or ``all``.
        method_options: passed to :func:`depthlab.complete` when DepthLab runs
            (``num_inference_steps``, ``processing_resolution``, ``strength``, ...).
        seed: base seed; item ``k`` draws its noise from ``item_seed(seed, k)``, so results do
            not depend on the order, the shard or the worker.
        checkpoints / device / dtype: where DepthLab's weights are, where and in which precision
            it runs (``fp32``, ``fp16``, ``bf16``); ``device`` None: the process's accelerator.
        low_memory: load DepthLab with ``low_memory=True`` (same answer, lower peak memory).
        speed: :meth:`depthlab.DepthLabPipeline.optimize` options applied after loading
            (``channels_last``, ``compile``, ``tiny_vae``); recorded only when given (a tiny VAE
            changes the answer).
        extra: further settings of callers (recorded with the run, so a change is noticed).
        overwrite: recompute items whose outputs exist and replace them.
        progress: show a progress bar.
    """

    formats: tuple[str, ...] = ("npy", "color")
    depth_scale: float | None = None
    depth_key: str | None = None
    mask_convention: str = "known"
    alpha: str = "composite"
    out_scale: float | None = None
    cmap: str = "Spectral"
    vmin: float | None = None
    vmax: float | None = None
    colorbar: bool = False
    unit: str = ""
    keep: str | None = None
    intrinsics: str | None = None
    ply_region: str = "unknown"
    method_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    checkpoints: str | None = None
    device: str | None = None
    dtype: str | None = None
    low_memory: bool = False
    speed: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    progress: bool = True

    def recorded(self, method: str) -> dict[str, Any]:
        """The settings that decide an item's completed depth, as JSON values (results manifest).

        ``method`` is the method that runs; DepthLab-only settings are dropped for the others.
        Settings only writers read are recorded per format instead.
        """
        values = asdict(self)
        for name in NOT_RECORDED + WRITING_ONLY:
            values.pop(name)
        if not values["speed"]:
            values.pop("speed")  # runs without speed options keep the digests they always had
        if values["keep"] is None:
            values.pop("keep")  # runs without --keep keep the digests they always had
        if method != "depthlab":
            for name in ("method_options", "checkpoints", "dtype", "seed"):
                if name != "seed" or self.keep is None:  # --keep draws its pixels with the seed
                    values.pop(name)
        return {"method": method, **json.loads(json.dumps(values, sort_keys=True, default=str))}


def digest(settings: dict[str, Any]) -> str:
    """Short stable hash of recorded settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def item_seed(seed: int, key: str) -> int:
    """Seed of one item: a hash of the base seed and the item's key (63-bit, platform independent)."""
    value = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(value[:8], "little") & ((1 << 63) - 1)


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"method: linear -> guided, depth_scale: 1000 -> None"`` (the settings that differ)."""
    names = sorted(set(old) | set(new), key=lambda n: (n != "method", n))
    parts = [f"{n}: {old.get(n)!r} -> {new.get(n)!r}" for n in names if old.get(n) != new.get(n)]
    return ", ".join(parts) or "the same settings"


@dataclass
class RayOptions:
    """How ``engine="ray"`` runs (``depthlab complete --engine ray``).

    Attributes:
        address: cluster to join (``"auto"``, ``"ray://host:10001"``); None: an existing local
            instance if this process already started one, else a new local instance.
        workers: completion actors (each builds the method/pipeline once).
        gpus_per_worker: GPUs reserved per actor (0 on CPU machines; 1 per DepthLab copy on GPUs).
        cpus_per_worker: CPUs reserved per actor (decoding tasks need 0.25 CPU besides).
        batch_size: items handed to an actor per call.
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 1
