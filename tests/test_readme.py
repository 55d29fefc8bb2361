"""README.md and the documentation pages are tested: every Python block runs on its own
in a fresh namespace (so each one runs when pasted alone into a fresh Python), and every
shell command they show parses with the ``rnnjax`` CLI (and its ``--help`` works).

The pages are ``README.md`` and the Markdown pages of ``docs/`` (the Sphinx site).  A
block that imports ``torch`` is left out only when torch is not installed.  Nothing is
prepended to the blocks: each defines every name it uses.
"""

import contextlib
import glob
import importlib.util
import io
import json
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
PAGES = [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
HAS_TORCH = importlib.util.find_spec("torch") is not None


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def readme() -> str:
    return read(README)


def docs_text() -> str:
    """README and every docs page, one after the other."""
    return "\n".join(read(p) for p in PAGES)


def fenced(text: str, lang: str) -> list:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def uses_torch(block: str) -> bool:
    return bool(re.search(r"^import torch|^from torch", block, re.M))


def python_blocks(text: str) -> list:
    """The ``python`` blocks, those importing torch dropped when torch is absent."""
    blocks = fenced(text, "python")
    if not HAS_TORCH:
        blocks = [b for b in blocks if not uses_torch(b)]
    return blocks


def all_blocks() -> list:
    """``(name, source)`` of every Python block of README and the docs pages."""
    out = []
    for path in PAGES:
        for i, block in enumerate(python_blocks(read(path))):
            out.append((f"{os.path.relpath(path, ROOT)} block {i}", block))
    return out


# Runs each block in a namespace of its own, in one interpreter (a fresh interpreter per
# block would cost a JAX import and start-up each): a block that leans on a name another
# block defined fails with NameError here exactly as when pasted alone.  Prints one JSON
# line per block, so every failing block is reported, not only the first.
RUNNER = r"""
import json, os, sys, tempfile, traceback
blocks = json.load(open(sys.argv[1]))
for name, source in blocks:
    os.chdir(tempfile.mkdtemp(dir=os.environ["BLOCKS_DIR"]))  # what a block writes lands apart
    try:
        exec(compile(source, name, "exec"), {"__name__": "__main__"})
        print(json.dumps({"name": name, "ok": True}), flush=True)
    except BaseException:
        print(json.dumps({"name": name, "ok": False, "error": traceback.format_exc()}),
              flush=True)
"""


def run_blocks(blocks: list, tmp_path) -> tuple:
    """Run ``[(name, source)]`` each in a fresh namespace, in a fresh interpreter whose
    working directory is under ``tmp_path``, with this checkout's ``rnnjax`` importable.
    Returns ``(results, completed process)``; ``results`` maps each name to ``None``
    (ran) or its traceback."""
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               BLOCKS_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, str(tmp_path / "runner.py"),
                           str(tmp_path / "blocks.json")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["name"]] = None if r["ok"] else r["error"]
    return results, proc


def test_every_python_block_runs_alone(tmp_path):
    blocks = all_blocks()
    assert len(blocks) >= 10
    assert any(name.startswith("README.md") for name, _ in blocks)
    results, proc = run_blocks(blocks, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert list(results) == [name for name, _ in blocks], proc.stderr[-4000:]
    failed = {name: err for name, err in results.items() if err is not None}
    assert not failed, "\n".join(f"--- {n}\n{e[-1500:]}" for n, e in failed.items())


def test_a_block_that_leans_on_another_fails(tmp_path):
    """The fresh namespace is what proves the blocks self-contained: a block using a
    name that only an earlier block defined fails with NameError."""
    results, _ = run_blocks([("first", "import jax.numpy as jnp\nxs = jnp.ones(3)"),
                             ("second", "ys = xs + 1")], tmp_path)
    assert results["first"] is None
    assert "NameError" in results["second"] and "'xs'" in results["second"]


def test_a_stale_name_fails_the_readme_test(tmp_path):
    """A temporary copy of a block that uses a name the package does not have fails:
    the harness above would catch a rename."""
    name, first = next(b for b in all_blocks() if "rnnjax.run(" in b[1])
    results, _ = run_blocks([(name, first.replace("rnnjax.run(", "rnnjax.run_renamed("))],
                            tmp_path)
    assert "run_renamed" in results[name]


def test_readme_is_a_front_door():
    """README stays short and links to the pages that hold the rest, each of which
    exists and is in the Sphinx site."""
    text = readme()
    assert len(text) <= 15_000, len(text)
    links = re.findall(r"\]\((docs/[^)#]+)\)", text)
    assert len(links) >= 15
    for link in links:
        assert os.path.isfile(os.path.join(ROOT, link)), link
    index = read(os.path.join(ROOT, "docs", "index.md"))
    for path in PAGES[1:]:
        page = os.path.relpath(path, os.path.join(ROOT, "docs"))[:-len(".md")]
        assert page == "index" or page in index, f"docs/{page}.md is in no toctree"


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
    commands = shell_commands(docs_text())
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
        elif words[0] == "python" and words[1].startswith("examples/"):  # a script there
            assert os.path.isfile(os.path.join(ROOT, words[1])), words
        elif words[0] == "sphinx-build":  # sphinx-build ... SOURCE OUT: a Sphinx source
            assert os.path.isfile(os.path.join(ROOT, words[-2], "conf.py")), words
        else:
            raise AssertionError(f"README shows a command the test does not know: {words}")


@pytest.mark.parametrize("words", [w for w in shell_commands(docs_text())
                                   + inline_rnnjax_commands(docs_text()) if w[0] == "rnnjax"],
                         ids=lambda w: " ".join(w)[:60])
def test_readme_rnnjax_command_parses_and_has_help(words):
    ns = parse(words[1:])
    assert ns.command == words[1].replace("-", "_") or ns.command == words[1]
    assert "usage: rnnjax " + words[1] in help_text(words[1])


def test_a_stale_flag_fails_the_shell_check():
    with pytest.raises(AssertionError, match="unrecognized arguments"):
        parse(["copy", "--no-such-flag", "1"])
