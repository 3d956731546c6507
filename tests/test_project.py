"""Project-level checks: the README quickstart runs, examples are reproducible, imports flow one way."""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from segcli.cli import app
from segcli.data.synthetic import generate_shapes_dataset

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"__main__.py": 4, "cli": 3, "engine": 2, "formats": 1, "models": 1, "data": 1}


def quickstart_commands() -> list[list[str]]:
    """The segcli invocations of the README's first quickstart command."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n# 1\..*?\n(.*?)\n", readme, re.S).group(1)
    return [shlex.split(part.strip())[1:] for part in block.split("&&") if "bin/segcli" in part]


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    """The main quickstart command: the shipped model labels the example images, then is scored."""
    commands = quickstart_commands()
    assert [c[:2] for c in commands] == [["predict", "folder"], ["eval", "examples/shapes/val"]]
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for args, out in zip(commands, ("predict", "eval")):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / out), "--workers", "0"])
        assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "predict" / "summary.json").read_text())
    assert summary["done"] == 20 and len(list((tmp_path / "predict" / "overlays").iterdir())) == 20
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["segm"]["AP50"] > 0.9


def test_committed_examples_match_the_generator(tmp_path):
    for split, count, seed in (("train", 40, 0), ("val", 20, 1)):
        generate_shapes_dataset(tmp_path / split, count, seed, image_format="jpg")
        fresh = json.loads((tmp_path / split / "via_project.json").read_text())["_via_img_metadata"]
        committed = json.loads((ROOT / "examples" / "shapes" / split / "via_project.json").read_text())["_via_img_metadata"]
        assert [v["regions"] for v in fresh.values()] == [v["regions"] for v in committed.values()]


def test_imports_flow_one_way():
    """cli -> engine -> formats/models/data -> structures/errors; nothing imports cli."""
    for path in (ROOT / "segcli").rglob("*.py"):
        layer = path.relative_to(ROOT / "segcli").parts[0]
        level = LAYERS.get(layer, 0)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segcli."):
                target = node.module.split(".")[1]
                assert LAYERS.get(target, 0) <= level or target == layer, f"{path} imports {node.module}"
