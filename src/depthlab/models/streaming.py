"""Tensor-by-tensor checkpoint reading: only the keys a module needs, one copy in memory.

``stream_into`` fills a module built on the meta device straight from its checkpoint files:

* ``.safetensors``: the header (8-byte little-endian length + JSON: dtype, shape, byte offsets)
  is read with :func:`safetensors.safe_open` and each *needed* tensor is read with one positioned
  ``readinto`` into freshly allocated (aligned) memory. Skipped keys (the CLIP text tower) are
  never read, and nothing stays memory-mapped, so the process's RSS grows by exactly the module's
  size (a memory map would count the touched file pages on top of the copy).
* ``.pth`` / ``.bin``: ``torch.load(mmap=True, weights_only=True)``; tensors in the stored dtype
  are assigned as they are (file-backed, no copy), others are cast one at a time.

Shapes are compared against the module before anything is read: a missing, unexpected or
mis-shaped tensor is a :class:`~depthlab.models.loading.CheckpointError` naming the file and the
tensor, as is a truncated file or a pickle that is not a plain state dict.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "SAFETENSORS_DTYPES",
    "safetensors_index",
    "read_safetensors",
    "read_pth",
    "stream_into",
    "release_weights",
]

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges where ``path`` is memory-mapped in this process (``/proc/self/maps``; Linux)."""
    try:
        name = str(path.resolve())
        with open("/proc/self/maps") as handle:
            lines = [line.split(maxsplit=5) for line in handle]
    except OSError:
        return []
    ranges = []
    for fields in lines:
        if len(fields) == 6 and fields[5].strip() == name:
            low, high = fields[0].split("-")
            ranges.append((int(low, 16), int(high, 16)))
    return ranges


def _drop_mapped_pages(tensor: torch.Tensor, ranges: list[tuple[int, int]]) -> None:
    """Give back the resident pages of a memory-mapped (``.pth``) tensor that has been copied.

    A cast copy of a memory-mapped tensor leaves the file pages it touched counted in the
    process's RSS until the whole file is unmapped; ``madvise(MADV_DONTNEED)`` on the pages that
    lie entirely inside the tensor drops them now. Only done inside ``ranges``, the file's own
    private, never-written mapping, where a later access simply reads the file again.
    """
    begin = tensor.data_ptr()
    end = begin + tensor.numel() * tensor.element_size()
    first, last = -(-begin // _PAGE) * _PAGE, end // _PAGE * _PAGE
    if last - first < 4 * _PAGE or not any(low <= first and last <= high for low, high in ranges):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED


def _error_class() -> type[Exception]:
    from depthlab.models.loading import CheckpointError

    return CheckpointError


def safetensors_index(path: str | os.PathLike) -> tuple[int, dict[str, dict]]:
    """``(data_start, {key: {"dtype", "shape", "data_offsets"}})`` of a ``.safetensors`` file."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or 8 + header_len > size:
                raise ValueError(f"header length {header_len} does not fit the file ({size} bytes)")
            header = json.loads(handle.read(header_len))
    except (ValueError, UnicodeDecodeError) as error:
        raise _error_class()(f"{str(path)!r} is not a readable safetensors file ({error})") from None
    header.pop("__metadata__", None)
    data_start = 8 + header_len
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if data_start + end > size:
        raise _error_class()(
            f"{str(path)!r} is truncated: its header needs {data_start + end} bytes, the file has {size}"
        )
    return data_start, header


def _read_entry(handle, data_start: int, entry: Mapping, path: Path, key: str) -> torch.Tensor:
    """One tensor of an open ``.safetensors`` file, read into fresh memory with ``readinto``."""
    stored = SAFETENSORS_DTYPES.get(entry["dtype"])
    if stored is None:
        raise _error_class()(f"{str(path)!r}: tensor {key!r} has unsupported dtype {entry['dtype']}")
    begin, end = (int(v) for v in entry["data_offsets"])
    tensor = torch.empty(tuple(entry["shape"]), dtype=stored)
    if tensor.numel() * tensor.element_size() != end - begin:
        raise _error_class()(
            f"{str(path)!r}: tensor {key!r} has {end - begin} bytes for shape {tuple(entry['shape'])}"
        )
    if end > begin:
        handle.seek(data_start + begin)
        view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())  # 0-d tensors too
        read = 0
        while read < end - begin:  # readinto may return short reads
            count = handle.readinto(view[read:])
            if not count:
                raise _error_class()(f"{str(path)!r} is truncated inside tensor {key!r}")
            read += count
    return tensor


def read_safetensors(
    path: str | os.PathLike, keys: Iterable[str] | None = None, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Read ``keys`` (default: all) of a ``.safetensors`` file into fresh memory (no memory map).

    Floating tensors are cast to ``dtype`` when given (one tensor at a time).
    """
    path = Path(path)
    data_start, header = safetensors_index(path)
    wanted = list(header) if keys is None else list(keys)
    unknown = [key for key in wanted if key not in header]
    if unknown:
        raise _error_class()(f"{str(path)!r} has no tensor {unknown[0]!r}")
    out: dict[str, torch.Tensor] = {}
    with path.open("rb", buffering=0) as handle:
        for key in wanted:
            tensor = _read_entry(handle, data_start, header[key], path, key)
            if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
                tensor = tensor.to(dtype)
            out[key] = tensor
    return out


def read_pth(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``.pth``/``.bin`` state dict, memory-mapped, plain tensors only (``weights_only=True``).

    Raises:
        CheckpointError: one line naming the file: truncated/corrupt archive, or a pickle with
            anything but tensors and containers (never suggests ``weights_only=False``).
    """
    path = Path(path)
    error_class = _error_class()
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        first = str(error).split("\n")
        detail = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line), "")
        raise error_class(
            f"{str(path)!r} holds pickled objects other than tensors, which depthlab does not load "
            f"(it only reads plain state dicts){': ' + detail if detail else ''}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, RuntimeError) and "mmap" in message and not zipfile.is_zipfile(path):
            message = "not a torch zip archive (legacy or truncated file)"
        raise error_class(f"{str(path)!r} is truncated or not a PyTorch checkpoint ({message})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error_class(f"{str(path)!r} does not hold a state dict of tensors (got {type(state).__name__})")
    return dict(state)


def _check_keys(
    model: nn.Module, available: Mapping[str, tuple[int, ...]], source: str, rename: Callable[[str], str]
) -> dict[str, str]:
    """Map model key -> checkpoint key; raise naming missing / unexpected / mis-shaped tensors."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    by_model_key = {rename(k): k for k in available}
    missing = sorted(set(expected) - set(by_model_key))
    unexpected = sorted(set(by_model_key) - set(expected))
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(available[by_model_key[k]])} vs model {expected[k]}"
        for k in set(expected) & set(by_model_key)
        if tuple(available[by_model_key[k]]) != expected[k]
    )
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("mis-shaped", mis_shaped), ("missing", missing), ("unexpected", unexpected)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise _error_class()(f"{source} does not match {type(model).__name__}: " + "; ".join(parts))
    return {k: by_model_key[k] for k in expected}


def stream_into(
    model: nn.Module,
    files: Iterable[str | os.PathLike],
    source: str,
    ignore_prefixes: Iterable[str] = (),
    dtype: torch.dtype | None = None,
    rename: Callable[[str], str] = lambda key: key,
) -> nn.Module:
    """Fill ``model`` (parameters on the meta device) strictly from checkpoint ``files``.

    Args:
        model: built from its config on the meta device (:func:`~depthlab.models.loading.build_from_config`).
        files: the component's weight files (several for sharded checkpoints).
        source: how errors name the checkpoint (a path or a label).
        ignore_prefixes: checkpoint keys to skip without reading them (e.g. the CLIP text tower).
        dtype: cast floating tensors to it (default: the dtype of the module's tensor).
        rename: checkpoint key -> model key.

    Raises:
        CheckpointError: naming the file and every missing, unexpected or mis-shaped tensor.
    """
    ignore = tuple(ignore_prefixes)
    shapes: dict[str, tuple[int, ...]] = {}
    origin: dict[str, Path] = {}
    pickled: dict[str, torch.Tensor] = {}
    headers: dict[Path, tuple[int, dict[str, dict]]] = {}
    mapped: dict[Path, list[tuple[int, int]]] = {}
    for file in files:
        file = Path(file)
        if file.suffix == ".safetensors":
            headers[file] = safetensors_index(file)
            entries = {k: tuple(v["shape"]) for k, v in headers[file][1].items()}
        else:
            state = read_pth(file)
            mapped[file] = _mapped_ranges(file)
            pickled.update(state)
            entries = {k: tuple(v.shape) for k, v in state.items()}
        entries = {k: v for k, v in entries.items() if not (ignore and k.startswith(ignore))}
        shapes.update(entries)
        origin.update(dict.fromkeys(entries, file))
    mapping = _check_keys(model, shapes, source, rename)
    expected = {k: v.dtype for k, v in model.state_dict(keep_vars=True).items()}

    def cast(key: str, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_floating_point():
            tensor = tensor.to(dtype if dtype is not None else expected[key])
        if tensor.data_ptr() % 64:  # unaligned storage takes other CPU kernel paths: realign
            tensor = tensor.clone()
        return tensor

    # Assign in batches of about 256 MB, each as soon as it is read: never a second copy.
    batch: dict[str, torch.Tensor] = {}
    batch_bytes = 0
    handles = {file: file.open("rb", buffering=0) for file in headers}
    try:
        for model_key, checkpoint_key in mapping.items():
            file = origin[checkpoint_key]
            if file in handles:
                data_start, header = headers[file]
                tensor = _read_entry(handles[file], data_start, header[checkpoint_key], file, checkpoint_key)
            else:
                tensor = pickled.pop(checkpoint_key)
            batch[model_key] = cast(model_key, tensor)
            if file not in handles and batch[model_key].data_ptr() != tensor.data_ptr():
                _drop_mapped_pages(tensor, mapped[file])  # a cast copy: the file pages go back now
            batch_bytes += tensor.numel() * tensor.element_size()
            if batch_bytes > 2**28:
                model.load_state_dict(batch, strict=False, assign=True)
                batch, batch_bytes = {}, 0
    finally:
        for handle in handles.values():
            handle.close()
    if batch:
        model.load_state_dict(batch, strict=False, assign=True)
    pickled.clear()
    return model


def release_weights(model: nn.Module) -> nn.Module:
    """Put every parameter back on the meta device (frees its memory; buffers stay)."""
    meta = {
        name: torch.empty(param.shape, dtype=param.dtype, device="meta")
        for name, param in model.named_parameters()
    }
    model.load_state_dict(meta, strict=False, assign=True)
    return model
