"""Hub constants and the checkpoint search are importable without torch (``depthlab info``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_hub_constants_and_info_import_without_torch() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'diffusers', 'transformers', 'accelerate'):\n"
        "    sys.modules[name] = None\n"
        "from depthlab.models import hub\n"
        "from depthlab.cli import info_cmd\n"
        "assert set(hub.HUB_IDS) == {'marigold', 'clip', 'depthlab'}\n"
        "assert hub.MARIGOLD_DIR in hub.download_help()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_hub_snapshot_offline_and_uncached_is_none(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants as constants

    from depthlab.models.hub import hub_snapshot

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_snapshot("someone/not-cached", ["*.json"]) is None
