"""The copy job's report: ``report.md`` and ``report.html`` (the table with the credit
column "against the baseline", the figures, a paragraph computed from the measured
numbers) and the sweep report over delays, all from the job's ``summary.json``."""

from __future__ import annotations

import html
import json
import os

from rnnjax.io.outputs import write_text
from rnnjax.plots import report as plots
from rnnjax.training.metrics import format_mean_std
from rnnjax.training.runner import (
    CREDIT_SETTINGS,
)

# Cells that are always compared; the cells of rnnjax.cells.REGISTRY whose W stays
# orthogonal/unitary join them (default_cells()).

# The credit ratio at which the report says the recall gradient "reaches" the symbols
# (for some carry field): the gradient at the last symbol is at least 1/100 of the one
# at the marker step.
REACH = 1e-2

__all__ = ["REACH", "best_field", "write_copy_report", "write_sweep_report"]


def _fmt_ratio(v) -> str:
    return "underflow" if v is None else f"{v:.2g}"


def _credit_text(entry) -> str:
    """``"h 3.1e-26, c 0.04"`` of a credit entry's ratios."""
    return ", ".join(f"{f} {_fmt_ratio(v)}" for f, v in entry["ratio"].items())


def best_field(entry):
    """``(field, ratio)`` with the largest measured ratio (None when every field's
    underflowed)."""
    got = [(f, v) for f, v in entry["ratio"].items() if v is not None]
    return max(got, key=lambda fv: fv[1]) if got else (None, None)


def _reaches(entry) -> bool:
    return (best_field(entry)[1] or 0.0) >= REACH


def _names_with(cells, what):
    return "; ".join(f"{c} ({what(c)})" for c in cells)


def _paragraph(summary) -> str:
    """What the figures show, in words computed from the numbers, cell group by cell
    group: the cells whose recurrent matrix is kept orthogonal/unitary (an ``orth_error``
    is recorded), then the others; within a group, the cells that learned, those that
    stayed at the baseline although their recall gradient reaches the symbols (credit
    ratio at least :data:`REACH` for some carry field after training) and those whose
    gradient does not reach them."""
    cs = summary["cells"]
    T = summary["T"]
    text = (f"At delay T={T} the memoryless strategy scores the baseline; a cell below it "
            f"has carried the ten symbols across {T} steps. The credit ratio is "
            f"||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T + 9}|| per carry field f on the "
            f"held-out batch (the last symbol against the marker step); here the recall "
            f"gradient is said to reach the symbols when it is at least {REACH:g} for some "
            f"field. ")
    groups = (("Among the cells whose recurrent matrix stays orthogonal or unitary",
               [c for c, s in cs.items() if s.get("orth_error")]),
              ("Among the other cells", [c for c, s in cs.items() if not s.get("orth_error")]))
    for label, group in groups:
        if not group:
            continue
        sent = []
        learned = [c for c in group if cs[c]["over_baseline"] <= 0.2
                   and cs[c]["eval_accuracy"] >= 0.9]
        failed = [c for c in group if cs[c]["over_baseline"] >= 0.8]
        middle = [c for c in group if c not in learned and c not in failed]
        credit = {c: cs[c].get("credit") for c in group}
        end = {c: credit[c]["end"] for c in group if credit[c]}

        def jac(c):
            j = end[c]["jacobian_norm"]
            return f"||dz_{T + 9}/dz_9|| {j:.2g}" if j is not None else "no Jacobian norm"

        if learned:
            sent.append(f"{', '.join(learned)} went far below the baseline (at most 0.2x, "
                        f"recall accuracy at least 0.9)" + (
                            "; after training their credit ratio is " + _names_with(
                                [c for c in learned if c in end],
                                lambda c: f"{_credit_text(end[c])}; {jac(c)}")
                            if any(c in end for c in learned) else ""))
        reached = [c for c in failed if c in end and _reaches(end[c])]
        lost = [c for c in failed if c in end and not _reaches(end[c])]
        if reached:
            sent.append(f"{', '.join(reached)} did not go below the baseline (0.8x or more) "
                        f"although the recall gradient reaches the symbols after training ("
                        + _names_with(reached, lambda c: f"{_credit_text(end[c])}; {jac(c)}")
                        + "): their failure at this delay and training budget is not a "
                          "vanishing gradient")
        if lost:
            sent.append(f"{', '.join(lost)} did not go below the baseline (0.8x or more) and "
                        f"the recall gradient does not reach the symbols after training ("
                        + _names_with(lost, lambda c: f"{_credit_text(end[c])}; {jac(c)}")
                        + "), as a vanishing gradient would make it")
        if middle:
            sent.append(f"{', '.join(middle)} ended between ("
                        + _names_with(middle, lambda c: f"{cs[c]['over_baseline']:.2f}x"
                                      + (f", credit {_credit_text(end[c])}" if c in end
                                         else "")) + ")")
        under = [c for c in group if credit[c] and all(
            v is None for v in credit[c]["init"]["ratio"].values())]
        if under:
            sent.append(f"at initialisation the recall gradient at the symbols underflowed "
                        f"float32 for {', '.join(under)} (below 1.6e-31 of the output "
                        f"gradient)")
        if sent:
            text += f"{label}: " + "; ".join(sent) + ". "
    diverged = [c for c, s in cs.items() if s.get("diverged")]
    if diverged:
        text += (f"{', '.join(diverged)} diverged during training (non-finite steps "
                 f"skipped, a gradient norm above 1e3 or a held-out loss above 1.5x its "
                 f"first value; marked in the table): "
                 f"{'its numbers are' if len(diverged) == 1 else 'their numbers are'} "
                 f"those of a diverged run, not of the cell at a working recipe. ")
    if any(s.get("orth_error") for s in cs.values()):
        worst = max(max(s["orth_error"]) for s in cs.values() if s.get("orth_error"))
        text += (f"The orthogonal/unitary matrices stayed on their group throughout "
                 f"(largest ||W^H W - I||_F {worst:.1e}, float32 rounding).")
    return text.strip()


def _credit_cells(credit) -> tuple:
    """The table's four credit cells of a summary entry (``-`` without credit)."""
    if not credit:
        return ("-",) * 4
    def jac(e):
        return "-" if e["jacobian_norm"] is None else f"{e['jacobian_norm']:.2g}"
    return (_credit_text(credit["init"]), _credit_text(credit["end"]),
            jac(credit["init"]), jac(credit["end"]))


def _seed_values(s, key):
    """Per-seed values of ``key`` in a cell's summary entry (one value for a single seed
    or an entry written before per-seed values were kept)."""
    return s.get(f"{key}_seeds") or [s[key]]


def write_copy_report(out: str, summary: dict) -> None:
    """Write ``copy_loss.png``, ``copy_credit_profile.png``,
    ``copy_credit_history.png``, ``copy_orth_error.png``,
    ``summary.json``, ``report.md`` and ``report.html``."""
    baseline, T = summary["baseline"], summary["T"]
    cfg = summary["config"]
    seeds = cfg.get("seeds", 1)
    cs = summary["cells"]
    curves = {c: (s["steps"], s["curve"]) for c, s in cs.items()}
    bands = orth_bands = None
    if seeds > 1:
        bands = {c: ([m - d for m, d in zip(s["curve"], s["curve_std"])],
                     [m + d for m, d in zip(s["curve"], s["curve_std"])])
                 for c, s in cs.items()}
        orth_bands = {c: ([max(m - d, 1e-12) for m, d in zip(s["orth_error"],
                                                              s["orth_error_std"])],
                          [m + d for m, d in zip(s["orth_error"], s["orth_error_std"])])
                      for c, s in cs.items() if s.get("orth_error_std")}
    plots.loss_curves(curves, baseline=baseline, bands=bands,
                      path=os.path.join(out, "copy_loss.png"),
                      title=f"Copy task, T={T}: held-out cross-entropy")
    credited = {c: s for c, s in cs.items() if s.get("credit")}
    if credited:
        plots.credit_profiles({c: {"init": s["credit_profile_init"],
                                   "end": s["credit_profile_end"]}
                               for c, s in credited.items()}, marks=(9, T + 9),
                              path=os.path.join(out, "copy_credit_profile.png"))
        plots.credit_history(
            {c: {"steps": [0] + [h["step"] for h in s["credit"]["history"]],
                 "ratio": {f: [s["credit"]["init"]["ratio"][f]]
                           + [h["ratio"][f] for h in s["credit"]["history"]]
                           for f in s["credit"]["init"]["ratio"]},
                 "jacobian_norm": [s["credit"]["init"]["jacobian_norm"]]
                 + [h["jacobian_norm"] for h in s["credit"]["history"]]}
             for c, s in credited.items()},
            path=os.path.join(out, "copy_credit_history.png"),
            title=f"credit at the symbols against training step: "
                  f"||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T + 9}|| and ||dz_{T + 9}/dz_9||")
    orth = {c: (s["steps"], s["orth_error"]) for c, s in cs.items() if s.get("orth_error")}
    if orth:
        plots.loss_curves({c: (st, [max(e, 1e-12) for e in v]) for c, (st, v) in orth.items()},
                          bands=orth_bands, path=os.path.join(out, "copy_orth_error.png"),
                          title="orthogonality error over training",
                          ylabel="||W^H W - I||_F")
    write_text(os.path.join(out, "summary.json"), json.dumps(summary, indent=1))

    rows = []
    for c, s in cs.items():
        verdict = "below baseline" if s["over_baseline"] < 0.9 else (
            "at baseline" if s["over_baseline"] < 1.1 else "above baseline")
        if s.get("diverged"):
            verdict = "DIVERGED, " + verdict
        oe = (format_mean_std(s.get("orth_error_seeds") or [s["orth_error"][-1]], spec=".1e")
              if s.get("orth_error") else "-")
        rows.append((c, format_mean_std(_seed_values(s, "eval_loss"), 4),
                     format_mean_std(_seed_values(s, "over_baseline"), 3),
                     format_mean_std(_seed_values(s, "eval_accuracy"), 3), verdict)
                    + _credit_cells(s.get("credit")) + (oe, f"{s['seconds']:.0f}"))
    head = ("cell", "cross-entropy", "/ baseline", "recall accuracy", "against the baseline",
            f"credit ratio t=9 vs t={T + 9}, init", "credit ratio, end",
            f"||dz_{T + 9}/dz_9||, init", f"||dz_{T + 9}/dz_9||, end", "orth. error", "seconds")
    if seeds > 1:
        plain = ("cell", "against the baseline", "seconds")
        head = tuple(h if h in plain else h + " (mean ± std)" for h in head)
    recipe = (f"T={T} (sequence length {T + 20}, {cfg.get('variant', 'arjovsky')} layout), "
              f"hidden {cfg['hidden']}, batch {cfg['batch']}, {cfg['steps']} steps, "
              f"{cfg['optimizer']} lr {cfg['lr']}"
              + (f", orthogonal lr {cfg['lr_orth']}" if cfg.get("lr_orth") else "")
              + (f", clipping {cfg['clip']} ({cfg['clip_mode']})" if cfg.get("clip") else "")
              + (f", {seeds} seeds {cfg['seed']}..{cfg['seed'] + seeds - 1} trained together "
                 f"(jax.vmap; table: mean ± std over seeds; bands: ±1 std, gradient norms "
                 f"in log space)" if seeds > 1 else f", seed {cfg['seed']}"))
    per_cell = [f"- {c}: {json.dumps(r)}" for c, r in summary.get("recipes", {}).items()
                if (r.get("optimizer"), r.get("lr"), r.get("lr_orth"), r.get("clip"))
                != (cfg["optimizer"], cfg["lr"], cfg["lr_orth"], cfg["clip"])
                or r.get("cell_options")]
    md = [f"# Copy task report: {summary['name']}", "",
          f"Recipe: {recipe}.  Held-out batch of {cfg['eval_batch']} sequences fixed by "
          f"the seed.", ""]
    if per_cell:
        md += ["Per-cell recipes (differing from the above):", ""] + per_cell + [""]
    md += [f"Memoryless baseline (output blanks, then guess uniformly among the 8 symbols): "
           f"10 ln 8 / (T+20) = **{baseline:.4f}** nats.  Recall accuracy is measured on "
           f"the last 10 steps (chance 1/8 = 0.125).", "",
           "![loss curves](copy_loss.png)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if credited:
        md += ["", f"Credit: L_recall is the mean cross-entropy of the 10 recall steps "
               f"(t = {T + 10}..{T + 19}, 0-based) on the held-out batch; the credit ratio "
               f"of carry field f is ||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T + 9}|| "
               f"(z_t the carry after reading x_t: the last symbol against step {T + 9}, "
               f"the last one before the first recall target), and ||dz_{T + 9}/dz_9||_2 "
               f"is the spectral norm of the carry's Jacobian over the delay, the mean over "
               f"the first {CREDIT_SETTINGS['jacobian_examples']} held-out examples "
               f"(rnnjax.analysis.credit_metrics); 'underflow': the gradient at the "
               f"symbols fell below float32's range (1.6e-31 of the output gradient). "
               f"With several seeds: the mean over seeds.", "",
               "Recall-loss gradient per carry field against t, at initialisation "
               "(dashed) and after training (solid), log scale; dotted: t = 9 and "
               f"t = {T + 9}; through later steps only (the cell's own outputs), which "
               f"before the first recall target is the whole gradient.", "",
               "![credit profile](copy_credit_profile.png)", "",
               "![credit against training step](copy_credit_history.png)", ""]
    if orth:
        md += ["![orthogonality error](copy_orth_error.png)", ""]
    md += [_paragraph(summary), "",
           f"Total time: {summary['seconds']:.0f} s (training and measuring the cells, "
           f"summed over the calls that made them).", ""] + _reproduce_md(
        summary.get("command")) + [
           "", "Per-cell metrics: `<cell>/metrics.jsonl` and `<cell>/metrics.csv`; "
           "configuration: `<cell>/config.json`; trained params: `<cell>/checkpoints` "
           "(`rnnjax gradflow --checkpoint <cell>`).", ""]
    write_text(os.path.join(out, "report.md"), "\n".join(md))

    table = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>"
                    for r in rows)
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(summary['name'])}"
            f"</title><h1>Copy task report: {html.escape(summary['name'])}</h1>"
            f"<p>Recipe: {html.escape(recipe)}.</p><p>Memoryless baseline 10 ln 8 / (T+20) = "
            f"<b>{baseline:.4f}</b> nats.</p><img src='copy_loss.png'>"
            "<table border=1 cellpadding=4><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                           for h in head)
            + f"</tr>{table}</table>"
            + ("<img src='copy_credit_profile.png'><img src='copy_credit_history.png'>"
               if credited else "")
            + ("<img src='copy_orth_error.png'>" if orth else "")
            + f"<p>{html.escape(_paragraph(summary))}</p>"
            + (f"<p>Reproduce with:</p><pre>{html.escape(summary['command'])}</pre>"
               if summary.get("command") else f"<p>{html.escape(_NO_COMMAND)}</p>"))
    write_text(os.path.join(out, "report.html"), page)


# What a report says when no command made it (a call of run_copy_job from Python).
_NO_COMMAND = ("Made by a Python call (rnnjax.experiments.copy_job), not by an rnnjax "
               "command; its recipe is in summary.json (config, recipes).")


def _reproduce_md(command) -> list:
    """The report's "Reproduce with" lines: the command that ran, or, when the job ran
    from Python, a sentence saying so (never a command that did not run)."""
    if not command:
        return [_NO_COMMAND]
    return ["Reproduce with:", "", "```bash", command, "```"]


def write_sweep_report(out: str, name: str, summaries: dict, command: str | None) -> None:
    """``--preset arjovsky``: ``copy_sweep.png`` (one panel per T),
    ``copy_sweep_credit.png`` (after training, against T: CE / baseline and the measured
    credit ratio per cell and carry field) and ``report.md`` linking each T's own
    report."""
    panels = {f"T={T}": ({c: (s["steps"], s["curve"]) for c, s in sm["cells"].items()},
                         sm["baseline"]) for T, sm in summaries.items()}
    plots.loss_panels(panels, path=os.path.join(out, "copy_sweep.png"))
    Ts = list(summaries)
    first = next(iter(summaries.values()))["cells"]
    loss_T = {c: (Ts, [sm["cells"][c]["over_baseline"] for sm in summaries.values()])
              for c in first}
    ratio_T = {}
    for c, s0 in first.items():
        if not s0.get("credit"):
            continue
        for f in s0["credit"]["end"]["ratio"]:
            ratio_T[f"{c} {f}"] = (Ts, [sm["cells"][c]["credit"]["end"]["ratio"][f]
                                        for sm in summaries.values()])
    credit_fig = bool(ratio_T)
    if credit_fig:
        plots.against_T({"held-out cross-entropy / baseline, end": (loss_T, "CE / baseline"),
                         "credit ratio ||dL_recall/dz^f_9|| / ||dL_recall/dz^f_(T+9)||, end":
                         (ratio_T, "credit ratio")},
                        path=os.path.join(out, "copy_sweep_credit.png"))
    md = [f"# Copy task sweep: {name}", "", "Held-out cross-entropy against training step, "
          "one panel per delay T (Arjovsky et al. 2016, Fig. 1); dashed: the memoryless "
          "baseline 10 ln 8 / (T+20).", "", "![sweep](copy_sweep.png)", ""]
    if credit_fig:
        md += ["After training, against T: the cross-entropy over the baseline (left) and "
               "the measured credit ratio per carry field (right; solid h, dashed the "
               "other fields; an underflowed ratio is left out and reads 'underflow' in "
               "the table).", "", "![loss and credit against T](copy_sweep_credit.png)", ""]
    md += ["| T | " + " | ".join(first) + " |", "|---|" + "---|" * len(first)]
    for T, sm in summaries.items():
        md.append(f"| [{T}](T{T}/report.md) | " + " | ".join(
            f"{s['over_baseline']:.3f}x, acc {s['eval_accuracy']:.2f}"
            + (f", credit {_credit_text(s['credit']['end'])}" if s.get("credit") else "")
            for s in sm["cells"].values()) + " |")
    md += [""] + _reproduce_md(command) + [""]
    write_text(os.path.join(out, "report.md"), "\n".join(md))
