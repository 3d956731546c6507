"""Checkpoints: save -> load gives identical outputs; fp16 storage; every bad file is refused
with a clear error; pretrained weights fail clearly offline, never downloading in tests."""

from __future__ import annotations

import os
import urllib.error

import pytest
import torch

from segcli.errors import SegcliError
from segcli.models import pretrained
from segcli.models.checkpoint import load_checkpoint, make_record, read_checkpoint, save_checkpoint
from segcli.models.registry import build_model, model_args

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]


def _model(name, **kwargs):
    torch.manual_seed(0)
    args = model_args(name, 3, **kwargs)
    return build_model(name, args).eval(), make_record(name, args, CATEGORIES)


@pytest.mark.parametrize("name,kwargs", [("maskrcnn_mobilenet_v3_large_fpn", {"min_size": 64, "max_size": 96}),
                                         ("yolact_resnet18_fpn", {"min_size": 64, "max_size": 96}),
                                         ("pspnet_resnet18", {})])
def test_save_load_identical_outputs(tmp_path, name, kwargs):
    model, record = _model(name, **kwargs)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, record)
    loaded, loaded_record = load_checkpoint(path)
    assert loaded_record["categories"] == CATEGORIES and loaded_record["model"]["name"] == name
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        if record["task"] == "instance":
            configure = dict(score_thresh=0.0)
            for m in (model, loaded):  # built without init, loaded: every tensor the saved one
                (m.roi_heads if hasattr(m, "roi_heads") else m).score_thresh = configure["score_thresh"]
            a, b = model(list(x))[0], loaded(list(x))[0]
            assert len(a["scores"]) > 0
            for key in ("boxes", "scores", "labels", "masks"):
                assert torch.equal(a[key], b[key])
        else:
            assert torch.equal(model(x)["out"], loaded(x)["out"])


def test_skipped_weight_init_leaves_torch_init_as_it_was():
    from segcli.models.checkpoint import skipped_weight_init

    before = torch.nn.init.kaiming_uniform_
    with skipped_weight_init():
        assert torch.nn.init.kaiming_uniform_ is not before
        layer = torch.nn.Linear(4, 4)
    assert torch.nn.init.kaiming_uniform_ is before
    torch.nn.init.zeros_(layer.weight)
    assert not layer.weight.any()


def test_fp16_storage_is_smaller_and_loads_as_float32(tmp_path):
    model, record = _model("pspnet_resnet18")
    save_checkpoint(tmp_path / "32.pt", model, record)
    save_checkpoint(tmp_path / "16.pt", model, record, fp16=True)
    assert (tmp_path / "16.pt").stat().st_size < 0.55 * (tmp_path / "32.pt").stat().st_size
    loaded, rec = load_checkpoint(tmp_path / "16.pt")
    assert rec["fp16"] is True
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x)["out"], loaded(x)["out"], atol=0.05)


def test_bad_checkpoints_are_refused(tmp_path):
    model, record = _model("pspnet_resnet18")
    good = tmp_path / "good.pt"
    save_checkpoint(good, model, record)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2000))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    for path, message in ((garbage, "not a readable checkpoint"), (truncated, "not a readable checkpoint"),
                          (plain, "not a segcli checkpoint"), (tmp_path / "none.pt", "not found")):
        with pytest.raises(SegcliError, match=message) as info:
            load_checkpoint(path)
        assert path.name in str(info.value)
    other = torch.load(good, weights_only=True)
    other["record"]["model"]["name"] = "unet_resnet18"
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(SegcliError, match="unknown architecture 'unet_resnet18'"):
        load_checkpoint(tmp_path / "other.pt")
    mismatched = torch.load(good, weights_only=True)
    mismatched["record"]["model"]["name"] = "pspnet_resnet34"
    torch.save(mismatched, tmp_path / "mismatched.pt")
    with pytest.raises(SegcliError, match="do not fit pspnet_resnet34"):
        load_checkpoint(tmp_path / "mismatched.pt")
    with pytest.raises(SegcliError, match="semantic model"):
        load_checkpoint(good, expect_task="instance")


class _RunsCode:
    def __reduce__(self):
        return (open, (str(MARKER), "w"))


MARKER = None


def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "segcli-checkpoint", "format_version": 1, "payload": _RunsCode()}, path)
    with pytest.raises(SegcliError, match="pickled Python objects"):
        read_checkpoint(path)
    assert not MARKER.exists()


def test_pretrained_weights_offline_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SegcliError) as info:
        build_model("maskrcnn_resnet18_fpn", model_args("maskrcnn_resnet18_fpn", 3), init="imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "--init scratch" in message
    with pytest.raises(SegcliError, match="no COCO weights for pspnet_resnet18"):
        build_model("pspnet_resnet18", model_args("pspnet_resnet18", 3), init="coco")
    with pytest.raises(SegcliError, match="unknown --init"):
        pretrained.check_init("random")
