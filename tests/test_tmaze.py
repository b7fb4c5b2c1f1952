"""T-Maze: the presets on hand-written episodes (reference §6), relay's rule, batched == separate
envs, determinism, long corridors, Gymnasium and PettingZoo APIs, suites and the evaluator."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import memarl.envs as E
from memarl.envs import maps as M
from memarl.envs.base import PinnedEpisode
from memarl.envs.tmaze import (
    RATE_EVAL_STEPS,
    RATE_TRAIN_STEPS,
    TMazeEnv,
    TMazeGymEnv,
    episode_cue,
    gray_code,
)
from memarl.errors import MemarlError

UP, DOWN = 1, -1
# rate / ni_passive / relay actions
RIGHT, R_UP, LEFT, R_DOWN = 0, 1, 2, 3
# agalite actions
A_UP, A_DOWN, A_LEFT, A_RIGHT = 0, 1, 2, 3


def seed_with(cue: int, skip: int = 0) -> int:
    """An episode seed whose cue is ``cue`` (the ``skip``-th such seed)."""
    return [s for s in range(200) if episode_cue(s) == cue][skip]


def start(preset: str, length: int, seed: int, **kwargs) -> tuple[TMazeEnv, np.ndarray]:
    """One env (no autoreset) playing the episode pinned with ``seed``; its first observation."""
    env = TMazeEnv(preset=preset, corridor_length=length, autoreset=False, **kwargs)
    obs = env.reset(options={"episode_seeds": [seed]})
    return env, obs[0]


def play(env: TMazeEnv, actions) -> list[tuple]:
    """Step a one-env batch through ``actions`` (one int per step, or a list per agent)."""
    out = []
    for a in actions:
        act = np.array([a if isinstance(a, (list, tuple)) else [a]], dtype=np.int64)
        obs, rew, term, trunc, info = env.step(act)
        out.append((obs[0], rew[0], term[0], trunc[0], info))
    return out


# ------------------------------------------------------------------------------------ rate


@pytest.mark.parametrize("cue, turn", [(UP, R_UP), (DOWN, R_DOWN)])
def test_rate_optimal_episode(cue, turn):
    env, obs = start("rate", 3, seed_with(cue))
    assert obs.shape == (1, 4) and obs.dtype == np.float32
    assert obs[0, :3].tolist() == [0, cue, 0]  # [y, cue, flag, noise]: the cue in the first obs only
    steps = play(env, [RIGHT, RIGHT, RIGHT, turn])
    want = [[0, 0, 0], [0, 0, 0], [0, 0, 1], [cue, 0, 1]]  # flag = 1 at x == L (junction and goal)
    for (o, r, te, tr, info), w in zip(steps, want):
        assert o[0, :3].tolist() == w and o[0, 3] in (-1.0, 0.0, 1.0)
    assert [s[1][0] for s in steps] == [0, 0, 0, 1]
    assert [bool(s[2][0]) for s in steps] == [False, False, False, True] and not any(s[3][0] for s in steps)
    info = steps[-1][4]
    assert info["episode_end"].tolist() == [True] and info["arrived"].tolist() == [[True]]
    m = info["episode_metrics"][0]
    assert (m["success"], m["return"], m["episode_length"], m["turned"], m["cue"]) == (1.0, 1.0, 4, 1.0, cue)
    assert (m["corridor_length"], m["max_episode_steps"], m["map_name"], m["preset"]) == (3, 5, "tmaze-3", "rate")
    assert env.positions[0, 0].tolist() == [3, cue] and not env.alive.any() and env.done.all()


def test_rate_wrong_arm_timeout_and_no_op_moves():
    seed = seed_with(UP)
    env, _ = start("rate", 3, seed)
    steps = play(env, [RIGHT, RIGHT, RIGHT, R_DOWN])
    assert steps[-1][1][0] == 0 and steps[-1][2][0] and steps[-1][4]["episode_metrics"][0]["success"] == 0.0
    assert steps[-1][4]["episode_metrics"][0]["turned"] == 1.0
    # invalid moves are no-ops: up/down in the corridor, left at the start, right at the junction
    env, _ = start("rate", 3, seed)
    steps = play(env, [R_UP, R_DOWN, LEFT])
    assert env.positions[0, 0].tolist() == [0, 0] and all(s[0][0, 1] == 0 for s in steps)  # cue gone even at x = 0
    steps = play(env, [RIGHT])
    assert env.positions[0, 0].tolist() == [1, 0]
    # timeout at T = L + 2: truncated, reward 0
    env, _ = start("rate", 3, seed)
    steps = play(env, [RIGHT] * 5)
    assert env.positions[0, 0].tolist() == [3, 0]
    assert [s[1][0] for s in steps] == [0] * 5 and not any(s[2][0] for s in steps)
    assert [bool(s[3][0]) for s in steps] == [False] * 4 + [True]
    m = steps[-1][4]["episode_metrics"][0]
    assert (m["success"], m["turned"], m["episode_length"]) == (0.0, 0.0, 5)
    # the goal entered on the last allowed step: terminated and truncated, rewarded
    env, _ = start("rate", 3, seed)
    steps = play(env, [LEFT, RIGHT, RIGHT, RIGHT, R_UP])
    assert steps[-1][1][0] == 1 and steps[-1][2][0] and steps[-1][3][0]


def test_rate_noise_is_uniform_over_minus_one_zero_one():
    env = TMazeEnv(num_envs=64, preset="rate", corridor_length=50, seed=3)
    values = [env.reset()[..., 3]]
    for _ in range(40):
        values.append(env.step(np.zeros((64, 1), np.int64))[0][..., 3])
    values = np.concatenate([v.ravel() for v in values])
    counts = {v: int((values == v).sum()) for v in (-1.0, 0.0, 1.0)}
    assert sum(counts.values()) == values.size and min(counts.values()) > values.size / 3 - 150


# ------------------------------------------------------------------------------------ ni_passive


@pytest.mark.parametrize("cue, turn", [(UP, R_UP), (DOWN, R_DOWN)])
def test_ni_passive_optimal_episode(cue, turn):
    env, obs = start("ni_passive", 3, seed_with(cue))
    assert obs.tolist() == [[0, cue]]
    steps = play(env, [RIGHT, RIGHT, RIGHT, turn])
    assert [s[0][0].tolist() for s in steps] == [[0, 0], [0, 0], [1, 0], [1, cue]]
    assert [s[1][0] for s in steps] == [0, 0, 0, 1]  # no lag, the cued arm at the last step (L + 1)
    assert [bool(s[2][0]) for s in steps] == [False, False, False, True] and not any(s[3][0] for s in steps)
    assert steps[-1][4]["episode_metrics"][0]["success"] == 1.0


def test_ni_passive_lag_penalty_and_goal_cells_do_not_end():
    env, _ = start("ni_passive", 3, seed_with(UP))
    steps = play(env, [LEFT, RIGHT, RIGHT, RIGHT])  # x = 0, 1, 2, 3 after t = 1, 2, 3, 4
    third = np.float32(-1 / 3)
    assert [s[1][0] for s in steps] == [third, third, third, 0]  # no penalty, no goal on the last step
    assert steps[-1][2][0] and steps[-1][4]["episode_metrics"][0]["success"] == 0.0
    assert steps[-1][4]["episode_metrics"][0]["return"] == pytest.approx(-1.0)
    # a goal cell does not end the episode: in and out again, [1, y] observed there
    seed = seed_with(DOWN)
    env, _ = start("ni_passive", 1, seed, max_episode_steps=4)
    steps = play(env, [RIGHT, R_UP, R_DOWN, R_DOWN])
    assert [s[0][0].tolist() for s in steps] == [[1, 0], [1, 1], [1, 0], [1, -1]]
    assert [s[1][0] for s in steps] == [0, -1, -1, 1]  # x = 1 < t from t = 2 on; L = 1: penalty -1
    assert [bool(s[2][0]) for s in steps] == [False, False, False, True]


# ------------------------------------------------------------------------------------ agalite


def agalite_gray(pos: int) -> np.ndarray:
    """tmazev2's ``_get_position``, transcribed."""
    binary = np.binary_repr(pos, width=8)
    gray = np.zeros(8, dtype=float)
    gray[0] = int(binary[0])
    gray[1:] = np.bitwise_xor(np.array([int(b) for b in binary[:-1]]), np.array([int(b) for b in binary[1:]]))
    return gray


def test_agalite_gray_code_matches_tmazev2():
    assert all((gray_code(p) == agalite_gray(p)).all() for p in range(256))
    assert gray_code(np.arange(256)).shape == (256, 8)


@pytest.mark.parametrize("cue, turn, other", [(UP, A_UP, A_DOWN), (DOWN, A_DOWN, A_UP)])
def test_agalite_episode(cue, turn, other):
    env, obs = start("agalite", 3, seed_with(cue))
    assert obs.shape == (1, 16)
    assert obs[0, :2].tolist() == ([0, 1] if cue == UP else [1, 0])  # up [0, 1], down [1, 0]
    assert obs[0, 2:].tolist() == [0] * 14  # position 0, no distractors at t = 0
    # up/down in the corridor are no-ops, left clamps at 0, left/right at the junction do not move
    steps = play(env, [A_UP, A_LEFT, A_RIGHT, A_RIGHT, A_LEFT, A_RIGHT])
    assert env.positions[0, 0].tolist() == [2, 0]
    positions = [0, 0, 1, 2, 2, 2]
    for (o, r, te, tr, _), p in zip(steps, positions):
        assert o[0, :2].tolist() == [0, 0] and (o[0, 2:10] == agalite_gray(p)).all()
        assert set(o[0, 10:].tolist()) <= {0.0, 1.0}
        assert r[0] == np.float32(-0.1) and not te[0] and not tr[0]
    assert any(s[0][0, 10:].any() for s in steps)  # distractors are drawn
    steps = play(env, [turn])
    assert steps[0][1][0] == 4 and steps[0][2][0] and not steps[0][3][0]
    m = steps[0][4]["episode_metrics"][0]
    assert m["success"] == 1.0 and m["return"] == pytest.approx(4 - 0.6, abs=1e-6) and m["episode_length"] == 7
    env, _ = start("agalite", 3, seed_with(cue))
    steps = play(env, [A_RIGHT, A_RIGHT, other])
    assert [s[1][0] for s in steps] == [np.float32(-0.1)] * 2 + [-1] and steps[-1][2][0]
    assert steps[-1][4]["episode_metrics"][0]["success"] == 0.0


def test_agalite_time_limit_1000():
    env, _ = start("agalite", 5, seed_with(UP))
    steps = play(env, [A_LEFT] * 1000)
    assert not any(s[3][0] for s in steps[:-1]) and steps[-1][3][0] and not steps[-1][2][0]
    m = steps[-1][4]["episode_metrics"][0]
    assert m["episode_length"] == 1000 and m["return"] == pytest.approx(-100.0, abs=1e-3) and m["turned"] == 0.0
    assert TMazeEnv(preset="agalite", corridor_length=256).reset().shape == (1, 1, 16)


# ------------------------------------------------------------------------------------ relay


def relay(seed: int, actions: list[list[int]], length: int = 3):
    env, obs = start("relay", length, seed)
    return env, obs, play(env, actions)


def test_relay_observations_and_rule():
    cue = UP
    seed = seed_with(cue)
    walk = [[RIGHT, RIGHT]] * 3
    env, obs, steps = relay(seed, walk + [[R_UP, R_UP]])
    assert obs[:, :3].tolist() == [[0, cue, 0], [0, 0, 0]]  # only agent 0 sees the cue
    assert all(s[0][:, 1].tolist() == [0, 0] for s in steps)
    r, te, tr, info = steps[-1][1:]
    assert r.tolist() == [1, 1] and te.tolist() == [True, True] and not tr.any()
    assert info["episode_metrics"][0]["success"] == 1.0 and info["episode_metrics"][0]["return"] == 1.0
    assert all(not s[1].any() for s in steps[:-1])
    # either agent on the other side: nobody is paid
    for a0, a1 in [(R_UP, R_DOWN), (R_DOWN, R_UP), (R_DOWN, R_DOWN)]:
        *_, steps = relay(seed, walk + [[a0, a1]])
        assert steps[-1][1].tolist() == [0, 0] and steps[-1][2].tolist() == [True, True]
        assert steps[-1][4]["episode_metrics"][0]["success"] == 0.0
    # agent 0 arrives first: it stops (not alive, actions ignored) and is paid with agent 1 at the end
    env, _, steps = relay(seed, walk + [[R_UP, LEFT]])
    assert env.alive[0].tolist() == [False, True] and not steps[-1][4]["episode_end"][0]
    assert steps[-1][1].tolist() == [0, 0] and not steps[-1][2].any()
    steps = play(env, [[R_DOWN, RIGHT]])  # agent 0's action is ignored
    assert env.positions[0].tolist() == [[3, 1], [3, 0]] and env.alive[0].tolist() == [False, False]
    assert steps[-1][1].tolist() == [0, 0] and steps[-1][3].all()  # timeout at L + 2, agent 1 chose nothing
    assert steps[-1][2].tolist() == [True, False]
    assert steps[-1][4]["episode_metrics"][0]["turned"] == 0.5
    env, _, steps = relay(seed, walk + [[R_UP, RIGHT], [LEFT, R_UP]])
    assert steps[-1][1].tolist() == [1, 1] and steps[-1][2].all() and steps[-1][3].all()
    assert env.positions[0].tolist() == [[3, 1], [3, 1]]


# ------------------------------------------------------------------------------------ batching, seeds


def _rollout(env: TMazeEnv, actions: np.ndarray, seed: int | None = None) -> list[np.ndarray]:
    out = [env.reset(seed=seed)]
    for act in actions:
        obs, rew, term, trunc, info = env.step(act)
        out += [obs, rew, term, trunc, info["first"], env.positions]
    return out


def _actions(preset: str, steps: int, n: int, a: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    forward = 3 if preset == "agalite" else 0
    acts = rng.integers(0, 4, (steps, n, a))
    return np.where(rng.random((steps, n, a)) < 0.6, forward, acts)  # mostly forward: episodes end


@pytest.mark.parametrize("preset", ["rate", "ni_passive", "agalite", "relay"])
def test_batched_equals_separate_envs(preset):
    n, steps = 3, 120
    a = 2 if preset == "relay" else 1
    acts = _actions(preset, steps, n, a, 1)
    batched = TMazeEnv(num_envs=n, preset=preset, corridor_length=4, seed=7)
    singles = [TMazeEnv(num_envs=1, preset=preset, corridor_length=4, seed=7 + i) for i in range(n)]
    obs = batched.reset()
    for i, s in enumerate(singles):
        assert (s.reset()[0] == obs[i]).all()
    ends = 0
    for t in range(steps):
        obs, rew, term, trunc, info = batched.step(acts[t])
        ends += int(info["episode_end"].sum())
        for i, s in enumerate(singles):
            o1, r1, te1, tr1, info1 = s.step(acts[t, i:i + 1])
            assert (o1[0] == obs[i]).all() and (r1[0] == rew[i]).all()
            assert (te1[0] == term[i]).all() and (tr1[0] == trunc[i]).all()
            assert info1["episode_metrics"][0] == info["episode_metrics"][i]
            assert (s.positions[0] == batched.positions[i]).all() and (s.alive[0] == batched.alive[i]).all()
    assert ends >= 3 * n


def _same(a, b) -> bool:
    return all((x == y).all() for x, y in zip(a, b))


@pytest.mark.parametrize("preset", ["rate", "agalite"])
def test_seeded_determinism(preset):
    acts = _actions(preset, 100, 4, 1, 0)
    a = _rollout(TMazeEnv(num_envs=4, preset=preset, corridor_length=3, seed=11), acts)
    assert _same(a, _rollout(TMazeEnv(num_envs=4, preset=preset, corridor_length=3, seed=11), acts))
    assert not _same(a, _rollout(TMazeEnv(num_envs=4, preset=preset, corridor_length=3, seed=12), acts))
    env = TMazeEnv(num_envs=4, preset=preset, corridor_length=3)
    assert _same(a, _rollout(env, acts, seed=11)) and _same(a, _rollout(env, acts, seed=11))


def test_cues_are_balanced_and_pinned_by_seed():
    cues = np.array([episode_cue(s) for s in range(2000)])
    assert set(cues.tolist()) == {-1, 1} and abs(cues.mean()) < 0.1
    env = TMazeEnv(num_envs=200, seed=0, corridor_length=1, max_episode_steps=1)
    env.reset()
    drawn = [env.cues]
    for _ in range(10):
        env.step(np.zeros((200, 1), np.int64))
        drawn.append(env.cues)
    assert abs(np.concatenate(drawn).mean()) < 0.1
    # the pinned episode with seed s is the first episode of an env seeded with s
    assert TMazeEnv(seed=5).reset()[0, 0, 1] == episode_cue(5)


def test_start_episodes_pins_then_freezes():
    env = TMazeEnv(num_envs=3, preset="rate", seed=0)
    with pytest.raises(MemarlError, match="reset"):
        env.step(np.zeros((3, 1), np.int64))
    with pytest.raises(MemarlError, match="env 2 has no episode"):
        env.start_episodes([PinnedEpisode("tmaze-3", 4), PinnedEpisode("tmaze-9598", 5)])
    obs = env.start_episodes([PinnedEpisode("tmaze-3", 4), PinnedEpisode("tmaze-9598", 5),
                              PinnedEpisode("tmaze-2", 6, max_episode_steps=2)])
    assert obs[:, 0, 1].tolist() == [episode_cue(4), episode_cue(5), episode_cue(6)]
    assert env.corridor_lengths.tolist() == [3, 9598, 2] and env.max_episode_steps.tolist() == [5, 9600, 2]
    for _ in range(2):
        obs, rew, term, trunc, info = env.step(np.zeros((3, 1), np.int64))
    assert info["episode_end"].tolist() == [False, False, True] and trunc[2, 0]
    assert info["episode_metrics"][2]["episode_seed"] == 6 and obs[2, 0, 2] == 1  # final state shown
    obs, *_, info = env.step(np.zeros((3, 1), np.int64))
    assert env.done.tolist() == [False, False, True] and (obs[2] == 0).all() and not info["episode_end"].any()
    env.start_episodes([PinnedEpisode("tmaze-7", 1)], [2])
    assert env.corridor_lengths[2] == 7 and env.alive.all()
    with pytest.raises(MemarlError, match="not a T-Maze corridor"):
        env.start_episodes([PinnedEpisode("bottleneck-3", 0)])
    with pytest.raises(MemarlError, match="at most 256"):
        TMazeEnv(preset="agalite").start_episodes([PinnedEpisode("tmaze-300", 0)])


@pytest.mark.parametrize("preset, length", [("rate", 9598), ("rate", 1000), ("ni_passive", 1000), ("relay", 1000)])
def test_long_corridors_with_the_oracle(preset, length):
    env = TMazeEnv(num_envs=2, preset=preset, seed=0, autoreset=False)
    env.start_episodes([PinnedEpisode(f"tmaze-{length}", 0), PinnedEpisode(f"tmaze-{length}", 1)])
    done = np.zeros(2, dtype=bool)
    metrics = [None, None]
    for _ in range(length + 2):
        *_, info = env.step(env.shortest_path_actions())
        for i in np.flatnonzero(info["episode_end"]):
            metrics[i] = info["episode_metrics"][i]
        done |= info["episode_end"]
    assert done.all() and all(m["success"] == 1.0 and m["episode_length"] == length + 1 for m in metrics)
    assert all(m["return"] == 1.0 for m in metrics)  # ni_passive: on schedule, no penalty


# ------------------------------------------------------------------------------------ APIs


@pytest.mark.parametrize("preset", ["rate", "ni_passive", "agalite"])
def test_gymnasium_check_env(preset):
    from gymnasium.utils.env_checker import check_env

    import gymnasium

    from memarl.envs import GYMNASIUM_ID
    made = gymnasium.make(GYMNASIUM_ID, preset=preset, corridor_length=5, render_mode="ansi")
    env = made.unwrapped
    assert isinstance(env, TMazeGymEnv) and env.spec.id == GYMNASIUM_ID
    check_env(env, skip_render_check=False)
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape and info["corridor_length"] == 5
    forward = A_RIGHT if preset == "agalite" else RIGHT
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(forward)
        assert obs in env.observation_space and isinstance(reward, float)
        total += reward
    assert "episode_metrics" in info and isinstance(env.render(), str)
    with pytest.raises(MemarlError, match="call reset"):
        env.step(forward)
    obs, _ = env.reset(options={"episode_seed": 0, "corridor_length": 2})
    assert env.env.corridor_lengths[0] == 2 and env.env.cues[0] == episode_cue(0)


def test_gymnasium_env_refuses_relay_and_bad_actions():
    with pytest.raises(MemarlError, match="two agents"):
        TMazeGymEnv(preset="relay")
    env = TMazeGymEnv()
    env.reset(seed=0)
    for bad in (1.5, [0, 1], 4):
        with pytest.raises(MemarlError):
            env.step(bad)


@pytest.mark.parametrize("preset", ["rate", "ni_passive", "agalite", "relay"])
def test_pettingzoo_parallel_api(preset):
    from pettingzoo.test import parallel_api_test

    parallel_api_test(E.make_parallel("tmaze", preset=preset, corridor_length=3, seed=1), num_cycles=200)
    penv = E.make_parallel("tmaze", preset=preset, corridor_length=2)
    obs, _ = penv.reset(options={"episode_seeds": [seed_with(UP)]})
    names = ["agent_0", "agent_1"] if preset == "relay" else ["agent_0"]
    assert list(obs) == names and obs["agent_0"].shape == penv.observation_space("agent_0").shape
    forward, turn = (A_RIGHT, A_UP) if preset == "agalite" else (RIGHT, R_UP)
    plan = [forward] * (1 if preset == "agalite" else 2) + [turn]
    for act in plan:
        obs, rew, term, trunc, info = penv.step({a: act for a in penv.agents})
    assert penv.agents == [] and all(info[a]["episode_metrics"]["success"] == 1.0 for a in names)
    assert isinstance(penv.render(), str)


def test_spaces_registry_and_cli_listing(capsys):
    for preset, dim, agents in [("rate", 4, 1), ("ni_passive", 2, 1), ("agalite", 16, 1), ("relay", 4, 2)]:
        env = E.make("tmaze", num_envs=2, preset=preset, seed=0)
        obs = env.reset()
        assert isinstance(env, TMazeEnv) and env.obs_shape == (dim,) and obs.shape == (2, agents, dim)
        assert env.num_agents == agents and env.num_actions == 4 and env.score_metric == "success"
        assert env.single_observation_space.shape == (dim,) and env.single_action_space.n == 4
        assert all(env.single_observation_space.contains(o) for o in obs.reshape(-1, dim))
        assert env.positions.shape == (2, agents, 2) and env.positions.dtype.kind == "i"
    from memarl.cli import main
    assert main(["list", "envs"]) == 0 and "tmaze-v0" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, word", [
    ({"preset": "active"}, "env option preset must be one of rate"),
    ({"corridor_length": 0}, "env option corridor_length"),
    ({"preset": "agalite", "corridor_length": 257}, "at most 256 for preset agalite"),
    ({"max_episode_steps": 0}, "env option max_episode_steps"),
    ({"corridor_lengths": ()}, "corridor_lengths must hold at least one"),
    ({"corridor_lengths": (5, 0)}, "env option corridor_lengths"),
    ({"preset": "agalite", "corridor_lengths": (10, 300)}, "at most 256 for preset agalite"),
    ({"num_envs": 0}, "env option num_envs"),
    ({"curriculum_success": 0.9}, "curriculum_success needs env option corridor_lengths"),
    ({"corridor_lengths": (4, 4), "curriculum_success": 0.9}, "at least two different lengths"),
    ({"corridor_lengths": (2, 4), "curriculum_success": 0}, "env option curriculum_success"),
    ({"corridor_lengths": (2, 4), "curriculum_success": 1.5}, "env option curriculum_success"),
    ({"corridor_lengths": (2, 4), "curriculum_success": 0.9, "curriculum_window": 0}, "env option curriculum_window"),
    ({"seed": -1}, "env option seed"),
    ({"cue": 1}, "unknown tmaze option"),
])
def test_bad_config(kwargs, word):
    with pytest.raises(MemarlError, match=word) as error:
        TMazeEnv(**kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("preset", ["rate", "ni_passive", "relay"])
def test_corridor_lengths_are_drawn_per_episode(preset):
    """A curriculum over lengths: every length is played, about equally often, each episode with
    its own horizon; the cue stays balanced and independent of the length."""
    lengths = (3, 10, 40)
    env = TMazeEnv(num_envs=300, preset=preset, corridor_lengths=lengths, seed=5)
    env.reset()
    seen = np.asarray(env.corridor_lengths)
    counts = {L: int((seen == L).sum()) for L in lengths}
    assert set(counts) == set(lengths) and min(counts.values()) > 70, counts
    # each env plays its corridor to its own horizon: the oracle reaches every junction in time
    ends = {}
    for t in range(max(lengths) + 2):
        obs, rewards, terminated, truncated, info = env.step(np.zeros((300, env.num_agents), dtype=np.int64))
        for n in np.flatnonzero((terminated | truncated).any(axis=1)):
            ends.setdefault(int(n), t + 1)
    for n, steps in ends.items():
        assert steps == (seen[n] + 1 if preset == "ni_passive" else seen[n] + 2)
    assert len(ends) == 300
    fixed = TMazeEnv(num_envs=4, preset=preset, corridor_length=7, seed=5)
    fixed.reset()
    assert list(fixed.corridor_lengths) == [7] * 4


def _play(env: TMazeEnv, steps: int, policy) -> list[dict]:
    """Step ``env`` with ``policy(env) -> actions [N, A]``; the metrics of the episodes that ended."""
    ended = []
    for _ in range(steps):
        _, _, _, _, info = env.step(policy(env))
        ended += [m for m in info["episode_metrics"] if m is not None]
    return ended


def _right_then_down(env: TMazeEnv) -> np.ndarray:
    """Walks to the junction and always turns down: success exactly when the cue is down."""
    at_junction = env.positions[..., 0] == env.corridor_lengths[:, None]
    return np.where(at_junction, 3, 0).astype(np.int64)


@pytest.mark.parametrize("preset", ["rate", "relay"])
def test_curriculum_unlocks_lengths_shortest_first(preset):
    """Under a curriculum drawn episodes start on the shortest length; an oracle unlocks the next
    length after each window of its newest length, in sorted order, and once all are unlocked every
    length is drawn; ``curriculum_success`` is ``success`` scaled by the unlocked share of 9."""
    env = TMazeEnv(num_envs=32, preset=preset, corridor_lengths=(9, 2, 4, 4), curriculum_success=0.9,
                   curriculum_window=20, seed=3)
    assert env.score_metric == "curriculum_success" and env.unlocked_length == 2
    env.reset()
    assert set(env.corridor_lengths.tolist()) == {2}
    unlocked_seen = []
    episodes = _play(env, 200, lambda e: e.shortest_path_actions())
    for m in episodes:
        if not unlocked_seen or unlocked_seen[-1] != m["unlocked_length"]:
            unlocked_seen.append(m["unlocked_length"])
        assert m["corridor_length"] <= m["unlocked_length"]
        assert m["curriculum_success"] == pytest.approx(m["success"] * m["unlocked_length"] / 9)
    assert unlocked_seen == [2, 4, 9] and env.unlocked_length == 9
    late = _play(env, 100, lambda e: e.shortest_path_actions())
    assert {m["corridor_length"] for m in late} == {2, 4, 9}
    assert all(m["success"] == m["curriculum_success"] == 1.0 for m in late)


def test_curriculum_waits_for_the_success_rate():
    """A policy at chance (always down) never reaches a 0.9 success rate, so nothing is unlocked;
    under a 0.3 threshold the same policy unlocks every length."""
    strict = TMazeEnv(num_envs=16, corridor_lengths=(1, 3), curriculum_success=0.9, curriculum_window=20, seed=0)
    strict.reset()
    episodes = _play(strict, 300, _right_then_down)
    assert len(episodes) > 500 and {m["corridor_length"] for m in episodes} == {1}
    assert 0.35 < np.mean([m["success"] for m in episodes]) < 0.65
    assert strict.unlocked_length == 1
    assert all(m["curriculum_success"] == pytest.approx(m["success"] / 3) for m in episodes)
    lenient = TMazeEnv(num_envs=16, corridor_lengths=(1, 3), curriculum_success=0.3, curriculum_window=20, seed=0)
    lenient.reset()
    _play(lenient, 300, _right_then_down)
    assert lenient.unlocked_length == 3


def test_curriculum_counts_drawn_episodes_only():
    """Pinned episodes (an evaluation's) neither count toward an unlock nor draw from the
    curriculum; without a curriculum no curriculum metrics are reported."""
    env = TMazeEnv(num_envs=4, corridor_lengths=(2, 5), curriculum_success=0.5, curriculum_window=2, seed=0)
    env.reset()
    for _ in range(5):
        env.start_episodes([PinnedEpisode("tmaze-2", seed=s, max_episode_steps=None) for s in range(4)])
        ended = _play(env, 4, lambda e: e.shortest_path_actions())
        assert len(ended) == 4 and all(m["success"] == 1.0 for m in ended)
    assert env.unlocked_length == 2
    plain = TMazeEnv(num_envs=2, corridor_lengths=(2, 5), seed=0)
    plain.reset()
    assert plain.score_metric == "success" and plain.unlocked_length == 5
    assert all("curriculum_success" not in m for m in _play(plain, 10, lambda e: e.shortest_path_actions()))


def test_bad_step_and_reset_input():
    env = TMazeEnv(num_envs=2, seed=0)
    env.reset()
    for bad, word in [(np.zeros((2,), np.int64), "shape"), (np.full((2, 1), 4), "0..3"),
                      (np.full((2, 1), -1), "0..3"), (np.zeros((2, 1), np.float32), "integers")]:
        with pytest.raises(MemarlError, match=word):
            env.step(bad)
    with pytest.raises(MemarlError, match="unknown reset option"):
        env.reset(options={"maps": [3, 3]})
    with pytest.raises(MemarlError, match="2 entries"):
        env.reset(options={"episode_seeds": [1, 2, 3]})
    with pytest.raises(MemarlError, match="episode seed"):
        env.reset(options={"episode_seeds": [-1, 2]})


def test_train_options_are_typed():
    from memarl.train.trainer import typed_env_options

    assert typed_env_options("tmaze", {"preset": "relay", "corridor_length": "30"}) == \
        {"preset": "relay", "corridor_length": 30}


# ------------------------------------------------------------------------------------ maps, suites, eval


def test_tmaze_maps_in_the_library():
    assert M.tmaze_map(3) == "###.\n....\n###."
    assert M.map_family("tmaze-5") == "tmaze" and M.map_family("bottleneck-5") == "bottleneck"
    assert M.map_family("validation-random-seed-000") == "grid"
    assert M.corridor_length("tmaze-5", "tmaze") == 5 and M.corridor_length("tmaze-5") is None
    assert M.corridor_length("tmaze-5", None) == 5 and M.corridor_length("bottleneck-5", "tmaze") is None
    assert M.map_source("tmaze-9598") is None and M.resolve_map_name("tmaze-(1|10000)") == ("tmaze-1", "tmaze-10000")


def test_shipped_suites():
    from memarl.eval.suites import get_suite

    rate = get_suite("tmaze-rate")
    assert rate.env_id == "tmaze-v0" and rate.settings == {"preset": "rate"} and rate.axis == "corridor_length"
    assert [M.corridor_length(m, "tmaze") for m in rate.map_names] == [t - 2 for t in RATE_EVAL_STEPS]
    assert rate.seeds == tuple(range(100)) and rate.num_agents == (1,) and rate.episode_steps is None
    assert rate.metrics[0] == "success" and len(rate.episodes()) == 1100
    relay = get_suite("tmaze-relay")
    assert relay.settings == {"preset": "relay"} and relay.num_agents == (2,)
    assert [M.corridor_length(m, "tmaze") for m in relay.map_names] == [t - 2 for t in RATE_TRAIN_STEPS]


@pytest.mark.parametrize("change, word", [
    ({"settings": {"preset": "agalite"}, "maps": ["tmaze-300"]}, "at most 256 for preset agalite"),
    ({"agents": [2]}, "preset rate has 1 agent"),
    ({"maps": ["bottleneck-3"]}, "plays T-Maze corridors"),
    ({"settings": {"corridor_length": 5}}, "set per episode"),
])
def test_bad_tmaze_suites(change, word):
    from memarl.eval.suites import parse_suite

    data = {"name": "t", "env": "tmaze-v0", "settings": {"preset": "rate"}, "maps": ["tmaze-3"], "agents": [1],
            "seeds": [0], "episode_steps": None, "metrics": ["success"], "axis": "corridor_length"}
    with pytest.raises(MemarlError, match=word):
        parse_suite({**data, **change}, "t.yaml")
    with pytest.raises(MemarlError, match="T-Maze corridor; use env tmaze-v0"):
        parse_suite({**data, "env": "pogema-mapf-v0", "settings": {}, "agents": [1], "episode_steps": 8,
                     "axis": "map_name"}, "t.yaml")


def test_evaluator_on_tmaze_slices(tmp_path, capsys):
    from memarl.cli import main
    from memarl.eval import evaluate as EV
    from memarl.eval.baselines import make_baseline

    rows = EV.evaluate_policy(make_baseline("greedy"), "tmaze-rate", episodes=2, max_corridor_length=30)
    assert [(r["map_name"], r["seed"]) for r in rows] == [(m, s) for m in ("tmaze-7", "tmaze-28") for s in (0, 1)]
    assert all(r["success"] == 1.0 and r["episode_length"] == r["corridor_length"] + 1 for r in rows)
    rows = EV.evaluate_policy(make_baseline("greedy"), "tmaze-relay", episodes=3, max_corridor_length=7)
    assert len(rows) == 3 and all(r["success"] == 1.0 and r["num_agents"] == 2 for r in rows)
    out = tmp_path / "rate"
    assert main(["eval", "--baseline", "random", "--suite", "tmaze-rate", "--episodes", "2",
                 "--max-corridor-length", "30", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [g["corridor_length"] for g in summary["groups"]] == [7, 28]
    assert all(0.0 <= g["success"] <= 1.0 for g in summary["groups"]) and (out / "plot.png").stat().st_size > 0
    rows = list(csv.DictReader((out / "episodes.csv").open()))
    assert len(rows) == 4 and {r["max_episode_steps"] for r in rows} == {"9", "30"}  # T = L + 2
    capsys.readouterr()
    assert main(["eval", "--baseline", "greedy", "--suite", "tmaze-rate", "--episodes", "1", "--videos", "1",
                 "--out", str(tmp_path / "v")]) == 2
    assert "has no video renderer" in capsys.readouterr().err
