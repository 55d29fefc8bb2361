"""Gradient flow of a trained run: train a small GRU on the copy task with the runner,
then compare how gradients travel back through time before and after training.

The run goes to ``OUT/run`` (``config.json``, metrics, orbax checkpoints); the analysis
is ``rnnjax gradflow --checkpoint OUT/run``'s, as a function, and writes
``gradflow.csv``, the figures and ``summary.md`` to ``OUT/gradflow``.

    python examples/gradflow_trained.py --out runs/example-gradflow
    python examples/gradflow_trained.py --tiny --out /tmp/gradflow-smoke
"""

import argparse
import os

from rnnjax.experiments.gradflow import gradflow
from rnnjax.training import Config, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/example-gradflow", help="a new or empty folder")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run)")
    args = ap.parse_args(argv)
    T, hidden, steps = (5, 8, 10) if args.tiny else (20, 32, 300)
    run_dir = os.path.join(args.out, "run")
    result = train(Config(task="copy", cell="gru", T=T, hidden=hidden, batch=32,
                          steps=steps, lr=1e-3, log_every=steps, eval_batch=64,
                          checkpoint_every=steps, out=run_dir), progress=False)
    last = result.history[-1]
    print(f"trained: held-out CE {last['eval_loss']:.4f} (baseline {last['baseline']:.4f})")
    # the run's task fixes the length: the copy task at delay T reads T + 20 steps
    flow = gradflow(["gru"], [T + 20], os.path.join(args.out, "gradflow"), hidden=hidden,
                    lyap_steps=10 if args.tiny else 100, lyap_k=2, dtype="float32",
                    checkpoint=run_dir, print_fn=lambda *a: None)
    for record in flow["summary"]:
        print({k: v for k, v in record.items() if not isinstance(v, (list, dict))})
    print(f"files in {os.path.join(args.out, 'gradflow')}:",
          sorted(os.listdir(os.path.join(args.out, "gradflow"))))


if __name__ == "__main__":
    main()
