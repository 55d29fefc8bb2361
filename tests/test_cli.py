"""Conventions of the ``rnnjax`` command: defaults in every ``--help``, distinct option
names, progress bars only on a terminal, ``--resume`` from the saved config."""

import argparse
import io
import os
import shutil
import sys

import pytest

from rnnjax import cli
from rnnjax.training.config import Config
from rnnjax.training.metrics import load_history


def _subparsers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _shown_default(action):
    d = action.default
    if d is None or d is False or d == [] or d is argparse.SUPPRESS or not action.option_strings:
        return None
    return d


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_subcommand_shows_its_defaults(name):
    p = _subparsers()[name]
    formatter = p._get_formatter()
    assert isinstance(formatter, cli.HelpFormatter)
    checked = 0
    for action in p._actions:
        d = _shown_default(action)
        if d is None or action.help is argparse.SUPPRESS or action.nargs == 0:
            continue
        text = " ".join(formatter._format_action(action).split())
        values = d if isinstance(d, (list, tuple)) else [d]
        for v in values:
            shown = {str(v), f"{v:g}" if isinstance(v, float) else str(v)}
            assert any(x in text for x in shown), \
                f"rnnjax {name} {action.option_strings[0]}: {text!r}"
        checked += 1
    help_text = p.format_help()
    assert "(default: %(default)s)" not in help_text
    # every option that takes a value and has one by default was checked above; the
    # others have no default (None, [], False), and none of them claims one it lacks
    value_options = [a for a in p._actions if a.option_strings and a.nargs != 0
                     and a.help is not argparse.SUPPRESS
                     and not isinstance(a, argparse._HelpAction)]
    assert checked == sum(_shown_default(a) is not None for a in value_options)
    for a in value_options:
        if _shown_default(a) is None:
            text = " ".join(formatter._format_action(a).split())
            assert "default None" not in text and "default []" not in text, text


def test_copy_help_shows_the_preset_values():
    text = " ".join(_subparsers()["copy"].format_help().split())
    assert "--T T default 200 (--preset paper: 1000)" in text
    assert "--num-seeds K default 1" in text


def test_num_seeds_and_colour_seeds_are_distinct(capsys):
    p = cli.build_parser()
    assert p.parse_args(["train", "--num-seeds", "3"]).num_seeds == 3
    assert p.parse_args(["copy", "--num-seeds", "2"]).seeds == 2
    assert p.parse_args(["colors", "--seeds", "#ff0000"]).seeds == ["#ff0000"]
    capsys.readouterr()
    # the old spelling still works in train/copy, with a warning naming the new one
    assert p.parse_args(["train", "--seeds", "4"]).num_seeds == 4
    assert p.parse_args(["copy", "--seeds", "5"]).seeds == 5
    err = capsys.readouterr().err
    assert err.count("--seeds is deprecated; use --num-seeds") == 2
    assert "--seeds" not in p.parse_args(["train"]).train_parser.format_help()


TINY = ["train", "--task", "adding", "--cell", "elman", "--T", "6", "--hidden", "4",
        "--batch", "4", "--eval-batch", "4", "--steps", "4", "--log-every", "2"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    # not a terminal (pytest captures stderr): one line per record, no carriage return
    assert cli.main(TINY) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("step")] == \
        ["2", "4"]
    assert out.splitlines()[-1].startswith("nothing saved: no --out given")  # says so
    # a terminal: the bar redraws itself with carriage returns
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert cli.main(TINY) == 0
    assert "\r" in term.getvalue()


def test_library_run_without_terminal_prints_one_line_per_record(capsys):
    from rnnjax.training.runner import train
    train(Config(task="adding", cell="elman", T=6, hidden=4, batch=4, eval_batch=4,
                 steps=4, log_every=2), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split()[0:3] for line in err.splitlines()] == \
        [["adding/elman", "step", "2"], ["adding/elman", "step", "4"]]


def test_resume_with_only_out_reads_the_saved_config(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(TINY + ["--hidden", "5", "--checkpoint-every", "2", "--out", out]) == 0
    shutil.rmtree(os.path.join(out, "checkpoints", "4"))  # as if killed after step 2
    capsys.readouterr()
    assert cli.main(["train", "--out", out, "--resume", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"resumed from step 2 in {out}" in printed
    assert [r["step"] for r in load_history(out)] == [2, 4]
    saved = Config.load(out)
    assert (saved.task, saved.cell, saved.T, saved.hidden, saved.steps) == \
        ("adding", "elman", 6, 5, 4)
    # an option given on the command line overrides the saved one (a longer run) ...
    assert cli.main(["train", "--out", out, "--resume", "--steps", "6", "--no-progress"]) == 0
    assert "resumed from step 4" in capsys.readouterr().out
    assert [r["step"] for r in load_history(out)] == [2, 4, 6]
    assert Config.load(out).steps == 6
    # ... and one that must agree with the checkpoint is refused, naming it
    assert cli.main(["train", "--out", out, "--resume", "--hidden", "7"]) == 2
    assert "hidden=5" in capsys.readouterr().err
