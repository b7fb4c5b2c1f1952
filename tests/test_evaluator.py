"""The one evaluator: every env family through one code path, pinned episodes, golden values of
the per-family evaluators it replaced, batch-independent sampling, resume, outputs, bad input."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from memarl.cli import main
from memarl.envs.base import PinnedEpisode
from memarl.errors import MemarlError
from memarl.eval import evaluate as E
from memarl.eval.baselines import GreedyPathPolicy, make_baseline
from memarl.eval.suites import get_suite, load_suite_file

from .golden_policies import PathFollowingPolicy

GOLDEN = Path(__file__).parent / "data" / "eval_before_issue9.json"
FOLLOWER = {"obs_radius": 5, "observation_type": "follower"}


def _tiny_gru(obs_shape):
    from memarl.agents import make_agent
    torch.manual_seed(0)
    return make_agent("gru", obs_shape, 5, d_model=16, filters=4, gru_hidden=8).eval()


# the fixed episodes of tests/data/eval_before_issue9.json, made by the per-family evaluators
# (eval/evaluate.py for Bottleneck, eval/pogema_eval.py for POGEMA) before they were replaced
GOLDEN_CASES = {
    "bottleneck-test gru argmax L<=8 seeds 0..2":
        lambda: E.evaluate_policy(_tiny_gru((3, 5, 5)), "bottleneck-test", episodes=3, deterministic=True,
                                  max_corridor_length=8, observation={"obs_radius": 2}),
    "pogema-random-lmapf gru argmax follower maps 3 agents 8,16":
        lambda: E.evaluate_policy(_tiny_gru((3, 11, 11)), "pogema-random-lmapf", maps=3, agents=[8, 16],
                                  deterministic=True, observation=FOLLOWER),
    "pogema-mazes-mapf path-following argmax follower maps 4 agents 8,16":
        lambda: E.evaluate_policy(PathFollowingPolicy(), "pogema-mazes-mapf", maps=4, agents=[8, 16],
                                  deterministic=True, observation=FOLLOWER),
    "pogema-mazes-lmapf greedy maps 4 agents 8,64":
        lambda: E.evaluate_policy(make_baseline("greedy"), "pogema-mazes-lmapf", maps=4, agents=[8, 64]),
    "pogema-puzzles-mapf greedy maps 2 agents 2,4":
        lambda: E.evaluate_policy(make_baseline("greedy"), "pogema-puzzles-mapf", maps=2, agents=[2, 4]),
}


@pytest.fixture
def puzzles_data(monkeypatch):
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pogema-maps"
    given = os.environ.get("MEMARL_DATA_DIR")
    folder = Path(given) if given else shared
    if not (folder / "05-puzzles" / "maps.yaml").is_file():
        pytest.skip("pogema-maps data copy not found (set MEMARL_DATA_DIR to it)")
    monkeypatch.setenv("MEMARL_DATA_DIR", str(folder))


@pytest.mark.parametrize("case", list(GOLDEN_CASES))
def test_same_episode_metrics_as_the_per_family_evaluators(case, request):
    if "puzzles" in case:
        request.getfixturevalue("puzzles_data")
    want = json.loads(GOLDEN.read_text())[case]
    rows = GOLDEN_CASES[case]()
    assert len(rows) == len(want)
    for row, old in zip(rows, want):
        for key, value in old.items():
            if key != "suite":
                assert row[key] == pytest.approx(value, abs=1e-12), (case, key, old)
    if "path-following" in case:  # not a degenerate golden: outcomes differ between episodes
        assert len({r["ISR"] for r in rows}) > 2


def test_pinned_episodes_equal_single_env_runs():
    """A batch of pinned episodes, refilled as episodes end, plays exactly each episode alone."""
    suite = get_suite("pogema-random-mapf")
    episodes = E.select_episodes(suite, maps=5, agents=[8])
    rows = E.evaluate_policy(GreedyPathPolicy(), "pogema-random-mapf", maps=5, agents=[8], batch_size=2)
    for episode, row in zip(episodes, rows):
        env = E.make_suite_env(suite, E.env_settings(suite, E.EvalPolicy(None, "", {})), 1, 8, episode.map_name)
        env.start_episodes([PinnedEpisode(episode.map_name, episode.seed, episode.max_episode_steps)])
        policy = GreedyPathPolicy()
        while True:
            _, _, _, _, info = env.step(policy.act(env))
            if info["episode_end"][0]:
                break
        assert {k: info["episode_metrics"][0][k] for k in suite.metrics} == {k: row[k] for k in suite.metrics}


def test_bottleneck_episodes_are_the_seeded_test_maps():
    rows = E.evaluate_policy(PathFollowingPolicy(), "bottleneck-test", episodes=2, max_corridor_length=5,
                             observation={"obs_radius": 2}, deterministic=True)
    assert [(r["corridor_length"], r["seed"]) for r in rows] == [(L, s) for L in (3, 4, 5) for s in (0, 1)]
    assert all(r["max_episode_steps"] == 2 * r["corridor_length"] + 100 for r in rows)


def test_sampled_actions_do_not_depend_on_batching():
    """Keyed sampling: the same rows for any batch size (and so any worker count or resume)."""
    kwargs = dict(maps=3, agents=[8, 16], observation=FOLLOWER, seed=5)
    one = E.evaluate_policy(PathFollowingPolicy(), "pogema-random-lmapf", batch_size=1, **kwargs)
    many = E.evaluate_policy(PathFollowingPolicy(), "pogema-random-lmapf", batch_size=4, **kwargs)
    strip = [{k: v for k, v in r.items() if k != "runtime"} for r in one]
    assert strip == [{k: v for k, v in r.items() if k != "runtime"} for r in many]
    other_seed = E.evaluate_policy(PathFollowingPolicy(), "pogema-random-lmapf", batch_size=4,
                                   **{**kwargs, "seed": 6})
    assert [r["avg_throughput"] for r in other_seed] != [r["avg_throughput"] for r in one]


def test_keyed_uniforms_are_uniform_and_keyed():
    keys = np.arange(2000, dtype=np.uint64) * np.uint64(7919)
    u = E.keyed_uniform(keys, np.zeros(2000, dtype=np.int64), 8)
    assert u.shape == (2000, 8) and 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    again = E.keyed_uniform(keys[::-1].copy(), np.zeros(2000, dtype=np.int64), 8)[::-1]
    assert np.array_equal(u, again)
    assert not np.array_equal(u, E.keyed_uniform(keys, np.ones(2000, dtype=np.int64), 8))
    logits = torch.log(torch.tensor([[[0.1, 0.2, 0.3, 0.4, 0.0]]]).expand(2000, 8, 5))
    actions = E.keyed_actions(logits, u)
    assert np.allclose(np.bincount(actions.ravel(), minlength=5) / actions.size, [0.1, 0.2, 0.3, 0.4, 0.0], atol=0.01)


def test_mean_ci95_on_known_data():
    mean, half = E.mean_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5 and half == pytest.approx(1.96 * np.sqrt(5 / 3) / 2)
    assert E.mean_ci95(np.array([7.0])) == (7.0, 0.0)
    with pytest.raises(MemarlError):
        E.mean_ci95(np.array([]))


def test_summary_groups_bands_and_collisions_per_agent_step():
    suite = get_suite("bottleneck-test")
    rows = [{"map_name": f"bottleneck-{L}", "corridor_length": L, "num_agents": 2, "seed": s,
             "episode_length": 10, "CSR": float(s % 2), "ISR": 0.5, "SoC": 20, "makespan": 10}
            for L in (3, 30, 300) for s in range(4)]
    summary = E.summarize(rows, suite)
    assert [g["corridor_length"] for g in summary["groups"]] == [3, 30, 300]
    assert summary["groups"][0]["CSR"] == 0.5 and summary["groups"][0]["episodes"] == 4
    bands = {b["band"]: b for b in summary["bands"]}
    assert bands["L 3..50"]["episodes"] == 8 and bands["L 100..1000"]["episodes"] == 4
    values = E.metric_values([{"collisions": 40, "episode_length": 10, "num_agents": 8}], "collisions")
    assert values.tolist() == [0.5]


# ------------------------------------------------------------------------------------ outputs


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_cli_writes_all_outputs_and_refuses_another_evaluation(tmp_path, capsys):
    out = tmp_path / "greedy"
    args = ["eval", "--baseline", "greedy", "--suite", "pogema-random-mapf", "--maps", "2",
            "--agents", "8,16", "--out", str(out), "--quiet"]
    assert main(args) == 0
    rows = _rows(out / "episodes.csv")
    assert len(rows) == 4 and {r["num_agents"] for r in rows} == {"8", "16"}
    assert "| num_agents | episodes | CSR | ISR | SoC | makespan | collisions | obstacle_collisions |" \
        in (out / "summary.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [g["num_agents"] for g in summary["groups"]] == [8, 16] and summary["policy"] == {"baseline": "greedy"}
    assert (out / "plot.png").stat().st_size > 0
    before = (out / "episodes.csv").read_bytes()
    assert main(args) == 0  # the same evaluation again: nothing left to run, nothing duplicated
    assert (out / "episodes.csv").read_bytes() == before
    assert main(args[:2] + ["greedy-random"] + args[3:]) == 2
    err = capsys.readouterr().err
    assert "holds results of another checkpoint or policy" in err and "--force" in err
    assert (out / "episodes.csv").read_bytes() == before
    assert main(args[:2] + ["greedy-random"] + args[3:] + ["--force"]) == 0
    assert _rows(out / "episodes.csv")[0]["policy"] == "greedy-random"


def test_interrupted_evaluation_resumes_without_duplicates(tmp_path, monkeypatch):
    out = tmp_path / "o"
    cfg = dict(baseline="greedy", suite="pogema-mazes-lmapf", maps=6, agents=(8, 16), out=str(out))
    full = tmp_path / "full"
    E.evaluate(E.EvalConfig(**{**cfg, "out": str(full)}), progress=False)
    played = []
    real = E.episode_row

    def dies_after_five(*args, **kwargs):
        if len(played) == 5:
            raise KeyboardInterrupt
        played.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(E, "episode_row", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        E.evaluate(E.EvalConfig(**cfg), progress=False)
    assert len(_rows(out / "episodes.csv")) == 5
    with (out / "episodes.csv").open("a") as f:
        f.write("pogema-mazes-lmapf,validation-mazes-seed-0")  # a line cut by a kill
    monkeypatch.setattr(E, "episode_row", real)
    E.evaluate(E.EvalConfig(**cfg), progress=False)
    rows = _rows(out / "episodes.csv")
    keys = [(r["map_name"], r["num_agents"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12
    strip = lambda rows: [{k: v for k, v in r.items() if k != "runtime"} for r in rows]  # noqa: E731
    assert strip(rows) == strip(_rows(full / "episodes.csv"))  # in suite order, as one uninterrupted run


@pytest.mark.slow
def test_workers_give_the_rows_of_one_process(tmp_path):
    base = dict(suite="pogema-random-lmapf", maps=4, agents=(8,), baseline="greedy")
    E.evaluate(E.EvalConfig(**base, out=str(tmp_path / "one")), progress=False)
    E.evaluate(E.EvalConfig(**base, out=str(tmp_path / "two"), workers=2, batch_size=1), progress=False)
    strip = lambda rows: sorted(tuple(v for k, v in r.items() if k != "runtime") for r in rows)  # noqa: E731
    assert strip(_rows(tmp_path / "one" / "episodes.csv")) == strip(_rows(tmp_path / "two" / "episodes.csv"))


# ------------------------------------------------------------------------------------ suite files and bad input


SUITE = """name: mine
env: pogema-lmapf-v0
settings: {collision_system: soft}
maps: ['validation-random-seed-00[0-2]']
agents: [4]
seeds: "0..1"
episode_steps: 16
metrics: [avg_throughput]
axis: num_agents
"""


def test_a_users_suite_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(SUITE)
    suite = load_suite_file(path)
    assert len(suite.episodes()) == 6 and suite.settings == {"collision_system": "soft"}
    out = tmp_path / "out"
    assert main(["eval", "--baseline", "greedy", "--suite", str(path), "--out", str(out), "--quiet"]) == 0
    assert len(_rows(out / "episodes.csv")) == 6


@pytest.mark.parametrize("change, words", [
    (("axis: num_agents", "axis: num_agents\ncolour: red"), "unknown key 'colour'"),
    (("maps: ['validation-random-seed-00[0-2]']", "maps: [no-such-map]"), "no-such-map"),
    (("agents: [4]", "agents: [1000]"), None),
    (("settings: {collision_system: soft}", "settings: {collision_system: bumpy}"), "collision_system"),
    (("settings: {collision_system: soft}", "settings: {num_agents: 3}"), "set per episode"),
    (("metrics: [avg_throughput]", "metrics: [speed]"), "unknown metric 'speed'"),
    (("seeds: \"0..1\"", "seeds: \"5..1\""), "seeds"),
    (("env: pogema-lmapf-v0", "env: nowhere"), "unknown env"),
    (("episode_steps: 16", "episode_steps: 0"), "episode_steps"),
    (("name: mine", "name: [1]"), "name must be"),
    (("maps: ['validation-random-seed-00[0-2]']", "maps: [bottleneck-5]"), "Bottleneck corridor"),
    (("axis: num_agents", "axis: corridor_length"), "corridor_length needs Bottleneck maps"),
    (("name: mine", "name: mine\n  - :"), "not valid YAML"),
])
def test_bad_suite_files_are_one_line(tmp_path, capsys, change, words):
    path = tmp_path / "bad.yaml"
    path.write_text(SUITE.replace(*change))
    out = tmp_path / "out"
    assert main(["eval", "--baseline", "greedy", "--suite", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err or "agents do not fit" in err, err
    if words:
        assert words in err, err
    else:  # more agents than free cells: found before any episode runs
        assert "1000 agents do not fit on map 'validation-random-seed-000'" in err
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--suite", "pogema-mazes-lmapf", "--agents", "8,x"], "--agents"),
    (["--suite", "pogema-mazes-lmapf", "--baseline", "astar9000"], "unknown baseline"),
    (["--suite", "pogema-mazes-lmapf", "--agents", "5"], "agent counts"),
    (["--suite", "pogema-mazes-lmapf", "--max-corridor-length", "5"], "applies to suites of Bottleneck corridors"),
    (["--suite", "bottleneck-test", "--agents", "3"], "agent counts"),
    (["--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
    (["--suite", "missing.yaml"], "cannot read suite file missing.yaml"),
    (["--maps", "2"], "--maps needs --suite"),
    (["--suite", "pogema-mazes-lmapf", "--workers", "0"], "--workers"),
    (["--suite", "pogema-mazes-lmapf", "--compare", "unpublished"], "--compare"),
])
def test_cli_bad_input(args, words, tmp_path, capsys):
    full = ["eval"] + args + ["--out", str(tmp_path / "o"), "--quiet"]
    if "--baseline" not in args:
        full += ["--baseline", "greedy"]
    assert main(full) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_trained_runs_evaluate_with_their_observation(tmp_path, capsys):
    """A POGEMA run with a non-default radius evaluates on a POGEMA suite with that radius; a
    suite of another family or one pinning another radius is refused before anything is written."""
    run = tmp_path / "run"
    assert main(["train", "--env", "pogema-lmapf", "--agent", "srmt", "--total-steps", "1024",
                 "--num-envs", "2", "--num-minibatches", "2", "--run-dir", str(run), "--env-opt", "num_agents=4",
                 "--env-opt", "obs_radius=3",
                 "--env-opt", "reward=follower", "--print-every-s", "1000", "--agent-opt", "d_model=16",
                 "--agent-opt", "num_heads=2"]) == 0
    assert main(["eval", str(run), "--suite", "pogema-mazes-lmapf", "--maps", "2", "--agents", "8",
                 "--quiet"]) == 0
    summary = (run / "eval" / "pogema-mazes-lmapf" / "summary.md").read_text()
    assert "| 8 | 2 |" in summary and "srmt" in summary and "obs_radius=3" in summary
    assert main(["eval", str(run), "--suite", "bottleneck-test", "--quiet"]) == 2
    assert "suite bottleneck-test runs env bottleneck-v0; the checkpoint was trained on pogema-lmapf-v0" \
        in capsys.readouterr().err
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(SUITE.replace("{collision_system: soft}", "{collision_system: soft, obs_radius: 5}"))
    assert main(["eval", str(run), "--suite", str(pinned), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sets obs_radius=5, the checkpoint was trained with obs_radius=3" in err
    assert not (run / "eval" / "mine").exists()


def test_compare_published_reads_the_results_written(tmp_path, monkeypatch, capsys):
    """`memarl eval --baseline greedy --compare published` puts the greedy results of the POGEMA
    suites already evaluated among the published baselines (metrics of missing suites: '–')."""
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--baseline", "greedy", "--compare", "published"]) == 2
    assert "no POGEMA suite results in baselines/greedy" in capsys.readouterr().err
    for suite in ("pogema-random-lmapf", "pogema-mazes-lmapf"):
        assert main(["eval", "--baseline", "greedy", "--suite", suite, "--maps", "2", "--agents", "8"]) == 0
    assert main(["eval", "--baseline", "greedy", "--compare", "published"]) == 0
    out = tmp_path / "baselines" / "greedy" / "compare-published" / "lmapf"
    table = (out / "comparison.md").read_text()
    assert "greedy" in table and "Follower" in table and "RHCR" in table
    data = json.loads((out / "comparison.json").read_text())
    assert data["ours"]["metrics"]["Performance"] is not None and data["ours"]["metrics"]["Cooperation"] is None
    assert (out / "comparison.png").stat().st_size > 0


def test_every_shipped_suite_file_parses():
    from memarl.eval.suites import shipped_suite_files
    from memarl.registry import SUITES

    files = shipped_suite_files()
    assert len(files) == 16 and set(files) == set(SUITES.names())
    for name, path in files.items():
        suite = load_suite_file(path)
        assert suite.name == name and suite.episodes() and suite.description


def test_videos_of_the_first_episodes(tmp_path):
    out = tmp_path / "o"
    assert main(["eval", "--baseline", "greedy", "--suite", "bottleneck-test", "--episodes", "2",
                 "--max-corridor-length", "3", "--videos", "2", "--out", str(out)]) == 0
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["bottleneck-3-agents2-seed0.gif", "bottleneck-3-agents2-seed1.gif"]
    assert all((out / "videos" / v).read_bytes()[:6] == b"GIF89a" for v in videos)
