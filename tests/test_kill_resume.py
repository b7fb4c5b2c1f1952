"""Kill -9 at random moments, resume after each kill: eval/benchmarks/kill_resume.py as a test.

The fast variant (2 kills: one before the first checkpoint, one inside a checkpoint write, then
a resume to completion) runs in CI; the full 10 kills are marked slow.
"""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "eval" / "benchmarks" / "kill_resume.py"


def load_script():
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(summary, kills):
    assert summary["ok"], summary["problems"]
    assert summary["kills"] == kills
    assert summary["resumes_succeeded"] == summary["resumes_started"] == kills
    rounds = summary["rounds"]
    assert rounds[0]["kind"] == "before-first-checkpoint"
    assert rounds[0]["new_checkpoints_at_kill"] == [] and rounds[0]["last_good_after_kill"][1] == 0
    assert any(r["kind"] == "during-write" and r["killed_mid_write"] for r in rounds)
    steps = [r["last_good_after_kill"][1] for r in rounds]
    assert steps == sorted(steps)  # the last good checkpoint never went back
    final = summary["final"]
    assert final["exit_code"] == 0 and final["final_agent_steps"] >= final["total_steps"]


def test_kill_9_twice_then_resume_to_completion(tmp_path):
    check(load_script().run_kill_resume(tmp_path / "run", kills=2, seed=1), kills=2)


@pytest.mark.slow
def test_kill_9_ten_times_at_random_moments(tmp_path):
    check(load_script().run_kill_resume(tmp_path / "run", kills=10, seed=0), kills=10)
