"""Fuzz every command, option and config field with bad values: one line, exit 2, nothing touched.

Each bad input runs in a forked child (so nothing it allocates or changes leaks into the next)
under a memory limit and a deadline, with a workspace of files it must leave alone: a trained
run, an earlier evaluation, an existing GIF, a plain file. A case passes when the child exits
with code 2 (the CLI) or raises :class:`MemarlError` (the Python API) with one line and no
traceback, within :data:`DEADLINE_S` and :data:`MEMORY_LIMIT` extra bytes, and the workspace
is byte for byte as before. Options come from :mod:`tests.fuzz`, which discovers them from the
configs the parser is built from, so the options of later issues are covered for free.

``MEMARL_FUZZ_REPORT=path.json`` makes the last test write the number of distinct bad inputs.
"""
from __future__ import annotations

import json
import os
import re
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memarl.cli import main
from memarl.configs import field_specs
from memarl.errors import MemarlError
from memarl.tests import fuzz

DEADLINE_S = 30.0
"""a bad input is refused within this many seconds (it is mostly milliseconds)"""
MEMORY_LIMIT = 3 * 2**30
"""address space a child may add to what the test process already maps"""
RSS_LIMIT_MB = 1500
"""peak resident memory a child may add to the test process's"""

TRIED: set[tuple[str, str]] = set()
"""distinct (where, bad input) pairs tried in this session"""

BASE_ARGS = {
    "train": ["train", "--run-dir", "{new}/run", "--total-steps", "64", "--num-envs", "4",
              "--rollout-len", "4", "--num-minibatches", "2", "--print-every-s", "1000"],
    "eval": ["eval", "{run}", "--suite", "bottleneck-test", "--episodes", "1",
             "--max-corridor-length", "3", "--out", "{new}/eval"],
    "render": ["render", "{run}", "--out", "{new}/ep.gif", "--corridor-length", "3",
               "--max-steps", "5"],
    "report": ["report", "a={summary}", "--out", "{new}/report"],
    "bench env": ["bench", "env", "bottleneck", "--seconds", "0.01", "--num-envs", "2"],
    "bench train": ["bench", "train", "--total-steps", "64", "--num-envs", "2", "--engines",
                    "sync", "--out", "{new}/bench"],
}
"""a valid command line per command; each case changes one option of it"""


# --------------------------------------------------------------------------------------------
# the workspace and the isolated runner


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Files a bad input must leave alone, and the placeholders that name them."""
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    assert main(["train", "--run-dir", str(run), "--total-steps", "32", "--num-envs", "4",
                 "--rollout-len", "4", "--num-minibatches", "2", "--print-every-s", "1000"]) == 0
    (root / "file.txt").write_text("keep me\n")
    (root / "eval_out").mkdir()
    (root / "eval_out" / "episodes.csv").write_text("earlier,results\n")
    (root / "ep.gif").write_bytes(b"GIF89a earlier render")
    (root / "summary").mkdir()
    (root / "summary" / "summary.json").write_text(json.dumps(
        {"suite": "tmaze-rate", "axis": "corridor_length", "metrics": ["success"], "bands": [],
         "groups": [{"corridor_length": 7, "episodes": 2, "success": 0.5, "success_ci95": 0.98}]}))
    (root / "report_old.md").write_text("an earlier report\n")
    names = {"run": run, "file": root / "file.txt", "missing": root / "missing",
             "eval_out": root / "eval_out", "gif": root / "ep.gif", "new": root / "new",
             "summary": root / "summary", "report_old": root / "report_old"}
    return root, {key: str(path) for key, path in names.items()}


def _fill(text: str, names: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: names[m[1]], text)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def _address_space() -> int:
    with open("/proc/self/status") as status:
        size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    return size_kb * 1024


def run_isolated(call, root: Path) -> tuple[int, str, float, float]:
    """``call()`` in a forked child in ``root``: (exit code, stderr, seconds, peak RSS MB added).

    The child's exit code is ``call()``'s return value; an uncaught exception prints its
    traceback and exits 1; the deadline kills it (exit code -9).
    """
    err_path = root.parent / f"{root.name}-stderr.txt"
    limit = _address_space() + MEMORY_LIMIT
    parent_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            import torch
            torch.set_num_threads(1)  # OpenMP thread pools do not survive a fork
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            os.chdir(root)
            with open(err_path, "w") as err, open(os.devnull, "w") as out:
                os.dup2(err.fileno(), 2)
                os.dup2(out.fileno(), 1)
                sys.stderr, sys.stdout = err, out
                try:
                    code = call()
                except BaseException:  # noqa: BLE001 - reported as a failure by the parent
                    traceback.print_exc()
                    code = 1
                sys.stderr.flush()
                sys.stdout.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - start > DEADLINE_S:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    err = err_path.read_text() if err_path.exists() else ""
    return code, err, seconds, max(usage.ru_maxrss / 1024 - parent_rss, 0.0)


def assert_refused(call, workspace, where: str, what: str) -> None:
    """``call`` must be refused in one line with exit code 2, quickly, touching nothing."""
    root, _ = workspace
    TRIED.add((where, what))
    before = _snapshot(root)
    code, err, seconds, rss_mb = run_isolated(call, root)
    lines = [line for line in err.splitlines() if line.strip()]
    context = f"{where}: {what!r} -> exit {code} in {seconds:.1f}s, stderr {err[-2000:]!r}"
    assert code == 2, context
    assert len(lines) == 1 and "Traceback" not in err, context
    assert seconds < DEADLINE_S and rss_mb < RSS_LIMIT_MB, context
    after = _snapshot(root)
    assert after == before, f"{context}; changed: {set(after.items()) ^ set(before.items())}"


def cli_case(argv: list[str]):
    return lambda: main(argv)


def api_case(call):
    """The API raises MemarlError: the child prints its one line and exits 2, like the CLI."""
    def run():
        try:
            call()
        except MemarlError as error:
            print(str(error), file=sys.stderr)
            return 0 if "\n" in str(error) else 2
        return 0  # accepted: the test fails on the exit code
    return run


# --------------------------------------------------------------------------------------------
# command-line options

OPTIONS = fuzz.discover_options()


def _argv(option: fuzz.Option, value: str, names: dict[str, str]) -> list[str]:
    argv = [_fill(arg, names) for arg in BASE_ARGS[option.command]]
    value = _fill(value, names)
    if option.positional:
        argv[len(option.command.split())] = value  # the first argument after the command
    else:
        argv.append(f"{option.flag}={value}")
    return argv


def test_options_are_discovered(capsys):
    """Every option in each command's --help is known to the harness and has bad values."""
    known_extra = {"--help", "--env-opt", "--agent-opt", "--resume", "--note"}
    for command in BASE_ARGS:
        assert main([*command.split(), "--help"]) == 0
        shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", capsys.readouterr().out))
        discovered = {o.flag for o in OPTIONS if o.command == command and not o.positional}
        missing = shown - discovered - known_extra - _flag_options(command)
        assert not missing, f"{command}: options the harness does not know: {missing}"
    for option in OPTIONS:
        assert fuzz.bad_texts(option.spec, option.key)


def _flag_options(command: str) -> set[str]:
    """Options that take no value (bool fields defaulting to False)."""
    from memarl.cli import command_configs
    return {f"--{name.replace('_', '-')}" for cls, _ in command_configs()[command]
            for name, spec in field_specs(cls).items() if spec.kind is bool}


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.key.replace(" ", "-"))
def test_option_edges(option, workspace):
    _, names = workspace
    for value in fuzz.bad_texts(option.spec, option.key):
        argv = _argv(option, value, names)
        assert_refused(cli_case(argv), workspace, option.key, value)


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.spec.kind in (int, float)
                                    or o.spec.choices], ids=lambda o: o.key.replace(" ", "-"))
@settings(max_examples=4, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(data=st.data())
def test_option_random(option, workspace, data):
    _, names = workspace
    value = data.draw(fuzz.bad_text_strategy(option.spec, option.key))
    assert_refused(cli_case(_argv(option, value, names)), workspace, option.key, value)


# --------------------------------------------------------------------------------------------
# --env-opt / --agent-opt: the env's and the agent's own config fields

def _env_config(env_id: str) -> type:
    from memarl.registry import ENVS
    return ENVS.get(env_id).load().config_class


def _agent_config(agent: str) -> type:
    from memarl.agents import agent_config_class
    return agent_config_class(agent)


RESERVED_ENV_FIELDS = ("num_envs", "seed")
"""set through --num-envs / --seed, refused as --env-opt (tested below)"""
ENV_FIELDS = [(env_id, spec) for env_id in ("bottleneck", "pogema-lmapf", "tmaze")
              for spec in fuzz.config_fields(_env_config(env_id))
              if spec.name not in RESERVED_ENV_FIELDS and spec.kind is not str]
AGENT_FIELDS = [(agent, spec) for agent in ("srmt", "gru")
                for spec in fuzz.config_fields(_agent_config(agent))]
KEY_VALUE_FIELDS = [("env", env_id, spec) for env_id, spec in ENV_FIELDS] + \
    [("agent", agent, spec) for agent, spec in AGENT_FIELDS]
"""(env or agent, its name, a field of its config): each is fuzzed as --env-opt / --agent-opt"""


@pytest.mark.parametrize("kind,name,spec", KEY_VALUE_FIELDS,
                         ids=lambda x: getattr(x, "name", x))
def test_key_value_option_edges(kind, name, spec, workspace):
    _, names = workspace
    base = [_fill(a, names) for a in BASE_ARGS["train"]] + [f"--{kind}", name]
    for value in fuzz.bad_texts(spec, f"{kind} {spec.name}"):
        argv = base + [f"--{kind}-opt", f"{spec.name}={value}"]
        assert_refused(cli_case(argv), workspace, f"train --{kind} {name} --{kind}-opt {spec.name}",
                       value)


@pytest.mark.parametrize("flag", ["--env-opt", "--agent-opt"])
@pytest.mark.parametrize("item", ["novalue", "=1", " =1", "no_such_key=1", "seed=1", "num_envs=2",
                                  "a=1=2", "reward"])
def test_malformed_key_values(flag, item, workspace):
    _, names = workspace
    argv = [_fill(a, names) for a in BASE_ARGS["train"]] + [flag, item]
    assert_refused(cli_case(argv), workspace, f"train {flag}", item)


def test_resource_bounds(workspace):
    """Valid types, absurd sizes: refused by the memory estimate before anything is built."""
    _, names = workspace
    base = [_fill(a, names) for a in BASE_ARGS["train"]]
    for extra in (["--num-envs", "1000000", "--num-minibatches", "1"],
                  ["--agent-opt", "d_model=65536", "--agent-opt", "num_heads=1"],
                  ["--env", "pogema-lmapf", "--env-opt", "size=1024", "--num-envs", "100000"],
                  ["--rollout-len", "100000", "--num-envs", "100000"]):
        assert_refused(cli_case(base + extra), workspace, "train resources", " ".join(extra))


REPORTED = [
    # tracebacks (exit 1) before issue 8
    "train --total-steps 1e400", "train --num-envs 1e12", "train --rollout-len 1e9",
    "train --agent-opt d_model=1e9", "train --env-opt obs_radius=1e400", "train --seed -1",
    "train --seed 1e30", "train --device meta", "train --learning-rate nan",
    "train --learning-rate inf", "train --ent-coef nan", "train --vf-coef inf",
    "train --run-dir {file}", "train --run-dir {file}/sub",
    "eval {run} --suite bottleneck-test --episodes 100000000",
    "eval {run} --suite bottleneck-test --out {file}",
    "render {run} --out {new}/ep.gif --cell 100000",
    "bench env bottleneck --seconds 0.01 --json {file}",
    # silently accepted (exit 0) before issue 8
    "train --checkpoint-every-s nan", "train --checkpoint-every-s -1", "train --print-every-s nan",
    "train --clip-coef -1", "train --max-grad-norm -1", "train --target-kl -1",
    "train --value-clip nan", "train --value-clip -1",
    "train --min-learning-rate 1e-2 --max-learning-rate 1e-3",
    "train --num-minibatches 8 --num-envs 4", "eval {run} --suite bottleneck-test --seed -1",
    # hangs before issue 8
    "bench env bottleneck --seconds nan", "bench env bottleneck --seconds inf",
    "render {run} --out {new}/ep.gif --corridor-length 1000000",
]
"""the bad command lines a user test of the code before issue 8 found (tracebacks, silently
accepted values, hangs); each is one line and exit 2 now"""


OTHER_COMMANDS = [
    "suites fetch --dir {file}", "suites fetch --dir {file}/sub", "list nope", "suites nope",
    "bench nope", "nope", "train --env-opt reward=sparse --env-opt reward=dense",
    "train --resume {missing}", "train --resume {file}", "eval --suite bottleneck-test",
    "eval {run} --suite bottleneck-test --baseline greedy",
    "eval {run} --suite bottleneck-test --agents 3", "eval {run} --suite pogema-mazes-lmapf",
    "eval {run} --suite pogema-mazes-lmapf --max-corridor-length 5", "eval {run} --maps 2",
    "eval {run} --suite {file}", "eval {run} --suite {missing}.yaml",
]
"""commands with no config of their own (list, suites) and rules between options"""


@pytest.mark.parametrize("line", REPORTED + OTHER_COMMANDS)
def test_reported_cases(line, workspace):
    _, names = workspace
    argv = [_fill(a, names) for a in line.split()]
    if argv[0] == "train":  # on top of a valid small training command
        argv = [_fill(a, names) for a in BASE_ARGS["train"]] + argv[1:]
    assert_refused(cli_case(argv), workspace, "reported", line)


def test_reported_api_case(workspace):
    import memarl
    assert_refused(api_case(lambda: memarl.make("bottleneck", autoreset="false")), workspace,
                   "reported", "memarl.make('bottleneck', autoreset='false')")


# --------------------------------------------------------------------------------------------
# the Python API

@pytest.mark.parametrize("env_id,spec", [(e, s) for e in ("bottleneck", "pogema-lmapf")
                                         for s in fuzz.config_fields(_env_config(e))],
                         ids=lambda x: getattr(x, "name", x))
def test_api_make(env_id, spec, workspace):
    import memarl
    for value in fuzz.bad_python_values(spec):
        def call(value=value):
            memarl.make(env_id, num_envs=2, **{spec.name: value}) if spec.name != "num_envs" \
                else memarl.make(env_id, num_envs=value)
        assert_refused(api_case(call), workspace, f"memarl.make({env_id!r}, {spec.name}=...)",
                       repr(value))


@pytest.mark.parametrize("spec", fuzz.config_fields(_env_config("bottleneck")),
                         ids=lambda s: s.name)
def test_api_make_parallel(spec, workspace):
    import memarl
    if spec.name == "num_envs":
        pytest.skip("a ParallelEnv is one env")
    for value in fuzz.bad_python_values(spec):
        call = (lambda value=value: memarl.make_parallel("bottleneck", **{spec.name: value}))
        assert_refused(api_case(call), workspace, f"memarl.make_parallel(bottleneck, {spec.name}=...)",
                       repr(value))


@pytest.mark.parametrize("agent,spec", AGENT_FIELDS, ids=lambda x: getattr(x, "name", x))
def test_api_make_agent(agent, spec, workspace):
    from memarl.agents import make_agent
    for value in fuzz.bad_python_values(spec):
        call = (lambda value=value: make_agent(agent, (3, 5, 5), 5, **{spec.name: value}))
        assert_refused(api_case(call), workspace, f"make_agent({agent!r}, {spec.name}=...)", repr(value))


def _train_configs():
    from memarl.train.ppo import PPOConfig
    from memarl.train.trainer import TrainConfig
    return [(cls, spec) for cls in (TrainConfig, PPOConfig) for spec in fuzz.config_fields(cls)
            if spec.kind not in (dict, PPOConfig) and spec.kind is not str]


@pytest.mark.parametrize("cls,spec", _train_configs(), ids=lambda x: getattr(x, "name", None)
                         or getattr(x, "__name__", None))
def test_api_train_configs(cls, spec, workspace):
    from memarl.train.ppo import PPOConfig
    from memarl.train.trainer import TrainConfig
    for value in fuzz.bad_python_values(spec):
        if cls is TrainConfig:
            call = (lambda value=value: TrainConfig(**{spec.name: value}).validate())
        else:
            call = (lambda value=value: TrainConfig(ppo=PPOConfig(**{spec.name: value})).validate())
        assert_refused(api_case(call), workspace, f"{cls.__name__}({spec.name}=...).validate()",
                       repr(value))


@pytest.mark.parametrize("path", ["{missing}", "{file}", "{eval_out}"])
def test_api_load_policy(path, workspace):
    import memarl
    _, names = workspace
    call = (lambda: memarl.load_policy(_fill(path, names)))
    assert_refused(api_case(call), workspace, "memarl.load_policy", path)


# --------------------------------------------------------------------------------------------

def test_zz_report():
    """How many distinct bad inputs this session tried (written where MEMARL_FUZZ_REPORT says)."""
    count = len(TRIED)
    report = os.environ.get("MEMARL_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({"distinct_bad_inputs": count,
                                            "options": len(OPTIONS)}, indent=2) + "\n")
    if count:  # the whole module ran (not a -k selection)
        assert count >= len(OPTIONS)
