"""Options that may also be set in the environment, one variable prefix per command.

The rule: option ``--NAME`` of command ``WORDS`` (``serve``, ``adapter openai``, ``explain-dataset``) is
also ``MULTISHAP_<WORDS>_<NAME>``, upper case, with spaces and dashes as underscores: ``--port`` of
``serve`` is MULTISHAP_SERVE_PORT, ``--model`` of ``adapter openai`` is MULTISHAP_ADAPTER_OPENAI_MODEL.
A variable goes through the option's own type and choices; a bad one stops that command with one line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Mapping, Optional, Sequence

PREFIX = "MULTISHAP"
RULE = ("Every option --NAME of a command is also the environment variable MULTISHAP_<COMMAND>_<NAME> (upper "
        "case, spaces and dashes as underscores), e.g. MULTISHAP_SERVE_PORT, MULTISHAP_EXPLAIN_BUDGET, "
        "MULTISHAP_ADAPTER_OPENAI_MODEL; the command line wins, and the repeatable --param has none. The "
        "explainer's configuration variables, MULTISHAP_TARGETS and MULTISHAP_<LIMIT>, override its --config file.")


def variable(command: str, option: str) -> str:
    """The environment variable of ``--option`` of ``command`` (words separated by spaces)."""
    words = [PREFIX, *command.split(), option]
    return "_".join(words).upper().replace("-", "_")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser for one command whose options may take their values from the environment.

    A variable that does not parse is kept and reported when this command runs (as argparse reports a bad
    option: one line, exit code 2), so a bad variable of one command never stops another.
    """

    def __init__(self, *args: Any, command: str = "", environ: Optional[Mapping[str, str]] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command = command
        self.environ = os.environ if environ is None else environ
        self.env_errors: list[str] = []
        self.variables: dict[str, str] = {}

    def parse_known_args(self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None):
        if self.env_errors:
            self.error(self.env_errors[0])
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        """Bad usage is one line, as every other error of the command (and exit code 2)."""
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")

    def command_parser(self, sub: "argparse._SubParsersAction", name: str, **kwargs: Any) -> "Parser":
        """A sub-command ``name`` of this parser, itself a Parser, whose variables are prefixed with both names."""
        command = f"{self.command} {name}".strip()
        kwargs.setdefault("epilog", RULE)
        return sub.add_parser(name, command=command, environ=self.environ, **kwargs)

    def option(self, name: str, help: str, default: Any = None, *, type: Callable[[str], Any] = str,
               choices: Optional[Sequence[str]] = None, required: bool = False, metavar: Optional[str] = None) -> None:
        """``--name``, also set by its variable; its help names the variable and the default. ``type`` checks
        the value from either place; ``choices`` are listed in the help and enforced by ``type`` too."""
        env = variable(self.command, name)
        self.variables[name] = env
        if env in self.environ:
            default, required = self._from_env(env, self.environ[env], type), False
        shown = f"env {env}" + ("" if default is None else f"; default: {_show(default)}")
        self.add_argument(f"--{name}", type=type, default=default, required=required, choices=choices,
                          metavar=metavar, help=f"{help} ({shown})".replace("%", "%%"))

    def flag(self, name: str, help: str, default: bool = False) -> None:
        """``--name`` / ``--no-name``, also set by its variable (yes/no, true/false, on/off, 1/0)."""
        from .types import boolean

        env = variable(self.command, name)
        self.variables[name] = env
        if env in self.environ:
            default = bool(self._from_env(env, self.environ[env], boolean))
        self.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=default,
                          help=f"{help} (env {env}; default: {'yes' if default else 'no'})")

    def _from_env(self, env: str, text: str, type: Callable[[str], Any]) -> Any:
        try:
            return type(text)
        except (argparse.ArgumentTypeError, ValueError) as err:
            self.env_errors.append(f"{env}: {err}")
            return None


def _show(value: Any) -> str:
    """A default as the help shows it: a grid as 7x7, an empty string as ""."""
    if value == "":
        return '""'
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)
