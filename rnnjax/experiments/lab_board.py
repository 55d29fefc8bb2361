"""The memory lab's leaderboard (:mod:`rnnjax.experiments.lab`): ``leaderboard.json``,
``leaderboard.md`` and ``leaderboard.html`` in the lab's out folder, with
``lab_heatmap.png`` (cells x tasks, colour = mean accuracy at the training length) and
``lab_lengths.png`` (accuracy against evaluation length, one panel per task).

Per task (and training length) a table, one row per cell: accuracy ``mean ± std``
over seeds (population std) at ``1x, 2x, 4x, 8x`` the training length, held-out loss
over the task's baseline (``mean ± std``), the credit ratio at the task's source step
(the carry field with the largest mean ratio; ``underflow`` when a seed's gradient
underflowed) and ``||dz_reference/dz_source||_2`` (mean over seeds) at the end of
training, the seconds, and the published result for that task and cell
(:mod:`rnnjax.experiments.lab_published`) with whether the row agrees.  A paragraph
per task is generated from these numbers: which cells solve it (mean accuracy >= 0.9
at the training length), which still do at 8x, and for the ones that fail whether the
gradient reached the source (credit ratio >= 1e-2, the copy report's rule)."""

from __future__ import annotations

import html
import json
import os

import numpy as np

from rnnjax.experiments.lab_published import SOLVED, agreement, published_for
from rnnjax.io.outputs import write_text
from rnnjax.plots.lab import accuracy_heatmap, length_curves

__all__ = ["REACH", "build_rows", "write_leaderboard"]

REACH = 1e-2  # the credit ratio at which the gradient "reaches" the source


def _stats(values):
    """``{"mean", "std", "seeds"}`` (None when any seed is missing)."""
    if values is None or any(v is None for v in values):
        return None
    a = np.asarray(values, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "seeds": [float(v) for v in a]}


def _best_credit(credit):
    """``(field, mean ratio over seeds)`` of the field with the largest mean ratio;
    ``(None, None)`` when every field underflowed for some seed (or no credit)."""
    if not credit:
        return None, None
    means = {f: float(np.mean(v)) for f, v in credit["ratio"].items()
             if v is not None and None not in v}
    if not means:
        return None, None
    f = max(means, key=means.get)
    return f, means[f]


def build_rows(entries) -> list:
    """One leaderboard row per run entry (``lab_run.json``)."""
    rows = []
    for e in entries:
        f, ratio = _best_credit(e.get("credit"))
        jac = (e.get("credit") or {}).get("jacobian_norm")
        acc = {k: _stats(v) for k, v in e["accuracy"].items()}
        acc1 = acc.get("1")
        pubs = published_for(e["task"], e["cell"])
        rows.append({
            "task": e["task"], "T": e["T"], "cell": e["cell"], "seeds": e["seeds"],
            "lengths": e["lengths"], "accuracy": acc,
            "loss": {k: _stats(v) for k, v in e["loss"].items()},
            "over_baseline": _stats(e.get("over_baseline")), "baseline": e["baseline"],
            "credit_field": f, "credit_ratio": ratio,
            "credit_ratio_seeds": None if f is None else e["credit"]["ratio"][f],
            "jacobian_norm": (None if jac is None or None in jac else float(np.mean(jac))),
            "has_credit": e.get("credit") is not None,
            "seconds": e["seconds"], "run": e["run"],
            "published": [{"outcome": p.outcome, "claim": p.claim, "source": p.source,
                           "protocol": p.protocol,
                           "here": agreement(p, None if acc1 is None else acc1["mean"])}
                          for p in pubs]})
    return rows


def _pm(s, digits=2):
    return "-" if s is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def _g(v):
    return "underflow" if v is None else f"{v:.2g}"


def _acc(row, k):
    s = row["accuracy"].get(k)
    return None if s is None else s["mean"]


def _paragraph(task, T, rows) -> str:
    factors = sorted(rows[0]["accuracy"], key=int)
    top = factors[-1]
    solve = [r for r in rows if (_acc(r, "1") or 0) >= SOLVED]
    fail = [r for r in rows if r not in solve]
    keep = [r["cell"] for r in solve if (_acc(r, top) or 0) >= SOLVED]
    words = [f"**{task}** (trained at T={T}, {rows[0]['seeds']} seeds): "]
    if solve:
        words.append(f"{len(solve)} of {len(rows)} cells solve it (mean accuracy >= "
                     f"{SOLVED} at T): " + ", ".join(
                         f"{r['cell']} ({_acc(r, '1'):.2f})" for r in solve) + ". ")
        words.append(f"At {top}x the length ({int(top) * T} steps) "
                      + (", ".join(keep) + " still do" if keep else "none still does")
                      + ". ")
    else:
        best = max(rows, key=lambda r: _acc(r, "1") or 0)
        words.append(f"no cell solves it; the best is {best['cell']} "
                     f"({(_acc(best, '1') or 0):.2f}). ")
    if fail:
        reach = [r for r in fail if (r["credit_ratio"] or 0) >= REACH]
        lost = [r for r in fail if r not in reach and r["has_credit"]]
        if reach:
            words.append("Failing with gradient at the source (credit ratio >= "
                         f"{REACH:g}): " + ", ".join(
                             f"{r['cell']} ({_g(r['credit_ratio'])})" for r in reach)
                         + " — not a vanishing-gradient failure. ")
        if lost:
            words.append("Failing with the gradient vanished before the source: "
                         + ", ".join(f"{r['cell']} ({_g(r['credit_ratio'])})" for r in lost)
                         + ". ")
    agree = [(r["cell"], p) for r in rows for p in r["published"]]
    if agree:
        ok = [c for c, p in agree if p["here"] == "agrees"]
        bad = [c for c, p in agree if p["here"] == "disagrees"]
        words.append(f"Published claims: {len(ok)} of {len(agree)} agree with these rows"
                     + (f" (disagreeing: {', '.join(bad)})" if bad else "") + ".")
    return "".join(words).strip()


def _groups(rows):
    out = {}
    for r in rows:
        out.setdefault((r["task"], r["T"]), []).append(r)
    return out


def _table(rows):
    factors = sorted(rows[0]["accuracy"], key=int)
    head = (["cell"] + [f"acc {f}x" for f in factors]
            + ["loss / baseline", "credit ratio (field)", "Jacobian norm", "s",
               "published"])
    body = []
    for r in rows:
        pub = "; ".join(f"{p['outcome']} ({p['source'].split(',')[0]}): {p['here']}"
                        for p in r["published"]) or "-"
        body.append([r["cell"]] + [_pm(r["accuracy"][f]) for f in factors]
                    + [_pm(r["over_baseline"], 3),
                       f"{_g(r['credit_ratio'])} ({r['credit_field'] or '-'})"
                       if r["has_credit"] else "-",
                       _g(r["jacobian_norm"]) if r["jacobian_norm"] is not None else "-",
                       f"{r['seconds']:.0f}", pub])
    return head, body


def write_leaderboard(out: str, entries, grid: dict) -> dict:
    """Write ``leaderboard.{json,md,html}`` and the two figures into ``out``; return the
    JSON object."""
    rows = build_rows(entries)
    groups = _groups(rows)
    paragraphs = {f"{t}_T{T}": _paragraph(t, T, rs) for (t, T), rs in groups.items()}
    board = {"grid": grid, "rows": rows, "paragraphs": paragraphs,
             "seconds": float(sum(r["seconds"] for r in rows))}
    write_text(os.path.join(out, "leaderboard.json"), json.dumps(board, indent=1))
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    cols = list(groups)
    lookup = {(r["cell"], r["task"], r["T"]): _acc(r, "1") for r in rows}
    names = [t if len({T for (u, T) in cols if u == t}) == 1 else f"{t} T={T}"
             for t, T in cols]
    accuracy_heatmap(cells, names, [[lookup.get((c, t, T)) for t, T in cols] for c in cells],
                     path=os.path.join(out, "lab_heatmap.png"))
    panels = {}
    for (t, T), rs in groups.items():
        panels[f"{t} (T={T})"] = {
            r["cell"]: (r["lengths"], [(r["accuracy"][f] or {"mean": np.nan})["mean"]
                                       for f in sorted(r["accuracy"], key=int)],
                        [(r["accuracy"][f] or {"std": 0.0})["std"]
                         for f in sorted(r["accuracy"], key=int)]) for r in rs}
    length_curves(panels, path=os.path.join(out, "lab_lengths.png"))
    _write_md(out, board, groups, paragraphs)
    _write_html(out, board, groups, paragraphs)
    return board


def _recipe_line(grid):
    r = grid["recipe"]
    return (f"hidden {r['hidden']}, batch {r['batch']}, {r['steps']} steps, "
            f"{r['optimizer']} lr {r['lr']}, clip {r['clip']}, {r['seeds']} seeds "
            f"(vmapped), held-out batch {r['eval_batch']}")


def _write_md(out, board, groups, paragraphs):
    grid = board["grid"]
    lines = ["# Memory lab leaderboard", "",
             f"Recipe: {_recipe_line(grid)}.  Accuracy is mean ± std over seeds at 1x, "
             "2x, 4x, 8x the training length T; loss / baseline at T; the credit ratio "
             "||dL_target/dz_source|| / ||dL_target/dz_reference|| and the Jacobian norm "
             "at the end of training (the task's credit steps).", "",
             *([f"**Partial**: this leaderboard holds the {grid['partial']} of the grid "
                "that had finished.", ""] if grid.get("partial") else []),
             "![accuracy heatmap](lab_heatmap.png)", "",
             "![length generalisation](lab_lengths.png)", ""]
    for (t, T), rs in groups.items():
        head, body = _table(rs)
        lines += [f"## {t} (T={T})", "", f"Baseline: {rs[0]['baseline']:.4g} nats.", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        lines += ["", paragraphs[f"{t}_T{T}"], ""]
        pubs = {(p["source"], p["claim"], p["protocol"]) for r in rs for p in r["published"]}
        if pubs:
            lines += ["Published:", ""] + [f"- {c} — {s}. Protocol: {pr}."
                                          for s, c, pr in sorted(pubs)] + [""]
    if grid.get("command"):
        lines += ["Reproduce with:", "", "```", grid["command"], "```", ""]
    write_text(os.path.join(out, "leaderboard.md"), "\n".join(lines))


def _write_html(out, board, groups, paragraphs):
    e = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>Memory lab</title>",
             "<h1>Memory lab leaderboard</h1>",
             f"<p>Recipe: {e(_recipe_line(board['grid']))}.</p>",
             (f"<p><b>Partial</b>: the {e(board['grid']['partial'])} that had finished.</p>"
              if board["grid"].get("partial") else ""),
             "<img src='lab_heatmap.png' alt='accuracy heatmap'>",
             "<img src='lab_lengths.png' alt='length generalisation'>"]
    for (t, T), rs in groups.items():
        head, body = _table(rs)
        parts.append(f"<h2>{e(t)} (T={T})</h2><table border=1 cellpadding=3><tr>"
                     + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in b) + "</tr>"
                               for b in body) + "</table>")
        parts.append(f"<p>{e(paragraphs[f'{t}_T{T}'].replace('**', ''))}</p>")
    if board["grid"].get("command"):
        parts.append(f"<pre>{e(board['grid']['command'])}</pre>")
    write_text(os.path.join(out, "leaderboard.html"), "\n".join(parts))
