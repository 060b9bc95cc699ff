"""The `synth` and `data` subcommands as the top-level CLI calls them."""

from __future__ import annotations

import argparse

from medguna.data.commands import add_commands


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="medguna")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_synth_then_data(tmp_path, capsys):
    out = tmp_path / "montgomery"
    args = _parse(["synth", "montgomery", "--out", str(out), "--seed", "2", "--scale", "0.5"])
    assert args.func(args) == 0
    assert "SYNTHETIC stand-in" in capsys.readouterr().out
    args = _parse(["data", "montgomery", "--root", str(out), "--split-dir", str(tmp_path / "splits")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC stand-in" in printed
    assert "NORMAL" in printed and "TB" in printed and "│ test" in printed
    split_files = list((tmp_path / "splits").glob("montgomery_*.csv"))
    assert len(split_files) == 1 and f"split file: {split_files[0]}" in printed


def test_data_on_a_missing_root_reports_one_line(tmp_path, capsys):
    args = _parse(["data", "idrid", "--root", str(tmp_path / "absent"), "--split-dir", str(tmp_path)])
    assert args.func(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: dataset root") and "Traceback" not in error
