"""``rnnjax seq2seq``: encoder-decoder with attention on reverse / sort digits."""

from __future__ import annotations

from rnnjax.apps import seq2seq
from rnnjax.io.outputs import default_out


def _run(a):
    out = a.out or default_out("seq2seq")
    seq2seq.run_seq2seq(out, task=a.task, attention=a.attention, hidden=a.hidden,
                        embed=a.embed, min_len=a.min_len, max_len=a.max_len,
                        eval_max_len=a.eval_max_len, steps=a.steps, batch=a.batch,
                        lr=a.lr, seed=a.seed, overwrite=a.overwrite)
    return 0


def register(sub):
    p = sub.add_parser("seq2seq", help="encoder-decoder with additive or dot-product "
                                       "attention (reverse / sort digits)")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/seq2seq/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.add_argument("--task", default="reverse", choices=["reverse", "sort"])
    p.add_argument("--attention", default="additive", choices=["additive", "dot"])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--min-len", type=int, default=3, help="shortest training sequence")
    p.add_argument("--max-len", type=int, default=8, help="longest training sequence")
    p.add_argument("--eval-max-len", type=int, default=None,
                   help="evaluate lengths 1..this (default max-len + 4)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


__all__ = ["register"]
