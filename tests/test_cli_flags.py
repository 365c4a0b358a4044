"""The CLI's flags are an allow-list: every subcommand's positionals and options, read from the
argparse parser, must equal the table below. A flag added (or dropped) without updating this table,
and the docs and tests it needs, fails here."""

from __future__ import annotations

import argparse
from pathlib import Path

from tip_ray import commands
from tip_ray.cli import COMMANDS, build_parser

EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # subcommand path: (positionals, options)
    "": ((), ("--debug",)),
    "run": (("pipeline",), ("--address", "--resume", "--run-dir", "--set")),
    "validate": (("pipeline",), ("--schema-only", "--set", "--strict")),
    "demo": ((), ("--pipeline", "--run-dir", "--set", "--task")),
    "eval": ((), ("--backend", "--batch-size", "--benchmark", "--chat-template", "--grade-timeout",
                  "--hf-dataset", "--limit", "--max-new-tokens", "--model", "--out", "--path", "--samples",
                  "--seed", "--temperature", "-n")),
    "sweep": (("sweep",), ("--address", "--fresh", "--no-shared-teacher", "--no-token-map", "--report-only")),
    "submit": (("pipeline",), ("--address", "--exclude", "--follow", "--job-id", "--run-dir", "--set",
                               "--token-file", "--working-dir")),
    "status": (("job_id",), ("--address", "--token-file", "--wait")),
    "logs": (("job_id",), ("--address", "--follow", "--token-file")),
    "stop": (("job_id",), ("--address", "--no-wait", "--timeout", "--token-file")),
    "report": (("folder",), ("--output", "-o")),
    "models": ((), ()),
    "models convert": (("gguf",), ("--file", "--out", "--package")),
    "models prune": (("base",), ("--heal-prompt-field", "--heal-prompts", "--heal-samples", "--heal-steps",
                                 "--keep-every", "--keep-layers", "--out")),
    "teacher": ((), ()),
    "teacher serve": (("pipeline",), ("--address", "--max-restarts", "--name", "--replicas", "--set")),
    "teacher status": (("name",), ("--address",)),
    "teacher stop": (("name",), ("--address",)),
    "example": ((), ("--backend", "--heldout", "--heldout-field", "--heldout-prompts", "--pipeline", "--run-dir", "--set")),
}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def flag_table(parser: argparse.ArgumentParser, path: str = "") -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """{subcommand path: (positional names, sorted option strings)} for the parser and every subparser."""
    own = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    table = {path: (tuple(a.dest for a in own if not a.option_strings),
                    tuple(sorted(s for a in own for s in a.option_strings)))}
    for name, sub in subparsers(parser).items():
        table.update(flag_table(sub, f"{path} {name}".strip()))
    return table


def test_every_flag_is_in_the_allow_list():
    actual = flag_table(build_parser())
    assert set(actual) == set(EXPECTED), f"subcommands added {set(actual) - set(EXPECTED)}, gone {set(EXPECTED) - set(actual)}"
    for path, (positionals, options) in EXPECTED.items():
        assert actual[path][0] == positionals, f"`tip-ray {path}` positionals"
        added, gone = set(actual[path][1]) - set(options), set(options) - set(actual[path][1])
        assert not added and not gone, f"`tip-ray {path}`: flags added {sorted(added)}, gone {sorted(gone)}"


def test_every_command_module_registers_and_every_argument_is_explained():
    parser = build_parser()
    top = subparsers(parser)
    # The parser skips a command whose module is missing; in this tree every one must be there,
    # and every command module must be listed (else its flags would escape the table above).
    modules = {p.stem for p in Path(commands.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert set(COMMANDS) == modules
    assert set(COMMANDS) - {"jobs"} | {"submit", "status", "logs", "stop"} == set(top)
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
            elif not isinstance(action, argparse._HelpAction) and action.dest != "job_id":  # self-explaining
                assert action.help, f"{current.prog}: {action.option_strings or action.dest} has no help text"
