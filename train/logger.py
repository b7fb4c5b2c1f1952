"""TensorBoard scalars with CleanRL's names, and a live one-line console progress report."""
from __future__ import annotations

import collections
import math
import sys
import time
from pathlib import Path

import numpy as np


EPISODE_KEYS = ("return", "CSR", "ISR", "SoC", "makespan", "episode_length", "avg_throughput", "collisions",
                "success", "unlocked_length")
"""episode metrics averaged over the recent window and written as ``charts/<key>``"""


class RunLogger:
    """Writes ``charts/``, ``losses/``, ``perf/`` scalars and prints progress every few seconds."""

    def __init__(self, tb_dir: Path | None, total_steps: int, print_every_s: float = 5.0,
                 window: int = 100, stream=sys.stdout, score_metric: str | None = None):
        """``score_metric``: the episode metric :meth:`score` reports, the one the env declares
        (``env.score_metric``); None: no score, so no best.pt."""
        self.writer = None
        if tb_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(tb_dir))
        self.total_steps = total_steps
        self.print_every_s = print_every_s
        self.recent = collections.defaultdict(lambda: collections.deque(maxlen=window))
        self.stream = stream
        self.start_time = time.time()
        self.start_steps = 0
        self.last_print = 0.0
        self.last_printed: tuple[int, int] | None = None
        self.score_metric = score_metric
        # an env may declare a score metric that EPISODE_KEYS does not list: it is charted too
        self.kept_keys = EPISODE_KEYS + tuple(
            key for key in (score_metric,) if key is not None and key not in EPISODE_KEYS)

    def set_start(self, steps: int) -> None:
        self.start_time, self.start_steps = time.time(), steps

    def text(self, tag: str, text: str) -> None:
        if self.writer:
            self.writer.add_text(tag, text)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer:
            for key, value in values.items():
                if value is not None and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def episodes(self, episodes: list[dict], step: int) -> None:
        for episode in episodes:
            for key in self.kept_keys:
                if key in episode:
                    self.recent[key].append(float(episode[key]))
        if episodes:
            names = {"return": "charts/episodic_return", "episode_length": "charts/episodic_length"}
            self.scalars({names.get(k, f"charts/{k}"): float(np.mean(v))
                          for k, v in self.recent.items()}, step)

    def sps(self, steps: int) -> float:
        elapsed = max(time.time() - self.start_time, 1e-9)
        return (steps - self.start_steps) / elapsed

    def progress(self, steps: int, update: int, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_print < self.print_every_s:
            return
        if force and self.last_printed == (steps, update):
            return  # the closing report of a run whose last update was just printed
        self.last_print, self.last_printed = now, (steps, update)
        sps = self.sps(steps)
        eta = max(self.total_steps - steps, 0) / sps if sps > 0 else float("inf")
        parts = [f"steps {steps:>11,}/{self.total_steps:,}", f"update {update}",
                 f"SPS {sps:,.0f}", f"ETA {_duration(eta)}"]
        for key in ("return", "CSR", "ISR", "avg_throughput", "success"):
            if self.recent.get(key):
                parts.append(f"{key} {np.mean(self.recent[key]):.3f}")
        if self.recent.get("unlocked_length"):
            parts.append(f"unlocked_length {self.recent['unlocked_length'][-1]:.0f}")
        print(" | ".join(parts), file=self.stream, flush=True)

    def score(self, min_episodes: int = 20) -> float | None:
        """Recent mean of the score metric, once ``min_episodes`` episodes reported it."""
        if self.score_metric is None or len(self.recent.get(self.score_metric, ())) < min_episodes:
            return None
        return self.recent_mean(self.score_metric)

    def recent_mean(self, key: str) -> float | None:
        return float(np.mean(self.recent[key])) if self.recent.get(key) else None

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
