"""Hostile options of ``segcli train`` (issue 13): run names that would leave ``--out`` and option
values out of range are one ``error:`` line with exit 2, before any data is read or any run
folder is made."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from segcli.cli import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_refused(result, *names: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


BAD_NAMES = ["../../x", "a/b", "a\\b", "..", ".", "", "a\x00b", "x" * 201, "line\nbreak"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["dotdot-path", "slash", "backslash", "dotdot", "dot", "empty",
                                                  "nul", "201-chars", "newline"])
def test_run_names_are_single_path_components(tmp_path, name):
    out = tmp_path / "a" / "b" / "runs"
    result = run("train", tmp_path / "no-data", "--out", out, "--name", name, "--epochs", 1)
    assert_refused(result, "--name")
    assert list(tmp_path.iterdir()) == []


BAD_OPTIONS = [("--imgsz", "100000"), ("--imgsz", "31"), ("--imgsz", "-5"), ("--batch", "0"), ("--workers", "-3"),
               ("--epochs", "0"), ("--epochs", "-1"), ("--lr", "nan"), ("--lr", "0"), ("--lr", "-1"),
               ("--lr", "inf"), ("--patience", "-1"), ("--val-every", "0"), ("--seed", "-1")]


@pytest.mark.parametrize("option,value", BAD_OPTIONS, ids=[f"{o}={v}" for o, v in BAD_OPTIONS])
def test_option_ranges_are_checked_before_any_work(tmp_path, option, value):
    result = run("train", tmp_path / "no-data", "--out", tmp_path / "runs", option, value)
    assert_refused(result, option)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--workers", "-3")])
def test_option_ranges_are_checked_on_resume_too(tmp_path, option, value):
    result = run("train", "--resume", tmp_path / "no-run", option, value)
    assert_refused(result, option)
