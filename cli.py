"""The ``memarl`` command: train, eval, report, render, list, suites, bench.

Every option's help text is the docstring written under the matching config field. Bad input
prints one line ``memarl: error: ...`` and exits with code 2; nothing existing is overwritten.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path

from memarl.configs import field_docs, field_specs, option_label, parse_key_values, parse_value
from memarl.errors import MemarlError, TrainingInterrupted


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) and an optional epilog built on demand."""

    def __init__(self, *args, epilog_fn=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self.epilog_fn is not None:
            self.epilog = self.epilog_fn()
        return super().format_help()

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _options_epilog() -> str:
    """The env and agent config fields, for ``memarl train --help``."""
    import textwrap as tw

    from memarl.agents import agent_config_class, agent_presets
    from memarl.registry import AGENTS, ENVS

    def describe(title: str, config_class: type) -> list[str]:
        lines = [title]
        for field in dataclasses.fields(config_class):
            doc = field_docs(config_class).get(field.name, "")
            default = field.default if field.default is not dataclasses.MISSING else "..."
            spec = field_specs(config_class)[field.name]
            if spec.range is not None:
                doc += f" ({spec.range.describe(spec.kind is int)})"
            elif spec.choices is not None:
                doc += f" (one of {', '.join(map(str, spec.choices))})"
            lines += tw.wrap(f"{field.name} = {default}: {doc}", width=96,
                             initial_indent="  ", subsequent_indent="      ")
        return lines

    lines = []
    for entry in ENVS:
        config_class = getattr(entry.load(), "config_class", None)
        if config_class is not None:
            lines += describe(f"--env-opt KEY=VALUE for {entry.name}:", config_class) + [""]
    seen: dict[type, list[str]] = {}
    for entry in AGENTS:
        seen.setdefault(agent_config_class(entry.name), []).append(entry.name)
    for config_class, names in seen.items():
        presets = ", ".join(agent_presets(names[0]))
        lines += describe(f"--agent-opt KEY=VALUE for {', '.join(names)}:", config_class)
        lines += tw.wrap(f"preset = (the env's): field values of a preset, then the other "
                         f"options on top; one of {presets}", width=96,
                         initial_indent="  ", subsequent_indent="      ") + [""]
    return "\n".join(lines)


def _typed(kind, name):
    def convert(text: str):
        try:
            return parse_value(text, kind, name)
        except MemarlError as error:  # argparse names the option itself
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name}: ")) from None
    convert.__name__ = getattr(kind, "__name__", str(kind))
    return convert


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: tuple = (),
                           title: str | None = None, positional: tuple = ()) -> list[str]:
    """One ``--kebab-name`` option per field of the config ``cls`` (``positional`` fields are
    arguments), default None so explicit values can be told apart. A bool field that defaults to
    False is a flag; others take a value."""
    group = parser.add_argument_group(title) if title else parser
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    names = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        spec = field_specs(cls)[field.name]
        allowed = "" if spec.range is None else spec.range.describe(spec.kind is int)
        notes = [f"default: {default}"] if default not in (None, "") else []
        notes += [allowed] if allowed else []
        help_text = docs.get(field.name, "") + (f" ({'; '.join(notes)})" if notes else "")
        if field.name in positional:
            group.add_argument(field.name, nargs="?" if default is None else None,
                               type=_typed(hints[field.name], field.name), help=docs.get(field.name))
        elif hints[field.name] is bool and default is False:
            group.add_argument(option_label(field.name), dest=field.name, action="store_true",
                               default=None, help=docs.get(field.name, ""))
        else:
            group.add_argument(option_label(field.name), dest=field.name, default=None,
                               metavar=field.name.upper(), type=_typed(hints[field.name], field.name),
                               help=help_text)
        names.append(field.name)
    return names


def _given(args: argparse.Namespace, cls: type, skip: tuple = ()) -> dict:
    """The fields of ``cls`` the user gave on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


TRAIN_SKIP = ("env_options", "agent_options", "ppo")
"""TrainConfig fields that are not options of their own (--env-opt, --agent-opt, PPO options)"""
REPORT_SKIP = ("entries", "notes")
"""ReportConfig fields given as the positional entries and the repeatable --note"""
POSITIONAL = {"eval": ("run",), "render": ("run",), "bench env": ("env",)}
"""config fields that are positional arguments, per command"""


def command_configs() -> dict[str, list[tuple[type, tuple[str, ...]]]]:
    """Each command's config classes and the fields that are not options, e.g. ``"bench env"``.

    The parser is built from these, so the fuzz harness (tests/fuzz.py) finds every option here.
    """
    from memarl.eval.bench import BenchEnvConfig
    from memarl.eval.bench_train import BenchTrainConfig
    from memarl.eval.evaluate import EvalConfig
    from memarl.eval.render import RenderConfig
    from memarl.eval.report import ReportConfig
    from memarl.train.ppo import PPOConfig
    from memarl.train.trainer import TrainConfig
    return {"train": [(TrainConfig, TRAIN_SKIP), (PPOConfig, ())], "eval": [(EvalConfig, ())],
            "render": [(RenderConfig, ())], "bench env": [(BenchEnvConfig, ())],
            "bench train": [(BenchTrainConfig, ())],
            "report": [(ReportConfig, REPORT_SKIP)]}


def build_parser() -> argparse.ArgumentParser:
    configs = command_configs()
    (train_config, _), (ppo_config, _) = configs["train"]

    parser = _Parser(prog="memarl", description="Multi-agent RL with memory: train, evaluate "
                     "and render SRMT and its ablations on grid pathfinding tasks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train an agent on an env", epilog_fn=_options_epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Train an agent with PPO. Progress is printed live; "
                                "TensorBoard logs go to RUN_DIR/tb.")
    _add_dataclass_options(train, train_config, skip=TRAIN_SKIP)
    train.add_argument("--env-opt", action="append", metavar="KEY=VALUE",
                       help="an option of the env's own config, e.g. reward=sparse (repeatable)")
    train.add_argument("--agent-opt", action="append", metavar="KEY=VALUE",
                       help="an option of the agent's own config, e.g. attention=causal_mem_first "
                            "(repeatable)")
    train.add_argument("--resume", metavar="RUN", default=None,
                       help="continue the run in RUN from its newest readable checkpoint (a "
                            "run without one restarts at step 0 from its saved config); "
                            "--total-steps must exceed the run's steps; only total-steps, "
                            "device and logging settings may change")
    _add_dataclass_options(train, ppo_config, title="PPO")

    evaluate = commands.add_parser("eval", help="evaluate a run (or a baseline) on a suite",
                                   description="Run a checkpoint or a scripted baseline on every episode "
                                   "(map x agent count x seed) of a suite, any env; write one CSV row per "
                                   "episode, a Markdown and a JSON summary and a PNG plot. Re-running "
                                   "continues an interrupted evaluation.")
    _add_dataclass_options(evaluate, configs["eval"][0][0], positional=POSITIONAL["eval"])

    report = commands.add_parser("report", help="several evaluations of one suite as one table and plot",
                                 description="Put the evaluations of one suite (memarl eval) side by "
                                 "side: OUT.md with every metric per entry, OUT.json, and OUT.png "
                                 "with one line per entry.")
    report.add_argument("entries", nargs="+", metavar="LABEL=PATH",
                        help="an evaluation folder or a run directory (then its eval/SUITE), "
                             "under the label it gets in the table and the plot")
    _add_dataclass_options(report, configs["report"][0][0], skip=REPORT_SKIP)
    report.add_argument("--note", action="append", dest="notes", default=None,
                        help="a line under the title, e.g. how the runs were trained (repeatable)")

    render = commands.add_parser("render", help="write a GIF and an MP4 of one episode")
    _add_dataclass_options(render, configs["render"][0][0], positional=POSITIONAL["render"])

    listing = commands.add_parser("list", help="list envs, agents or suites")
    listing.add_argument("what", choices=["envs", "agents", "suites"])

    suites = commands.add_parser("suites", help="list the map suites or download their map data",
                                 description="POGEMA benchmark suites and Follower's training mazes. "
                                 "Random and Mazes maps are generated; the warehouse, puzzle, city "
                                 "and Follower maps are read from $MEMARL_DATA_DIR (default "
                                 "~/.cache/memarl/pogema-maps), filled by `memarl suites fetch`.")
    suites_what = suites.add_subparsers(dest="what", required=True, parser_class=_Parser)
    suites_what.add_parser("list", help="every suite: episodes, agent counts, whether its data is present")
    fetch = suites_what.add_parser("fetch", help="download the map files (pinned upstream commits, "
                                   "SHA-256 checked); files already present are kept")
    fetch.add_argument("--dir", default=None,
                       help="data directory (default $MEMARL_DATA_DIR, else ~/.cache/memarl/pogema-maps)")

    bench = commands.add_parser("bench", help="measure speed against a reference in the same run")
    bench_what = bench.add_subparsers(dest="what", required=True, parser_class=_Parser)
    bench_env = bench_what.add_parser("env", help="agent-steps/s of our batched env vs pogema 1.4.0")
    _add_dataclass_options(bench_env, configs["bench env"][0][0], positional=POSITIONAL["bench env"])
    bench_train = bench_what.add_parser(
        "train", help="agent-steps/s, score and time profile of the training engines side by side",
        description="Train the same agent on the same env for the same agent-steps with each "
        "engine (sync, async) in this process; print agent-steps/s, their ratios, the score "
        "each reached and where the time went.")
    _add_dataclass_options(bench_train, configs["bench train"][0][0])
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> None:
    from memarl.train.ppo import PPOConfig
    from memarl.train.trainer import TrainConfig, load_resume_config, train

    given = _given(args, TrainConfig, skip=TRAIN_SKIP)
    ppo_given = _given(args, PPOConfig)
    env_options = parse_key_values(args.env_opt, "--env-opt")
    agent_options = parse_key_values(args.agent_opt, "--agent-opt")
    if args.resume:
        if "run_dir" in given and Path(given.pop("run_dir")) != Path(args.resume):
            raise MemarlError("give either --resume RUN or --run-dir, not two different folders")
        overrides = dict(given)
        if ppo_given:
            overrides["ppo"] = ppo_given
        if env_options:
            overrides["env_options"] = env_options
        if agent_options:
            overrides["agent_options"] = agent_options
        cfg = load_resume_config(Path(args.resume), overrides)
        train(cfg, resume=True, command_line=["memarl", *argv])
        return
    cfg = TrainConfig(**given, env_options=env_options, agent_options=agent_options,
                      ppo=PPOConfig(**ppo_given))
    run_dir = train(cfg, command_line=["memarl", *argv])
    if os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 speaks for the run
        print(f"run directory: {run_dir}")


def _list(what: str) -> None:
    from memarl.registry import AGENTS, ENVS
    if what == "envs":
        for entry in ENVS:
            print(f"{entry.name:24s} {entry.description}")
    elif what == "suites":
        _list_suites()
    else:
        _list_agents()


PRESET_SHAPES = {"bottleneck": ((3, 5, 5), 5), "lmapf": ((3, 11, 11), 5), "tmaze": ((4,), 4)}
"""the observation shape and action count each agent preset is sized for in `memarl list agents`"""


def _list_agents() -> None:
    import torch

    from memarl.agents import agent_presets, make_agent
    from memarl.registry import AGENTS
    presets = list(PRESET_SHAPES)
    print("parameters per preset, total (effective = without position tables); observation "
          "shapes: " + ", ".join(f"{p} {'x'.join(map(str, s))}" for p, (s, _) in
                                   PRESET_SHAPES.items()))
    print(f"{'agent':10s} " + " ".join(f"{p:>21s}" for p in presets) + "  description")
    for entry in AGENTS:
        cells = []
        for preset in presets:
            if preset not in agent_presets(entry.name):
                cells.append(f"{'-':>21s}")
                continue
            obs_shape, actions = PRESET_SHAPES[preset]
            with torch.device("meta"):  # counts only: no memory, no initialisation cost
                counts = make_agent(entry.name, obs_shape, actions, preset=preset
                                    ).parameter_counts()
            cells.append(f"{counts['total']:>10,} ({counts['effective']:>8,})")
        print(f"{entry.name:10s} " + " ".join(cells) + f"  {entry.description}")


def _suites(args: argparse.Namespace) -> None:
    from memarl.envs import maps as M
    if args.what == "fetch":
        root = M.fetch_data(args.dir)
        print(f"map data in {root}" + ("" if args.dir is None else f" (set {M.DATA_DIR_ENV}={root} to use it)"))
        return
    _list_suites()


def _list_suites() -> None:
    """Each suite with its episode count, agent counts, and whether its map data is present."""
    from memarl.envs import maps as M
    from memarl.registry import SUITES
    print(f"{'suite':24s} {'episodes':>8s}  {'agents':24s} data (in {M.data_dir()})")
    for entry in SUITES:
        suite = entry.make()
        files = suite.data_files()
        data = "generated" if not files else "present" if suite.data_present() else \
            "missing: " + ", ".join(M.DATA_FILES[k].path for k in files if not M.data_present(k)) \
            + " (memarl suites fetch)"
        agents = ",".join(map(str, suite.num_agents))
        print(f"{entry.name:24s} {len(suite.episodes()):>8d}  {agents:24s} {data}")
        print(f"{'':24s} {suite.description}")


def _bench(args: argparse.Namespace) -> None:
    import json

    if args.what == "train":
        from memarl.eval.bench_train import (BenchTrainConfig, bench_train, format_bench_train,
                                             write_outputs)
        cfg = BenchTrainConfig(**_given(args, BenchTrainConfig))
        files = cfg.validate()
        result = bench_train(cfg)
        print(format_bench_train(result))
        write_outputs(result, files)
        return

    from memarl.eval.bench import BenchEnvConfig, bench_env, format_bench
    cfg = BenchEnvConfig(**_given(args, BenchEnvConfig))
    outputs = cfg.validate()
    options = {} if cfg.configs is None else {"configs": list(cfg.configs)}
    result = bench_env(cfg.env, num_envs=cfg.num_envs, seconds=cfg.seconds, **options)
    table = format_bench(result)
    print(table)
    contents = {"json": json.dumps(result, indent=2) + "\n", "markdown": table + "\n"}
    for path, kind in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(contents[kind])
        print(f"wrote {path}")


def _eval(args: argparse.Namespace) -> None:
    from memarl.eval.evaluate import EvalConfig, evaluate
    out = evaluate(EvalConfig(**_given(args, EvalConfig)))
    print(f"wrote {out}")


def _report(args: argparse.Namespace) -> None:
    from memarl.eval.report import ReportConfig, write_report
    cfg = ReportConfig(**_given(args, ReportConfig, skip=REPORT_SKIP), entries=tuple(args.entries),
                       notes=tuple(args.notes or ()))
    for path in write_report(cfg):
        print(f"wrote {path}")


def _render(args: argparse.Namespace) -> None:
    from memarl.eval.render import RenderConfig, render_run
    cfg = RenderConfig(**_given(args, RenderConfig))
    cfg.validate()
    written = render_run(cfg.run, cfg.out, corridor_length=cfg.corridor_length,
                         map_name=cfg.map_name, num_agents=cfg.num_agents, seed=cfg.seed,
                         max_steps=cfg.max_steps, which=cfg.checkpoint,
                         deterministic=cfg.deterministic, fps=cfg.fps, cell=cfg.cell,
                         force=cfg.force, paths=cfg.paths, egocentric=cfg.egocentric)
    for path in written:
        print(f"wrote {path}")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already printed in one line
        return int(exit_request.code or 0)
    from memarl.train.async_engine import ActorFailed
    from memarl.train.checkpoint import CheckpointWriteFailed
    from memarl.train.learner import TrainingDiverged
    try:
        if args.command == "train":
            _train(args, argv)
        elif args.command == "list":
            _list(args.what)
        elif args.command == "suites":
            _suites(args)
        elif args.command == "bench":
            _bench(args)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "render":
            _render(args)
        elif args.command == "report":
            _report(args)
    # not the input (the disk, a diverged run, a failing actor); the message says what is lost
    # and how to go on
    except (CheckpointWriteFailed, TrainingDiverged, ActorFailed) as error:
        print(f"memarl {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except MemarlError as error:
        print(f"memarl {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine, not the input: a full disk, a vanished folder
        print(f"memarl {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except TrainingInterrupted as interrupted:
        print(f"memarl {args.command}: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"memarl {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
