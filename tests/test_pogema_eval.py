"""Evaluation on POGEMA suites: learned and scripted policies, tables per agent count, the CLI."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from memarl.cli import main
from memarl.errors import MemarlError
from memarl.eval.baselines import GreedyPathPolicy
from memarl.eval.pogema_eval import (comparison_table, evaluate_on_suite, run_suite_episodes,
                                     summarize_by_agents)


def test_lmapf_rows_per_episode_and_summary():
    rows = evaluate_on_suite(GreedyPathPolicy(), "pogema-mazes-lmapf", maps=2, num_agents=[8, 16])
    assert [(r["num_agents"], r["map_name"]) for r in rows] == [
        (8, "validation-mazes-seed-000"), (8, "validation-mazes-seed-001"),
        (16, "validation-mazes-seed-000"), (16, "validation-mazes-seed-001")]
    for r in rows:
        assert r["episode_length"] == 128 and r["seed"] == 0
        assert 0.0 <= r["avg_throughput"] <= r["num_agents"]
        assert r["avg_throughput"] * 128 == pytest.approx(round(r["avg_throughput"] * 128))
    summary = summarize_by_agents(rows, ("avg_throughput", "collisions"))
    assert [e["num_agents"] for e in summary] == [8, 16]
    assert summary[0]["avg_throughput"] == pytest.approx(np.mean([r["avg_throughput"] for r in rows[:2]]))
    assert 0.0 <= summary[1]["collisions"] <= 1.0  # per agent-step
    table = comparison_table({"greedy": rows}, "avg_throughput")
    assert table.splitlines()[0] == "| policy | 8 | 16 | mean |"


def test_episodes_equal_their_single_env_runs():
    """Batched suite episodes are exactly the suite's instances played one by one."""
    from memarl.envs.pogema_env import PogemaEnv
    from memarl.registry import SUITES

    suite = SUITES.make("pogema-random-mapf")
    episodes = [e for e in suite.episodes() if e.num_agents == 8][:3]
    configs = [suite.env_config(e, auto_reset=False) for e in episodes]
    batched = run_suite_episodes(GreedyPathPolicy(), configs)
    for config, result in zip(configs, batched):
        env, policy = PogemaEnv(config), GreedyPathPolicy()
        env.reset()
        while True:
            _, _, _, _, info = env.step(policy.act(env))
            if info["episode_end"][0]:
                break
        assert info["episode_metrics"][0] == result
        assert {"CSR", "ISR", "SoC", "makespan"} <= set(result)


def test_bad_agent_counts_and_suites():
    with pytest.raises(MemarlError, match="agent counts"):
        evaluate_on_suite(GreedyPathPolicy(), "pogema-mazes-lmapf", maps=1, num_agents=[7])
    with pytest.raises(MemarlError, match="not a POGEMA suite"):
        evaluate_on_suite(GreedyPathPolicy(), "bottleneck-test", maps=1)
    with pytest.raises(MemarlError, match="maps must be"):
        evaluate_on_suite(GreedyPathPolicy(), "pogema-mazes-lmapf", maps=0)


def test_cli_baseline_writes_results_and_keeps_them(tmp_path, capsys):
    out = tmp_path / "greedy"
    args = ["eval", "--baseline", "greedy", "--suite", "pogema-random-mapf", "--maps", "2",
            "--agents", "8,16", "--out", str(out)]
    assert main(args) == 0
    with (out / "episodes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["num_agents"] for r in rows} == {"8", "16"}
    summary = (out / "summary.md").read_text()
    assert "| agents | episodes | CSR | ISR | SoC | makespan | collisions |" in summary
    assert (out / "plot.png").stat().st_size > 0
    before = (out / "episodes.csv").read_bytes()
    assert main(args) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (out / "episodes.csv").read_bytes() == before


@pytest.mark.parametrize("extra, words", [
    (["--agents", "8,x"], "--agents"),
    (["--baseline", "astar9000"], "unknown baseline"),
    (["--agents", "5"], "agent counts"),
])
def test_cli_bad_input(extra, words, tmp_path, capsys):
    args = ["eval", "--suite", "pogema-mazes-lmapf", "--maps", "1", "--out", str(tmp_path / "o")]
    if "--baseline" not in extra:
        args += ["--baseline", "greedy"]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_trained_pogema_run_evaluates_on_a_suite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env", "pogema-lmapf", "--agent", "srmt", "--total-steps", "2000",
                 "--num-envs", "4", "--run-dir", str(run), "--env-opt", "num_agents=4",
                 "--env-opt", "reward=follower", "--print-every-s", "1000"]) == 0
    assert main(["eval", str(run), "--suite", "pogema-mazes-lmapf", "--maps", "2",
                 "--agents", "8"]) == 0
    summary = (run / "eval" / "pogema-mazes-lmapf" / "summary.md").read_text()
    assert "| 8 | 2 |" in summary and "srmt" in summary
    # a Bottleneck-trained policy is refused on a POGEMA suite, and a run is needed
    assert main(["eval", "--suite", "bottleneck-test"]) == 2
    assert "give either a run (directory or checkpoint) or --baseline NAME" in capsys.readouterr().err
