"""The jrnn command line ("jrnn ..." or "python -m jrnn ...").

Subcommands ("jrnn <command> --help" for their options):

  convert MODEL -o OUT   a Keras .keras/.h5 model as a jrnn checkpoint directory
  check MODEL            jrnn vs Keras on the same inputs, per layer (needs Keras)
  inspect MODEL          recurrent layers' summary; --plots DIR writes see-rnn figures
  bench                  time jrnn against the installed peers on this machine
  demo                   the whole job on a bundled example model

Common options: --quiet, --json (one JSON object on stdout), --debug (tracebacks).
Errors print one line, "jrnn: error: <file>: <layer>: <what>; <what to do>", and exit
with status 2; check exits with 1 when an error exceeds its tolerance, bench with 1 when
no implementation ran, and a closed stdout ends a command with 141. Only check (to run
the Keras model) and bench (in its worker processes) import Keras or TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from jrnn.cli import bench, check, convert, demo, inspect_model
from jrnn.cli._common import UI, CLIError, error_line, one_line, stderr

__all__ = ["main"]

COMMANDS = (convert, check, inspect_model, bench, demo)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too: ``jrnn: error: <what>; see jrnn <command> --help``."""

    _argv: tuple[str, ...] = ()

    def parse_args(self, args=None, namespace=None):
        self._argv = tuple(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str):
        if "required: COMMAND" in message:  # argparse names the missing command first
            known = {s for action in self._actions for s in action.option_strings}
            unknown = [a for a in self._argv if a.startswith("-") and a.split("=")[0] not in known]
            commands = ", ".join(c.__name__.rsplit(".", 1)[-1] for c in COMMANDS)
            commands = commands.replace("inspect_model", "inspect")
            if unknown:
                message = f"unrecognized option {unknown[0]} (before any command)"
            else:
                message = f"expected a command: one of {commands}"
        stderr(f"{error_line(message)}; see `{self.prog} --help`")
        self.exit(2)


def _parser() -> argparse.ArgumentParser:
    def common_options(default):
        common = argparse.ArgumentParser(add_help=False)
        group = common.add_argument_group("common options")
        group.add_argument(
            "-q", "--quiet", action="store_true", default=default, help="print nothing but errors"
        )
        group.add_argument(
            "--json", action="store_true", default=default, help="print one JSON object on stdout"
        )
        group.add_argument(
            "--debug", action="store_true", default=default, help="show full tracebacks"
        )
        return common

    parser = _Parser(
        prog="jrnn",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options(False)],
    )
    parser.add_argument(
        "--version", action="version", version=f"jrnn {_version()}", help="print jrnn's version"
    )
    # Given after the subcommand, the common options must not reset those given before it.
    sub_common = common_options(argparse.SUPPRESS)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for command in COMMANDS:
        command.add_parser(sub, sub_common)
    return parser


def _version() -> str:
    import jrnn

    return jrnn.__version__


def _out_of_memory(err: BaseException, text: str) -> bool:
    return isinstance(err, MemoryError) or any(
        key in text for key in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM")
    )


def _bad_input(err: BaseException, text: str) -> bool:
    """An error the inputs cause (an id past a vocabulary, a shape the model refuses), as
    the backends word it (IndexError, TensorFlow's InvalidArgumentError)."""
    return isinstance(err, IndexError) or type(err).__name__ == "InvalidArgumentError"


def _message(err: BaseException, args: argparse.Namespace) -> str:
    """The one-line ``<file>: <layer>: <what>; <what to do>`` text of an error."""
    from importers.errors import KerasFileError

    model = getattr(args, "model", None)
    text = one_line(err)
    if isinstance(err, CLIError):
        return text
    prefix = f"{model}: " if model else ""
    if _out_of_memory(err, text):
        sizes = "--batch/--time" if hasattr(args, "batch") else "the model's size"
        return f"{prefix}out of memory ({type(err).__name__}: {text[:200]}); reduce {sizes}"
    if _bad_input(err, text) and getattr(args, "inputs", None):
        return (
            f"--inputs {args.inputs}: the model refuses these inputs ({type(err).__name__}: "
            f"{text[:300]}); check their values (token ids below the vocabulary size) and "
            "shapes"
        )
    if "pass custom_layers=" in text:  # the Python API's advice; the CLI has no such option
        text = text.split("; pass custom_layers=")[0] + (
            "; the CLI converts built-in layers only: load it in Python with "
            "importers.load(path, custom_layers={...})"
        )
    if isinstance(err, KerasFileError):
        path = err.path or model
        return text if not path or text.startswith(str(path)) else f"{path}: {text}"
    if isinstance(err, FileNotFoundError):
        return f"{err.filename or model}: no such file or directory; check the path"
    if isinstance(err, IsADirectoryError):
        return f"{err.filename or model}: is a directory; pass a .keras or .h5 file"
    if isinstance(err, PermissionError):
        return f"{err.filename or model}: permission denied; check the file's permissions"
    if isinstance(err, OSError):
        what = err.strerror or text
        return f"{err.filename or model}: {what}; check the file"
    if isinstance(err, ValueError):
        return f"{prefix if not text.startswith(str(model)) else ''}{text}"
    return (
        f"{prefix}internal error ({type(err).__name__}: {text}); rerun with --debug for the "
        "traceback and report it"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jrnn`` console script; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while parsing, or before a command's output began
        stderr("jrnn: interrupted")
        return 130


def _main(argv: list[str] | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = _parser().parse_args(argv)
    ui = UI(quiet=args.quiet, json=args.json, debug=args.debug)
    try:
        return args.func(args, ui)
    except BrokenPipeError:  # the reader of stdout went away (`jrnn inspect ... | head`)
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command the pipe ended
    except Exception as err:
        if args.debug:
            traceback.print_exc()
            return 2
        message = error_line(_message(err, args))
        stderr(message)
        message = message.removeprefix("jrnn: error: ")
        try:
            ui.emit({"command": args.command, "error": message})
        except BrokenPipeError:
            _silence_stdout()
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's exit flush raises no second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
