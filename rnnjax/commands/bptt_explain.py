"""``rnnjax bptt-explain``: backpropagation through time of a small Elman classifier,
step by step (forward pre-activations, states and output; backward deltas and each
step's contribution to ``dW_xh``, ``dW_hh``, ``db_h``).  Library code:
:func:`rnnjax.explain.explain`."""

from __future__ import annotations

import json

from rnnjax import explain


def _v(a, p):
    if a and isinstance(a[0], list):
        return "[" + "; ".join(_v(r, p)[1:-1] for r in a) + "]"
    return "[" + ", ".join(f"{x:{p + 3}.{p}f}" for x in a) + "]"


def format_report(r: dict, precision: int = 3) -> str:
    """The readable tables of :func:`rnnjax.explain.explain`'s result."""
    p = precision
    f = {"tanh": "tanh", "relu": "relu", "identity": "id"}[r["activation"]]
    fp = {"tanh": "1 - h_t^2", "relu": "[z_t > 0]", "identity": "1"}[r["activation"]]
    out = [f"Forward: z_t = W_xh x_t + W_hh h_(t-1) + b_h,  h_t = {f}(z_t)", ""]
    w = max(len("token"), *(len(s["token"]) for s in r["steps"]))
    out.append(f"{'t':>3}  {'token':<{w}}  {'x_t':<26}{'z_t':<26}h_t")
    for s in r["steps"]:
        out.append(f"{s['t']:>3}  {s['token']:<{w}}  {_v(s['x'], p):<26}{_v(s['z'], p):<26}"
                   f"{_v(s['h'], p)}")
    out.append("")
    if r["loss_kind"] == "bce":
        out.append(f"Output: y = sigmoid(W_ho h_T + b_o) = sigmoid({_v(r['logit'], p)}) "
                   f"= {_v(r['y'], p)};  label {_v(r['label'], p)}")
        out.append(f"Loss: -[l log y + (1-l) log(1-y)] = {r['loss']:.{p}f}")
    else:
        out.append(f"Output: y = W_ho h_T + b_o = {_v(r['y'], p)};  label {_v(r['label'], p)}")
        out.append(f"Loss: 1/2 ||y - l||^2 = {r['loss']:.{p}f}")
    g = r["grads"]
    out += [f"dL/db_o = y - l = {_v(g['b_o'], p)}   dL/dW_ho = (y - l) h_T^T = "
            f"{_v(g['W_ho'], p)}", "",
            f"Backward: dh_T = W_ho^T (y - l);  delta_t = dh_t * ({fp});  "
            "dh_(t-1) = W_hh^T delta_t", ""]
    out.append(f"{'t':>3}  {'token':<{w}}  {'dh_t':<26}delta_t = dL/dz_t")
    for s in reversed(r["steps"]):
        out.append(f"{s['t']:>3}  {s['token']:<{w}}  {_v(s['dh'], p):<26}{_v(s['delta'], p)}")
    out += ["", "Per-step contributions: dW_xh += delta_t x_t^T, dW_hh += delta_t h_(t-1)^T, "
            "db_h += delta_t (rows separated by ';')", ""]
    for s in reversed(r["steps"]):
        out.append(f"{s['t']:>3}  {s['token']:<{w}}  dW_xh {_v(s['dW_xh'], p)}")
        out.append(f"{'':>3}  {'':<{w}}  dW_hh {_v(s['dW_hh'], p)}")
        out.append(f"{'':>3}  {'':<{w}}  db_h  {_v(s['db_h'], p)}")
    out += ["", "Totals (sum over steps):",
            f"  dW_xh = {_v(g['W_xh'], p)}", f"  dW_hh = {_v(g['W_hh'], p)}",
            f"  db_h  = {_v(g['b_h'], p)}", f"  dh_0  = {_v(g['h0'], p)}"]
    return "\n".join(out)


def _main(args) -> int:
    if args.spec is None:
        spec = explain.example_spec()
    else:
        with open(args.spec) as fh:
            spec = json.load(fh)
    result = explain.explain(spec)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        if args.precision < 0:
            raise ValueError(f"--precision must be >= 0, got {args.precision}")
        print(format_report(result, args.precision))
    return 0


def register(sub):
    p = sub.add_parser("bptt-explain",
                       help="print BPTT of a small Elman classifier step by step")
    p.add_argument("spec", nargs="?", default=None,
                   help="JSON spec (default: the packaged worked example, "
                        "rnnjax/data/sentiment_example.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--precision", type=int, default=3, help="decimals in the tables")
    p.set_defaults(func=_main)
