"""POGEMA high-level metrics: the formulas on hand-made episodes, the carried table against the raw
published data, and the comparison files of `memarl eval --compare published`."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from memarl.errors import MemarlError
from memarl.eval.pogema_compare import (METRICS, best_value, coordination, decode_bests, dump_table,
                                        instance_ratio, load_published, load_table, our_metrics,
                                        published_table, relative_metric, scalability, write_comparison)


def _results_dir() -> Path | None:
    """The raw published results: $MEMARL_RESULTS_DIR, else ../shared/data/pogema-results."""
    env = os.environ.get("MEMARL_RESULTS_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/pogema-results"
    return path if (path / "LMAPF").is_dir() and (path / "MAPF").is_dir() else None


RESULTS = _results_dir()
needs_results = pytest.mark.skipif(RESULTS is None, reason="published POGEMA results not found "
                                   "(set MEMARL_RESULTS_DIR to a copy of pogema-benchmark's raw data)")


def _row(map_name="m", num_agents=8, seed=0, **metrics) -> dict:
    return {"map_name": map_name, "num_agents": num_agents, "seed": seed, **metrics}


# --------------------------------------------------------------------------------------------
# (1) the formulas on hand-made episodes

def test_lmapf_relative_throughput():
    # A: 1.0 of best 2.0 -> 0.5; B: nobody moved a goal -> left out; C: 3.0 beats the published 2.0
    # -> with ours in the best it is 1.0. Mean over the two counted instances: 0.75.
    published = {"A": 2.0, "B": 0.0, "C": 2.0}
    ours = {"A": 1.0, "B": 0.0, "C": 3.0}
    bests = {k: best_value([published[k], ours[k]], "throughput") for k in ours}
    assert bests == {"A": 2.0, "B": 0.0, "C": 3.0}
    assert instance_ratio(0.0, 0.0, "throughput") is None
    assert relative_metric(ours, bests, "throughput") == (0.75, 2)


def test_mapf_relative_soc():
    # A: solved with SoC 10, best 8 -> 0.8; B: unsolved (None) -> 0; C: nobody solved -> left out
    values = {"A": 10.0, "B": None, "C": None}
    bests = {"A": 8.0, "B": 12.0, "C": None}
    assert best_value([None, None], "soc") is None and best_value([None, 9.0, 7.0], "soc") == 7.0
    mean, counted = relative_metric(values, bests, "soc")
    assert counted == 2 and mean == pytest.approx(0.4)


def test_pathfinding_lengths():
    # best 150 of lengths (200, 150, 300): scores 0.75, 1, 0.5; a non-positive length scores 0
    assert best_value([200, 150, 300], "length") == 150
    assert [instance_ratio(v, 150, "length") for v in (200, 150, 300, 0)] == [0.75, 1.0, 0.5, 0.0]


def test_scalability_pairs_of_agent_counts():
    # mean runtime per agent count: 32 -> 1, 64 -> (3+5)/2 = 4, 128 -> 8; per agent 1/32, 1/16, 1/16;
    # pair ratios 0.5, 0.5, 1 -> 2/3
    rows = [_row(num_agents=32, runtime=1.0), _row(num_agents=64, runtime=3.0),
            _row(num_agents=64, runtime="5.0"), _row(num_agents=128, runtime=8.0)]
    assert scalability(rows, "lmapf") == pytest.approx(2 / 3)
    # sub-linear growth gives ratios above 1: capped at 1
    assert scalability([_row(num_agents=n, runtime=1.0) for n in (32, 64)], "lmapf") == 1.0
    # MAPF divides by the makespan first: 32 -> 2/2 = 1, 64 -> 12/4 = 3; (1/32) / (3/64) = 2/3
    rows = [_row(num_agents=32, runtime=2.0, makespan=2), _row(num_agents=64, runtime=12.0, makespan=4)]
    assert scalability(rows, "mapf") == pytest.approx(2 / 3)
    assert scalability([_row(num_agents=32, runtime=1.0)], "lmapf") is None  # no pair


def test_coordination_collisions_per_agent_step():
    # LMAPF divides by 256 x agents: 16/(256*8) = 1/128, (0 + 64 obstacle)/(256*16) = 1/64
    rows = [_row(num_agents=8, collisions=16), _row(num_agents=16, collisions="0", o_collisions=64)]
    assert coordination(rows, "lmapf") == pytest.approx(1 - (1 / 128 + 1 / 64) / 2)
    # MAPF divides by the episode's length: 4 / (10 * 4) = 0.1
    assert coordination([_row(num_agents=4, collisions=4, episode_length=10)], "mapf") == pytest.approx(0.9)
    assert coordination([], "mapf") is None


def _tiny_table() -> dict:
    """A carried table by hand: 2 random instances, 1 puzzle, 1 pathfinding map; one baseline."""
    best = {"01-random": {"num_agents": [8, 16], "maps": {"r0": {"0": [2.0, 0]}}},
            "02-mazes": {"num_agents": [8], "maps": {"z0": {"0": [1.0]}}},
            "04-movingai": {"num_agents": [64], "maps": {"c0": {"0": [4.0]}}},
            "05-puzzles": {"num_agents": [2], "maps": {"p0": {"3": [0.5]}}},
            "06-pathfinding": {"num_agents": [1], "maps": {"city": {"0": [100]}}}}
    metrics = {"B": dict.fromkeys(METRICS, 0.5)}
    mode = {"algorithms": ["B"], "metrics": metrics, "coordination_default": [], "best": best}
    return {"source": {"repository": "hand-made"}, "lmapf": mode, "mapf": mode}


def test_our_metrics_against_a_hand_made_table():
    results = {
        "pogema-random-lmapf": [_row("r0", 8, avg_throughput=1.0, collisions=0),
                                _row("r0", 16, avg_throughput=0.0, collisions=16),  # best 0: left out
                                _row("elsewhere", 8, avg_throughput=9.0, collisions=0)],  # not published
        "pogema-puzzles-lmapf": [_row("p0", 2, seed=3, avg_throughput="1.0")],  # beats 0.5 -> 1.0
        "pogema-pathfinding-mapf": [_row("city", 1, episode_length=125, makespan=126)],
        "pogema-random-mapf": [_row("r0", 8, CSR=0, SoC=5, collisions=0, episode_length=4)],  # other mode
    }
    ours = our_metrics(results, "lmapf", _tiny_table())
    m = ours["metrics"]
    assert m["Performance"] == 0.5  # only r0/8 counts (mazes not evaluated)
    assert m["Cooperation"] == 1.0 and ours["beats_best"]["Cooperation"] == 1
    assert m["Pathfinding"] == 0.8  # LMAPF figure: best 100 of episode length 125
    assert m["Coordination"] == pytest.approx(1 - (0 + 16 / (256 * 16)) / 2)  # the two matched rows
    assert m["Out-of-Distribution"] is None and m["Scalability"] is None
    assert ours["coverage"]["Performance"] == [2, 3]
    # MAPF: pathfinding compares makespans, and an unsolved random episode scores 0 against a best of 2
    mapf = our_metrics(results, "mapf", _tiny_table())["metrics"]
    assert mapf["Pathfinding"] == pytest.approx(100 / 126) and mapf["Performance"] == 0.0


def test_bests_layout_round_trip():
    encoded = {"num_agents": [2, 3], "maps": {"p": {"0": [1, None], "4": [2.5, 3]}}}
    assert decode_bests(encoded) == {("p", 2, 0): 1, ("p", 3, 0): None, ("p", 2, 4): 2.5, ("p", 3, 4): 3}


# --------------------------------------------------------------------------------------------
# (2) the carried table is what the raw published data gives

@needs_results
def test_carried_table_regenerates_from_the_raw_data():
    regenerated = json.loads(dump_table(published_table(RESULTS)))
    carried = load_table()
    for mode in ("lmapf", "mapf"):
        assert regenerated[mode]["best"] == carried[mode]["best"], mode
        assert regenerated[mode]["instances"] == carried[mode]["instances"]
        assert regenerated[mode]["coordination_default"] == carried[mode]["coordination_default"]
        for algo, row in carried[mode]["metrics"].items():
            for metric in METRICS:
                assert regenerated[mode]["metrics"][algo][metric] == pytest.approx(row[metric], abs=1e-6)
    assert regenerated["source"] == carried["source"]


# --------------------------------------------------------------------------------------------
# (3) anchors: numbers the reference documents and the original script give

@needs_results
@pytest.mark.parametrize("folder,algo,expected", [
    # reference/pogema.md §11.1, mean avg_throughput over maps per agent count
    ("01-random", "RHCR", [.625, 1.25, 1.80, 2.29, 3.20, 3.82]),
    ("01-random", "Follower", [.589, 1.11, 1.51, 1.80, 2.22, 2.42]),
    ("02-mazes", "MATS-LP", [.466, .872, 1.17, 1.34, 1.50, 1.46]),
    ("02-mazes", "QPLEX", [.439, .773, .993, 1.09, 1.08, .914]),
    ("05-puzzles", "MAMBA", [.187, .120, .091]),
    ("05-puzzles", "QMIX", [.269, .232, .183]),
])
def test_published_rows_give_the_reference_mean_throughputs(folder, algo, expected):
    rows = load_published(RESULTS, "lmapf", folder)[algo]
    counts = sorted({k[1] for k in rows})
    means = [np.mean([r["avg_throughput"] for k, r in rows.items() if k[1] == n]) for n in counts]
    for mean, value in zip(means, expected):
        assert mean == pytest.approx(value, abs=0.006, rel=0.005)


def test_carried_metrics_match_the_original_script_and_the_papers_claims():
    """Values printed by pogema-benchmark's build_web_plot.py (c5dd4fd) run on its raw data."""
    lmapf, mapf = load_table()["lmapf"]["metrics"], load_table()["mapf"]["metrics"]
    assert lmapf["Follower"]["Performance"] == pytest.approx(0.7985117527755471, abs=1e-6)
    assert lmapf["Follower"]["Coordination"] == pytest.approx(0.9146650367312961, abs=1e-6)
    assert lmapf["Follower"]["Pathfinding"] == pytest.approx(0.9700648466282115, abs=1e-6)
    assert mapf["SCRIMP"]["Scalability"] == pytest.approx(0.5365048654949484, abs=1e-6)
    assert mapf["SCRIMP"]["Out-of-Distribution"] == pytest.approx(0.7090389761347735, abs=1e-6)
    # the paper (and SRMT): the centralised planner leads Performance, OOD, Cooperation (~100%)
    for table, leader in ((lmapf, "RHCR"), (mapf, "LaCAM")):
        for metric in ("Performance", "Out-of-Distribution", "Cooperation"):
            assert table[leader][metric] == max(row[metric] for row in table.values()) >= 0.95
    # pure MARL solves no MovingAI MAPF instance (pogema.md §11.2: "MARL methods 0")
    assert all(mapf[a]["Out-of-Distribution"] == 0.0 for a in ("IQL", "VDN", "QMIX", "QPLEX", "MAMBA"))


def test_carried_table_is_small():
    from memarl.eval.pogema_compare import TABLE_PATH

    assert TABLE_PATH.stat().st_size < 150_000


# --------------------------------------------------------------------------------------------
# (4) the comparison files

def _synthetic_lmapf() -> dict[str, list[dict]]:
    random = [_row(f"validation-random-seed-{i:03d}", n, avg_throughput=0.05 * n, collisions=n)
              for i in range(3) for n in (8, 16)]
    warehouse = [_row("wfi_warehouse", n, seed=s, runtime=0.01 * n) for n in (32, 64, 96) for s in (0, 1)]
    puzzles = [_row("puzzle-00", 2, seed=s, avg_throughput=0.3) for s in range(3)]
    return {"pogema-random-lmapf": random, "pogema-warehouse-lmapf": warehouse, "pogema-puzzles-lmapf": puzzles}


def test_write_comparison_files(tmp_path):
    out = write_comparison(_synthetic_lmapf(), "ours", tmp_path / "cmp", "LMAPF")
    md = (out / "comparison.md").read_text()
    assert "| **ours** |" in md and "| RHCR |" in md and "| LSwitcher |" in md
    ours_line = next(line for line in md.splitlines() if line.startswith("| **ours** |"))
    cells = [c.strip() for c in ours_line.split("|")[2:-1]]
    assert len(cells) == 6
    assert cells[1] == "–" and cells[5] == "–"  # MovingAI and pathfinding not evaluated
    assert cells[3] == "100.0†"  # linear runtime, on 3 of the 6 agent counts
    assert cells[0].endswith("†")  # 6 of 1536 instances
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["ours"]["metrics"]["Out-of-Distribution"] is None
    assert summary["published"]["RHCR"]["Coordination"] == 1.0
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_comparison_bar_chart_and_nothing_evaluated(tmp_path):
    results = {"pogema-warehouse-mapf": [_row("wfi_warehouse", n, runtime=1.0, makespan=10) for n in (32, 64)]}
    out = write_comparison(results, "ours", tmp_path / "bar", "mapf")  # one metric: bar chart
    assert (out / "comparison.png").is_file()
    out = write_comparison({}, "nothing", tmp_path / "empty", "mapf")
    line = next(x for x in (out / "comparison.md").read_text().splitlines() if x.startswith("| **nothing**"))
    assert line.count("–") == 6


@pytest.mark.parametrize("results,mode,match", [
    ({"pogema-nowhere-lmapf": []}, "lmapf", "unknown POGEMA suite"),
    ({"pogema-random-lmapf": [_row(avg_throughput=1.0)]}, "lmapf", "missing or non-numeric 'collisions'"),
    ({"pogema-puzzles-mapf": [_row(CSR=1, SoC="n/a")]}, "mapf", "non-numeric 'SoC'"),
    ({"pogema-warehouse-lmapf": [_row(num_agents=32)]}, "lmapf", "'runtime'"),
    ({}, "both", "mode must be lmapf or mapf"),
])
def test_bad_input_is_a_one_line_error(tmp_path, results, mode, match):
    with pytest.raises(MemarlError, match=match) as err:
        write_comparison(results, "x", tmp_path, mode)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "comparison.md").exists()


@needs_results
@pytest.mark.parametrize("mode,algo", [("lmapf", "Follower"), ("mapf", "DCC")])
def test_replaying_a_baseline_as_ours_gives_its_published_metrics(tmp_path, mode, algo):
    """A baseline's own rows, entered as our results, score exactly its published metrics."""
    folders = {"01-random": "random", "02-mazes": "mazes", "03-warehouse": "warehouse",
               "04-movingai": "movingai", "05-puzzles": "puzzles"}
    results = {f"pogema-{name}-{mode}": list(load_published(RESULTS, mode, folder)[algo].values())
               for folder, name in folders.items()}
    results["pogema-pathfinding-mapf"] = list(load_published(RESULTS, mode, "06-pathfinding")[algo].values())
    ours = our_metrics(results, mode, load_table())
    assert not any(ours["beats_best"].values())
    assert all(used == of for used, of in ours["coverage"].values())
    for metric in METRICS:
        expected = load_table()[mode]["metrics"][algo][metric]
        assert ours["metrics"][metric] == pytest.approx(expected, abs=1e-6), metric
