"""Import direction: a module never imports a higher layer (docs/architecture.md).

Every module of ``src/depthlab`` is parsed with :mod:`ast`; every ``import``/``from ... import``
(module level and inside functions) and every ``importlib.import_module("literal")`` of a depthlab
module is checked against :data:`LAYERS`, the one table of layers (docs/architecture.md draws it).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# rank: lower layers first. A module may import its own layer and the layers below.
# Keys are module paths below ``depthlab``; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    # 0. leaf utilities: numpy/Pillow only, no torch
    "inputs": 0,
    "outputs": 0,
    "io": 0,
    "visualize": 0,
    "masks": 0,
    "config": 0,
    # 1. geometry (cameras, points, meshes; may use io)
    "geometry": 1,
    # 2. pure stages
    "preprocessing": 2,
    "postprocessing": 2,
    "alignment": 2,
    # 3. models (torch modules, loading, tiny configs)
    "models": 3,
    # 4. methods: the pipeline, classical fills, monocular baseline, complete() + the registry
    "pipeline": 4,
    "classical": 4,
    "monocular": 4,
    "completion": 4,
    # 5. batch processing
    "batch": 5,
    # 6. consumers
    "data": 6,
    "evaluation": 6,
    "training": 6,
    "applications": 6,
    "tasks": 6,
    "demo": 6,
    # 7. command line (argparse -> dataclass -> one library call)
    "cli": 7,
}
LAYER_NAMES = {
    0: "leaf utilities",
    1: "geometry",
    2: "stages",
    3: "models",
    4: "methods",
    5: "batch",
    6: "consumers",
    7: "cli",
}
ENTRY = 8  # ``__main__`` modules: entry points like the console script, above everything
# ``depthlab`` itself (``depthlab/__init__.py``) is the public facade: anything may import it
# (``depthlab.__version__``) and its lazy attributes re-export ``complete``/``DepthLabPipeline``.
FACADE = "depthlab"


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    module_layer: str
    imported_layer: str

    def __str__(self) -> str:
        return (
            f"{self.module}:{self.line} imports {self.imported} "
            f"({self.module_layer} may not import {self.imported_layer})"
        )


def layer_of(module: str) -> int | None:
    """Rank of a dotted depthlab module (None: not a depthlab module, or the facade)."""
    parts = module.split(".")
    if parts[0] != "depthlab" or module == FACADE:
        return None
    if parts[-1] == "__main__":
        return ENTRY
    inner = parts[1:]
    for length in range(len(inner), 0, -1):
        key = ".".join(inner[:length])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")


def _label(rank: int) -> str:
    return LAYER_NAMES.get(rank, "entry point")


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, dotted module)`` for every depthlab import in ``source``, nested ones included."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = _resolve_relative(module, is_package, node.level, node.module)
            if target == FACADE:  # ``from depthlab import io``: the names may be submodules
                for alias in node.names:
                    yield node.lineno, f"{FACADE}.{alias.name}"
            else:
                yield node.lineno, target
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def check_source(source: str, module: str, is_package: bool = False) -> list[Violation]:
    """Upward imports of one module given as source text."""
    own = layer_of(module)
    if own is None:
        return []
    found = []
    for line, imported in imported_modules(source, module, is_package):
        if not imported.startswith("depthlab"):
            continue
        try:
            rank = layer_of(imported)
        except KeyError:  # ``from depthlab import __version__``-style names of the facade
            if imported.startswith(FACADE + ".") and imported.count(".") == 1:
                continue
            raise
        if rank is not None and rank > own:
            found.append(Violation(module, line, imported, _label(own), _label(rank)))
    return found


def package_modules(root: Path) -> Iterator[tuple[str, Path, bool]]:
    """``(dotted name, path, is_package)`` of every module below ``root/depthlab``."""
    for path in sorted((root / "depthlab").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), path, is_package


def check_tree(root: Path) -> list[Violation]:
    violations = []
    for module, path, is_package in package_modules(root):
        violations += check_source(path.read_text(encoding="utf-8"), module, is_package)
    return violations


def test_no_module_imports_a_higher_layer():
    violations = check_tree(SRC)
    assert not violations, "upward imports:\n" + "\n".join(map(str, violations))


def test_every_module_has_a_layer():
    for module, _, _ in package_modules(SRC):
        layer_of(module)  # raises KeyError naming the module


def test_the_checker_flags_a_planted_upward_import(tmp_path):
    package = tmp_path / "depthlab"
    (package / "evaluation").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "evaluation" / "__init__.py").write_text("")
    (package / "evaluation" / "metrics.py").write_text("import numpy\n")
    (package / "io.py").write_text("import numpy\nfrom depthlab.inputs import to_numpy\n")
    assert check_tree(tmp_path) == []
    # a leaf utility reaching up to the evaluation harness, inside a function
    (package / "io.py").write_text(
        "import numpy\n\n\ndef read(path):\n    from depthlab.evaluation import metrics\n    return metrics\n"
    )
    (violation,) = check_tree(tmp_path)
    assert violation.module == "depthlab.io" and violation.line == 5
    assert violation.imported == "depthlab.evaluation"
    assert "leaf utilities may not import consumers" in str(violation)


@pytest.mark.parametrize(
    ("source", "module", "is_package", "upward"),
    [
        ("from depthlab import completion", "depthlab.classical", False, []),
        ("from depthlab import cli", "depthlab.completion", False, ["depthlab.cli"]),
        ("from ..cli import main", "depthlab.training.trainer", False, ["depthlab.cli"]),
        ("from .. import cli", "depthlab.training", True, ["depthlab.cli"]),
        ("from .sample import x", "depthlab.training.data", False, []),
        (
            "import importlib\nimportlib.import_module('depthlab.batch')",
            "depthlab.pipeline",
            False,
            ["depthlab.batch"],
        ),
        ("import depthlab.pipeline", "depthlab.models.loading", False, ["depthlab.pipeline"]),
        ("from depthlab.cli.train_cmd import main", "depthlab.training.__main__", False, []),
        ("from depthlab import __version__", "depthlab.evaluation.runner", False, []),
        ("import depthlab", "depthlab.io", False, []),
    ],
)
def test_checker_cases(source, module, is_package, upward):
    assert [v.imported for v in check_source(source, module, is_package)] == upward


TORCH_FREE = [module for module, rank in LAYERS.items() if rank <= LAYERS["alignment"]]


def test_lower_layers_and_the_metric_tests_work_without_torch():
    """Layers 0-2, the metrics and their tests import and pass with torch made unimportable."""
    modules = [f"depthlab.{m}" for m in TORCH_FREE] + ["depthlab.evaluation.metrics", "depthlab.classical"]
    code = (
        "import importlib, sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/evaluation/test_metrics.py']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=SRC.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" in result.stdout  # the torch-input test skips


# ---------------------------------------------------------------------------------------------
# tests mirror the package: tests/<package path>/test_<module>.py (kornia's layout)
# ---------------------------------------------------------------------------------------------
TESTS = Path(__file__).resolve().parent

# Modules whose behaviour is tested through a higher-level entry point, and the test file that
# does it. Anything new gets its own tests/<path>/test_<module>.py instead of an entry here.
TESTED_ELSEWHERE = {
    "applications/common.py": "applications/test_lidar.py",
    "batch/manifest.py": "batch/test_runner.py",
    "batch/options.py": "batch/test_runner.py",
    "batch/writers.py": "cli/test_complete_cmd.py",
    "cli/app_args.py": "cli/test_geometry_cmds.py",
    "cli/demo_cmd.py": "demo/test_cli_demo.py",
    "cli/info_cmd.py": "models/test_hub.py",
    "cli/lidar_cmd.py": "cli/test_geometry_cmds.py",
    "cli/refine_cmd.py": "cli/test_geometry_cmds.py",
    "cli/train_cmd.py": "training/test_trainer.py",
    "cli/warp_cmd.py": "cli/test_geometry_cmds.py",
    "data/base.py": "data/test_datasets_builtin.py",
    "data/diode.py": "data/test_datasets_builtin.py",
    "data/eth3d.py": "data/test_datasets_builtin.py",
    "data/folder.py": "data/test_datasets_builtin.py",
    "data/hypersim.py": "training/test_datasets.py",
    "data/kitti.py": "data/test_datasets_builtin.py",
    "data/nyuv2.py": "data/test_datasets_builtin.py",
    "data/registry.py": "data/test_datasets_builtin.py",
    "data/scannet.py": "data/test_datasets_builtin.py",
    "data/synthetic.py": "training/test_datasets.py",
    "data/vkitti.py": "training/test_datasets.py",
    "demo/app.py": "demo/test_browser.py",
    "evaluation/item.py": "evaluation/test_runner.py",
    "evaluation/report.py": "evaluation/test_runner.py",
    "geometry/conversions.py": "geometry/test_points.py",
    "models/components.py": "models/test_streaming_load.py",
    "models/schedulers.py": "training/test_distill.py",
    "models/streaming.py": "models/test_streaming_load.py",
    "models/tiny.py": "test_pipeline.py",
    "monocular.py": "evaluation/test_baselines.py",
    "outputs.py": "test_pipeline.py",
    "postprocessing.py": "test_pipeline.py",
    "preprocessing.py": "test_pipeline.py",
    "training/data.py": "training/test_datasets.py",
    "training/export.py": "training/test_trainer.py",
    "training/optim.py": "training/test_trainer.py",
    "training/vae_warmup.py": "training/test_trainer.py",
}


def _package_files() -> list[str]:
    package = SRC / "depthlab"
    return sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    )


def mirrored_test(module: str) -> str:
    """``"batch/runner.py"`` -> ``"batch/test_runner.py"`` (relative to ``tests/``)."""
    path = Path(module)
    return (path.parent / f"test_{path.name}").as_posix()


def test_tests_mirror_the_package():
    lacking = [
        f"{module}: add tests/{mirrored_test(module)}"
        for module in _package_files()
        if not (TESTS / mirrored_test(module)).is_file() and module not in TESTED_ELSEWHERE
    ]
    assert not lacking, "modules without a test file at the mirrored path:\n" + "\n".join(lacking)


def test_the_tested_elsewhere_index_is_current():
    modules = set(_package_files())
    stale = [m for m in TESTED_ELSEWHERE if m not in modules or (TESTS / mirrored_test(m)).is_file()]
    assert not stale, f"drop from TESTED_ELSEWHERE (gone, or now has its own test file): {stale}"
    missing = [f"{m} -> {t}" for m, t in TESTED_ELSEWHERE.items() if not (TESTS / t).is_file()]
    assert not missing, f"TESTED_ELSEWHERE names test files that do not exist: {missing}"
