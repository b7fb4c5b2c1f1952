"""POGEMA instances and suites: possible start/target cells (warehouse markers), map_name and
the map library, the suite files, ``memarl suites`` (list/fetch) and the benchmark scenario check."""
from __future__ import annotations

import os
import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from memarl.cli import main
from memarl.envs import grid as G
from memarl.envs import maps as S
from memarl.envs.engine import draw_cell
from memarl.envs.pogema_env import PogemaConfig, PogemaEnv
from memarl.envs.pogema_instances import PogemaInstances, draw_from_possible
from memarl.errors import MemarlError
from memarl.registry import SUITES

from . import scenarios
from .test_pogema_env import _actions, _pe_obs, _pogema, compare

pogema = pytest.importorskip("pogema")

pytestmark = pytest.mark.filterwarnings("ignore:Agent .* cycling back:UserWarning")


def _shared_data() -> Path | None:
    given = os.environ.get(S.DATA_DIR_ENV)
    if given:
        return Path(given)
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pogema-maps"
    return shared if shared.is_dir() else None


DATA = _shared_data()
# the full pogema-maps copy (maps and scenario configs), not only the files `suites fetch` gets
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "01-random" / "01-random-mapf.yaml").is_file(),
                                reason="pogema-maps data copy not found (set MEMARL_DATA_DIR to it)")


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv(S.DATA_DIR_ENV, str(DATA))
    return DATA


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    monkeypatch.setenv(S.DATA_DIR_ENV, str(tmp_path / "empty"))
    return tmp_path / "empty"


def _warehouse() -> str:
    return S.map_text("wfi_warehouse")


# a hand-made map with every marker: '@' start only, '$' target only, '!' neither
SMALL = "\n".join([
    "@@.$$",
    "@#.#$",
    ".!.!.",
    "@#.#$",
    "@@.$$",
])


def _instance_of_pogema(**kw):
    pe = _pogema(**kw)
    return (np.array(pe.get_agents_xy(ignore_borders=True)), np.array(pe.get_targets_xy(ignore_borders=True)), pe)


# ------------------------------------------------------------------------------------ Task A: markers


def test_markers_give_possible_cells_in_row_major_order():
    cfg = PogemaInstances(PogemaConfig(map=SMALL, num_agents=2, seed=0))
    pa, pt = cfg.possible
    text_rows = SMALL.split()
    assert [text_rows[x][y] for x, y in pa.tolist()] == ["@", "@", ".", "@", ".", ".", ".", ".", "@", ".",
                                                        "@", "@", "."]
    assert all(text_rows[x][y] in ".$" for x, y in pt.tolist())
    assert pa.tolist() == sorted(pa.tolist()) and pt.tolist() == sorted(pt.tolist())
    assert not cfg.obstacles[2, 1]  # '!' is free
    assert PogemaInstances(PogemaConfig(map=SMALL.replace("@", ".").replace("$", ".").replace("!", "."))).possible is None


def test_possible_instances_match_pogema():
    """Starts and targets from the possible cells, markers or config fields, equal pogema's."""
    rng = np.random.default_rng(3)
    maps = [SMALL, "@.$\n@#$\n@.$", "..@@..\n.#..#.\n$$!!$$\n......"]
    checked = 0
    for text in maps:
        cfg = PogemaInstances(PogemaConfig(map=text, seed=0))
        k = min(len(cfg.possible[0]), len(cfg.possible[1]))
        for seed in rng.integers(0, 10_000, 6).tolist():
            n = int(rng.integers(1, k + 1))
            mode = ["nothing", "finish", "restart"][seed % 3]
            starts, targets, _ = _instance_of_pogema(map=text, num_agents=n, seed=seed, on_target=mode)
            _, ours_s, ours_t = PogemaInstances(PogemaConfig(map=text, num_agents=n, seed=seed, on_target=mode)).instance(seed)
            assert ours_s.tolist() == starts.tolist()
            assert [q[0].tolist() for q in ours_t] == targets.tolist()
            checked += 1
    # the same through possible_agents_xy / possible_targets_xy on a map without markers
    plain = "......\n.#..#.\n......"
    pa = [[0, 0], [0, 5], [2, 0], [2, 5], [1, 2]]
    pt = [[1, 0], [1, 3], [0, 3], [2, 2]]
    for seed in range(5):
        # copies: pogema shuffles the lists it is given in place
        starts, targets, _ = _instance_of_pogema(map=plain, num_agents=3, seed=seed,
                                                 possible_agents_xy=[list(p) for p in pa],
                                                 possible_targets_xy=[list(p) for p in pt])
        _, ours_s, ours_t = PogemaInstances(PogemaConfig(map=plain, num_agents=3, seed=seed, possible_agents_xy=pa,
                                                         possible_targets_xy=pt)).instance(seed)
        assert ours_s.tolist() == starts.tolist()
        assert [q[0].tolist() for q in ours_t] == targets.tolist()
        checked += 1
    assert checked == 23


def test_draw_helpers():
    pa, pt = np.arange(10).reshape(5, 2), np.arange(20, 32).reshape(6, 2)
    s, t, pool = draw_from_possible((pa, pt), 3, 7)
    rng = np.random.default_rng(7)
    la, lt = [tuple(p) for p in pa.tolist()], [tuple(p) for p in pt.tolist()]
    rng.shuffle(la)
    rng.shuffle(lt)
    assert [tuple(p) for p in s.tolist()] == la[:3] and [tuple(p) for p in pool.tolist()] == lt
    assert t.tolist() == pool[:3].tolist()
    # one draw is pogema's rng.choice(list, 1); a forbidden cell is redrawn
    cells = np.array([5, 9, 5, 7])
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(50):
        got = draw_cell(a, cells, 9)
        want = 9
        while want == 9:
            want = int(b.choice([5, 9, 5, 7], 1)[0])
        assert got == want
    assert draw_cell(np.random.default_rng(0), np.array([4, 4]), 4) == 4  # pogema would loop forever


def _marker_pair(text, n, seed, mode, collision, radius, steps):
    kw = dict(map=text, num_agents=n, seed=seed, on_target=mode, collision_system=collision,
              obs_radius=radius, max_episode_steps=steps)
    pe = _pogema(**kw)
    pe.last_obs = _pe_obs(pe)
    env = PogemaEnv(**kw)
    env.reset()
    return env, pe


@pytest.mark.parametrize("mode", ["restart", "nothing", "finish"])
def test_step_exact_small_marker_maps(mode):
    """Random small maps with markers; small radii put pogema's (R, R)-shifted redraw rule in play."""
    rng = np.random.default_rng({"restart": 0, "nothing": 1, "finish": 2}[mode])
    total = {"steps": 0, "arrivals": 0, "ended": 0}
    for c in range(40):
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        cells = rng.choice(list(".#@$!"), size=(h, w), p=[0.35, 0.15, 0.2, 0.2, 0.1])
        cells[0, 0], cells[-1, -1] = "@", "$"  # at least one marker, one start, one target
        text = "\n".join("".join(row) for row in cells)
        cfg = PogemaInstances(PogemaConfig(map=text))
        k = min(len(cfg.possible[0]), len(cfg.possible[1]))
        n = int(rng.integers(1, min(k, 8) + 1))
        steps = int(rng.choice([16, 40]))
        env, pe = _marker_pair(text, n, int(rng.integers(1000)), mode, ["priority", "block_both"][c % 2],
                               int(rng.choice([1, 2, 3])), steps)
        st = compare(env, [pe], rng, steps + 1, follow=0.9)
        for key in total:
            total[key] += st[key]
    assert total["ended"] == 40
    assert total["arrivals"] > 40


@needs_data
@pytest.mark.parametrize("mode,collision,n", [("restart", "priority", 64), ("restart", "block_both", 32),
                                              ("nothing", "priority", 32), ("finish", "block_both", 32)])
def test_step_exact_warehouse(data_env, mode, collision, n):
    """The warehouse (results version) against pogema 1.4.0, step for step, 2 seeds each."""
    rng = np.random.default_rng(n)
    pes, seeds = [], [5, 77]
    for s in seeds:
        pe = _pogema(map=_warehouse(), num_agents=n, seed=s, on_target=mode, collision_system=collision,
                     max_episode_steps=96)
        pe.last_obs = _pe_obs(pe)
        pes.append(pe)
    env = PogemaEnv(map=_warehouse(), num_envs=2, num_agents=n, on_target=mode, collision_system=collision,
                    max_episode_steps=96)
    env.reset(options={"seeds": seeds})
    st = compare(env, pes, rng, 97, follow=0.95)
    assert st["ended"] == 2
    assert st["arrivals"] > (20 if mode != "nothing" else -1)


def test_marker_errors():
    cases = [
        (dict(map="a@A"), "mixes agent/target letters"),
        (dict(map="@.$\n@#$", num_agents=4), "possible start cells"),
        (dict(map="@@@\n###\n...", num_agents=4), "possible start cells"),
        (dict(map="...", possible_agents_xy=[[0, 0]]), "together"),
        (dict(size=4, possible_agents_xy=[[0, 0]], possible_targets_xy=[[0, 1]]), "need a map"),
        (dict(map="@.$", possible_agents_xy=[[0, 0]], possible_targets_xy=[[0, 1]]), "both as map markers"),
        (dict(map="..#", possible_agents_xy=[[0, 2]], possible_targets_xy=[[0, 1]]), "obstacle"),
        (dict(map="...", possible_agents_xy=[[0, 5]], possible_targets_xy=[[0, 1]]), "outside"),
        (dict(map="...", possible_agents_xy=[[0, 0], [0, 0]], possible_targets_xy=[[0, 1], [0, 2]],
              num_agents=2), "listed twice"),
        (dict(map="...", possible_agents_xy=[[0, 0]], possible_targets_xy=[[0, 1]], agents_xy=[[0, 0]],
              targets_xy=[[0, 2]]), "either agents_xy"),
    ]
    for kw, word in cases:
        with pytest.raises(MemarlError, match=word):
            PogemaConfig(**kw)
    # exact positions win over markers (pogema too)
    cfg = PogemaInstances(PogemaConfig(map=SMALL, agents_xy=[[0, 0]], targets_xy=[[4, 4]]))
    assert cfg.possible is None and cfg.instance(0)[1].tolist() == [[0, 0]]


def test_restart_pool_redraw_rule_is_pogemas():
    """pogema redraws a pool target equal to the agent's cell shifted by (R, R), not its own cell:
    on this map an agent arriving at (0, 0) with R = 1 always gets (0, 0) again."""
    text = "$!@\n!$!\n@!!"  # possible targets (0, 0) and (1, 1) only
    rng = np.random.default_rng(0)
    own = 0
    for seed in range(6):
        env, pe = _marker_pair(text, 2, seed, "restart", "priority", 1, 30)
        before = env.targets.copy()
        stats = compare(env, [pe], rng, 31, follow=0.9)
        assert stats["arrivals"] > 0
        env2 = PogemaEnv(map=text, num_agents=2, seed=seed, on_target="restart", obs_radius=1)
        env2.reset()
        for j in range(2):  # arrive at (0, 0) by hand: the next target is (0, 0) again
            env2._cell[0, j] = env2._tcell[0, j] = env2._grids[0].cell(0, 0)
            own += env2._new_target(0, j) == env2._grids[0].cell(0, 0)
        assert before.shape == (1, 2, 2)
    assert own == 12
    # a one-cell pool: the agent keeps its target and collects it again by waiting on it
    env = PogemaEnv(map="@!$", on_target="restart", obs_radius=1, seed=0, max_episode_steps=10)
    env.reset()
    rewards = [env.step(np.array([[4]]))[1][0, 0] for _ in range(2)] + \
        [env.step(np.array([[0]]))[1][0, 0] for _ in range(3)]
    assert rewards == [0, 1, 1, 1, 1] and env.targets[0, 0].tolist() == [0, 2]


# ------------------------------------------------------------------------------------ Task B: map_name


def test_map_name_of_generated_maps_needs_no_data(no_data):
    from memarl.envs import mapgen
    cfg = PogemaInstances(PogemaConfig(map_name="validation-mazes-seed-007", num_agents=4, seed=3))
    same = PogemaInstances(PogemaConfig(map=mapgen.maze_map(7), num_agents=4, seed=3))
    for a, b in zip(cfg.instance(3), same.instance(3)):
        assert np.array_equal(np.asarray(a, dtype=object if isinstance(a, tuple) else None),
                              np.asarray(b, dtype=object if isinstance(b, tuple) else None))
    assert (cfg.height, cfg.width) == (same.height, same.width)
    assert cfg.episode_map_name(0) == "validation-mazes-seed-007"
    with pytest.raises(MemarlError, match=r"training-maps\.yaml is missing: run `memarl suites fetch`"):
        PogemaConfig(map_name="mazes-s0_wc8_od55")


def test_map_name_errors(no_data):
    with pytest.raises(MemarlError, match="not both"):
        PogemaConfig(map="..", map_name="puzzle-00")
    with pytest.raises(MemarlError) as info:
        PogemaConfig(map_name="no-such-map")
    assert "\n" not in str(info.value) and "validation-random-seed-000" in str(info.value)
    with pytest.raises(MemarlError, match="regular expression"):
        PogemaConfig(map_name="mazes-(")
    with pytest.raises(MemarlError, match="single map"):
        PogemaConfig(map_name="validation-random-seed-00[0-3]", agents_xy=[[0, 0]], targets_xy=[[0, 1]])


def test_map_name_regex_draws_a_map_per_episode(no_data):
    names = S.resolve_map_name("validation-random-seed-00[0-7]")
    assert names == tuple(f"validation-random-seed-00{k}" for k in range(8))
    assert S.resolve_map_name("mazes-.+") == S.FOLLOWER_MAZES  # fullmatch: not the validation mazes
    config = PogemaConfig(map_name="validation-random-seed-00[0-7]", num_agents=3, on_target="restart",
                          seed=100, num_envs=4, max_episode_steps=5)
    env = PogemaEnv(config)
    cfg = env.instances
    env.reset()
    seen = set()
    for _ in range(3):
        for i, seed in enumerate(env.instance_seeds):
            name = names[np.random.default_rng(seed).integers(len(names))]
            assert cfg.episode_map_name(seed) == name
            assert G.map_to_text(env.obstacles(i)) == S.map_text(name).replace("@", ".")
            seen.add(name)
        for _ in range(5):
            env.step(_actions(np.random.default_rng(0), env.positions, env.targets, 0.5))
    assert len(seen) >= 4
    assert cfg.height == max(len(S.map_text(n).split()) for n in names)


@needs_data
def test_follower_regex_and_warehouse_by_name(data_env):
    cfg = PogemaInstances(PogemaConfig(map_name="mazes-.+", num_agents=64, on_target="restart", seed=0))
    assert len(cfg.maps) == 40 and (cfg.height, cfg.width) == (65, 65)
    wh = PogemaInstances(PogemaConfig(map_name="wfi_warehouse", num_agents=192, seed=4, on_target="restart"))
    ref = PogemaInstances(PogemaConfig(map=_warehouse(), num_agents=192, seed=4, on_target="restart"))
    assert wh.possible is not None
    assert np.array_equal(wh.instance(4)[1], ref.instance(4)[1])


# ------------------------------------------------------------------------------------ Task C: suites


EXPECTED = {  # name: (agents, episode length, seeds, maps)
    "pogema-random-mapf": ((8, 16, 24, 32, 48, 64), 128, 1, 128),
    "pogema-random-lmapf": ((8, 16, 24, 32, 48, 64), 256, 1, 128),
    "pogema-mazes-mapf": ((8, 16, 24, 32, 48, 64), 128, 1, 128),
    "pogema-mazes-lmapf": ((8, 16, 24, 32, 48, 64), 128, 1, 128),
    "pogema-warehouse-mapf": ((32, 64, 96, 128, 160, 192), 128, 128, 1),
    "pogema-warehouse-lmapf": ((32, 64, 96, 128, 160, 192), 256, 128, 1),
    "pogema-movingai-mapf": ((64, 128, 192, 256), 256, 1, 128),
    "pogema-movingai-lmapf": ((64, 128, 192, 256), 256, 1, 128),
    "pogema-puzzles-mapf": ((2, 3, 4), 128, 10, 16),
    "pogema-puzzles-lmapf": ((2, 3, 4), 256, 10, 16),
    "pogema-pathfinding-mapf": ((1,), 2048, 10, 8),
    "follower-mazes": ((64,), 512, 10, 40),
}


def test_suites_registered_with_the_benchmark_settings():
    from memarl.eval.suites import Suite
    for name, (agents, steps, seeds, maps) in EXPECTED.items():
        suite = SUITES.make(name)
        assert isinstance(suite, Suite) and suite.name == name
        assert (suite.num_agents, suite.episode_steps, len(suite.seeds), len(suite.map_names)) == \
            (agents, steps, seeds, maps), name
        mapf = name.endswith("-mapf")
        assert suite.settings == {"on_target": "nothing" if mapf else "restart", "collision_system": "soft"}
        assert suite.env_id == ("pogema-mapf-v0" if mapf else "pogema-lmapf-v0")
        assert suite.metrics == (("CSR", "ISR", "SoC", "makespan", "collisions", "obstacle_collisions") if mapf
                                 else ("avg_throughput", "collisions", "obstacle_collisions"))
        assert len(set(suite.map_names)) == maps and set(suite.map_names) <= set(S.library_names())
    # the suites' maps, the 40 Follower mazes, the generated training sets (toolbox seeds
    # 128..639 random, 128..2175 mazes), the Bottleneck corridors 1..10000 and the T-Maze corridors 1..10000
    assert len(S.library_names()) == 128 * 3 + 1 + 16 + 8 + 40 + 512 + 2048 + 10_000 + 10_000
    assert S.resolve_map_name("training-mazes-seed-.+")[0] == "training-mazes-seed-128"
    assert not set(S.resolve_map_name("training-mazes-seed-.+")) & set(SUITES.make("pogema-mazes-lmapf").map_names)


def test_episodes(no_data):
    suite = SUITES.make("pogema-random-lmapf")
    eps = suite.episodes()
    assert len(eps) == 6 * 128
    assert [(e.num_agents, e.map_name) for e in eps[:2]] == [(8, "validation-random-seed-000"),
                                                             (8, "validation-random-seed-001")]
    assert eps[128].num_agents == 16 and eps[-1].map_name == "validation-random-seed-127"
    puzzles = SUITES.make("pogema-puzzles-mapf")
    assert [(e.map_name, e.seed) for e in puzzles.episodes()[:11:10]] == [("puzzle-00", 0), ("puzzle-01", 0)]
    assert not puzzles.data_present() and suite.data_present()
    with pytest.raises(MemarlError, match="05-puzzles/maps.yaml is missing"):
        puzzles.check_maps()


@needs_data
def test_library_equals_the_data_files(data_env):
    import yaml
    for folder, names in [("01-random", S.RANDOM_MAPS), ("02-mazes", S.MAZES_MAPS),
                          ("04-movingai", S.MOVINGAI_MAPS), ("05-puzzles", S.PUZZLE_MAPS),
                          ("06-pathfinding", S.CITIES)]:
        maps = yaml.load((DATA / folder / "maps.yaml").read_text(), Loader=yaml.CSafeLoader)
        assert tuple(maps) == names, folder
        assert all(S.map_text(n) == maps[n] for n in names), folder
    follower = yaml.load((DATA / "follower-training" / "training-maps.yaml").read_text(), Loader=yaml.CSafeLoader)
    assert tuple(follower) == S.FOLLOWER_MAZES
    for key, spec in S.DATA_FILES.items():
        assert S._sha256((DATA / spec.path).read_bytes()) == spec.sha256, key
    assert all(SUITES.make(n).data_present() for n in EXPECTED)


def _upstream(data: Path) -> dict[str, bytes]:
    return {spec.url: (data / spec.path).read_bytes() for spec in S.DATA_FILES.values()}


@needs_data
def test_fetch_downloads_verifies_and_skips(tmp_path):
    files = _upstream(DATA)
    calls = []

    def opener(url, timeout):
        calls.append(url)
        return files[url]

    lines = []
    S.fetch_data(tmp_path / "d", opener=opener, log=lines.append)
    assert sorted(calls) == sorted(files) and all("downloaded" in line for line in lines)
    for spec in S.DATA_FILES.values():
        assert (tmp_path / "d" / spec.path).read_bytes() == (DATA / spec.path).read_bytes()
    assert not list((tmp_path / "d").rglob("*.part"))
    calls.clear()
    lines.clear()
    (tmp_path / "d" / S.DATA_FILES["puzzles"].path).write_text("changed")  # a wrong copy is replaced
    S.fetch_data(tmp_path / "d", opener=opener, log=lines.append)
    assert calls == [S.DATA_FILES["puzzles"].url] and sum("present" in line for line in lines) == 3
    # a download with the wrong hash is refused and nothing is written
    bad = dict(files)
    bad[S.DATA_FILES["warehouse"].url] = b"not the warehouse"
    with pytest.raises(MemarlError, match="SHA-256"):
        S.fetch_data(tmp_path / "e", opener=lambda url, t: bad[url], log=lambda s: None)
    assert not (tmp_path / "e" / S.DATA_FILES["warehouse"].path).exists()


@needs_data
def test_fetch_from_a_file_url(tmp_path):
    """The real urllib path, from a local file:// mirror laid out like raw.githubusercontent.com."""
    mirror = tmp_path / "mirror"
    for spec in S.DATA_FILES.values():
        target = mirror / spec.repo / spec.commit / spec.upstream
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((DATA / spec.path).read_bytes())
    S.fetch_data(tmp_path / "d", base_url=mirror.as_uri(), log=lambda s: None)
    assert all((tmp_path / "d" / s.path).is_file() for s in S.DATA_FILES.values())


def test_fetch_offline_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(S, "_download", offline)
    code = main(["suites", "fetch", "--dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "cannot download https://raw.githubusercontent.com/" in lines[0] and "MEMARL_DATA_DIR" in lines[0]
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("*.yaml"))


def test_cli_suites_list(capsys, no_data):
    assert main(["suites", "list"]) == 0
    out = capsys.readouterr().out
    row = {line.split()[0]: line for line in out.splitlines()[1:] if not line.startswith(" ")}
    assert set(EXPECTED) <= set(row) and "bottleneck-test" in row
    assert re.search(r"pogema-random-mapf\s+768\s+8,16,24,32,48,64\s+generated", row["pogema-random-mapf"])
    assert "missing: 03-warehouse/maps.results-version.yaml" in row["pogema-warehouse-lmapf"]
    assert main(["list", "suites"]) == 0
    assert "pogema-movingai-lmapf" in capsys.readouterr().out


@needs_data
def test_cli_suites_list_with_data(capsys, data_env):
    assert main(["suites", "list"]) == 0
    out = capsys.readouterr().out
    assert "missing" not in out and re.search(r"follower-mazes\s+400\s+64\s+present", out)


# ------------------------------------------------------------------------------------ scenario check


def _check(suite: str, limit: int | None):
    report = scenarios.check_scenarios(DATA, suite, limit=limit)
    assert report["config_ok"], report["config_diffs"]
    assert report["all_match"], report["mismatches"]
    return report


@needs_data
@pytest.mark.parametrize("suite", [n for n in EXPECTED if n != "follower-mazes"])
def test_scenarios_subset_match(data_env, suite):
    """8 scenarios per suite (evenly spaced), smallest and largest agent count; LMAPF: whole
    lifelong target sequences."""
    report = _check(suite, 8)
    assert report["scenarios"] == 8 and report["instances"] == 8 * (1 if suite.endswith("pathfinding-mapf") else 2)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("suite", [n for n in EXPECTED if n != "follower-mazes"])
def test_scenarios_all_match(data_env, suite):
    report = _check(suite, None)
    assert report["scenarios"] == {"pogema-puzzles-mapf": 160, "pogema-puzzles-lmapf": 160,
                                   "pogema-pathfinding-mapf": 80}.get(suite, 128)


@needs_data
def test_scenario_check_catches_the_other_warehouse_version(data_env, monkeypatch):
    """maps.yaml (start/target markers swapped, '!' corridors) does not give the stored scenarios."""
    import yaml
    other = yaml.load((DATA / "03-warehouse" / "maps.yaml").read_text(), Loader=yaml.CSafeLoader)["wfi_warehouse"]
    monkeypatch.setattr(scenarios, "map_text", lambda name: other)
    report = scenarios.check_scenarios(DATA, "pogema-warehouse-mapf", limit=4)
    assert report["starts_ok"] == 0 and not report["all_match"] and report["mismatches"]


def test_pyyaml_is_pinned():
    import yaml
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'"pyyaml=={yaml.__version__}"' in text
