"""Training at the smallest --imgsz the range allows (32) works: the scale jitter never picks a
side of 0 (it did, and torchvision's resize raised a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

from segcli.data.synthetic import generate_shapes_dataset
from segcli.engine.train.trainer import _train_scales


def test_scale_jitter_sides_are_positive_for_every_allowed_size():
    for size in range(32, 8193):
        assert min(_train_scales(size)) >= 32, size


def test_instance_training_at_imgsz_32(tmp_path):
    generate_shapes_dataset(tmp_path / "data" / "train", 4, 0, sizes=((32, 32),))
    generate_shapes_dataset(tmp_path / "data" / "val", 2, 1, sizes=((32, 32),))
    result = subprocess.run([sys.executable, "-m", "segcli", "train", str(tmp_path / "data"), "--epochs", "1",
                             "--batch", "2", "--imgsz", "32", "--workers", "0", "--out", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((tmp_path / "runs").rglob("best.pt"))
