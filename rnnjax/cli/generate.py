"""``rnnjax generate``: train a character-level LSTM/GRU on a text file and sample."""

from __future__ import annotations

from rnnjax.apps import generate
from rnnjax.cli.options import add_function_options, function_kwargs
from rnnjax.io.outputs import default_out

# (option, parameter of run_generate, argparse keywords): the defaults are the function's.
_OPTIONS = [
    ("--cell", "cell_name", {"choices": ["lstm", "gru", "elman"]}),
    ("--hidden", "hidden", {"type": int}),
    ("--seq-len", "seq_len", {"type": int}),
    ("--batch", "batch", {"type": int}),
    ("--steps", "steps", {"type": int}),
    ("--lr", "lr", {"type": float}),
    ("--prompt", "prompt", {}),
    ("--length", "length", {"type": int, "help": "characters to sample"}),
    ("--temperature", "temperatures", {"type": float, "nargs": "+",
                                       "help": "one sample per temperature; 0 is greedy "
                                               "argmax decoding"}),
    ("--seed", "seed", {"type": int}),
    ("--restore", "restore", {"help": "sample from the checkpoint in this folder (a "
                                      "previous --out) instead of training"}),
    ("--run", "run_dir", {"help": "sample from a charlm run of the training runner "
                                  "(rnnjax train)"}),
]


def _run(a):
    out = a.out or default_out("generate")
    generate.run_generate(out, data=a.data or generate.DATA, overwrite=a.overwrite,
                          **function_kwargs(a, a.options))
    return 0


def register(sub):
    p = sub.add_parser("generate", help="character-level text generation (LSTM/GRU) with "
                                        "temperature; bits per character",
                       description="Train a character-level LSTM/GRU on a text and sample "
                       "from it (bits per character, samples.txt), or sample again.")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/generate/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.add_argument("--data", default=None,
                   help="UTF-8 text file (default: the shipped rnnjax/data/tiny_text.txt)")
    p.set_defaults(func=_run, options=add_function_options(p, generate.run_generate,
                                                           _OPTIONS))


__all__ = ["register"]
