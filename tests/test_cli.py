"""The CLI end to end on tiny budgets, and every bad input: one line, exit code 2, nothing lost."""
import json
import os

import pytest
import torch

import memarl
from memarl.cli import main

TINY = ["--num-envs", "4", "--rollout-len", "4", "--print-every-s", "1000"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "srmt"
    assert main(["train", "--agent", "srmt", "--total-steps", "64", "--run-dir", str(run_dir),
                 *TINY]) == 0
    return run_dir


def test_train_writes_run_directory(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["config"]["agent"] == "srmt"
    assert config["command_line"].startswith("memarl train")
    assert config["parameters"]["total"] > 0
    checkpoints = list((trained_run / "checkpoints").glob("ckpt_*.pt"))
    assert len(checkpoints) == 1
    assert list((trained_run / "tb").iterdir())


def test_resume_continues_and_keeps_checkpoints(trained_run, capsys, tmp_path):
    run_copy = tmp_path / "copy"
    os.system(f"cp -r {trained_run} {run_copy}")
    before = memarl.load_policy(str(run_copy), which="latest").checkpoint_info
    code, _, err = run_cli(["train", "--resume", str(run_copy), "--total-steps", "128",
                            "--print-every-s", "1000"], capsys)
    assert code == 0, err
    after = memarl.load_policy(str(run_copy), which="latest").checkpoint_info
    assert after["update"] > before["update"]
    assert after["agent_steps"] == 128


def test_load_policy_round_trip(trained_run):
    from memarl.train.checkpoint import load_checkpoint, resolve_checkpoint
    policy = memarl.load_policy(str(trained_run), which="latest")
    payload = load_checkpoint(resolve_checkpoint(trained_run, "latest"))
    for name, tensor in policy.state_dict().items():
        torch.testing.assert_close(tensor, payload["model"][name], rtol=0, atol=0)
    obs = torch.randn(3, 2, *payload["obs_shape"])
    state = policy.initial_state(3, 2)
    first, alive = torch.ones(3, 2, dtype=torch.bool), torch.ones(3, 2, dtype=torch.bool)
    logits, value, _ = policy.step(obs, state, first, alive)
    assert logits.shape == (3, 2, 5) and value.shape == (3, 2)


def test_eval_and_render(trained_run, capsys, tmp_path):
    out = tmp_path / "eval"
    code, _, err = run_cli(["eval", str(trained_run), "--suite", "bottleneck-test",
                            "--episodes", "2", "--max-corridor-length", "4", "--out", str(out)],
                           capsys)
    assert code == 0, err
    rows = (out / "episodes.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # header + (L=3, 4) x 2 seeds
    assert "| corridor_length | episodes | CSR | ISR | SoC | makespan |" in (out / "summary.md").read_text()
    assert (out / "plot.png").stat().st_size > 1000
    before = (out / "episodes.csv").read_bytes()
    code, _, err = run_cli(["eval", str(trained_run), "--suite", "bottleneck-test",  # done already
                            "--episodes", "1", "--max-corridor-length", "4", "--out", str(out)], capsys)
    assert code == 0 and (out / "episodes.csv").read_bytes() == before
    code, _, err = run_cli(["eval", str(trained_run), "--suite", "bottleneck-test", "--deterministic",
                            "--episodes", "1", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "holds results of other actions (--deterministic)", "--force")
    assert (out / "episodes.csv").read_bytes() == before
    gif = tmp_path / "ep.gif"
    code, _, err = run_cli(["render", str(trained_run), "--corridor-length", "3", "--out",
                            str(gif), "--max-steps", "20"], capsys)
    assert code == 0, err
    assert gif.read_bytes()[:6] == b"GIF89a"
    code, _, err = run_cli(["render", str(trained_run), "--out", str(gif)], capsys)
    assert_one_line_error(code, err, "exists")


def test_list_agents_shows_parameter_counts(capsys):
    code, out, _ = run_cli(["list", "agents"], capsys)
    assert code == 0
    names = ("srmt", "rmt", "attention", "empty", "gru", "lstm", "rate", "gtrxl", "galite",
             "agalite")
    for name in names:
        assert any(line.startswith(name) for line in out.splitlines())
    gru = next(line for line in out.splitlines() if line.startswith("gru "))
    assert "6,342" in gru and "29,765" in gru      # bottleneck and tmaze presets


@pytest.mark.parametrize("env,agent,options", [
    ("bottleneck", "gtrxl", ["preset=lmapf", "memory_len=4"]),
    ("tmaze", "rate", ["share_memory=true", "memory_drop=0.5"]),
    ("bottleneck", "galite", ["share_memory=true", "memory_radius=2"]),
])
def test_agent_presets_and_broadcast_options_from_the_cli(env, agent, options, tmp_path, capsys):
    args = ["train", "--env", env, "--agent", agent, "--total-steps", "64", "--num-envs", "4",
            "--rollout-len", "4", "--run-dir", str(tmp_path / "r")]
    for option in options:
        args += ["--agent-opt", option]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    # the env's own preset unless one is given; the grid envs keep the agent's default
    expected = "lmapf" if "preset=lmapf" in options else "tmaze" if env == "tmaze" else None
    assert config["agent_options"].get("preset") == expected
    policy = memarl.load_policy(str(tmp_path / "r"), which="latest")
    for option in options:
        key, value = option.split("=")
        if key != "preset":
            assert str(getattr(policy.config, key)).lower() == value
    if expected == "lmapf":
        assert policy.config.d_model == 512


def test_tmaze_curriculum_from_the_cli(tmp_path, capsys):
    """A T-Maze curriculum is an env option: the run charts the unlocked length, picks best.pt by
    curriculum_success, and its evaluation plays the suite's pinned lengths, not the curriculum's."""
    run = tmp_path / "r"
    code, out, err = run_cli(["train", "--env", "tmaze", "--agent", "gru", "--env-opt", "corridor_lengths=3,1",
                              "--env-opt", "curriculum_success=0.5", "--env-opt", "curriculum_window=4",
                              "--total-steps", "2048", "--num-envs", "16", "--rollout-len", "8",
                              "--print-every-s", "0", "--run-dir", str(run)], capsys)
    assert code == 0, err
    assert "unlocked_length" in out
    policy = memarl.load_policy(str(run), which="latest")
    assert policy.checkpoint_info["score_metric"] == "curriculum_success"
    assert policy.checkpoint_info["env_options"]["curriculum_success"] == 0.5
    code, _, err = run_cli(["eval", str(run), "--suite", "tmaze-rate", "--maps", "2", "--checkpoint", "latest",
                            "--quiet"], capsys)
    assert code == 0, err
    rows = (run / "eval" / "tmaze-rate" / "episodes.csv").read_text().splitlines()
    assert len(rows) == 201 and {row.split(",")[1] for row in rows[1:]} == {"tmaze-7", "tmaze-28"}


@pytest.mark.parametrize("args,words", [
    (["train", "--env", "nope"], ["unknown env 'nope'", "bottleneck"]),
    (["train", "--agent", "nope"], ["unknown agent 'nope'", "srmt"]),
    (["train", "--total-steps", "-5"], ["total-steps"]),
    (["train", "--num-envs", "0"], ["num-envs"]),
    (["train", "--env-opt", "corridor_lengths=0"], ["corridor"]),
    (["train", "--agent-opt", "no_such_option=1"], ["no_such_option"]),
    (["train", "--agent-opt", "preset=huge"], ["unknown preset 'huge'", "lmapf", "tmaze"]),
    (["train", "--agent-opt", "memory_drop=1.5"], ["memory_drop"]),
    (["train", "--agent-opt", "memory_radius=-2"], ["memory_radius"]),
    (["train", "--agent", "lstm", "--agent-opt", "num_heads=3"], ["divisible"]),
    (["train", "--env", "tmaze", "--env-opt", "preset=maze"], ["preset"]),
    (["train", "--env", "tmaze", "--env-opt", "corridor_length=0"], ["corridor_length"]),
    (["train", "--total-steps", "many"], ["--total-steps", "expected an integer"]),
    (["eval", "does/not/exist", "--suite", "bottleneck-test"], ["does/not/exist"]),
])
def test_bad_input_one_line_exit_2(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args + ["--run-dir", str(tmp_path / "r")] if args[0] == "train"
                           else args, capsys)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "r").exists()


def test_unknown_suite(trained_run, capsys):
    code, _, err = run_cli(["eval", str(trained_run), "--suite", "nope"], capsys)
    assert_one_line_error(code, err, "unknown suite 'nope'", "bottleneck-test")


def test_existing_run_dir_is_not_overwritten(trained_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")}
    code, _, err = run_cli(["train", "--run-dir", str(trained_run), "--total-steps", "64", *TINY],
                           capsys)
    assert_one_line_error(code, err, "already exists", "--resume")
    assert {p: p.stat().st_mtime_ns for p in trained_run.rglob("*")} == before


def test_corrupted_checkpoint(tmp_path, capsys):
    bad = tmp_path / "ckpt_000000001_64.pt"
    bad.write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(["eval", str(bad), "--suite", "bottleneck-test"], capsys)
    assert_one_line_error(code, err, "corrupted")
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    code, _, err = run_cli(["eval", str(other), "--suite", "bottleneck-test"], capsys)
    assert_one_line_error(code, err, "not a memarl checkpoint")


def test_checkpoint_of_another_agent(trained_run, capsys, tmp_path):
    code, _, err = run_cli(["train", "--resume", str(trained_run), "--agent", "gru"], capsys)
    assert_one_line_error(code, err, "cannot change agent", "'srmt'", "'gru'")
    code, _, err = run_cli(["train", "--resume", str(trained_run), "--gamma", "0.5"], capsys)
    assert_one_line_error(code, err, "cannot change PPO settings", "gamma")
    with pytest.raises(memarl.MemarlError, match="holds agent 'srmt', not 'gru'"):
        memarl.load_policy(str(trained_run), agent="gru")
    # weights of one agent under another agent's name
    from memarl.train.checkpoint import load_checkpoint, resolve_checkpoint
    payload = load_checkpoint(resolve_checkpoint(trained_run, "latest"))
    payload["agent"] = "gru"
    forged = tmp_path / "forged.pt"
    torch.save(payload, forged)
    with pytest.raises(memarl.MemarlError, match="'gru'"):
        memarl.load_policy(str(forged))


def test_argparse_errors_are_one_line(capsys):
    code, _, err = run_cli(["train", "--no-such-flag"], capsys)
    assert_one_line_error(code, err, "--no-such-flag")


def test_tensorboard_uses_cleanrl_names(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(trained_run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("losses/approx_kl", "losses/clipfrac", "losses/explained_variance",
                "losses/value_loss", "losses/policy_loss", "losses/entropy", "perf/SPS",
                "charts/learning_rate", "async/policy_lag_avg"):
        assert tag in tags, tag


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "memarl", "train", "--total-steps",
                                "100000000", "--run-dir", str(run_dir), *TINY],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "tb").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "--resume" in err
    assert list((run_dir / "checkpoints").glob("ckpt_*.pt"))


def test_resume_keeps_the_return_statistics(tmp_path, capsys):
    """normalize_returns: the running statistics travel in every checkpoint and a resumed run
    merges into them instead of starting over (its value head speaks their units)."""
    from memarl.train.checkpoint import load_checkpoint, resolve_checkpoint
    run_dir = tmp_path / "rn"
    assert main(["train", "--agent", "gru", "--total-steps", "64", "--run-dir", str(run_dir),
                 "--normalize-returns", *TINY]) == 0
    first = load_checkpoint(resolve_checkpoint(run_dir, "latest"))["return_normalizer"]
    assert first["count"] == 64 and first["var"] > 0   # every sample alive: 4 envs x 2 x 4 x 2 updates
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--total-steps", "128",
                            "--print-every-s", "1000"], capsys)
    assert code == 0, err
    resumed = load_checkpoint(resolve_checkpoint(run_dir, "latest"))["return_normalizer"]
    assert resumed["count"] == 128
    # a checkpoint without them cannot continue such a run
    path = resolve_checkpoint(run_dir, "latest")
    payload = load_checkpoint(path)
    del payload["return_normalizer"]
    torch.save(payload, path)
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--total-steps", "192",
                            "--print-every-s", "1000"], capsys)
    assert_one_line_error(code, err, "lacks the return statistics")


@pytest.mark.parametrize("legacy, mode", [(False, "off"), (True, "minibatch")])
def test_resume_reads_the_old_advantage_flag(trained_run, tmp_path, legacy, mode):
    """A run saved with normalize_advantages (before advantage_normalization) resumes with the
    same setting, not the new default."""
    from memarl.train.trainer import load_resume_config
    run_copy = tmp_path / "old"
    os.system(f"cp -r {trained_run} {run_copy}")
    saved = json.loads((run_copy / "config.json").read_text())
    ppo = saved["config"]["ppo"]
    del ppo["advantage_normalization"]
    ppo["normalize_advantages"] = legacy
    (run_copy / "config.json").write_text(json.dumps(saved))
    assert load_resume_config(run_copy, {}).ppo.advantage_normalization == mode
