"""``rnnjax orthogonality``: unconstrained, penalised, spectral-margin, Riemannian
(Cayley), parametrised (expRNN, scoRNN), non-normal (nnRNN) and flossed recurrent
networks trained on the copy task (and the adding task) at the same hidden size; writes
``summary.json``, ``report.md`` and ``curves.png`` under ``--out``
(:mod:`rnnjax.experiments.orthogonality`; every method is a run of the training runner, kept in
``--out/runs/``).  ``--quick`` is a few-minute smoke version (copy only, T=10, hidden
16, 400 steps)."""

from __future__ import annotations

from rnnjax.cli.options import add_config_options
from rnnjax.experiments.orthogonality import FULL, QUICK, run_orthogonality
from rnnjax.io.outputs import default_out

_FIELDS = ("T", "hidden", "batch", "steps", "lr", "lr_orth", "seed", "log_every",
           "floss_every", "floss_k", "floss_batch")


__all__ = ["register", "run"]


def run(a) -> int:
    s = QUICK if a.quick else FULL
    s = s._replace(**{k: getattr(a, k) for k in _FIELDS if getattr(a, k) is not None})
    if a.tasks:
        s = s._replace(tasks=tuple(t.strip() for t in a.tasks.split(",") if t.strip()))
    names = [n.strip() for n in a.methods.split(",") if n.strip()] if a.methods else None
    run_orthogonality(a.out or default_out("orthogonality"), s, names, resume=a.resume,
                      overwrite=a.overwrite)
    return 0


def register(sub):
    p = sub.add_parser("orthogonality", help="compare ways of keeping W orthogonal",
                       description=__doc__)
    p.add_argument("--out", default=None,
                   help="new (or empty) output folder (default "
                        "runs/orthogonality/YYYYmmdd-HHMMSS, a new one per run)")
    p.add_argument("--resume", action="store_true",
                   help="keep the methods --out/summary.json already holds (same "
                        "settings) and train the others")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain every method into a non-empty --out")
    p.add_argument("--quick", action="store_true",
                   help="the few-minute smoke settings (the defaults after '--quick:')")
    # override the preset's value; spelling and type from the Config fields' metadata
    add_config_options(p, _FIELDS, dests={f: f for f in _FIELDS},
                       help=lambda f: f"default {getattr(FULL, f)} (--quick: "
                                      f"{getattr(QUICK, f)})")
    p.add_argument("--tasks", help=f"comma-separated: copy,adding (default "
                                   f"{','.join(FULL.tasks)}; --quick: {','.join(QUICK.tasks)})")
    p.add_argument("--methods", help="comma-separated method names (default: all)")
    p.set_defaults(func=run)
