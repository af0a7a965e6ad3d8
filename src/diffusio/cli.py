"""The ``diffusio`` command line: ``diffusio list | demo | oracle-demo | train | sample | eval |
nll | reproduce``.

Each subcommand is a :class:`Command`: a name, a one-line help, a function adding its arguments
to its subparser, and a function running it from the parsed arguments and returning an exit
code. Adding a subcommand is one ``Command(...)`` entry in :data:`COMMANDS`; heavy imports
(torch, matplotlib) happen inside the run functions so ``diffusio list`` stays fast.

User errors (``ValueError``, ``FileNotFoundError``) raised by a command are reported as a single
line ``diffusio: error: <message>`` on stderr with exit code 2, like argparse's own usage errors,
never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from diffusio import __version__

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

PROG = "diffusio"
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure(subparser)`` adds its arguments, ``run(args)`` returns a code."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


# ------------------------------------------------------------------------------------- list
def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show what exists for each entry"
    )
    parser.add_argument(
        "--status",
        choices=("missing", "partial", "reproduced"),
        help="show only entries with this status",
    )


def _run_list(args: argparse.Namespace) -> int:
    from diffusio.timeline import TIMELINE, format_table

    entries = [e for e in TIMELINE if args.status is None or e.status == args.status]
    print(format_table(entries, notes=args.verbose))
    return 0


# ------------------------------------------------------------------------------------- demo
def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="runs/demo", metavar="DIR", help="run directory (default: runs/demo)"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--steps", type=int, metavar="N", help="training steps (default: preset)")
    parser.add_argument(
        "--sampler", default="dpm-solver++", help="sampler for the images (default dpm-solver++)"
    )
    parser.add_argument(
        "--sampler-steps", type=int, default=20, metavar="K", help="sampler steps (default 20)"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )


def _run_demo(args: argparse.Namespace) -> int:
    from diffusio.image import demo

    demo.run(
        args.out,
        seed=args.seed,
        steps=args.steps,
        sampler=args.sampler,
        sampler_steps=args.sampler_steps,
        progress=args.progress,
    )
    return 0


def _configure_oracle_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="runs/oracle-demo", metavar="DIR",
        help="output folder (default: runs/oracle-demo)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )
    parser.add_argument(
        "-n",
        "--num-samples",
        type=int,
        default=4000,
        metavar="N",
        help="samples per sampler (default 4000)",
    )
    parser.add_argument(
        "--samplers",
        metavar="NAME:STEPS,...",
        help="samplers and step counts, e.g. ddim:50,dpm-solver++:10 "
        "(default: ddpm:1000,ddim:50,euler-maruyama:500,ode-heun:50,dpm-solver++:10)",
    )


def _run_oracle_demo(args: argparse.Namespace) -> int:
    from diffusio import demo

    samplers = demo.parse_samplers(args.samplers) if args.samplers is not None else None
    demo.run(
        args.out, seed=args.seed, progress=args.progress, n=args.num_samples, samplers=samplers
    )
    return 0


# ------------------------------------------------------------------------- train / sample
def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="a preset name or a YAML/JSON config file")
    parser.add_argument("--list-presets", action="store_true", help="list the built-in presets")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<config>)")
    parser.add_argument("--steps", type=int, metavar="N", help="override the number of steps")
    parser.add_argument("--seed", type=int, metavar="S", help="override the seed")
    parser.add_argument("--save-every", type=int, metavar="N", help="checkpoint interval")
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _run_train(args: argparse.Namespace) -> int:
    from diffusio import commands

    if args.list_presets:
        from diffusio.train.config import PRESETS

        for name, preset in PRESETS.items():
            print(f"{name:20s} data={preset['data']}, steps={preset['steps']}")
        return 0
    if args.config is None:
        raise ValueError("a config (preset name or file) is required; see --list-presets")
    commands.train(
        args.config,
        out=args.out,
        resume=args.resume,
        progress=args.progress,
        steps=args.steps,
        seed=args.seed,
        save_every=args.save_every,
    )
    return 0


def _configure_sample(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by train")
    parser.add_argument("--n", type=int, default=1000, help="number of samples (default 1000)")
    parser.add_argument("--sampler", default="dpm-solver++", help="sampler name")
    parser.add_argument("--steps", type=int, metavar="K", help="sampler steps")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--out", metavar="FILE", help=".npz (array 'samples') or .png")
    parser.add_argument("--label", type=int, metavar="K", help="class (class-conditional runs)")
    parser.add_argument(
        "--guidance", type=float, default=0.0, metavar="W",
        help="classifier-free guidance weight w (class-conditional runs; default 0)",
    )  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _run_sample(args: argparse.Namespace) -> int:
    from diffusio import commands

    commands.sample_run(
        args.run_dir,
        n=args.n,
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        out=args.out,
        progress=args.progress,
        label=args.label,
        guidance=args.guidance,
    )
    return 0


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="an image run directory")
    parser.add_argument("--n", type=int, default=1000, help="samples to score (default 1000)")
    parser.add_argument("--sampler", default="ddim", help="sampler name (default ddim)")
    parser.add_argument("--steps", type=int, default=50, metavar="K", help="steps (default 50)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument(
        "--bpd-n", type=int, default=200, metavar="M",
        help="held-out images for bits/dim from the bound (default 200; 0 skips)",
    )  # fmt: skip
    parser.add_argument(
        "--ode-n", type=int, default=0, metavar="M",
        help="held-out images for bits/dim from the ODE (default 0: skip; slow)",
    )  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _run_eval(args: argparse.Namespace) -> int:
    from diffusio import commands

    commands.eval_run(
        args.run_dir,
        n=args.n,
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        bpd_n=args.bpd_n,
        ode_n=args.ode_n,
        progress=args.progress,
    )
    return 0


def _configure_nll(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by train")
    parser.add_argument("--data", required=True, metavar="NAME|FILE", help="toy name or file")
    parser.add_argument("--n", type=int, default=1000, help="rows to evaluate (default 1000)")
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument("--hutchinson", action="store_true", help="estimate the divergence")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _run_nll(args: argparse.Namespace) -> int:
    from diffusio import commands

    commands.nll_run(
        args.run_dir,
        args.data,
        n=args.n,
        seed=args.seed,
        exact=False if args.hutchinson else None,
        progress=args.progress,
    )
    return 0


def _configure_reproduce(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="a reproduction name from `diffusio list`")
    parser.add_argument("--quick", action="store_true", help="the few-minute version")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/NAME)")


def _run_reproduce(args: argparse.Namespace) -> int:
    from diffusio import commands

    commands.reproduce(args.name, quick=args.quick, out=args.out)
    return 0


# --------------------------------------------------------------------------------- registry
COMMANDS: tuple[Command, ...] = (
    Command(
        "list",
        "show every seed paper with its module, reproduction and status",
        _configure_list,
        _run_list,
    ),
    Command(
        "demo",
        "train DDPM on handwritten digits in minutes, sample and score it",
        _configure_demo,
        _run_demo,
        description="Train the digits-ddpm preset (a small U-Net) on scikit-learn's digits, "
        "sample it with DPM-Solver++ and write samples.png, loss.png and demo.json (digits-FID "
        "next to its noise floor). A second call reuses or resumes the run.",
    ),
    Command(
        "oracle-demo",
        "sample an exact 2-D Gaussian-mixture oracle with several samplers",
        _configure_oracle_demo,
        _run_oracle_demo,
        description="Sample the exact 8-Gaussian oracle with several samplers and write "
        "samplers.png and metrics.json: each sampler's mode discrepancy (about 1 for exact "
        "samples) next to the noise floor of fresh exact samples.",
    ),
    Command("train", "train a model from a preset or config file", _configure_train, _run_train),
    Command("sample", "sample a trained run to .npz or .png", _configure_sample, _run_sample),
    Command("eval", "score an image run: FID, class histogram, bits/dim", _configure_eval,
            _run_eval),  # fmt: skip
    Command("nll", "negative log-likelihood of data under a trained run", _configure_nll, _run_nll),
    Command("reproduce", "run a paper's reproduction", _configure_reproduce, _run_reproduce),
)


def build_parser(commands: Sequence[Command] | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command (default :data:`COMMANDS`)."""
    commands = COMMANDS if commands is None else commands
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The diffusion-model timeline as one PyTorch library.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
        )
        command.configure(p)
        p.set_defaults(_run=command.run)
    return parser


def _error(message: object) -> int:
    text = " ".join(str(message).split()) or "unknown error"
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse usage errors give 2)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if getattr(args, "_run", None) is None:
        parser.print_usage(sys.stderr)
        return _error("a command is required (" + ", ".join(c.name for c in COMMANDS) + ")")
    try:
        return int(args._run(args) or 0)
    except FileNotFoundError as err:
        # str(err) of an OSError is "[Errno 2] No such file or directory: 'x'"; keep it readable
        if err.filename is not None and err.strerror:
            return _error(f"{err.strerror}: {err.filename}")
        return _error(err)
    except USER_ERRORS as err:
        return _error(err)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `diffusio list | head`: stop quietly, as other tools do
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (e.g. captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
