"""``python -m benchmarks SUITE [options]``: run one benchmark suite (or ``all``).

Each suite is a module ``benchmarks/<name>.py`` with ``main(argv)``; every suite takes
``--quick`` (tiny sizes, seconds: the smoke test) and ``--out FILE`` (append the JSON
lines).  ``rnnjax bench`` calls :func:`main` too.  ``summary`` turns JSON lines into
the markdown tables of ``benchmarks/README.md`` and plots.
"""

from __future__ import annotations

import importlib
import sys

# suite name -> one-line description
SUITES = {
    "peers": "throughput against Flax, Equinox and PyTorch (fwd, fwd+bwd)",
    "roofline": "achieved GFLOP/s beside the measured matmul peak",
    "compile": "compile time against T and unroll",
    "memory": "compiled memory against T, with and without remat",
    "copy_step": "copy-task training step per cell against its roofline",
    "bptt": "hand-written BPTT against autodiff",
    "orthogonal": "training step of orthogonal/unitary cells against Elman",
    "scan": "sequential against associative scan",
    "chunked": "chunked against sequential scan (mLSTM, DeltaNet, GLA, Mamba-2)",
    "gradflow": "gradient-flow analysis against a parameter gradient",
    "newton": "sequential against DEER and quasi-DEER (Newton over time) against T and H",
    "cpu_options": "XLA:CPU flags, allocator, donation, unroll, remat policies vs default",
    "seeds": "--num-seeds K: time per training step against K vmapped seeds",
    "device": "one accelerator run: peers, orthogonal copy steps, scans, cuDNN, bf16",
}
# suites that repeat others' parts (left out of "all")
COMPOSITE = ("device",)
UTILITIES = {"summary": "JSON lines -> markdown tables and plots"}


def usage() -> str:
    lines = ["usage: python -m benchmarks SUITE [--quick] [--out FILE] [suite options]",
             "       python -m benchmarks all [--quick] [--out FILE]", "", "suites:"]
    for name, text in {**SUITES, **UTILITIES}.items():
        lines.append(f"  {name:<11} {text}")
    return "\n".join(lines)


def run_suite(name: str, argv: list[str]):
    """Run suite ``name`` with ``argv``; returns what its ``main`` returns."""
    if name not in SUITES and name not in UTILITIES:
        raise ValueError(f"suite must be one of {sorted({**SUITES, **UTILITIES})} or "
                         f"'all', got {name!r}")
    return importlib.import_module(f"benchmarks.{name}").main(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name == "all":
        common = [a for a in rest if a == "--quick"]
        if "--out" in rest:
            common += rest[rest.index("--out"):rest.index("--out") + 2]
        for suite in (s for s in SUITES if s not in COMPOSITE):
            print(f"# suite {suite}", flush=True)
            run_suite(suite, list(common))
        return 0
    run_suite(name, rest)
    return 0


__all__ = ["COMPOSITE", "SUITES", "UTILITIES", "main", "run_suite", "usage"]


if __name__ == "__main__":
    sys.exit(main())
