"""A newcomer's ``--help``: every ``rnnjax`` subcommand says what it does, and
``rnnjax bench --help`` names every benchmark suite."""

import argparse
import contextlib
import io

import pytest

from benchmarks.__main__ import SUITES, UTILITIES
from rnnjax import cli


def _subcommands() -> dict:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _help(words) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(words)
    assert e.value.code == 0
    return buf.getvalue()


def test_there_are_subcommands():
    assert {"copy", "train", "gradflow", "bench"} <= set(_subcommands())


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_has_a_description_in_its_help(name):
    sub = _subcommands()[name]
    assert sub.description and len(sub.description.split()) >= 5, name
    text = " ".join(_help([name, "--help"]).split())
    # the description is printed between the usage and the options
    assert " ".join(sub.description.split()[:5]) in text
    assert text.index("usage:") < text.index(sub.description.split()[0])


def test_bench_help_lists_every_suite():
    text = " ".join(_help(["bench", "--help"]).split())
    missing = [s for s in {**SUITES, **UTILITIES} if s not in text.replace(",", " ").split()]
    assert not missing, f"rnnjax bench --help does not name {missing}"
