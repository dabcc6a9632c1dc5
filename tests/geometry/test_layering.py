import ast
import subprocess
import sys
from pathlib import Path

import depthlab.geometry

ALLOWED = {"depthlab.geometry", "depthlab.io", "depthlab.inputs"}


def test_geometry_imports_nothing_above_io():
    for path in Path(depthlab.geometry.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("depthlab"):
                assert any(node.module == a or node.module.startswith(a + ".") for a in ALLOWED), (
                    path,
                    node.module,
                )
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith(("torch", "depthlab.")) or alias.name.startswith(
                        "depthlab.geometry"
                    ), (path, alias.name)


def test_geometry_works_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
        "import numpy as np, depthlab.geometry as g\n"
        "cam = g.Camera(10, 10, 1, 1, 3, 3)\n"
        "d, i = g.project(g.unproject(np.ones((3, 3)), cam), cam)\n"
        "assert d.sum() == 9\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
