"""Run directories that never lose work: the lock, creating and resuming, failed checkpoint
writes, broken checkpoints, and every refusal as one line with exit code 2 and nothing changed."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from memarl.cli import main
from memarl.errors import MemarlError
from memarl.train import trainer
from memarl.train.checkpoint import list_checkpoints, load_checkpoint
from memarl.train.run_dir import LOCK_FILE, create_run_dir, lock_run_dir

TINY = ["--num-envs", "4", "--rollout-len", "4", "--print-every-s", "1000"]
STEPS_PER_UPDATE = 4 * 2 * 4  # envs x agents x steps


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines(text):
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    assert len(lines(err)) == 1, err
    for word in words:
        assert word in lines(err)[0], lines(err)[0]


def snapshot(run):
    """Every file of a run but its lock file (whose holder record a refused resume rewrites and
    clears): path -> (mtime, size)."""
    return {str(p.relative_to(run)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in run.rglob("*") if p.is_file() and p.name != LOCK_FILE}


def checkpoint_steps(run):
    return [load_checkpoint(p)["agent_steps"] for p in list_checkpoints(run / "checkpoints")]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished run with two checkpoints (32 and 64 agent-steps)."""
    run = tmp_path_factory.mktemp("runs") / "base"
    assert main(["train", "--run-dir", str(run), "--total-steps", "64",
                 "--checkpoint-every-s", "0", *TINY]) == 0
    assert checkpoint_steps(run) == [32, 64]
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


# --- the lock ---------------------------------------------------------------------------------

def test_lock_is_exclusive_names_its_holder_and_is_cleared_on_release(tmp_path):
    lock = lock_run_dir(tmp_path)
    with pytest.raises(MemarlError) as refused:
        lock_run_dir(tmp_path)
    message = str(refused.value)
    assert f"run directory {tmp_path} is in use by pid {os.getpid()} (since " in message
    assert message.endswith("wait for it or choose another --run-dir")
    lock.release()
    assert (tmp_path / LOCK_FILE).read_text() == ""
    with lock_run_dir(tmp_path) as again:
        assert again.stale is None  # released normally: nothing stale to report


def test_stale_lock_after_kill_9_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from memarl.train.run_dir import lock_run_dir; lock = lock_run_dir(Path(sys.argv[1])); "
         "print('locked', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MemarlError, match=f"in use by pid {holder.pid} "):
            lock_run_dir(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with lock_run_dir(tmp_path) as lock:
        assert lock.stale is not None and lock.stale.pid == holder.pid


def test_lock_record_of_another_host_is_refused(tmp_path):
    record = {"pid": 4242, "host": "elsewhere.example", "since": "2026-01-01T00:00:00"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(record))
    with pytest.raises(MemarlError, match="pid 4242 on host elsewhere.example .*delete"):
        lock_run_dir(tmp_path)
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == record


def test_orphan_temp_files_are_removed_only_under_the_lock(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    orphans = [tmp_path / ".config.json.tmp",
               tmp_path / "checkpoints" / ".ckpt_000000003_96.pt.1a2b3c4d.tmp"]
    kept = [tmp_path / "config.json", tmp_path / "notes.tmp",
            tmp_path / "checkpoints" / "ckpt_000000002_64.pt"]
    for path in orphans + kept:
        path.write_text("x")
    lock = lock_run_dir(tmp_path)
    assert sorted(lock.remove_orphan_temp_files()) == sorted(orphans)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in orphans)
    lock.release()
    with pytest.raises(RuntimeError, match="under the run's lock"):
        lock.remove_orphan_temp_files()


# --- two trainings on one directory -----------------------------------------------------------

def test_training_into_a_locked_directory_is_refused_before_anything_changes(tmp_path, capsys):
    run = tmp_path / "r"
    with create_run_dir(run):  # another process between creating the directory and its config
        code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "64", *TINY], capsys)
        assert_one_line_error(code, err, f"in use by pid {os.getpid()}", "--run-dir")
        assert [p.name for p in run.iterdir()] == [LOCK_FILE]


def test_second_training_and_resume_refused_while_the_first_completes(tmp_path, capsys):
    run = tmp_path / "r"
    first = subprocess.Popen([sys.executable, "-m", "memarl", "train", "--run-dir", str(run),
                              "--total-steps", str(10 ** 9), "--checkpoint-every-s", "0.2", *TINY],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not (run / "config.json").is_file() and time.time() < deadline:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        config = (run / "config.json").read_text()
        code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "64", *TINY], capsys)
        assert_one_line_error(code, err, f"in use by pid {first.pid}")
        code, _, err = run_cli(["train", "--resume", run, "--total-steps", "64"], capsys)
        assert_one_line_error(code, err, f"in use by pid {first.pid}")
        assert first.poll() is None
        while not checkpoint_steps(run) and time.time() < deadline:  # one update done
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGINT)
        _, first_err = first.communicate(timeout=180)
    assert first.returncode == 130, first_err  # the first finished normally, with a checkpoint
    assert (run / "config.json").read_text() == config
    assert checkpoint_steps(run) and all(steps > 0 for steps in checkpoint_steps(run))
    code, _, err = run_cli(["train", "--resume", run, "--total-steps",
                            checkpoint_steps(run)[-1] + 32], capsys)
    assert code == 0, err


# --- creating a run directory -----------------------------------------------------------------

def test_env_error_at_first_reset_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    real_build_env = trainer.build_env

    def env_failing_at_reset(cfg, seed=None):
        env = real_build_env(cfg, seed)

        def reset(*args, **kwargs):
            raise MemarlError("map file vanished at reset")

        env.reset = reset
        return env

    monkeypatch.setattr(trainer, "build_env", env_failing_at_reset)
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "64", *TINY], capsys)
    assert_one_line_error(code, err, "map file vanished at reset")
    assert not run.exists()


@pytest.mark.parametrize("case", ["is a file", "under a file"])
def test_run_dir_that_is_or_lies_under_a_file(case, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    run = blocker if case == "is a file" else blocker / "sub" / "run"
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "64", *TINY], capsys)
    assert_one_line_error(code, err, str(run), "is a file")
    assert blocker.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [blocker]
    code, _, err = run_cli(["train", "--resume", blocker], capsys)
    assert_one_line_error(code, err, "cannot resume", "is a file")


def test_run_dir_that_cannot_be_created(tmp_path, capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)  # as root, chmod cannot make a folder unwritable
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "64", *TINY], capsys)
    assert_one_line_error(code, err, f"cannot create run directory {run}", "Permission denied")
    assert not run.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_run_dir_under_an_unwritable_folder(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o500)
    code, _, err = run_cli(["train", "--run-dir", parent / "r", "--total-steps", "64", *TINY],
                           capsys)
    assert_one_line_error(code, err, str(parent), "not writable")
    assert list(parent.iterdir()) == []


def test_directory_left_before_its_config_can_be_trained_into(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": os.uname().nodename,
                                             "since": "2026-01-01T00:00:00"}))
    (run / ".config.json.tmp").write_text("{half a config")
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "32", *TINY], capsys)
    assert code == 0, err
    assert not (run / ".config.json.tmp").exists()
    assert checkpoint_steps(run) == [32]


# --- resuming ---------------------------------------------------------------------------------

def test_resume_of_a_run_with_only_its_config(run_copy, capsys):
    shutil.rmtree(run_copy / "checkpoints")
    code, _, err = run_cli(["train", "--run-dir", run_copy, "--total-steps", "64", *TINY], capsys)
    assert_one_line_error(code, err, "already exists", "--resume")
    code, out, err = run_cli(["train", "--resume", run_copy, "--total-steps", "32"], capsys)
    assert code == 0, err
    assert len(lines(err)) == 1 and "has no checkpoint yet; starting at step 0" in err, err
    assert checkpoint_steps(run_copy) == [32]


def test_resume_removes_orphan_temp_files(run_copy, capsys):
    orphans = [run_copy / ".config.json.tmp",
               run_copy / "checkpoints" / ".ckpt_000000003_96.pt.1a2b3c4d.tmp"]
    for path in orphans:
        path.write_bytes(b"half written")
    code, _, err = run_cli(["train", "--resume", run_copy, "--total-steps", "96"], capsys)
    assert code == 0, err
    assert not any(p.exists() for p in orphans)
    assert checkpoint_steps(run_copy)[-1] == 96


def test_resume_passes_over_a_truncated_latest_checkpoint(run_copy, capsys):
    latest = run_copy / "checkpoints" / "ckpt_000000002_64.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    code, out, err = run_cli(["train", "--resume", run_copy, "--total-steps", "96",
                              "--checkpoint-every-s", "0"], capsys)
    assert code == 0, err
    assert len(lines(err)) == 1, err
    assert "ckpt_000000002_64.pt" in err and "resuming from ckpt_000000001_32.pt" in err
    assert "from ckpt_000000001_32.pt (32 agent-steps, its episodes continued)" in out
    assert (run_copy / "checkpoints" / "ckpt_000000002_64.pt.broken").exists()
    assert checkpoint_steps(run_copy)[-1] == 96


def test_resume_with_total_steps_not_above_the_run_is_refused(run_copy, capsys):
    before = snapshot(run_copy)
    for total in (64, 10):
        code, _, err = run_cli(["train", "--resume", run_copy, "--total-steps", total], capsys)
        assert_one_line_error(code, err, "already at 64 agent-steps", "--total-steps must exceed")
    code, _, err = run_cli(["train", "--resume", run_copy], capsys)  # a finished run as saved
    assert_one_line_error(code, err, "already at 64 agent-steps")
    assert snapshot(run_copy) == before


def forge(payload, how):
    if how == "env":
        payload["env"] = "pogema-lmapf"
    elif how == "agent":
        payload["agent"] = "gru"
    elif how == "obs_shape":
        payload["obs_shape"] = [3, 7, 7]
    elif how == "weights":
        name = next(iter(payload["model"]))
        payload["model"][name] = torch.zeros(1, 2, 3)
    elif how == "optimizer groups":
        group = payload["optimizer"]["param_groups"][0]
        group["params"] = group["params"][:-1]
    elif how == "optimizer moments":
        first = next(iter(payload["optimizer"]["state"].values()))
        first["exp_avg"] = torch.zeros(3, 1, 4)


@pytest.mark.parametrize("how,words", [
    ("env", ["env 'pogema-lmapf'", "'bottleneck'"]),
    ("agent", ["agent 'gru'", "'srmt'"]),
    ("obs_shape", ["shape [3, 7, 7]"]),
    ("weights", ["weights", "do not fit agent 'srmt'", "size mismatch"]),
    ("optimizer groups", ["optimizer state", "does not fit"]),
    ("optimizer moments", ["optimizer state", "exp_avg of shape [3, 1, 4]"]),
])
def test_resume_of_a_checkpoint_that_does_not_fit(how, words, run_copy, capsys):
    latest = list_checkpoints(run_copy / "checkpoints")[-1]
    payload = load_checkpoint(latest)
    forge(payload, how)
    torch.save(payload, latest)
    before = snapshot(run_copy)
    code, _, err = run_cli(["train", "--resume", run_copy, "--total-steps", "128"], capsys)
    assert_one_line_error(code, err, "cannot resume", latest.name, *words)
    assert snapshot(run_copy) == before


# --- failed checkpoint writes -----------------------------------------------------------------

def failing_saves(monkeypatch, failing_calls):
    """Make the run's regular checkpoint writes number ``failing_calls`` (1-based) fail as
    on a full disk."""
    from memarl.train import checkpoint
    real_save = checkpoint.save_checkpoint
    calls = []

    def save(*args, **kwargs):
        calls.append(args[2])
        if len(calls) in failing_calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    return calls


def test_failed_checkpoint_write_keeps_the_last_good_and_training_goes_on(tmp_path, capsys,
                                                                          monkeypatch):
    calls = failing_saves(monkeypatch, failing_calls={2, 3})
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "160",
                            "--checkpoint-every-s", "0", "--keep-checkpoints", "1", *TINY], capsys)
    assert code == 0, err
    warnings = lines(err)
    assert warnings == ["memarl: warning: checkpoint write failed (No space left on device); "
                        "keeping ckpt_000000001_32.pt, training goes on"] * 2, err
    assert len(calls) >= 5  # it retried at the next checkpoint times
    assert checkpoint_steps(run) == [160]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_failed_final_checkpoint_write_is_an_error_naming_the_lost_work(tmp_path, capsys,
                                                                        monkeypatch):
    failing_saves(monkeypatch, failing_calls=set(range(2, 100)))
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "96",
                            "--checkpoint-every-s", "0", *TINY], capsys)
    assert code == 1, err  # the disk failed, not the input
    last = lines(err)[-1]
    assert last.startswith("memarl train: error: final checkpoint write failed "
                           "(No space left on device)")
    assert "the 64 agent-steps trained since ckpt_000000001_32.pt are lost" in last
    assert f"--resume {run}" in last
    assert checkpoint_steps(run) == [32]


# --- eval and render: broken latest, a named checkpoint file ----------------------------------

def eval_checkpoint_column(out):
    import csv
    with (out / "episodes.csv").open() as f:
        return {row["checkpoint"] for row in csv.DictReader(f)}


def test_eval_latest_passes_over_a_truncated_checkpoint(run_copy, capsys, tmp_path):
    latest = run_copy / "checkpoints" / "ckpt_000000002_64.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    out = tmp_path / "eval"
    code, _, err = run_cli(["eval", run_copy, "--suite", "bottleneck-test", "--episodes", "1",
                            "--max-corridor-length", "3", "--checkpoint", "latest", "--out", out],
                           capsys)
    assert code == 0, err
    assert len(lines(err)) == 1 and "ckpt_000000002_64.pt" in err, err
    assert eval_checkpoint_column(out) == {"ckpt_000000001_32.pt"}
    assert latest.exists()  # eval reads; it moves nothing aside


def test_eval_and_render_take_a_checkpoint_file(trained_run, capsys, tmp_path):
    older = trained_run / "checkpoints" / "ckpt_000000001_32.pt"
    out = tmp_path / "eval"
    code, _, err = run_cli(["eval", trained_run, "--suite", "bottleneck-test", "--episodes", "1",
                            "--max-corridor-length", "3", "--checkpoint", older, "--out", out],
                           capsys)
    assert code == 0, err
    assert eval_checkpoint_column(out) == {"ckpt_000000001_32.pt"}
    gif = tmp_path / "ep.gif"
    code, _, err = run_cli(["render", trained_run, "--checkpoint", older, "--out", gif,
                            "--corridor-length", "3", "--max-steps", "10"], capsys)
    assert code == 0, err
    assert gif.read_bytes()[:6] == b"GIF89a"
    code, _, err = run_cli(["eval", trained_run, "--suite", "bottleneck-test",
                            "--checkpoint", tmp_path / "missing.pt", "--out", tmp_path / "e2"],
                           capsys)
    assert_one_line_error(code, err, "missing.pt")


def test_best_checkpoint_is_never_newer_than_latest_and_both_agree_on_the_score(
        tmp_path, capsys, monkeypatch):
    from memarl.train.logger import RunLogger
    scores = iter([0.1, 0.5, 0.3, 0.7, 0.2, 0.2, 0.2])
    monkeypatch.setattr(RunLogger, "score", lambda self: next(scores))
    run = tmp_path / "r"
    code, _, err = run_cli(["train", "--run-dir", run, "--total-steps", "160",
                            "--checkpoint-every-s", "0", *TINY], capsys)
    assert code == 0, err
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["best_score"] == 0.7 and best["agent_steps"] == 4 * STEPS_PER_UPDATE
    # the regular checkpoint written with best.pt knows its score: a run resumed from it
    # must not replace best.pt by a worse policy
    same_time = load_checkpoint(run / "checkpoints" / f"ckpt_000000004_{4 * STEPS_PER_UPDATE}.pt")
    assert same_time["best_score"] == 0.7
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["best_score"] == 0.7


def test_resume_falls_back_to_best_when_no_regular_checkpoint_loads(run_copy, capsys):
    checkpoints = run_copy / "checkpoints"
    shutil.copy(checkpoints / "ckpt_000000002_64.pt", checkpoints / "best.pt")
    for path in list_checkpoints(checkpoints):
        path.write_bytes(b"")
    code, out, err = run_cli(["train", "--resume", run_copy, "--total-steps", "96"], capsys)
    assert code == 0, err
    assert "from best.pt (64 agent-steps, its episodes continued)" in out
    assert len(lines(err)) == 1 and "ckpt_000000002_64.pt" in err, err
    assert checkpoint_steps(run_copy)[-1] == 96


@pytest.mark.parametrize("edit", [lambda c: c.update(ppo="x"), lambda c: c.update(num_envs="many"),
                                  lambda c: c.clear() or c.update(ppo={"gamma": [1]})])
def test_malformed_saved_config_is_refused_in_one_line(run_copy, capsys, edit):
    path = run_copy / "config.json"
    info = json.loads(path.read_text())
    edit(info["config"])
    path.write_text(json.dumps(info))
    before = snapshot(run_copy)
    code, _, err = run_cli(["train", "--resume", run_copy, "--total-steps", "100000"], capsys)
    assert_one_line_error(code, err, "cannot resume", "config.json")
    assert snapshot(run_copy) == before


def test_run_saved_with_more_minibatches_than_envs_resumes_with_the_cap_it_trained_with(
        run_copy, capsys):
    """Before the minibatch rule, 4 minibatches over 2 envs were silently capped at 2."""
    path = run_copy / "config.json"
    info = json.loads(path.read_text())
    info["config"]["ppo"]["num_minibatches"] = 64
    path.write_text(json.dumps(info))
    code, _, err = run_cli(["train", "--resume", run_copy, "--total-steps", "96"], capsys)
    assert code == 0, err
    assert checkpoint_steps(run_copy)[-1] == 96
