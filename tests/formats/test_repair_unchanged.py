"""A repaired polygon whose mask is unchanged is not a change (issue 14, item 9).

The real balloon train set has a self-touching polygon that shapely's make_valid repairs with
the same area; ``convert --strict`` and ``stats --check`` refused the whole set for it. A repair
is a change only when the rasterised mask (what COCO holds and a model trains on) differs.
"""

from __future__ import annotations

import json

import numpy as np

from tests.helpers import region, run, via2_project, write_image, write_json

# two triangles meeting at one vertex (30, 30), visited twice: invalid ("Ring Self-intersection"),
# no edge crosses another, and make_valid's two triangles rasterise to the very same pixels
SELF_TOUCHING = {"name": "polygon", "all_points_x": [10, 50, 30, 50, 10, 30], "all_points_y": [10, 10, 30, 50, 50, 30]}
ANGLES = np.arange(5) * 4 * np.pi / 5
# a pentagram: make_valid puts new vertices where the edges cross, which moves 4 boundary pixels
PENTAGRAM = {"name": "polygon", "all_points_x": (32 + 25 * np.sin(ANGLES)).round(3).tolist(),
             "all_points_y": (32 - 25 * np.cos(ANGLES)).round(3).tolist()}


def project(tmp_path, shape):
    write_image(tmp_path / "a.png", 64, 64)
    return write_json(tmp_path / "p.json", via2_project({"a.png": [region(shape)]}))


def test_repair_leaving_the_mask_unchanged_passes_strict_and_check(tmp_path):
    src = project(tmp_path, SELF_TOUCHING)
    converted = run("convert", src, tmp_path / "out.json", "--strict")
    assert converted.exit_code == 0, converted.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    repairs = [e for e in report["entries"] if e["action"].startswith("repaired")]
    assert [e["action"] for e in repairs] == ["repaired (mask unchanged)"]
    assert "area 800.0 -> 800.0" in repairs[0]["reason"]
    checked = run("stats", src, "--check")
    assert checked.exit_code == 0, checked.stdout
    assert "mask unchanged" in checked.stdout


def test_repair_changing_the_mask_still_fails_strict_and_check(tmp_path):
    src = project(tmp_path, PENTAGRAM)
    converted = run("convert", src, tmp_path / "out.json", "--strict")
    assert converted.exit_code == 1
    assert "repaired" in converted.stderr and "mask unchanged" not in converted.stderr
    assert not (tmp_path / "out.json").exists()
    assert run("stats", src, "--check").exit_code == 1
