"""``rnnjax gradflow``: how gradients travel across long sequences, per cell.

Parses the options and calls :func:`rnnjax.experiments.gradflow.gradflow` (the module docstring
there describes the measurements and the files written under ``--out``).
"""

from __future__ import annotations

from rnnjax.cli.options import add_function_options, function_kwargs
from rnnjax.experiments.gradflow import (
    DEFAULT_CELLS,
    DEFAULT_TS,
    decay_fit,
    default_cells,
    gradflow,
)
from rnnjax.io.outputs import default_out

# (option, parameter of gradflow, argparse keywords): the defaults are the function's.
_OPTIONS = [
    ("--hidden", "hidden", {"type": int}),
    ("--batch", "batch", {"type": int}),
    ("--features", "features", {"type": int}),
    ("--seed", "seed", {"type": int}),
    ("--lyap-steps", "lyap_steps", {"type": int}),
    ("--lyap-k", "lyap_k", {"type": int}),
    ("--dtype", "dtype", {"choices": ["float32", "float64"]}),
]


def parse_list(name, text, conv):
    """``"a,b,c"`` -> ``[conv(a), conv(b), conv(c)]``; an error names ``--name``."""
    try:
        out = [conv(s.strip()) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list, got {text!r}") from None
    if not out:
        raise ValueError(f"--{name} must name at least one value, got {text!r}")
    return out


def _main(a):
    names = parse_list("cells", a.cells, str) if a.cells else default_cells()
    Ts = None if a.T is None else parse_list("T", a.T, int)
    gradflow(names, Ts, a.out or default_out("gradflow"), checkpoint=a.checkpoint,
             overwrite=a.overwrite, **function_kwargs(a, a.options))
    return 0


def register(sub):
    p = sub.add_parser("gradflow", help="measure ||dL/dh_t|| across time for each cell",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default=None,
                   help="comma-separated cell names (default: the registered ones of "
                        + ",".join(DEFAULT_CELLS) + ")")
    p.add_argument("--T", default=None,
                   help="comma-separated lengths (default: "
                        + ",".join(map(str, DEFAULT_TS)) + "; with --checkpoint of a "
                        "training run, its task's length, and another --T is refused)")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/gradflow/YYYYmmdd-HHMMSS, a new one "
                        "per run; refused if it already holds files, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the gradflow run in a non-empty --out (any other folder, "
                        "or the --checkpoint it reads, is refused)")
    options = add_function_options(p, gradflow, _OPTIONS)
    p.add_argument("--checkpoint", default=None,
                   help="a training-run directory (config.json + orbax checkpoints) or a "
                        ".npz from rnnjax.analysis.save_params_npz")
    p.set_defaults(func=_main, options=options)


__all__ = ["decay_fit", "gradflow", "parse_list", "register"]
