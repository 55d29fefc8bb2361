"""``rnnjax generate``: train a character-level LSTM/GRU on a text file and sample."""

from __future__ import annotations

from rnnjax.apps import generate
from rnnjax.io.outputs import default_out


def _run(a):
    out = a.out or default_out("generate")
    generate.run_generate(out, data=a.data or generate.DATA, cell_name=a.cell,
                          hidden=a.hidden, seq_len=a.seq_len, batch=a.batch, steps=a.steps,
                          lr=a.lr, prompt=a.prompt, length=a.length,
                          temperatures=a.temperature, seed=a.seed, restore=a.restore,
                          run_dir=a.run, overwrite=a.overwrite)
    return 0


def register(sub):
    p = sub.add_parser("generate", help="character-level text generation (LSTM/GRU) with "
                                        "temperature; bits per character")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/generate/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.add_argument("--data", default=None,
                   help="UTF-8 text file (default: the shipped rnnjax/data/tiny_text.txt)")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "elman"])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--prompt", default="The ")
    p.add_argument("--length", type=int, default=300, help="characters to sample")
    p.add_argument("--temperature", type=float, nargs="+", default=[0.0, 0.5, 1.0],
                   help="one sample per temperature; 0 is greedy argmax decoding")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restore", default=None,
                   help="sample from the checkpoint in this folder (a previous --out) "
                        "instead of training")
    p.add_argument("--run", default=None,
                   help="sample from a charlm run of the training runner (rnnjax train)")
    p.set_defaults(func=_run)


__all__ = ["register"]
