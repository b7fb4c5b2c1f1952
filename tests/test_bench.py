"""memarl bench env pogema-lmapf: result structure, the Follower-style pogema wrapper, the CLI."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from memarl.envs.pogema_env import PogemaEnv
from memarl.errors import MemarlError
from memarl.eval.bench import LMAPF_CONFIGS, FollowerStylePogema, bench_env, format_bench, lmapf_num_envs

pogema = pytest.importorskip("pogema")


def test_bench_pogema_lmapf_structure():
    """A tiny run: every measurement present, rates and ratios positive (no timing assertions)."""
    result = bench_env("pogema-lmapf", steps=3, configs=["8a-8x8"], num_envs=2)
    assert result["env"] == "pogema-lmapf-v0" and len(result["configs"]) == 1
    row = result["configs"][0]
    assert row["config"] == "8a-8x8" and row["num_agents"] == 8 and row["size"] == 8 and row["num_envs"] == 2
    assert row["collision_system"] == "soft" and row["on_target"] == "restart" and row["obs_radius"] == 5
    for key in ("ours", "ours_n1", "pogema", "pogema_follower"):
        assert row[f"{key}_agent_steps_per_s"] > 0 and row["details"][key]["steps"] == 3
    for key in ("ratio", "ratio_n1", "ratio_vs_follower", "ratio_n1_vs_follower"):
        assert row[key] > 0
    assert row["ratio"] == pytest.approx(row["ours_agent_steps_per_s"] / row["pogema_agent_steps_per_s"])
    json.dumps(result)  # serialisable as written by --out
    table = format_bench(result)
    assert "| 8a-8x8 |" in table and "Follower" in table
    assert set(LMAPF_CONFIGS) == {"64a-32x32", "8a-8x8", "256a-64x64"}
    assert lmapf_num_envs(64) == 64 and lmapf_num_envs(8) == 512 and lmapf_num_envs(256) == 16


def test_bench_pogema_lmapf_errors():
    with pytest.raises(MemarlError, match="unknown pogema-lmapf config"):
        bench_env("pogema-lmapf", steps=2, configs=["9a-9x9"])
    with pytest.raises(MemarlError, match="no env options"):
        bench_env("pogema-lmapf", steps=2, corridor_lengths=(3,))
    with pytest.raises(MemarlError, match="num_envs"):
        bench_env("pogema-lmapf", steps=2, num_envs=0)


def test_follower_style_wrapper_matches_native_observation():
    """Our Python reimplementation on pogema gives the native engine's follower observation on
    the same instance (pogema instance s = our first episode with seed s), while both agree on
    the positions (pogema's soft occupancy bug may change its agents channel later)."""
    for seed in (3, 4):
        config = dict(num_agents=16, size=12, density=0.3, obs_radius=3, collision_system="soft",
                      on_target="restart", max_episode_steps=64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapped = FollowerStylePogema(pogema.GridConfig(seed=seed, observation_type="POMAPF", **config))
            theirs, _ = wrapped.reset(seed)
        env = PogemaEnv(num_envs=1, seed=seed, observation_type="follower", **config)
        ours = env.reset()[0]
        assert np.array_equal(theirs, ours)
        rng = np.random.default_rng(seed)
        for _ in range(20):
            act = rng.integers(0, 5, 16)
            theirs = wrapped.step(act.tolist())[0]
            ours = env.step(act[None])[0][0]
            xy = np.array(wrapped.env.grid.positions_xy) - 3
            if not np.array_equal(xy, env.positions[0]):
                break
            assert np.array_equal(theirs[:, 0], ours[:, 0]) and np.array_equal(theirs[:, 2], ours[:, 2])


def test_cli_bench_pogema_lmapf_writes_results(tmp_path, capsys):
    from memarl.cli import main

    argv = ["bench", "env", "pogema-lmapf", "--configs", "8a-8x8", "--seconds", "0.01", "--num-envs", "2",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "| 8a-8x8 |" in capsys.readouterr().out
    result = json.loads((tmp_path / "bench_env_pogema_lmapf.json").read_text())
    assert result["configs"][0]["config"] == "8a-8x8"
    assert (tmp_path / "bench_env_pogema_lmapf.md").read_text().startswith("pogema-lmapf-v0")
    assert main(argv) == 2  # earlier results are kept without --force
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


def test_bench_train_runs_each_engine_and_reports_ratios_and_profile(tmp_path, capsys):
    from memarl.cli import main
    out = tmp_path / "bench"
    argv = ["bench", "train", "--env", "tmaze", "--agent", "gru", "--total-steps", "2048",
            "--num-envs", "8", "--engines", "sync,async", "--suite", "tmaze-rate",
            "--out", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    result = json.loads((out / "bench_train_tmaze_gru.json").read_text())
    assert [row["engine"] for row in result["results"]] == ["sync", "async"]
    sync, asynchronous = result["results"]
    assert sync["agent_steps"] == asynchronous["agent_steps"] == 2048
    assert sync["sps_ratio"] == 1.0
    assert asynchronous["sps_ratio"] == pytest.approx(asynchronous["sps"] / sync["sps"])
    assert sync["policy_lag_avg"] == 0 and 0 <= asynchronous["policy_lag_max"] <= 1
    assert sync["profile_s_per_update"]["learn_backward_s"] > 0
    assert sync["test"]["episodes"] == asynchronous["test"]["episodes"] > 0
    assert 0 <= asynchronous["test"]["success"] <= 1
    assert asynchronous["profile_s_per_update"]["learner_wait_s"] >= 0
    assert (out / "bench_train_tmaze_gru.md").read_text().strip() in table
    assert main(argv) == 2  # results are not replaced without --force
    assert "exists; pass --force" in capsys.readouterr().err
