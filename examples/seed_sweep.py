"""A sweep over seeds in one program: ``seeds=K`` (``--num-seeds K`` on the command
line) trains K independent copies of a run with ``jax.vmap``, so a result can be given
as mean ± std over seeds instead of one seed's value.

Two cells on the copy task, each trained for K seeds; every logged metric comes as the
mean over seeds, ``<name>_std`` (the spread) and ``seeds`` (the per-seed values).

    python examples/seed_sweep.py                 # T = 10, hidden 32, 200 steps, 4 seeds
    python examples/seed_sweep.py --tiny --cells elman --num-seeds 2   # a smoke run
    rnnjax train --task copy --cell exprnn --T 10 --num-seeds 4 ...   # the same, as a command
"""

import argparse

from rnnjax.training import Config, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-seeds", type=int, default=4, metavar="K")
    ap.add_argument("--cells", default="elman,exprnn", help="comma-separated cell names")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run)")
    args = ap.parse_args(argv)
    T, hidden, steps = (5, 8, 10) if args.tiny else (10, 32, 200)
    for cell in args.cells.split(","):
        result = train(Config(task="copy", cell=cell, T=T, hidden=hidden, batch=32,
                              steps=steps, lr=1e-3, seed=0, seeds=args.num_seeds,
                              log_every=steps, eval_batch=128), progress=False)
        last = result.history[-1]
        per_seed = ", ".join(f"{v:.4f}" for v in last["seeds"]["eval_loss"])
        print(f"{cell:7s} held-out CE {last['eval_loss']:.4f} ± {last['eval_loss_std']:.4f} "
              f"over {args.num_seeds} seeds ({per_seed}); baseline {last['baseline']:.4f}")


if __name__ == "__main__":
    main()
