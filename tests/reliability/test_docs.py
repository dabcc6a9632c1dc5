"""The README and ``depthlab complete --help`` agree, and the README's Python snippet runs twice."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def _complete_parser():
    import argparse

    from depthlab.cli import build_parser

    parser = build_parser()
    table = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return table.choices["complete"]


def _help_text() -> str:
    return _complete_parser().format_help()


def test_every_complete_flag_is_in_the_readme_and_back():
    help_flags = {o for a in _complete_parser()._actions for o in a.option_strings if o.startswith("--")}
    help_flags -= {"--help"}
    cli_section = _section("Command line")
    readme_block = cli_section[: cli_section.index("depthlab info")]
    readme_flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", readme_block))
    readme_flags = {f.replace("--no-blend", "--blend") for f in readme_flags}
    help_flags = {f.replace("--no-blend", "--blend") for f in help_flags}
    assert help_flags - readme_flags == set(), "flags in --help missing from the README synopsis"
    assert readme_flags - help_flags == set(), "flags in the README synopsis unknown to --help"


def test_readme_rules_match_the_help():
    text = " ".join(_help_text().split())
    for phrase in ("integer", "points:500", "u/x/col", "--out-scale", "(0, 1]", "trailing"):
        assert phrase in text, phrase
    readme = " ".join(_section("Command line").split()) + " ".join(_section("Input conventions").split())
    for phrase in ("integer", "points:500", "`u`/`x`/`col`", "--out-scale", "trailing"):
        assert phrase in readme, phrase


def test_readme_python_snippet_runs_twice(tmp_path):
    api = _section("Python API")
    code = api[api.index("```python") + len("```python") : api.index("```", api.index("```python") + 9)]
    code = code[: code.index("# DepthLab itself")]  # the rest needs real weights
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    (tmp_path / "snippet.py").write_text(code)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    for run in range(2):
        done = subprocess.run(
            [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"run {run + 1}: {done.stderr}"
        assert "Traceback" not in done.stderr
    assert (tmp_path / "completed.png").exists() and (tmp_path / "kept.png").exists()
