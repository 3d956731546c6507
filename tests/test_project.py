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
    commands = quickstart_commands()
    assert [c[0] for c in commands] == ["convert", "stats"]
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    for args in commands:
        args = [str(tmp_path / a) if a.startswith("out/") else a for a in args]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "no problems found" in result.output
    coco = json.loads((tmp_path / "out" / "shapes_train_coco.json").read_text())
    assert len(coco["images"]) == 40 and [c["name"] for c in coco["categories"]] == ["circle", "square", "triangle"]


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
