"""T-Maze: the memory task of RATE, Ni et al. and AGaLiTe in one parametrised env, batched in numpy.

See :class:`TMazeEnv` for the task and its presets (``shared/reference/memory_agents.md`` §6 for
the sources). :class:`TMazeGymEnv` is one maze of a single-agent preset as a Gymnasium env,
:class:`~memarl.envs.pettingzoo_env.TMazeParallelEnv` one env of any preset as a PettingZoo ``ParallelEnv``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence

import gymnasium
import numpy as np

from memarl.configs import Range, validate_fields
from memarl.envs.base import EpisodeEnds, PinnedEpisode, config_with_overrides
from memarl.envs.maps import corridor_length as map_corridor_length
from memarl.envs.mapgen import MAX_CORRIDOR_LENGTH
from memarl.errors import MemarlError

Preset = Literal["rate", "ni_passive", "agalite", "relay"]
"""names of the presets (see :class:`TMazeEnv`)"""
PRESETS: tuple[str, ...] = ("rate", "ni_passive", "agalite", "relay")
OBS_DIM = {"rate": 4, "ni_passive": 2, "agalite": 16, "relay": 4}
"""observation width of each preset"""
NUM_ACTIONS = 4

RATE_EVAL_STEPS = (9, 30, 90, 150, 300, 600, 900, 1200, 2400, 4800, 9600)
"""RATE's evaluation horizons T_val (paper E.2, Table 10); the corridor is L = T - 2"""
RATE_TRAIN_STEPS = (9, 30, 90, 150, 300, 600, 900)
"""RATE's training horizons T_train"""
AGALITE_LENGTHS = (120, 160, 180, 200)
"""corridor lengths of AGaLiTe's configs (GaLiTe/GTrXL 120, README 160, AGaLiTe 180, GRU 200)"""
AGALITE_MAX_LENGTH = 256
"""the agalite observation codes the position 0..L-1 in 8 bits of Gray code"""
AGALITE_TIME_LIMIT = 1000
"""tmazev2's TimeLimit"""
AGALITE_DISTRACTORS = 6
GRAY_BITS = 8

# rate / ni_passive / relay actions (Ni et al.'s action_mapping): 0 right, 1 up, 2 left, 3 down
GRID_DX = np.array([1, 0, -1, 0], dtype=np.int64)
GRID_DY = np.array([0, 1, 0, -1], dtype=np.int64)
# agalite actions: 0 up, 1 down, 2 left, 3 right
AGALITE_UP, AGALITE_DOWN, AGALITE_LEFT, AGALITE_RIGHT = 0, 1, 2, 3


def horizon(preset: str, corridor_length: int) -> int:
    """The preset's episode length for corridor ``L``: rate and relay L + 2, ni_passive L + 1,
    agalite 1000 (its TimeLimit)."""
    if preset == "agalite":
        return AGALITE_TIME_LIMIT
    return int(corridor_length) + (1 if preset == "ni_passive" else 2)


def check_length(preset: str, length: Any, what: str = "corridor length") -> int:
    """``length`` as an int if it is a corridor length the preset can play (one-line error)."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) \
            or not 1 <= length <= MAX_CORRIDOR_LENGTH:
        raise MemarlError(f"{what} must be an integer in 1..{MAX_CORRIDOR_LENGTH}, got {length!r}")
    if preset == "agalite" and length > AGALITE_MAX_LENGTH:
        raise MemarlError(f"{what} must be at most {AGALITE_MAX_LENGTH} for preset agalite (its observation "
                          f"codes the position in 8 bits of Gray code), got {length}")
    return int(length)


# --------------------------------------------------------------------------------------------
# config


@dataclass(frozen=True)
class TMazeConfig:
    """Settings of :class:`TMazeEnv` (every field is a constructor keyword)."""

    num_envs: Annotated[int, Range(1, 1_000_000)] = 1
    """number of envs N stepped together"""
    preset: Preset = "rate"
    """task definition: rate (RATE), ni_passive (Ni et al. 2023's passive T-Maze), agalite
    (AGaLiTe's tmazev2), relay (two agents; only shared memory solves it)"""
    corridor_length: Annotated[int, Range(1, MAX_CORRIDOR_LENGTH)] = 10
    """corridor length L (rate, ni_passive, relay: cells x = 0..L, junction x = L; agalite:
    positions 0..L-1, junction L-1, L <= 256); an evaluation suite sets it per episode"""
    corridor_lengths: Annotated[tuple[int, ...] | None, Range(1, MAX_CORRIDOR_LENGTH)] = None
    """training over several lengths: each drawn episode's L is one of these, equally likely (of
    those unlocked, under a curriculum), and its time limit follows it; None = corridor_length only"""
    curriculum_success: Annotated[float | None, Range(0, 1, low_exclusive=True)] = None
    """a curriculum over corridor_lengths for corridors too long to find the junction by chance
    (the rate preset pays nothing before it): drawn episodes start on the shortest length only,
    and the next longer one is unlocked when the success rate of the last curriculum_window drawn
    episodes of the longest unlocked length reaches this; shorter ones stay in the draw. Episodes
    report ``unlocked_length`` and ``curriculum_success`` (success times unlocked_length / the
    longest length: the score that picks best.pt, so a policy further along ranks higher, and
    success itself once all is unlocked). None = no curriculum"""
    curriculum_window: Annotated[int, Range(1, 1_000_000)] = 100
    """episodes of the newest unlocked length whose success rate decides the next unlock"""
    max_episode_steps: Annotated[int | None, Range(1, 10_000_000)] = None
    """time limit; None = the preset's horizon (rate, relay: L + 2; ni_passive: L + 1; agalite: 1000)"""
    seed: Annotated[int | None, Range(0, 2**32 - 1)] = None
    """env n's random stream is seed + n (Gymnasium vector-env convention); None = fresh entropy"""
    autoreset: bool = True
    """reset an env inside step() when its episode ends; if False the env freezes until reset()"""

    def __post_init__(self) -> None:
        validate_fields(self, label=lambda name: f"env option {name}")
        check_length(self.preset, self.corridor_length, "env option corridor_length")
        if self.corridor_lengths is not None:
            if not self.corridor_lengths:
                raise MemarlError("env option corridor_lengths must hold at least one length")
            lengths = tuple(check_length(self.preset, L, "env option corridor_lengths")
                            for L in self.corridor_lengths)
            object.__setattr__(self, "corridor_lengths", lengths)
        if self.curriculum_success is not None and len(set(self.corridor_lengths or ())) < 2:
            raise MemarlError("env option curriculum_success needs env option corridor_lengths with at least "
                              "two different lengths (the curriculum unlocks them shortest first)")

    @property
    def num_agents(self) -> int:
        """agents per env: 2 for relay, 1 for the other presets"""
        return 2 if self.preset == "relay" else 1

    @property
    def drawn_lengths(self) -> tuple[int, ...]:
        """the corridor lengths drawn episodes play: corridor_lengths (sorted and distinct under
        a curriculum, its unlock order) or corridor_length alone"""
        if self.corridor_lengths is None:
            return (self.corridor_length,)
        if self.curriculum_success is not None:
            return tuple(sorted(set(self.corridor_lengths)))
        return self.corridor_lengths

    def episode_steps(self, corridor_length: int) -> int:
        """Time limit of an episode on corridor ``L`` under this config."""
        if self.max_episode_steps is not None:
            return int(self.max_episode_steps)
        return horizon(self.preset, corridor_length)


# --------------------------------------------------------------------------------------------
# counter-based randomness: every random value is a hash of (episode key, step, agent), so a
# batch of envs needs no per-env generator and an episode does not depend on its batch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STREAM_SALT = np.uint64(0x7D3A2F1C5B4E6A98)
_CUE_SALT = np.uint64(0xC3A5C85C97CB3127)
_STEP_SALT = np.uint64(0x2545F4914F6CDD1D)
_LENGTH_SALT = np.uint64(0x5851F42D4C957F2D)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64 values."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def episode_keys(streams: Any, counts: Any) -> np.ndarray:
    """Keys ``uint64 [K]`` of episode ``counts[k]`` (0, 1, ...) of random stream ``streams[k]``.

    The pinned episode with seed ``s`` is episode 0 of stream ``s``: the first episode of env 0
    of ``TMazeEnv(seed=s)``.
    """
    with np.errstate(over="ignore"):
        s = np.asarray(streams, dtype=np.uint64)
        c = np.asarray(counts, dtype=np.uint64)
        return _mix64(_mix64(s ^ _STREAM_SALT) + c * _GOLDEN)


def episode_cues(keys: np.ndarray) -> np.ndarray:
    """The rewarded side ``int64 [K]`` of each episode key: +1 (up) or -1 (down), equally likely."""
    with np.errstate(over="ignore"):
        top = _mix64(np.asarray(keys, dtype=np.uint64) ^ _CUE_SALT) >> np.uint64(63)
    return np.where(top == 1, 1, -1).astype(np.int64)


def episode_length_choices(keys: np.ndarray, num_choices: int) -> np.ndarray:
    """Which of ``num_choices`` corridor lengths ``int64 [K]`` each episode key plays."""
    with np.errstate(over="ignore"):
        bits = _mix64(np.asarray(keys, dtype=np.uint64) ^ _LENGTH_SALT) >> np.uint64(32)
    return (bits * np.uint64(num_choices) >> np.uint64(32)).astype(np.int64)


def episode_cue(seed: int) -> int:
    """The rewarded side (+1 up, -1 down) of the episode pinned with ``seed``."""
    return int(episode_cues(episode_keys([seed], [0]))[0])


def _step_bits(keys: np.ndarray, t: np.ndarray, num_agents: int) -> np.ndarray:
    """64 random bits ``uint64 [N, A]`` for the observation at step ``t`` of each agent."""
    with np.errstate(over="ignore"):
        idx = t.astype(np.uint64)[:, None] * np.uint64(num_agents) + np.arange(num_agents, dtype=np.uint64)
        return _mix64(keys[:, None] ^ _mix64(idx * _GOLDEN + _STEP_SALT))


def _noise(bits: np.ndarray) -> np.ndarray:
    """Uniform values in {-1, 0, +1} from random bits (bias below 2^-32)."""
    return ((bits >> np.uint64(32)) * np.uint64(3) >> np.uint64(32)).astype(np.int64) - 1


def gray_code(positions: Any, bits: int = GRAY_BITS) -> np.ndarray:
    """The ``bits``-bit Gray code of ``positions``, most significant bit first: ``float32 [..., bits]``
    (tmazev2's ``_get_position``: ``g[0] = b[0]``, ``g[i] = b[i-1] xor b[i]`` of the binary digits)."""
    p = np.asarray(positions, dtype=np.int64)
    g = p ^ (p >> 1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    return ((g[..., None] >> shifts) & 1).astype(np.float32)


_GRAY_TABLE = gray_code(np.arange(AGALITE_MAX_LENGTH))  # [256, 8] the code of every position
_BIT_TABLE = ((np.arange(2 ** AGALITE_DISTRACTORS)[:, None] >> np.arange(AGALITE_DISTRACTORS)) & 1
              ).astype(np.float32)  # [64, 6] the distractor bits of every 6-bit value


# --------------------------------------------------------------------------------------------
# the env


class TMazeEnv(EpisodeEnds):
    """T-Maze, ``N`` envs stepped together with numpy; four presets of one task.

    Description
        A cue at the start of a corridor says which arm (up or down) at its far end, the
        junction, is rewarded; the agent walks the corridor and turns. The cue is shown only in
        the first observation, so choosing the cued arm (``success``) needs memory of it;
        chance level is 0.5. The presets are the task as defined by three papers' code, each
        exactly (observation, action order, horizon, reward; ``memory_agents.md`` §6), plus a
        two-agent preset:

        * ``rate`` -- RATE (Cherepanov et al.; CognitiveAISystems/RATE ``val_tmaze.py``):
          corridor cells x = 0..L at y = 0, goal cells (L, +1) and (L, -1), start (0, 0).
        * ``ni_passive`` -- the passive T-Maze of Ni et al. 2023 (twni2016/Memory-RL
          ``TMazeClassicPassive``, ``tmaze_passive`` config), which RATE modified: the same
          geometry, ambiguous positions, a step penalty for lagging behind.
        * ``agalite`` -- AGaLiTe's tmazev2 ``SimplerTMazeWDistractors`` (subho406/agalite
          ``src/tasks/tmaze.py``): positions 0..L-1, the junction is L-1, the position is
          observed (Gray code), distractor bits.
        * ``relay`` -- two agents in two mazes of the ``rate`` geometry and length, stepped in
          lockstep; only agent 0 sees the cue, and both are paid only when agent 1 turns to the
          cued side. Agent 1 cannot observe anything of agent 0, so only a memory shared between
          the agents (SRMT) can solve it.

        The cue is drawn uniformly from {up, down} per episode. A pinned episode's seed fixes it
        (:meth:`start_episodes`); map ``tmaze-L`` of the map library names corridor length L.

    Observation
        ``float32 [N, A, D]`` (``obs_shape == (D,)``), a vector per agent:

        * ``rate`` (D = 4): ``[y, cue, flag, noise]`` -- RATE's [x, y, hint, flag, noise] with x
          dropped: ``y`` in {-1, 0, +1} the row; ``cue`` the rewarded side (+1 up, -1 down) in
          the first observation of the episode, 0 afterwards; ``flag`` = 1 when x == L (the
          junction, also the goal cells; RATE's code, not its paper's "one step before"), else
          0; ``noise`` uniform in {-1, 0, +1}, drawn afresh for every observation.
        * ``ni_passive`` (D = 2): ``[0, cue]`` in the first observation, ``[0, 0]`` in the
          corridor (x < L, the start cell included after the first step), ``[1, y]`` at the
          junction and in the goal cells (x == L).
        * ``agalite`` (D = 16): ``[cue one-hot (2) | Gray code of the position (8) | distractors
          (6)]``: the cue is ``[0, 1]`` for up and ``[1, 0]`` for down in the first observation,
          ``[0, 0]`` afterwards; the Gray code of the position 0..L-1 is 8 bits, most
          significant first; the 6 distractor bits are uniform 0/1, all 0 in the first
          observation.
        * ``relay`` (D = 4): the ``rate`` layout for each agent; agent 0's ``cue`` is the cue in
          its first observation (0 afterwards), agent 1's ``cue`` is always 0.

        Random values (noise, distractors) are fixed functions of the episode, the step and the
        agent, so an episode is the same in any batch. An agent that stopped in a goal cell
        (relay) keeps observing that cell until the episode ends. A frozen env (after its
        episode, without autoreset or after a pinned episode) observes zeros.

    Action
        ``int [N, A]`` in ``0..3``. ``rate``, ``ni_passive``, ``relay``: 0 right (+x), 1 up
        (+y), 2 left (-x), 3 down (-y); a move off the maze (up/down in the corridor, left at
        the start, right at the junction) is a no-op. ``agalite``: 0 up, 1 down, 2 left, 3
        right; in the corridor left/right move (clamped to 0..L-1) and up/down are no-ops; at
        the junction up/down choose an arm and left/right are no-ops (tmazev2 does not move
        the agent at the junction). Actions of agents that are not alive are ignored. Wrong
        shape, non-integer dtype or values outside 0..3 raise :class:`MemarlError`.

    Reward
        ``float32 [N, A]``.

        * ``rate``: only on the last step: 1 if the agent entered the cued goal cell, else 0
          (also 0 at the time limit); 0 on every other step.
        * ``ni_passive``: on every step but the last, ``-1/L`` when x < t (x after the move, t
          the steps taken so far: the agent lags behind the schedule x = t), else 0; on the last
          step 1 if the agent stands in the cued goal cell, else 0 (no penalty on that step).
        * ``agalite``: -0.1 on every step that chooses no arm (left/right/no-op moves, and
          left/right at the junction); choosing an arm at the junction pays +4 if it is the cued
          one, else -1.
        * ``relay``: on the episode's last step, both agents get 1 if agent 1 entered the cued
          goal cell of its maze AND agent 0 entered the goal cell of the same (cued) side of its
          own, else 0 (an agent still in its corridor at the time limit chose no side); 0 on
          every other step.

        ``success`` (the score metric) is 1 when the episode's decisive reward was earned: the
        cued arm was chosen (relay: by both agents), 0 otherwise; ``return`` is its return.

    Starting State
        Every agent at the start of its corridor (x = 0, y = 0), the cue drawn for the episode.
        Unpinned episodes play ``corridor_length`` (or one of ``corridor_lengths``, drawn per
        episode) with the config's time limit; env ``n``'s
        episodes come from random stream ``seed + n`` (episode 0, 1, ... of it), so they depend
        only on the seed and on how many episodes env ``n`` played (and, under a curriculum
        (``curriculum_success``), on how many lengths the batch has unlocked: the online PPO
        stand-in for RATE's training data, which draws L uniformly up to the training length
        from an oracle's episodes; the curriculum state lives in the env object, so a resumed
        run climbs it again). ``reset(options=...)`` and
        :meth:`start_episodes` play given episodes instead (corridor length, seed, time limit).

    Episode End
        * ``rate``: terminated when the agent enters a goal cell; truncated at the time limit
          (default L + 2) if it did not.
        * ``ni_passive``: always exactly at the time limit (default L + 1), a finite horizon
          whose last step pays the arm reward: terminated (never truncated).
        * ``agalite``: terminated when the agent chooses an arm at the junction; truncated at
          the time limit (default 1000, tmazev2's TimeLimit).
        * ``relay``: an agent that enters a goal cell stops there (``alive`` False, its actions
          ignored) until the episode ends; the episode ends when both agents are in goal cells
          or at the time limit (default L + 2). On that step ``terminated[n, a]`` is True for
          the agents in goal cells and ``truncated[n, :]`` True if the time limit was reached.

        For every preset, ``terminated``/``truncated`` are set only on the episode's last step
        (``truncated`` for all agents when the time limit is reached, even with a goal entered
        on that same step, as Gymnasium's TimeLimit; never in ni_passive); ``info["arrived"]``
        marks the step an agent's choice became final (ni_passive: the last step, for an agent
        in a goal cell). With ``autoreset`` the env is reset inside the same
        ``step`` (``obs``, ``positions``, ``alive`` belong to the next episode,
        ``info["first"]`` is set); without it the ending step shows the final state and the env
        then freezes (no movement, zero rewards and observations, ``alive`` False) until
        ``reset()``. ``info["episode_metrics"][n]`` of an ending env holds ``return``
        (per-agent mean), ``episode_length``, ``success``, ``turned`` (fraction of agents that
        chose an arm), ``cue`` (+1/-1), ``corridor_length``, ``max_episode_steps``,
        ``episode_seed`` (None unless pinned), ``map_name`` (``tmaze-L``) and ``preset``; under
        a curriculum also ``unlocked_length`` (the longest length drawn now) and
        ``curriculum_success`` (``success`` times the unlocked share of the longest length).

    Arguments
        See :class:`TMazeConfig`: pass a config, keyword overrides, or both
        (``TMazeEnv(num_envs=64, preset="agalite", corridor_length=120, seed=0)``).

    Version History
        * v0: first version: presets rate, ni_passive, agalite as their code defines them, and
          relay.
    """

    metadata = {"render_modes": ["ansi"], "name": "tmaze-v0"}
    config_class = TMazeConfig
    observation_fields = ("preset",)
    agent_preset = "tmaze"
    """the agent preset `memarl train` uses unless --agent-opt preset=... says otherwise"""
    """the config fields that change what an agent observes (a policy is evaluated with its own)"""

    def __init__(self, config: TMazeConfig | None = None, **overrides: Any):
        config = config_with_overrides(config, TMazeConfig, overrides, "tmaze")
        self.config = config
        self.preset = config.preset
        self.num_envs = n = config.num_envs
        self.num_agents = a = config.num_agents
        self.num_actions = NUM_ACTIONS
        self.obs_shape = (OBS_DIM[config.preset],)
        low = 0.0 if config.preset == "agalite" else -1.0
        self.single_observation_space = gymnasium.spaces.Box(low, 1.0, self.obs_shape, dtype=np.float32)
        self.single_action_space = gymnasium.spaces.Discrete(NUM_ACTIONS)
        self._autoreset = config.autoreset
        self._grid = config.preset != "agalite"  # rate geometry: cells x = 0..L, goals (L, +-1)
        self._stops = config.preset in ("rate", "relay")  # entering a goal cell ends the agent's part

        self._stream = np.zeros(n, dtype=np.uint64)  # [N] random stream of each env
        self._count = np.zeros(n, dtype=np.uint64)  # [N] episodes drawn from it so far
        self._key = np.zeros(n, dtype=np.uint64)  # [N] key of the current episode
        self._goal = np.ones(n, dtype=np.int64)  # [N] the cued side, +1 up / -1 down
        self._length = np.full(n, config.corridor_length, dtype=np.int64)  # [N] corridor length L
        self._max_steps = np.ones(n, dtype=np.int64)  # [N] time limit
        self._seed_of = np.full(n, -1, dtype=np.int64)  # [N] pinned episode seed, -1 = drawn
        self._t = np.zeros(n, dtype=np.int64)  # [N] steps taken
        self._x = np.zeros((n, a), dtype=np.int64)
        self._y = np.zeros((n, a), dtype=np.int64)
        self._arm = np.zeros((n, a), dtype=np.int64)  # [N, A] chosen side (+1/-1), 0 = none yet
        self._return = np.zeros((n, a), dtype=np.float64)
        self.alive = np.zeros((n, a), dtype=bool)
        self._done = np.zeros(n, dtype=bool)  # [N] frozen
        self._pinned_once = np.zeros(n, dtype=bool)  # [N] playing a start_episodes episode: freeze at its end
        self._started = np.zeros(n, dtype=bool)
        self._needs_reset = True
        self._draw_lengths = np.asarray(config.drawn_lengths, dtype=np.int64)  # [C] lengths drawn episodes play
        self._draw_horizons = np.array([config.episode_steps(L) for L in config.drawn_lengths], dtype=np.int64)
        self._curriculum = config.curriculum_success is not None
        self._unlocked = 1 if self._curriculum else len(self._draw_lengths)  # the first C' lengths are drawn
        self._outcomes = np.zeros(config.curriculum_window, dtype=np.float64)  # ring: newest length's successes
        self._num_outcomes = 0  # written to the ring since the last unlock
        self._seed_streams(config.seed)

    # ---------------------------------------------------------------- seeding and episodes

    def _seed_streams(self, seed: int | None) -> None:
        if seed is None:
            self._stream = np.random.SeedSequence().generate_state(self.num_envs, np.uint64)
        else:
            self._stream = np.arange(self.num_envs, dtype=np.uint64) + np.uint64(seed)
        self._count[:] = 0

    def _begin(self, ids: np.ndarray, lengths: np.ndarray, max_steps: np.ndarray, keys: np.ndarray,
               seeds: np.ndarray) -> None:
        """Start a new episode in envs ``ids`` (all arrays ``[K]``)."""
        self._length[ids] = lengths
        self._max_steps[ids] = max_steps
        self._key[ids] = keys
        self._goal[ids] = episode_cues(keys)
        self._seed_of[ids] = seeds
        self._t[ids] = 0
        self._x[ids] = 0
        self._y[ids] = 0
        self._arm[ids] = 0
        self._return[ids] = 0.0
        self.alive[ids] = True
        self._done[ids] = False
        self._started[ids] = True

    def _begin_drawn(self, ids: np.ndarray) -> None:
        """Envs ``ids`` start the next episode of their streams (the config's corridor, or one
        of its ``corridor_lengths`` that is unlocked)."""
        keys = episode_keys(self._stream[ids], self._count[ids])
        self._count[ids] += np.uint64(1)
        k = len(ids)
        u = self._unlocked
        choice = episode_length_choices(keys, u) if u > 1 else np.zeros(k, dtype=np.int64)  # [K]
        self._begin(ids, self._draw_lengths[choice], self._draw_horizons[choice], keys, np.full(k, -1))

    @property
    def unlocked_length(self) -> int:
        """The longest corridor that drawn episodes may play now (under a curriculum, the newest
        unlocked length; else the longest of the config's lengths)."""
        return int(self._draw_lengths[:self._unlocked].max())

    def _advance_curriculum(self, ended_ids: np.ndarray, success: np.ndarray) -> None:
        """Count the drawn episodes of the newest unlocked length that ended in ``ended_ids``
        (``success`` [K] their outcomes); unlock the next length once the last
        ``curriculum_window`` of them reach the success rate."""
        newest = self._draw_lengths[self._unlocked - 1]
        counted = (self._seed_of[ended_ids] < 0) & (self._length[ended_ids] == newest)  # [K]
        window = len(self._outcomes)
        for outcome in success[counted]:
            self._outcomes[self._num_outcomes % window] = outcome
            self._num_outcomes += 1
        if (self._num_outcomes >= window and self._unlocked < len(self._draw_lengths)
                and self._outcomes.mean() >= self.config.curriculum_success):
            self._unlocked += 1
            self._num_outcomes = 0

    def _begin_given(self, ids: Sequence[int], lengths: Sequence[Any], seeds: Sequence[Any],
                     max_steps: Sequence[Any]) -> None:
        """Envs ``ids`` play the given episodes (a None length / seed / limit: the config's
        corridor / the env's stream / the config's rule)."""
        ids_arr = np.asarray(ids, dtype=np.int64)
        lengths_arr = np.zeros(len(ids), dtype=np.int64)
        steps_arr = np.zeros(len(ids), dtype=np.int64)
        seeds_arr = np.full(len(ids), -1, dtype=np.int64)
        for k, (L, s, h) in enumerate(zip(lengths, seeds, max_steps)):
            L = self.config.corridor_length if L is None else check_length(self.preset, L)
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < 2**63):
                raise MemarlError(f"episode seed must be a non-negative integer or None, got {s!r}")
            if h is not None and (isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1):
                raise MemarlError(f"max_episode_steps must be an integer >= 1 or None, got {h!r}")
            lengths_arr[k] = L
            steps_arr[k] = self.config.episode_steps(L) if h is None else int(h)
            seeds_arr[k] = -1 if s is None else int(s)
        drawn = seeds_arr < 0
        keys = episode_keys(np.where(drawn, self._stream[ids_arr], seeds_arr.astype(np.uint64)),
                            np.where(drawn, self._count[ids_arr], 0))
        self._count[ids_arr[drawn]] += np.uint64(1)
        self._begin(ids_arr, lengths_arr, steps_arr, keys, seeds_arr)

    def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
        """Start a new episode in every env; returns ``obs [N, A, D]`` (the first of each).

        ``seed`` reseeds env ``n``'s random stream with ``seed + n``. ``options`` may hold
        ``corridor_lengths``, ``episode_seeds``, ``max_episode_steps`` (lists of N, None entries
        allowed): the episodes of this reset (a seed fixes the episode, as in
        :meth:`start_episodes`); later episodes are drawn as usual.
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise MemarlError(f"seed must be a non-negative integer, got {seed!r}")
            self._seed_streams(int(seed))
        ids = np.arange(self.num_envs)
        if options:
            known = {"corridor_lengths", "episode_seeds", "max_episode_steps"}
            unknown = sorted(set(options) - known)
            if unknown:
                raise MemarlError(f"unknown reset option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            given = [self._per_env(name, options.get(name)) for name in ("corridor_lengths", "episode_seeds",
                                                                          "max_episode_steps")]
            self._begin_given(ids, *given)
        else:
            self._begin_drawn(ids)
        self._pinned_once[:] = False
        self._needs_reset = False
        return self._observe()

    def _per_env(self, name: str, value: Any) -> list:
        if value is None or isinstance(value, (int, np.integer)):
            return [value] * self.num_envs
        value = list(value)
        if len(value) != self.num_envs:
            raise MemarlError(f"{name} must have {self.num_envs} entries (one per env), got {len(value)}")
        return value

    def start_episodes(self, episodes: Sequence[PinnedEpisode], env_ids: Sequence[int] | None = None) -> np.ndarray:
        """Start ``episodes[k]`` in env ``env_ids[k]`` (default: env k) now; the others go on.

        An episode is a map ``tmaze-L`` (corridor length L), a seed (which fixes the cue and the
        noise) and a time limit (None: the config's rule, by default the preset's horizon). Each
        such env plays exactly that episode and then freezes (``alive`` all False, no autoreset)
        until it is given another episode or ``reset()`` is called: the evaluator's way to run a
        queue of fixed episodes on one batch. Returns the observations of all envs ``[N, A, D]``;
        every env must have been started once (by ``reset`` or here) before the first step.
        """
        ids = list(range(len(episodes))) if env_ids is None else [int(i) for i in env_ids]
        if len(ids) != len(episodes):
            raise MemarlError(f"start_episodes got {len(episodes)} episodes for {len(ids)} env ids")
        for i in ids:
            if not 0 <= i < self.num_envs:
                raise MemarlError(f"env id must be in 0..{self.num_envs - 1}, got {i}")
        lengths = []
        for episode in episodes:
            length = map_corridor_length(episode.map_name, "tmaze")
            if length is None:
                raise MemarlError(f"map {episode.map_name!r} is not a T-Maze corridor (tmaze-L)")
            lengths.append(length)
        self._begin_given(ids, lengths, [e.seed for e in episodes], [e.max_episode_steps for e in episodes])
        self._pinned_once[ids] = True
        if not self._started.all():
            missing = int(np.flatnonzero(~self._started)[0])
            raise MemarlError(f"env {missing} has no episode: start an episode in every env of the batch "
                              f"(or reset()) before stepping")
        self._needs_reset = False
        return self._observe()

    # ---------------------------------------------------------------- observations

    def _observe(self) -> np.ndarray:
        n, a = self.num_envs, self.num_agents
        obs = np.zeros((n, a, self.obs_shape[0]), dtype=np.float32)  # [N, A, D]
        first = self._t == 0  # [N] the cue is visible in the first observation only
        if self.preset == "agalite":
            bits = _step_bits(self._key, self._t, a)  # [N, A]
            up = first & (self._goal == 1)
            down = first & (self._goal == -1)
            obs[:, :, 0] = down[:, None]
            obs[:, :, 1] = up[:, None]
            obs[:, :, 2:2 + GRAY_BITS] = _GRAY_TABLE[self._x]
            low = (bits & np.uint64(2 ** AGALITE_DISTRACTORS - 1)).astype(np.int64)  # [N, A] 6 random bits
            obs[:, :, 2 + GRAY_BITS:] = _BIT_TABLE[np.where(first[:, None], 0, low)]
        elif self.preset == "ni_passive":
            junction = self._x >= self._length[:, None]
            obs[:, :, 0] = junction
            cue = np.where(first, self._goal, 0)[:, None]
            obs[:, :, 1] = np.where(junction, self._y, cue)
        else:  # rate, relay: [y, cue, flag, noise]
            obs[:, :, 0] = self._y
            obs[:, 0, 1] = np.where(first, self._goal, 0)  # agent 0 only (relay's agent 1 never sees it)
            obs[:, :, 2] = self._x == self._length[:, None]
            obs[:, :, 3] = _noise(_step_bits(self._key, self._t, a))
        obs[self._done] = 0.0
        return obs

    # ---------------------------------------------------------------- step

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all envs with ``actions [N, A]``; see the class docstring for the outputs."""
        if self._needs_reset:
            raise MemarlError("call reset() before step()")
        act = self._check_actions(actions)
        running = ~self._done  # [N]
        live = self.alive & running[:, None]  # [N, A] agents that act
        self._t += running
        t = self._t
        length = self._length[:, None]  # [N, 1]
        goal = self._goal[:, None]  # [N, 1]
        timeout = running & (t >= self._max_steps)  # [N]
        if self.preset == "agalite":
            junction = self._x == length - 1
            arrived = live & junction & (act <= AGALITE_DOWN)  # up/down at the junction choose an arm
            dx = np.where(act == AGALITE_RIGHT, 1, np.where(act == AGALITE_LEFT, -1, 0))
            moving = live & ~junction
            self._x = np.where(moving, np.clip(self._x + dx, 0, length - 1), self._x)
            side = np.where(act == AGALITE_UP, 1, -1)
            self._arm = np.where(arrived, side, self._arm)
            self._y = np.where(arrived, side, self._y)
            reward = np.where(arrived, np.where(side == goal, 4.0, -1.0), np.where(live, -0.1, 0.0))
            self.alive = self.alive & ~arrived
            ended = running & (arrived.any(1) | timeout)
            terminated = arrived
        else:
            nx = self._x + GRID_DX[act]
            ny = self._y + GRID_DY[act]
            valid = ((ny == 0) & (nx >= 0) & (nx <= length)) | ((nx == length) & (np.abs(ny) == 1))
            move = live & valid
            self._x = np.where(move, nx, self._x)
            self._y = np.where(move, ny, self._y)
            if self.preset == "ni_passive":
                ended = timeout
                last = ended[:, None] & live  # [N, A]
                arrived = last & (self._y != 0)
                self._arm = np.where(last, self._y, self._arm)
                lagging = live & (self._x < t[:, None])
                penalty = -1.0 / length
                reward = np.where(last, (self._y == goal).astype(np.float64), np.where(lagging, penalty, 0.0))
                terminated = last
            else:  # rate, relay
                arrived = live & (self._y != 0)
                self._arm = np.where(arrived, self._y, self._arm)
                self.alive = self.alive & ~arrived
                ended = running & (~self.alive.any(1) | timeout)
                win = (self._arm == goal).all(1)  # [N] every agent chose the cued side
                reward = np.broadcast_to((ended & win)[:, None], live.shape).astype(np.float64)
                terminated = ended[:, None] & (self._arm != 0)
        reward = reward.astype(np.float32)
        self._return += reward
        terminated = terminated & ended[:, None]
        # ni_passive's horizon is the task's end (terminated), the other presets' a time limit
        cut = ended & timeout & (self.preset != "ni_passive")
        truncated = np.repeat(cut[:, None], self.num_agents, axis=1)

        first = np.zeros((self.num_envs, self.num_agents), dtype=bool)
        metrics: list[dict[str, Any] | None] = [None] * self.num_envs
        if ended.any():
            ended_ids = np.flatnonzero(ended)
            success = (self._arm[ended_ids] == self._goal[ended_ids, None]).all(1)  # [K]
            for i, m in zip(ended_ids.tolist(), self._episode_metrics(ended_ids, success)):
                metrics[i] = m
            if self._curriculum:
                self._advance_curriculum(ended_ids, success)
            freeze = ended & (self._pinned_once | (not self._autoreset))
            restart = np.flatnonzero(ended & ~freeze)
            if restart.size:
                self._begin_drawn(restart)
                first[restart] = True
            obs = self._observe()  # frozen envs still show their final state on this step
            self._done |= freeze
            self.alive[freeze] = False
        else:
            obs = self._observe()
        info = {"episode_end": ended, "episode_metrics": metrics, "first": first, "arrived": arrived}
        return obs, reward, terminated, truncated, info

    def _episode_metrics(self, ids: np.ndarray, success: np.ndarray) -> list[dict[str, Any]]:
        """The metrics of the episodes ending in envs ``ids`` (computed together; ``success`` [K]
        whether every agent of each chose the cued side)."""
        arm, goal = self._arm[ids], self._goal[ids]
        columns = zip(self._return[ids].mean(1).tolist(), self._t[ids].tolist(),
                      success.astype(np.float64).tolist(), (arm != 0).mean(1).tolist(),
                      goal.tolist(), self._length[ids].tolist(), self._max_steps[ids].tolist(),
                      self._seed_of[ids].tolist())
        rows = [{"return": ret, "episode_length": t, "success": success, "turned": turned, "cue": cue,
                 "corridor_length": length, "max_episode_steps": steps,
                 "episode_seed": None if seed < 0 else seed, "map_name": f"tmaze-{length}", "preset": self.preset}
                for ret, t, success, turned, cue, length, steps, seed in columns]
        if self._curriculum:
            unlocked = self.unlocked_length
            progress = unlocked / int(self._draw_lengths[-1])
            for row in rows:
                row["unlocked_length"] = unlocked
                row["curriculum_success"] = row["success"] * progress
        return rows

    # ---------------------------------------------------------------- state views

    @property
    def score_metric(self) -> str:
        """the episode metric that ranks policies on this env (picks ``best.pt``): success, or
        under a curriculum ``curriculum_success`` (success scaled by the unlocked share of the
        longest corridor, so that a policy of the short lengths alone never outranks one that
        plays them all)"""
        return "curriculum_success" if self._curriculum else "success"

    @property
    def positions(self) -> np.ndarray:
        """``[N, A, 2]`` int (x, y) of each agent in its own maze (agalite: x is the position
        0..L-1, y the chosen arm once chosen)."""
        return np.stack([self._x, self._y], axis=-1)

    @property
    def cues(self) -> np.ndarray:
        """``[N]`` the rewarded side of each env's episode: +1 up, -1 down (hidden from agents)."""
        return self._goal.copy()

    @property
    def corridor_lengths(self) -> np.ndarray:
        """``[N]`` corridor length of each env's current episode."""
        return self._length.copy()

    def shortest_path_actions(self) -> np.ndarray:
        """``int64 [N, A]``: each agent's move along the shortest path to the *cued* goal (an
        oracle that knows the cue; the scripted ``greedy`` baseline plays it)."""
        x, y, goal = self._x, self._y, self._goal[:, None]
        if self.preset == "agalite":
            at_junction = x == self._length[:, None] - 1
            turn = np.where(goal == 1, AGALITE_UP, AGALITE_DOWN)
            return np.where(at_junction, turn, AGALITE_RIGHT).astype(np.int64)
        # right along the corridor; at x == L step toward the cued row (right is a no-op there)
        toward = np.where(y < goal, 1, np.where(y > goal, 3, 0))
        return np.where(x < self._length[:, None], 0, toward).astype(np.int64)

    def render(self, i: int = 0) -> str:
        """Text picture of env ``i``, one maze per agent (relay: agent 0's above agent 1's, a
        blank line between): ``#`` wall, ``.`` free, ``g`` the cued goal cell, the agent as its
        index (top row y = +1; a frozen env shows no agent)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_envs:
            raise MemarlError(f"env id must be an integer in 0..{self.num_envs - 1}, got {i!r}")
        end = int(self._length[i]) - (1 if self.preset == "agalite" else 0)  # the junction's x
        mazes = []
        for j in range(self.num_agents):
            rows = [["#"] * end + ["."], ["."] * (end + 1), ["#"] * end + ["."]]
            rows[1 - int(self._goal[i])][end] = "g"
            if self._started[i] and not self._done[i]:
                rows[1 - int(self._y[i, j])][int(self._x[i, j])] = str(j)
            mazes.append("\n".join("".join(r) for r in rows))
        return "\n\n".join(mazes)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# one maze as a Gymnasium env, one env as a PettingZoo ParallelEnv


class TMazeGymEnv(gymnasium.Env):
    """One T-Maze of a single-agent preset (``rate``, ``ni_passive``, ``agalite``) as a Gymnasium env.

    Wraps a :class:`TMazeEnv` with one env and no autoreset: the same observations, actions,
    rewards and episode ends (see its docstring), for one agent.

    Observation
        ``Box(float32, (D,))``: D = 4 (rate), 2 (ni_passive), 16 (agalite).

    Action
        ``Discrete(4)``, in the preset's order (rate, ni_passive: 0 right, 1 up, 2 left, 3 down;
        agalite: 0 up, 1 down, 2 left, 3 right).

    Reward
        The preset's (rate: 1 for the cued arm at the end; ni_passive: -1/L per lagging step,
        1 for the cued arm at the last step; agalite: -0.1 per step, +4 / -1 for the arm).

    Starting State
        ``reset(seed=s)`` starts episode 0 of random stream ``s`` (the episode pinned with seed
        ``s``), later ``reset()`` calls the following episodes of that stream.
        ``options={"corridor_length": L, "episode_seed": s, "max_episode_steps": H}`` (each
        optional) plays a given episode.

    Episode End
        As :class:`TMazeEnv`; the last step's info holds ``episode_metrics`` (``success``,
        ``return``, ...). Stepping after the end raises :class:`MemarlError` until ``reset()``.

    Arguments
        ``preset``, ``corridor_length``, ``max_episode_steps`` (:class:`TMazeConfig`) and
        ``render_mode`` (None or ``"ansi"``): ``TMazeGymEnv(preset="agalite", corridor_length=120)``.

    Version History
        * v0: first version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, preset: str = "rate", corridor_length: int = 10, max_episode_steps: int | None = None,
                 render_mode: str | None = None):
        if preset == "relay":
            raise MemarlError("preset relay has two agents: use memarl.envs.make_parallel('tmaze', preset='relay')")
        if render_mode not in (None, "ansi"):
            raise MemarlError(f"unknown render_mode {render_mode!r}; known: ansi")
        self.render_mode = render_mode
        self.env = TMazeEnv(TMazeConfig(num_envs=1, preset=preset, corridor_length=corridor_length,
                                        max_episode_steps=max_episode_steps, autoreset=False))
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self._over = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        given = None
        if options:
            known = {"corridor_length", "episode_seed", "max_episode_steps"}
            unknown = sorted(set(options) - known)
            if unknown:
                raise MemarlError(f"unknown reset option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            given = {"corridor_lengths": [options.get("corridor_length")],
                     "episode_seeds": [options.get("episode_seed")],
                     "max_episode_steps": [options.get("max_episode_steps")]}
        obs = self.env.reset(seed=seed, options=given)
        self._over = False
        return obs[0, 0], {"corridor_length": int(self.env.corridor_lengths[0])}

    def step(self, action: Any):
        if self._over:
            raise MemarlError("episode is over; call reset()")
        value = np.asarray(action)
        if value.shape != () or value.dtype.kind not in "iu":
            raise MemarlError(f"action must be one integer in 0..{NUM_ACTIONS - 1}, got {action!r}")
        obs, reward, terminated, truncated, info = self.env.step(value.astype(np.int64).reshape(1, 1))
        metrics = info["episode_metrics"][0]
        self._over = bool(info["episode_end"][0])
        return (obs[0, 0], float(reward[0, 0]), bool(terminated[0, 0]), bool(truncated[0, 0]),
                {} if metrics is None else {"episode_metrics": metrics})

    def render(self) -> str | None:
        return self.env.render(0) if self.render_mode == "ansi" else None


__all__ = ["AGALITE_LENGTHS", "PRESETS", "RATE_EVAL_STEPS", "RATE_TRAIN_STEPS", "TMazeConfig", "TMazeEnv",
           "TMazeGymEnv", "episode_cue", "episode_keys", "gray_code", "horizon"]
