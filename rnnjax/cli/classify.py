"""``rnnjax classify``: many-to-one classification of short token sequences."""

from __future__ import annotations

from rnnjax.apps import classify
from rnnjax.cli.options import add_function_options, function_kwargs
from rnnjax.io.outputs import default_out

# (option, parameter of run_classify, argparse keywords): the defaults are the function's.
_OPTIONS = [
    ("--cell", "cell_name", {"choices": ["elman", "irnn", "lstm", "gru"]}),
    ("--bidirectional", "bidirectional_", {"action": "store_true"}),
    ("--hidden", "hidden", {"type": int}),
    ("--embed", "embed", {"type": int}),
    ("--steps", "steps", {"type": int}),
    ("--batch", "batch", {"type": int}),
    ("--lr", "lr", {"type": float}),
    ("--test-fraction", "test_fraction", {"type": float}),
    ("--seed", "seed", {"type": int}),
]


def _run(a):
    out = a.out or default_out("classify")
    classify.run_classify(out, data=a.data or classify.DATA, overwrite=a.overwrite,
                          **function_kwargs(a, a.options))
    return 0


def register(sub):
    p = sub.add_parser("classify", help="sequence classification (sentiment of short texts) "
                                        "against the majority class",
                       description="Classify short texts (sentiment.tsv or --data) with a "
                       "recurrent encoder, against the majority class.")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/classify/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.add_argument("--data", default=None,
                   help="label<TAB>text file (default: the shipped rnnjax/data/sentiment.tsv)")
    p.set_defaults(func=_run, options=add_function_options(p, classify.run_classify,
                                                           _OPTIONS))


__all__ = ["register"]
