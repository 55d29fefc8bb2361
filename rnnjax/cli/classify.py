"""``rnnjax classify``: many-to-one classification of short token sequences."""

from __future__ import annotations

from rnnjax.apps import classify
from rnnjax.io.outputs import default_out


def _run(a):
    out = a.out or default_out("classify")
    classify.run_classify(out, data=a.data or classify.DATA, cell_name=a.cell,
                          hidden=a.hidden, embed=a.embed, bidirectional_=a.bidirectional,
                          steps=a.steps, batch=a.batch, lr=a.lr,
                          test_fraction=a.test_fraction, seed=a.seed, overwrite=a.overwrite)
    return 0


def register(sub):
    p = sub.add_parser("classify", help="sequence classification (sentiment of short texts) "
                                        "against the majority class")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/classify/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.add_argument("--data", default=None,
                   help="label<TAB>text file (default: the shipped rnnjax/data/sentiment.tsv)")
    p.add_argument("--cell", default="gru", choices=["elman", "irnn", "lstm", "gru"])
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


__all__ = ["register"]
