"""The copy-task job behind ``rnnjax copy``: train several cells on the copy task
(Arjovsky et al. 2016) with one recipe and write a report.

``runs/<name>/`` receives one run directory per cell (``<cell>/metrics.jsonl``,
``metrics.csv``, ``config.json``), ``copy_loss.png`` (held-out cross-entropy per cell on
a log scale with the memoryless baseline ``10 ln 8 / (T+20)`` drawn), ``summary.json``,
``report.md`` and ``report.html``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import shlex
import time

from rnnjax import cells as cells_lib
from rnnjax import plots
from rnnjax.train import ORTHOGONAL_CELLS, Config, train

# Cells that are always compared; the orthogonal/unitary cells registered in
# rnnjax.cells.REGISTRY join them (default_cells()).
BASE_CELLS = ("elman", "lstm", "gru")

# Default recipe: sized to finish in about 3 minutes on a 2-core CPU.
# Measured (loaded 2-core machine, see issue notes): orthogonal cells reach ~0.5-0.6x the
# baseline while Elman/LSTM/GRU sit at it.  Clipping keeps Elman from blowing up.
DEFAULT = Config(task="copy", T=40, hidden=32, batch=32, steps=400, lr=1e-3, lr_orth=1e-4,
                 optimizer="rmsprop", clip=1.0, log_every=20, eval_batch=128, seed=0)

# expRNN's recipe (Lezcano-Casado & Martinez-Rubio 2019, copy task).
PAPER = Config(task="copy", T=1000, hidden=190, batch=128, steps=4000, lr=2e-4, lr_orth=2e-5,
               optimizer="rmsprop", log_every=50, eval_batch=256, seed=0)
PAPER_CELL_OPTIONS = {"exprnn": (("init", "henaff"),)}  # expRNN: Henaff init


def default_cells() -> list:
    """``elman, lstm, gru`` and every orthogonal/unitary cell present in the registry."""
    return list(BASE_CELLS) + [c for c in ORTHOGONAL_CELLS if c in cells_lib.REGISTRY]


def run_copy_job(name: str, base: Config, cells=None, *, runs_dir: str = "runs",
                 cell_options: dict | None = None, command: str | None = None,
                 progress: bool = True, print_fn=print) -> dict:
    """Train each cell of ``cells`` with the recipe ``base`` and write the report.

    Returns the summary ``{"cells": {cell: {...final metrics...}}, ...}``.
    """
    cells = default_cells() if cells is None else list(cells)
    if not cells:
        raise ValueError("cells must name at least one cell")
    for c in cells:  # every name checked before any training starts
        if c not in cells_lib.REGISTRY:
            raise ValueError(f"cell must be one of {sorted(cells_lib.REGISTRY)}, got {c!r}")
    out = os.path.join(runs_dir, name)
    configs = {}
    for c in cells:
        opts = tuple((cell_options or {}).get(c, ()))
        configs[c] = dataclasses.replace(base, cell=c, out=os.path.join(out, c),
                                         checkpoint_every=0, cell_options=opts)
    from rnnjax.train import validate
    for cfg in configs.values():
        validate(cfg)
    os.makedirs(out, exist_ok=True)

    summary = {"name": name, "T": base.T, "baseline": None, "cells": {},
               "command": command, "config": base.to_json()}
    t_job = time.perf_counter()
    for c, cfg in configs.items():
        t0 = time.perf_counter()
        result = train(cfg, progress=progress)
        last = result.history[-1]
        summary["baseline"] = last["baseline"]
        summary["cells"][c] = {
            "eval_loss": last["eval_loss"], "over_baseline": last["eval_loss_over_baseline"],
            "eval_accuracy": last["eval_accuracy"], "seconds": time.perf_counter() - t0,
            "steps": [r["step"] for r in result.history],
            "curve": [r["eval_loss"] for r in result.history],
            "curve_std": [r["eval_loss_std"] for r in result.history],
        }
        if print_fn:
            print_fn(f"{c:12s} cross-entropy {last['eval_loss']:.4f}  "
                     f"/ baseline {last['eval_loss_over_baseline']:.3f}  "
                     f"recall accuracy {last['eval_accuracy']:.3f}  "
                     f"({time.perf_counter() - t0:.0f} s)")
    summary["seconds"] = time.perf_counter() - t_job
    write_copy_report(out, summary)
    if print_fn:
        print_fn(f"wrote {os.path.join(out, 'report.md')} ({summary['seconds']:.0f} s)")
    return summary


def write_copy_report(out: str, summary: dict) -> None:
    """Write ``copy_loss.png``, ``summary.json``, ``report.md`` and ``report.html``."""
    baseline, T = summary["baseline"], summary["T"]
    cfg = summary["config"]
    seeds = cfg.get("seeds", 1)
    curves = {c: (s["steps"], s["curve"]) for c, s in summary["cells"].items()}
    bands = None
    if seeds > 1:
        bands = {c: ([m - d for m, d in zip(s["curve"], s["curve_std"])],
                     [m + d for m, d in zip(s["curve"], s["curve_std"])])
                 for c, s in summary["cells"].items()}
    plots.loss_curves(curves, baseline=baseline, bands=bands,
                      path=os.path.join(out, "copy_loss.png"),
                      title=f"Copy task, T={T}: held-out cross-entropy")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)

    rows = []
    for c, s in summary["cells"].items():
        verdict = "below baseline" if s["over_baseline"] < 0.9 else (
            "at baseline" if s["over_baseline"] < 1.1 else "above baseline")
        rows.append((c, f"{s['eval_loss']:.4f}", f"{s['over_baseline']:.3f}",
                     f"{s['eval_accuracy']:.3f}", verdict, f"{s['seconds']:.0f}"))
    head = ("cell", "cross-entropy", "/ baseline", "recall accuracy", "", "seconds")
    recipe = (f"T={T} (sequence length {T + 20}), hidden {cfg['hidden']}, batch "
              f"{cfg['batch']}, {cfg['steps']} steps, {cfg['optimizer']} lr {cfg['lr']}"
              + (f", orthogonal lr {cfg['lr_orth']}" if cfg.get("lr_orth") else "")
              + (f", clipping {cfg['clip']} ({cfg['clip_mode']})" if cfg.get("clip") else "")
              + (f", {seeds} seeds (mean; band: ±1 std)" if seeds > 1 else f", seed {cfg['seed']}"))
    md = [f"# Copy task report: {summary['name']}", "",
          f"Recipe: {recipe}.  Held-out batch of {cfg['eval_batch']} sequences fixed by "
          f"the seed.", "",
          f"Memoryless baseline (output blanks, then guess uniformly among the 8 symbols): "
          f"10 ln 8 / (T+20) = **{baseline:.4f}** nats.  Recall accuracy is measured on "
          f"the last 10 steps (chance 1/8 = 0.125).", "",
          "![loss curves](copy_loss.png)", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"Total time: {summary['seconds']:.0f} s.", "",
           "Reproduce with:", "", "```bash", summary.get("command") or "rnnjax copy", "```",
           "", "Per-cell metrics: `<cell>/metrics.jsonl` and `<cell>/metrics.csv`; "
           "configuration: `<cell>/config.json`.", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md))

    table = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>"
                    for r in rows)
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(summary['name'])}"
            f"</title><h1>Copy task report: {html.escape(summary['name'])}</h1>"
            f"<p>Recipe: {html.escape(recipe)}.</p><p>Memoryless baseline 10 ln 8 / (T+20) = "
            f"<b>{baseline:.4f}</b> nats.</p><img src='copy_loss.png'>"
            "<table border=1 cellpadding=4><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + f"</tr>{table}</table><p>Reproduce with:</p><pre>"
            f"{html.escape(summary.get('command') or 'rnnjax copy')}</pre>")
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write(page)


def reproduce_command(argv) -> str:
    return "rnnjax " + " ".join(shlex.quote(a) for a in argv)
