"""README.md is tested: its Python blocks run, in order, in one fresh interpreter, and
every shell command it shows parses with the ``rnnjax`` CLI (and its ``--help`` works).

A block that imports ``torch`` is left out only when torch is not installed.  Nothing
is prepended to the blocks: they define every name they use.
"""

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys

import pytest
import tomllib

from rnnjax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
HAS_TORCH = importlib.util.find_spec("torch") is not None


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def fenced(text: str, lang: str) -> list:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def python_blocks(text: str) -> list:
    """The ``python`` blocks, those importing torch dropped when torch is absent."""
    blocks = fenced(text, "python")
    if not HAS_TORCH:
        blocks = [b for b in blocks if not re.search(r"^import torch|^from torch", b, re.M)]
    return blocks


def run_blocks(blocks: list, tmp_path) -> subprocess.CompletedProcess:
    """Run ``blocks`` as one script in a fresh interpreter, in ``tmp_path`` (so whatever
    the blocks write lands there), with this checkout's ``rnnjax`` importable."""
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(f"# --- README block {i}\n{b}" for i, b in enumerate(blocks)))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_readme_python_blocks_run_in_order(tmp_path):
    blocks = python_blocks(readme())
    assert len(blocks) >= 8
    proc = run_blocks(blocks, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_a_stale_name_fails_the_readme_test(tmp_path):
    """A temporary copy of a README block that uses a name the package does not have
    fails: the harness above would catch a rename."""
    blocks = python_blocks(readme())
    first = next(b for b in blocks if "rnnjax.run(" in b)
    proc = run_blocks([first.replace("rnnjax.run(", "rnnjax.run_renamed(")], tmp_path)
    assert proc.returncode != 0
    assert "run_renamed" in proc.stderr


# ---------------------------------------------------------------------------- shell


def shell_commands(text: str) -> list:
    """Every simple command of the ``bash`` blocks, as a list of words (environment
    assignments and shell keywords removed, ``$i`` of a ``for`` loop set to 0)."""
    out = []
    for block in fenced(text, "bash"):
        block = block.replace("\\\n", " ").replace("$i", "0")
        for line in block.splitlines():
            lex = shlex.shlex(line, posix=True, punctuation_chars=True)
            lex.whitespace_split = True
            tokens, parts = list(lex), [[]]
            for tok in tokens:
                if tok in ("&&", ";", "&", "|", "||"):
                    parts.append([])
                else:
                    parts[-1].append(tok)
            for words in parts:
                while words and (words[0] in ("do", "done", "wait", "then", "fi")
                                 or re.match(r"^[A-Z_]+=", words[0])):
                    words = words[1:]
                if words and words[0] != "for":
                    out.append(words)
    return out


def inline_rnnjax_commands(text: str) -> list:
    """``rnnjax ...`` commands written inline in backticks (placeholders skipped)."""
    out = []
    for span in re.findall(r"`(rnnjax [^`]+)`", text):
        words = shlex.split(span)
        if "--help" in words or any(
                w in ("...", "SUITE") or w.isupper() and len(w) > 1 and not w.startswith("-")
                for w in words[1:]):
            continue
        out.append(words)
    return out


def parse(words):
    """Parse ``rnnjax WORDS`` with the CLI's parser; return the namespace or raise."""
    parser = cli.build_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return parser.parse_args(words)
        except SystemExit as e:
            raise AssertionError(f"rnnjax {' '.join(words)}: {err.getvalue()}") from e


def help_text(command: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args([command, "--help"])
    assert e.value.code == 0
    return buf.getvalue()


def test_every_readme_shell_command_is_known():
    commands = shell_commands(readme())
    rnnjax_commands = [w for w in commands if w[0] == "rnnjax"]
    assert len(rnnjax_commands) >= 10
    extras = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))[
        "project"]["optional-dependencies"]
    for words in commands:
        if words[0] == "rnnjax":
            continue
        if words[0] == "pip":  # pip install -e ".[EXTRA,...]": the extras exist
            for spec in words[2:]:
                m = re.match(r"^\.\[(.*)\]$", spec)
                if m:
                    assert set(m.group(1).split(",")) <= set(extras), spec
        elif words[:3] == ["python", "-m", "pytest"]:
            assert os.path.isdir(os.path.join(ROOT, words[-1]))
        else:
            raise AssertionError(f"README shows a command the test does not know: {words}")


@pytest.mark.parametrize("words", [w for w in shell_commands(readme())
                                   + inline_rnnjax_commands(readme()) if w[0] == "rnnjax"],
                         ids=lambda w: " ".join(w)[:60])
def test_readme_rnnjax_command_parses_and_has_help(words):
    ns = parse(words[1:])
    assert ns.command == words[1].replace("-", "_") or ns.command == words[1]
    assert "usage: rnnjax " + words[1] in help_text(words[1])


def test_a_stale_flag_fails_the_shell_check():
    with pytest.raises(AssertionError, match="unrecognized arguments"):
        parse(["copy", "--no-such-flag", "1"])
