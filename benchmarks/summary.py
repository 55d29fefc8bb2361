"""Turn benchmark JSON lines into markdown tables (and plots of time against T / H).

    python -m benchmarks summary results.jsonl [more.jsonl ...] [--plots DIR]

One table per ``bench`` found, printed as markdown (the tables of
``benchmarks/README.md``), each under the machine line of its records.  With
``--plots``, ``peers_vs_T.png`` and ``peers_vs_H.png``: median time of each library
for every (cell, mode, batch) with more than one ``T`` (or ``H``) value.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

MS = 1e3


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    records.append(json.loads(line))
    return records


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt(x, digits=3):
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def machine_line(recs):
    m = recs[0].get("machine", {})
    return (f"Machine: {m.get('cpu')}, {m.get('cores')} cores, device {m.get('device')}, "
            f"jax {m.get('jax')}.")


def peers_table(recs):
    groups = defaultdict(dict)
    libs = []
    for r in recs:
        key = (r["cell"], r["mode"], r["batch"], r["T"], r["H"])
        groups[key][r["library"]] = r
        if r["library"] not in libs:
            libs.append(r["library"])
    rows = []
    for key, by in groups.items():
        ours = [r for r in by.values() if "over_best_peer" in r]
        rows.append(list(key) + [fmt(by[lib]["median_s"] * MS) if lib in by else "-"
                                 for lib in libs]
                    + [", ".join(f"{r['library']}: {r['over_best_peer']:.2f} "
                                 f"({r['best_peer']})" for r in ours)])
    return table(["cell", "mode", "batch", "T", "H"] + [f"{lib} (ms)" for lib in libs]
                 + ["rnnjax / fastest peer"], rows)


def generic_table(recs):
    keys = []
    for r in recs:
        for k, v in r.items():
            if k not in ("bench", "machine") and not isinstance(v, (dict, list)) \
                    and k not in keys:
                keys.append(k)
    return table(keys, [[fmt(r.get(k, "-")) for k in keys] for r in recs])


def summarize(records) -> str:
    by_bench = defaultdict(list)
    for r in records:
        by_bench[r.get("bench", "?")].append(r)
    parts = []
    for bench, recs in by_bench.items():
        body = peers_table(recs) if bench == "peers" else generic_table(recs)
        parts.append(f"### {bench}\n\n{machine_line(recs)}\n\n{body}\n")
    return "\n".join(parts)


def plots(records, outdir):
    import os

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(outdir, exist_ok=True)
    peers = [r for r in records if r.get("bench") == "peers"]
    written = []
    for axis, other in (("T", "H"), ("H", "T")):
        curves = defaultdict(list)
        for r in peers:
            curves[(r["cell"], r["mode"], r["batch"], r[other], r["library"])].append(
                (r[axis], r["median_s"]))
        curves = {k: sorted(v) for k, v in curves.items() if len({x for x, _ in v}) > 1}
        if not curves:
            continue
        panels = sorted({k[:4] for k in curves})
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6),
                                 squeeze=False)
        for ax, panel in zip(axes[0], panels):
            for k, pts in curves.items():
                if k[:4] == panel:
                    ax.plot(*zip(*pts), marker="o", label=k[4])
            ax.set(xscale="log", yscale="log", xlabel=axis, ylabel="median time (s)",
                   title=f"{panel[0]} {panel[1]} B={panel[2]} {other}={panel[3]}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(outdir, f"peers_vs_{axis}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks summary",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="JSON-lines files written with --out")
    ap.add_argument("--plots", default=None, help="directory for the PNG plots")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: summarize a tiny peers run made on the spot")
    ap.add_argument("--out", default=None, help="(ignored; for 'all')")
    a = ap.parse_args(argv)
    if a.quick and not a.files:
        from benchmarks import peers
        records = peers.main(["--quick", "--cells", "elman", "--modes", "fwd"])
    else:
        records = load(a.files)
    text = summarize(records)
    print(text)
    if a.plots:
        for path in plots(records, a.plots):
            print(f"wrote {path}")
    return text


if __name__ == "__main__":
    main()
