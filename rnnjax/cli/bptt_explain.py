"""``rnnjax bptt-explain``: backpropagation through time of a small Elman classifier,
step by step (forward pre-activations, states and output; backward deltas and each
step's contribution to ``dW_xh``, ``dW_hh``, ``db_h``).  Library code:
:func:`rnnjax.analysis.explain.explain` and :func:`rnnjax.analysis.explain.format_report`."""

from __future__ import annotations

import json

from rnnjax.analysis.explain import example_spec, explain, format_report


def _main(args) -> int:
    if args.spec is None:
        spec = example_spec()
    else:
        with open(args.spec) as fh:
            spec = json.load(fh)
    result = explain(spec)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        if args.precision < 0:
            raise ValueError(f"--precision must be >= 0, got {args.precision}")
        print(format_report(result, args.precision))
    return 0


def register(sub):
    p = sub.add_parser("bptt-explain",
                       help="print BPTT of a small Elman classifier step by step",
                       description="Backpropagation through time of a small Elman classifier, "
                       "step by step (the packaged example, or your own JSON spec).")
    p.add_argument("spec", nargs="?", default=None,
                   help="JSON spec (default: the packaged worked example, "
                        "rnnjax/data/sentiment_example.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--precision", type=int, default=3, help="decimals in the tables")
    p.set_defaults(func=_main)


__all__ = ["format_report", "register"]
