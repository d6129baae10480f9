"""The `reason` command: a Hydra app (see `reason --help`)."""

from __future__ import annotations

import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    # vLLM's INFO lines drown the progress bar; VLLM_LOGGING_LEVEL=INFO brings them back.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    from evals.experiment import format_summary, run_experiment

    out_dir = HydraConfig.get().runtime.output_dir
    summary = run_experiment(cfg, out_dir)
    print(format_summary(summary))
    print(f"run dir   {out_dir}")
    return summary["accuracy"]


if __name__ == "__main__":
    main()
