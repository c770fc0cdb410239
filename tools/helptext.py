"""`--help` without type noise: flags show no `<bool>`, values show what they are.

Typer prints each option's Python type (`<bool>`, `<int>`, `<path>`) beside it.
After every command is registered, `polish` walks the command tree once and
gives each parameter a metavar a person reads: nothing for a flag, `HEIGHT`
for a height, `DIR` for the data directory, `FILE` for an output, else the
parameter's own name in capitals (`MARKET`, `ACCOUNT`, `BRANCH`).
"""

from __future__ import annotations

from typing import Any

_FILES = ("out", "output", "output_path", "pdf", "markets", "source")


def metavar_for(param: Any) -> str:
    """The metavar shown for one parameter (see module docstring)."""
    name = str(param.name or "")
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if name.endswith("height") or name in ("from_h", "to_h", "height"):
        return "HEIGHT"
    if name == "data":
        return "DIR"
    if name in _FILES:
        return "FILE"
    return name.rstrip("_").upper().replace("_OUT", "")


def polish(command: Any) -> Any:
    """Set readable metavars on every parameter of a click command tree; return it."""
    for param in getattr(command, "params", []):
        if param.metavar is None:
            param.metavar = metavar_for(param)
        if param.param_type_name == "argument":
            # an argument's name already says what it is; typer would add `<str>`
            param.display_type_rich = _no_type
    make_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        opt = make_help(ctx)
        if opt is not None:
            opt.metavar = ""
        return opt

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        polish(sub)
    return command


def _no_type(ctx: Any) -> str:
    return ""
