"""What a training run tells the user: log lines, the progress bar, and the report files of the run directory
(`metrics.jsonl`, `training_curve.png`, `metadata.json`). Only the main process reports; elsewhere every method
is a no-op."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nmt.bundle import CURVE_FILE, METRICS_FILE, write_metadata
from nmt.config import Config
from nmt.files import atomic_write_text
from nmt.plot import plot_training_curve


class Reporter:
    def __init__(self, run_dir: Path, config: Config, enabled: bool, show_progress: bool):
        self.run_dir, self.config = run_dir, config
        self.enabled, self.show_progress = enabled, show_progress and enabled
        self.bar: tqdm | None = None
        self.bar_epoch = -1
        self.window_start, self.window_tokens = time.perf_counter(), 0  # for tokens/s between log lines

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.show_progress:
            tqdm.write(message, file=sys.stderr)
        with open(self.run_dir / "train.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def batch_done(self, epoch: int, batch_in_epoch: int, batches: int, tokens: int) -> None:
        """Advance the progress bar (a new one per epoch) and count tokens for the next speed figure."""
        self.window_tokens += tokens
        if not self.show_progress:
            return
        if self.bar is None or self.bar_epoch != epoch:
            self.close()
            self.bar = tqdm(
                total=batches,
                initial=batch_in_epoch - 1,
                desc=f"epoch {epoch + 1}",
                unit="batch",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=1.0,
            )
            self.bar_epoch = epoch
        self.bar.update(1)

    def tokens_per_s(self) -> float:
        """Target tokens per second since the last call (the last train log line)."""
        now = time.perf_counter()
        speed = self.window_tokens / max(now - self.window_start, 1e-9)
        self.window_start, self.window_tokens = now, 0
        return speed

    def train_line(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            loss, speed, lr = row["train_loss"], row["tokens_per_s"], row["lr"]
            self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,}", lr=f"{lr:.2e}")

    def write(self, metrics: list[dict[str, Any]], model, vocab: tuple[int, int], **summary: Any) -> None:
        """Rewrite the report files from the full metrics history."""
        if not self.enabled:
            return
        atomic_write_text(self.run_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in metrics))
        plot_training_curve(metrics, self.run_dir / CURVE_FILE, self.config.name)
        write_metadata(self.run_dir, self.config, model, vocab, **summary)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
