"""The ``memarl`` command: train, eval, render, list, suites, bench.

Every option's help text is the docstring written under the matching config field. Bad input
prints one line ``memarl: error: ...`` and exits with code 2; nothing existing is overwritten.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from memarl.configs import field_docs, parse_key_values, parse_value
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

    from memarl.agents import agent_config_class
    from memarl.registry import AGENTS, ENVS

    def describe(title: str, config_class: type) -> list[str]:
        lines = [title]
        for field in dataclasses.fields(config_class):
            doc = field_docs(config_class).get(field.name, "")
            default = field.default if field.default is not dataclasses.MISSING else "..."
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
        lines += describe(f"--agent-opt KEY=VALUE for {', '.join(names)}:", config_class) + [""]
    return "\n".join(lines)


def _typed(kind, name):
    def convert(text: str):
        try:
            return parse_value(text, kind, name)
        except MemarlError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = getattr(kind, "__name__", str(kind))
    return convert


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: tuple = (),
                           title: str | None = None) -> list[str]:
    """One ``--kebab-name`` option per field, default None so explicit values can be told apart."""
    group = parser.add_argument_group(title) if title else parser
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    names = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, default=None,
                           metavar=field.name.upper(), type=_typed(hints[field.name], field.name),
                           help=f"{docs.get(field.name, '')} (default: {default})")
        names.append(field.name)
    return names


def build_parser() -> argparse.ArgumentParser:
    from memarl.train.ppo import PPOConfig
    from memarl.train.trainer import TrainConfig

    parser = _Parser(prog="memarl", description="Multi-agent RL with memory: train, evaluate "
                     "and render SRMT and its ablations on grid pathfinding tasks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train an agent on an env", epilog_fn=_options_epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Train an agent with PPO. Progress is printed live; "
                                "TensorBoard logs go to RUN_DIR/tb.")
    _add_dataclass_options(train, TrainConfig, skip=("env_options", "agent_options", "ppo"))
    train.add_argument("--env-opt", action="append", metavar="KEY=VALUE",
                       help="an option of the env's own config, e.g. reward=sparse (repeatable)")
    train.add_argument("--agent-opt", action="append", metavar="KEY=VALUE",
                       help="an option of the agent's own config, e.g. attention=causal_mem_first "
                            "(repeatable)")
    train.add_argument("--resume", metavar="RUN", default=None,
                       help="continue the run in RUN from its latest checkpoint (only "
                            "total-steps, device and logging settings may change)")
    _add_dataclass_options(train, PPOConfig, title="PPO")

    evaluate = commands.add_parser("eval", help="evaluate a run on a map suite",
                                   description="Run a checkpoint on every map x seed of a suite; "
                                   "write one CSV row per episode, a Markdown table and a PNG plot.")
    evaluate.add_argument("run", nargs="?", default=None,
                          help="run directory or checkpoint file (or --baseline instead)")
    evaluate.add_argument("--suite", required=True, help="suite name (`memarl list suites`)")
    evaluate.add_argument("--baseline", default=None,
                          help="evaluate a scripted baseline instead of a run (POGEMA suites): "
                               "greedy or greedy-random")
    evaluate.add_argument("--maps", type=int, default=None,
                          help="POGEMA suites: only the first MAPS maps (quick looks)")
    evaluate.add_argument("--agents", default=None,
                          help="POGEMA suites: comma-separated subset of the agent counts")
    evaluate.add_argument("--episodes", type=int, default=None,
                          help="seeds per map (default: the suite's, 10 for bottleneck-test)")
    evaluate.add_argument("--checkpoint", default="best",
                          help="best (falls back to latest), latest, or a checkpoint file")
    evaluate.add_argument("--deterministic", action="store_true",
                          help="act by argmax instead of sampling (recorded in the table)")
    evaluate.add_argument("--max-corridor-length", type=int, default=None,
                          help="skip maps longer than this (quick looks)")
    evaluate.add_argument("--out", default=None, help="output folder (default RUN/eval/SUITE)")
    evaluate.add_argument("--force", action="store_true",
                          help="replace the results of an earlier evaluation in the output folder")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of action sampling")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")

    render = commands.add_parser("render", help="write a GIF (and MP4 with ffmpeg) of one episode")
    render.add_argument("run", help="run directory or checkpoint file")
    render.add_argument("--out", required=True, help="output file: .gif or .mp4")
    render.add_argument("--corridor-length", type=int, default=5, help="Bottleneck corridor length L")
    render.add_argument("--seed", type=int, default=0, help="episode seed (fixes start and goal)")
    render.add_argument("--max-steps", type=int, default=None,
                        help="episode length (default the test rule 2L+100)")
    render.add_argument("--checkpoint", default="best", help="best, latest, or a checkpoint file")
    render.add_argument("--deterministic", action="store_true", help="act by argmax")
    render.add_argument("--fps", type=int, default=6, help="frames per second")
    render.add_argument("--cell", type=int, default=24, help="pixels per grid cell")
    render.add_argument("--force", action="store_true", help="overwrite --out if it exists")

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
    bench_env.add_argument("env", help="env id: bottleneck or pogema-lmapf")
    bench_env.add_argument("--num-envs", type=int, default=None,
                           help="envs in our batch (default: bottleneck 64; pogema-lmapf 4096 // agents)")
    bench_env.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    bench_env.add_argument("--configs", nargs="+", default=None,
                           help="pogema-lmapf: configurations to run (default all: 64a-32x32 8a-8x8 256a-64x64)")
    bench_env.add_argument("--out", default=None,
                           help="also write bench_env_<env>.json and .md into this folder")
    bench_env.add_argument("--force", action="store_true", help="let --out replace earlier results")
    bench_env.add_argument("--json", default=None, help="also write the result as JSON here")
    bench_env.add_argument("--markdown", default=None, help="also write the table as Markdown here")
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> None:
    from memarl.train.ppo import PPOConfig
    from memarl.train.trainer import TrainConfig, load_resume_config, train

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name not in ("env_options", "agent_options", "ppo")
             and getattr(args, f.name) is not None}
    ppo_given = {f.name: getattr(args, f.name) for f in dataclasses.fields(PPOConfig)
                 if getattr(args, f.name) is not None}
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
    print(f"run directory: {run_dir}")


def _list(what: str) -> None:
    from memarl.registry import AGENTS, ENVS, SUITES
    if what == "envs":
        for entry in ENVS:
            print(f"{entry.name:24s} {entry.description}")
    elif what == "suites":
        for entry in SUITES:
            print(f"{entry.name:24s} {entry.description}")
    else:
        from memarl.agents import make_agent
        print(f"{'agent':12s} {'total params':>13s} {'effective':>10s}  description "
              f"(Bottleneck sizes: obs 3x5x5, 5 actions)")
        for entry in AGENTS:
            counts = make_agent(entry.name, (3, 5, 5), 5).parameter_counts()
            print(f"{entry.name:12s} {counts['total']:>13,} {counts['effective']:>10,}  "
                  f"{entry.description}")


def _suites(args: argparse.Namespace) -> None:
    from memarl.envs import suites as S
    from memarl.registry import SUITES
    if args.what == "fetch":
        root = S.fetch_data(args.dir)
        print(f"map data in {root}" + ("" if args.dir is None else f" (set {S.DATA_DIR_ENV}={root} to use it)"))
        return
    print(f"{'suite':24s} {'episodes':>8s}  {'agents':24s} data (in {S.data_dir()})")
    for entry in SUITES:
        suite = entry.make()
        if isinstance(suite, S.PogemaSuite):
            agents = ",".join(map(str, suite.num_agents))
            files = suite.data_files()
            data = "generated" if not files else "present" if suite.data_present() else \
                "missing: " + ", ".join(S.DATA_FILES[k].path for k in files if not S.data_present(k)) \
                + " (memarl suites fetch)"
        else:
            agents, data = str(getattr(suite, "num_agents", 2)), "generated"
        print(f"{entry.name:24s} {len(suite.episodes()):>8d}  {agents:24s} {data}")


def _bench(args: argparse.Namespace) -> None:
    import json
    from memarl.eval.bench import bench_env, format_bench
    if (args.num_envs is not None and args.num_envs < 1) or args.seconds <= 0:
        raise MemarlError("--num-envs must be >= 1 and --seconds > 0")
    options = {}
    if args.configs is not None:
        options["configs"] = [c for arg in args.configs for c in arg.split(",") if c]
    outputs = []
    if args.out is not None:
        stem = "bench_env_" + args.env.removesuffix("-v0").replace("-", "_")
        outputs = [Path(args.out) / f"{stem}.json", Path(args.out) / f"{stem}.md"]
        existing = [str(p) for p in outputs if p.exists()]
        if existing and not args.force:
            raise MemarlError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                              "pass --force to replace")
    result = bench_env(args.env, num_envs=args.num_envs, seconds=args.seconds, **options)
    table = format_bench(result)
    print(table)
    text = json.dumps(result, indent=2) + "\n"
    for path, content in zip(outputs, (text, table + "\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(text)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


def _eval(args: argparse.Namespace) -> None:
    from memarl.eval.evaluate import evaluate_run, get_suite
    if args.episodes is not None and args.episodes < 1:
        raise MemarlError(f"--episodes must be >= 1, got {args.episodes}")
    if hasattr(get_suite(args.suite), "mode"):  # a POGEMA suite
        from memarl.eval.pogema_eval import evaluate_pogema_run
        try:
            agents = [int(x) for x in args.agents.split(",")] if args.agents else None
        except ValueError:
            raise MemarlError(f"--agents must be comma-separated integers, got {args.agents!r}") from None
        out = evaluate_pogema_run(args.run, args.suite, baseline=args.baseline, maps=args.maps,
                                  num_agents=agents, which=args.checkpoint,
                                  deterministic=args.deterministic, out_dir=args.out,
                                  seed=args.seed, device=args.device, force=args.force)
        print(f"wrote {out}")
        return
    if args.run is None or args.baseline is not None:
        raise MemarlError(f"suite {args.suite} needs a run directory (baselines are for POGEMA suites)")
    out = evaluate_run(args.run, args.suite, episodes=args.episodes, which=args.checkpoint,
                       deterministic=args.deterministic, out_dir=args.out, seed=args.seed,
                       device=args.device, max_corridor_length=args.max_corridor_length,
                       force=args.force)
    print(f"wrote {out}")


def _render(args: argparse.Namespace) -> None:
    from memarl.eval.render import render_run
    written = render_run(args.run, args.out, corridor_length=args.corridor_length,
                         seed=args.seed, max_steps=args.max_steps, which=args.checkpoint,
                         deterministic=args.deterministic, fps=args.fps, cell=args.cell,
                         force=args.force)
    for path in written:
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or a usage error already printed in one line
        return int(exit_request.code or 0)
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
    except MemarlError as error:
        print(f"memarl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interrupted:
        print(f"memarl {args.command}: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"memarl {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
