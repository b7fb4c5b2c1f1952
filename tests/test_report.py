"""``memarl report``: evaluations side by side; numbers come from the summaries unchanged."""
import json

import pytest

from memarl.cli import main


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """Two real evaluations of T-Maze (the random baseline, two sampling seeds), one of Bottleneck."""
    root = tmp_path_factory.mktemp("report")
    for name, seed in (("random0", 0), ("random1", 1)):
        assert main(["eval", "--baseline", "random", "--suite", "tmaze-rate", "--episodes", "8",
                     "--max-corridor-length", "28", "--seed", str(seed), "--quiet",
                     "--out", str(root / name)]) == 0
    assert main(["eval", "--baseline", "greedy", "--suite", "bottleneck-test", "--episodes", "1",
                 "--max-corridor-length", "4", "--quiet", "--out", str(root / "btl")]) == 0
    return root


def test_report_tables_each_entry(evaluations, capsys):
    out = evaluations / "out" / "tmaze"
    assert main(["report", f"seed 0={evaluations / 'random0'}", f"seed 1={evaluations / 'random1'}",
                 "--out", str(out), "--note", "random baseline, two sampling seeds"]) == 0
    markdown = (out.parent / "tmaze.md").read_text()
    report = json.loads((out.parent / "tmaze.json").read_text())
    assert (out.parent / "tmaze.png").stat().st_size > 1000
    assert "random baseline, two sampling seeds" in markdown
    for entry, name in zip(report["entries"], ("random0", "random1")):
        summary = json.loads((evaluations / name / "summary.json").read_text())
        assert entry["groups"] == summary["groups"]
        lengths = [g["corridor_length"] for g in summary["groups"]]
        assert lengths == [7, 28]
        episodes = [g["episodes"] for g in summary["groups"]]
        expected = sum(g["success"] * n for g, n in zip(summary["groups"], episodes)) / sum(episodes)
        assert entry["overall"]["success"] == pytest.approx(expected)
        assert f"| {entry['label']} | {expected:.3f} |" in markdown
    assert "| entry | 7 | 28 |" in markdown


def test_report_of_one_axis_value_draws_bars(evaluations, tmp_path):
    assert main(["eval", "--baseline", "random", "--suite", "tmaze-rate", "--episodes", "4",
                 "--max-corridor-length", "7", "--quiet", "--out", str(tmp_path / "short")]) == 0
    assert main(["report", f"a={tmp_path / 'short'}", f"b={tmp_path / 'short'}",
                 "--out", str(tmp_path / "bars")]) == 0
    assert (tmp_path / "bars.png").stat().st_size > 1000
    assert "| entry | 7 |" in (tmp_path / "bars.md").read_text()


def test_report_refuses_bad_input_and_keeps_earlier_results(evaluations, capsys):
    out = evaluations / "keep"
    args = [f"a={evaluations / 'random0'}", "--out", str(out)]
    assert main(["report", *args]) == 0
    before = (evaluations / "keep.md").read_text()
    capsys.readouterr()
    cases = {
        "exists; pass --force": args,
        "different suites": [f"a={evaluations / 'random0'}", f"b={evaluations / 'btl'}", "--out", str(out) + "2"],
        "labels must differ": [f"a={evaluations / 'random0'}", f"a={evaluations / 'random1'}", "--out", str(out) + "3"],
        "must be LABEL=PATH": [str(evaluations / "random0"), "--out", str(out) + "4"],
        "does not exist": [f"a={evaluations / 'nope'}", "--out", str(out) + "5"],
        "not a metric": [f"a={evaluations / 'random0'}", "--metric", "CSR", "--out", str(out) + "6"],
        "holds suite": [f"a={evaluations / 'random0'}", "--suite", "bottleneck-test", "--out", str(out) + "7"],
    }
    for expected, argv in cases.items():
        assert main(["report", *argv]) == 2, expected
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
    assert (evaluations / "keep.md").read_text() == before
    assert not list(evaluations.glob("keep[2-7]*"))
    assert main(["report", *args, "--force", "--title", "again"]) == 0
    assert (evaluations / "keep.md").read_text().startswith("# again")
