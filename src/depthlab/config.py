"""Layered YAML configuration, the one loader for training and evaluation runs (numpy/torch-free).

``--config`` takes a file path or the name of a config packaged with depthlab
(``src/depthlab/configs/{train,eval}/<name>.yaml``, installed with the wheel): ``smoke_tiny``,
``table2_nyu_500pts``, ... (:func:`packaged_configs` lists them, :func:`resolve_config` finds one).

A config file may name one or more parents under ``base_config:`` (paths relative to the file, or
the name of a packaged config of the same kind); parents are loaded first (recursively) and deep-merged in order, then the file itself on top.
Mappings merge key by key; every other value (lists included) is replaced. A mapping that holds
``_replace: true`` replaces the inherited mapping instead of merging into it (e.g. a dataset spec
of another kind); the marker itself is dropped. Command-line overrides
``key.sub=value`` are applied last; values are parsed as YAML (``lr=1e-4`` is a float,
``masks.components={"ratio:1-5": 1}`` a mapping, ``resume=null`` None).

The merged config is what a run uses and what it saves (``config.yaml`` in the run folder).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "KINDS",
    "deep_merge",
    "load_config",
    "apply_overrides",
    "parse_override",
    "save_config",
    "get_path",
    "packaged_configs",
    "resolve_config",
]

BASE_KEY = "base_config"
REPLACE_KEY = "_replace"
KINDS = ("train", "eval")


def _packaged_root() -> Path:
    return Path(str(resources.files("depthlab") / "configs"))


def packaged_configs(kind: str | None = None) -> dict[str, list[str]]:
    """Names of the packaged configs, ``{"train": [...], "eval": [...]}`` (only ``kind`` if given)."""
    kinds = KINDS if kind is None else (_check_kind(kind),)
    root = _packaged_root()
    return {k: sorted(p.stem for p in (root / k).glob("*.yaml")) for k in kinds}


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"config `kind` must be one of {KINDS}; got {kind!r}")
    return kind


def _is_bare_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))


def resolve_config(config: str | Path, kind: str | None = None) -> Path:
    """The file of ``config``: an existing path, or the name of a packaged config.

    Args:
        config: a path to a YAML file, or a packaged name without folder or ``.yaml``
            (``"smoke_tiny"``, ``"table2_nyu_500pts"``).
        kind: ``"train"`` or ``"eval"``: where packaged names are looked up (None: both).

    Raises:
        FileNotFoundError: neither a file nor a packaged name; the one-line message lists the
            packaged names.
    """
    path = Path(config)
    if path.is_file():
        return path
    text = str(config)
    names = packaged_configs(kind)
    if _is_bare_name(text):
        found = [_packaged_root() / k / f"{text}.yaml" for k, listed in names.items() if text in listed]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FileNotFoundError(
                f"config {text!r} is packaged for both training and evaluation; give a path"
            )
    listed = "; ".join(f"{k}: {', '.join(v)}" for k, v in names.items())
    raise FileNotFoundError(f"config {text!r} is neither a file nor a packaged config ({listed})")


def _strip_replace(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_replace(v) for k, v in value.items() if k != REPLACE_KEY}
    return copy.deepcopy(value)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override`` recursively (mappings merge, other values replace)."""
    merged = _strip_replace(dict(base))
    for key, value in override.items():
        if key == REPLACE_KEY:
            continue
        replace = isinstance(value, Mapping) and bool(value.get(REPLACE_KEY, False))
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and not replace:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _strip_replace(value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"config {path} must hold a mapping at the top level; got {type(data).__name__}")
    return dict(data)


def _parent_path(path: Path, parent: str, kind: str | None) -> Path:
    """A ``base_config`` entry: relative to the file, else a packaged name of the same kind."""
    candidate = path.parent / parent
    if candidate.is_file() or not _is_bare_name(parent):
        return candidate
    return resolve_config(parent, kind)


def _load_layered(path: Path, seen: tuple[Path, ...], kind: str | None = None) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ValueError(f"`base_config` cycle: {chain}")
    data = _read_yaml(path)
    parents = data.pop(BASE_KEY, None) or []
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ValueError(f"`{BASE_KEY}` in {path} must be a path or a list of paths; got {parents!r}")
    merged: dict[str, Any] = {}
    for parent in parents:
        merged = deep_merge(merged, _load_layered(_parent_path(path, parent, kind), (*seen, path), kind))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.lr=1e-4"`` -> ``(["optimizer", "lr"], 1e-4)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, _, raw = text.partition("=")
    keys = [part for part in key.strip().split(".") if part]
    if not keys:
        raise ValueError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ValueError(f"override {text!r}: value is not valid YAML ({error})") from None
    if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string; numbers are meant
        try:
            value = float(value)
        except ValueError:
            pass
    return keys, value


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings in order; a mapping value merges into an existing mapping."""
    result = copy.deepcopy(dict(config))
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {text!r}: {key!r} is a {type(child).__name__}, not a section")
            node = child
        last = keys[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
            node[last] = deep_merge(node[last], value)
        else:
            node[last] = value
    return result


def load_config(
    config: str | Path | None, overrides: Iterable[str] = (), *, kind: str | None = None
) -> dict[str, Any]:
    """Load a config with its ``base_config`` parents merged, then apply ``key.sub=value`` overrides.

    Args:
        config: a YAML path or a packaged name (:func:`resolve_config`); None: start empty.
        overrides: ``"key.sub=value"`` strings (values parsed as YAML), applied in order.
        kind: ``"train"`` or ``"eval"``, where packaged names are looked up (None: both).
    """
    if kind is not None:
        _check_kind(kind)
    layered = {} if config is None else _load_layered(resolve_config(config, kind), (), kind)
    return apply_overrides(layered, overrides)


def save_config(config: Mapping[str, Any], path: str | Path) -> Path:
    """Write the merged config as YAML (keys in insertion order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


def get_path(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """``get_path(cfg, "optimizer.lr")``; ``default`` when any part is missing."""
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node
