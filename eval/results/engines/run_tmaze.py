"""GRU on T-Maze (rate preset, L = 7), 1M agent-steps: the async engine against the sync loop,
12 seeds each, as tests/test_tmaze_learning.py trains it. Writes runs/tmaze-engines/result.json
(tmaze_rate_async_vs_sync.md beside this file holds the measured table).

Run from the repository root: ``.venv/bin/python eval/results/engines/run_tmaze.py`` (about 20
minutes per engine on 2 cores).
"""
import json
import time
from pathlib import Path

import numpy as np

import memarl
from memarl.eval.evaluate import evaluate_policy
from memarl.train.trainer import TrainConfig, train

OUT = Path("runs/tmaze-engines")


def main() -> None:
    results = {}
    for seed in range(12):
        for engine in ("async", "sync"):
            run = OUT / f"{engine}-{seed}"
            cfg = TrainConfig(env="tmaze", agent="gru", total_steps=1_000_000, run_dir=str(run),
                              num_envs=64, rollout_len=18, seed=seed, torch_threads=1,
                              print_every_s=1e9, checkpoint_every_s=30.0,
                              async_=engine == "async",
                              env_options={"preset": "rate", "corridor_length": 7})
            start = time.time()
            train(cfg, quiet=True)
            wall_s = time.time() - start
            rows = evaluate_policy(memarl.load_policy(str(run), which="latest"), "tmaze-rate",
                                   max_corridor_length=7)
            results[f"{engine}-{seed}"] = {"success": float(np.mean([r["success"] for r in rows])),
                                           "wall_s": wall_s}
            print(engine, seed, results[f"{engine}-{seed}"], flush=True)
            (OUT / "result.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
