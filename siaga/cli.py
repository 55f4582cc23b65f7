"""`siaga`: one command line for the gateway, provisioning, the simulators and the demo.
Each package hands it its own subcommands (`add_commands`); this module composes them
and translates errors once: one line on stderr and exit code 2 (1 for a failed check).
"""

import argparse
import os
import sys

from gateway import cli as gateway_cli
from gateway import cli_auth
from gateway.errors import SiagaError
from provisioning import cli as provisioning_cli
from simulators import cli as simulators_cli
from simulators.panel import VirtualPanel


def build_parser():
    """(parser, its commands, the `unit` command's actions)."""
    p = argparse.ArgumentParser(prog="siaga", description="Siaga: field-unit tracker for 112 centres.")
    sub = p.add_subparsers(dest="command", required=True)
    gateway_cli.add_commands(sub)
    u = sub.add_parser("unit", help="one unit: print it (siaga unit UNIT_ID), or its broker credentials")
    usub = u.add_subparsers(dest="unit_command", required=True, metavar="ACTION")
    gateway_cli.add_unit_commands(usub)
    provisioning_cli.add_unit_commands(usub, virtual_panel=VirtualPanel)
    provisioning_cli.add_commands(sub, virtual_panel=VirtualPanel)
    provisioning_cli.add_ca_commands(sub)
    provisioning_cli.add_map_commands(sub)
    provisioning_cli.add_db_commands(sub)
    simulators_cli.add_commands(sub)
    cli_auth.add_commands(sub)
    return p, sub, usub


def _unit_shorthand(argv, commands, actions):
    """`siaga unit UNIT_ID` is `siaga unit show UNIT_ID`."""
    i = next((i for i, a in enumerate(argv) if a in commands), None)
    if i is None or argv[i] != "unit" or i + 1 >= len(argv):
        return argv
    if argv[i + 1] in actions or argv[i + 1].startswith("-"):
        return argv
    return [*argv[: i + 1], "show", *argv[i + 1 :]]


def main(argv=None):
    parser, sub, usub = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(_unit_shorthand(argv, sub.choices, usub.choices))
    if getattr(args, "token", None):
        os.environ["SIAGA_TOKEN"] = args.token  # for the API client, here and in what this starts
    try:
        return args.func(args) or 0
    except SiagaError as e:
        print(f"siaga: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `siaga units | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
