"""``rnnjax seq2seq``: encoder-decoder with attention on reverse / sort digits."""

from __future__ import annotations

from rnnjax.apps import seq2seq
from rnnjax.cli.options import add_function_options, function_kwargs
from rnnjax.io.outputs import default_out

# (option, parameter of run_seq2seq, argparse keywords): the defaults are the function's.
_OPTIONS = [
    ("--task", "task", {"choices": ["reverse", "sort"]}),
    ("--attention", "attention", {"choices": ["additive", "dot"]}),
    ("--hidden", "hidden", {"type": int}),
    ("--embed", "embed", {"type": int}),
    ("--min-len", "min_len", {"type": int, "help": "shortest training sequence"}),
    ("--max-len", "max_len", {"type": int, "help": "longest training sequence"}),
    ("--eval-max-len", "eval_max_len", {"type": int, "help": "evaluate lengths 1..this "
                                                             "(default max-len + 4)"}),
    ("--steps", "steps", {"type": int}),
    ("--batch", "batch", {"type": int}),
    ("--lr", "lr", {"type": float}),
    ("--seed", "seed", {"type": int}),
]


def _run(a):
    out = a.out or default_out("seq2seq")
    seq2seq.run_seq2seq(out, overwrite=a.overwrite, **function_kwargs(a, a.options))
    return 0


def register(sub):
    p = sub.add_parser("seq2seq", help="encoder-decoder with additive or dot-product "
                                       "attention (reverse / sort digits)",
                       description="An encoder-decoder with attention that reverses or sorts "
                       "digits; an attention heatmap and accuracy against length.")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/seq2seq/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.set_defaults(func=_run, options=add_function_options(p, seq2seq.run_seq2seq,
                                                           _OPTIONS))


__all__ = ["register"]
