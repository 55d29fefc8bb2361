"""Options built from one source: the fields of :class:`rnnjax.Config` carry their help
text, default and spelling as field metadata (:mod:`rnnjax.training.config`), and
:func:`add_config_options` turns them into the options of ``rnnjax train``, ``rnnjax
copy`` and ``rnnjax orthogonality`` in one loop; :func:`config_values` reads them back.
The apps' and gradflow's options take their defaults from the keyword defaults of the
function they call (:func:`function_defaults`), so a default is written once.
:func:`given_options` tells which options a command line gave, default value or not
(what ``--preset`` and ``--resume`` need)."""

from __future__ import annotations

import argparse
import inspect
import sys

from rnnjax.training.config import Config, flag, option_fields


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option (hidden from ``--help``): stores into the new
    option's ``dest`` and warns on stderr, naming the new spelling ``new``."""

    def __init__(self, option_strings, dest, new, **kwargs):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"rnnjax: warning: {option_string} is deprecated; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p, old: str, new: str, **kwargs):
    """Accept ``old`` as a deprecated spelling of the option ``new`` (same ``dest``)."""
    kwargs.setdefault("dest", new.lstrip("-").replace("-", "_"))
    return p.add_argument(old, action=DeprecatedAlias, new=new, **kwargs)


def add_config_options(p, names=None, *, defaults=None, help=None, dests=None,
                       command=None) -> dict:
    """Add one option per :class:`Config` field that is an option (in declaration
    order; only ``names``, in their order, when given) to the parser ``p``, from the
    field's metadata: spelling, type, choices, metavar, help, ``--help`` group.

    ``defaults``: a :class:`Config` whose values are the defaults (a field's
    ``cli_default`` where it has one); None: every default is None, so an option left
    out is told from one given (``rnnjax copy``, whose preset fills the rest).
    ``help``: ``field -> text`` replacing the field's help.  ``dests``: ``{field:
    dest}`` where the ``dest`` is not the one argparse derives from the flag.  Fields
    of ``command="train"`` are added only for ``command="train"``.  Returns ``{field:
    dest}`` for :func:`config_values`."""
    fields = {f.name: f for f in option_fields()}
    chosen = list(fields) if names is None else list(names)
    out, groups = {}, {}
    for name in chosen:
        f = fields[name]
        m = f.metadata
        if names is None and m["command"] is not None and m["command"] != command:
            continue
        text = help(name) if help is not None else m["help"]
        kw = {"help": text}
        if m["group"] is not None and defaults is not None:
            target = groups.get(m["group"]) or groups.setdefault(
                m["group"], p.add_argument_group(m["group"]))
        else:
            target = p
        if defaults is None:
            default = [] if m["action"] == "append" else None
        else:
            default = m.get("cli_default", getattr(defaults, name))
            if m["action"] == "append":
                default = []
        if isinstance(f.default, bool) and m["action"] is None:
            kw.update(action="store_true", default=False if default is None else default)
        else:
            kw["default"] = default
            for key in ("type", "choices", "metavar", "action"):
                if m[key] is not None:
                    kw[key] = m[key]
        if dests and name in dests:
            kw["dest"] = dests[name]
        action = target.add_argument(flag(name), **kw)
        out[name] = action.dest
    return out


def config_values(a, dests: dict, *, given_only: bool = False) -> dict:
    """``{field: value}`` of the options ``dests`` (from :func:`add_config_options`) in
    the parsed arguments ``a``, each turned into the field's value (``--cell-opt``
    words into pairs); ``given_only``: only those not None (nor an empty list)."""
    meta = {f.name: f.metadata for f in option_fields()}
    out = {}
    for name, dest in dests.items():
        v = getattr(a, dest)
        if given_only and (v is None or v == []):
            continue
        parse = meta[name]["parse"]
        out[name] = parse(v) if parse is not None and v is not None else v
    return out


def given_options(parser, argv) -> set:
    """The ``dest`` of every option of ``parser`` that the command line ``argv`` (the
    words after the subcommand) gives, whatever its value (also one given at its
    default): ``argv`` is parsed into a namespace whose every entry starts as a
    sentinel, so argparse fills in no default (an appending option, which needs a list
    to append to, is given when its list is not its default one)."""
    unset = object()
    appending = {a.dest: a.default for a in parser._actions
                 if isinstance(a, argparse._AppendAction)}
    ns = argparse.Namespace(**{k: unset for k in vars(parser.parse_args([]))
                               if k not in appending})
    parsed = vars(parser.parse_args(argv, namespace=ns))
    return {k for k, v in parsed.items()
            if (v is not appending[k] if k in appending else v is not unset)}


def command_words(a, name: str) -> list:
    """The words of the command line after the subcommand ``name`` (``a.argv``, which
    :func:`rnnjax.cli.main.main` keeps; the first ``name`` is the subcommand, since only
    ``--debug`` may come before it)."""
    argv = list(getattr(a, "argv", None) or [])
    return argv[argv.index(name) + 1:] if name in argv else []


def function_defaults(fn) -> dict:
    """``{parameter: default}`` of the keyword parameters of ``fn`` that have one: the
    one place the apps' defaults are written (their commands read them from here)."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def add_function_options(p, fn, table) -> dict:
    """Add the options ``table`` of a command that calls ``fn``: rows ``(flag, param,
    kwargs)``, each option's default that of ``fn``'s keyword parameter ``param`` (a
    tuple default becomes a list for an option of several values).  Returns ``{dest:
    param}``."""
    d = function_defaults(fn)
    out = {}
    for option, param, kw in table:
        default = d[param]
        if isinstance(default, tuple):
            default = list(default)
        action = p.add_argument(option, default=default, **kw)
        out[action.dest] = param
    return out


def function_kwargs(a, table) -> dict:
    """The keyword arguments ``{param: value}`` of the options of :func:`add_function_options`."""
    return {param: getattr(a, dest) for dest, param in table.items()}


__all__ = ["Config", "DeprecatedAlias", "add_config_options", "add_deprecated_alias",
           "add_function_options", "command_words", "config_values", "function_defaults",
           "function_kwargs", "given_options"]
