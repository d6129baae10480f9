"""The `reason` command: a Hydra app (see `reason --help`)."""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from evals import console

ENGINE_LOG = "engine.log"

_last_log: list[Path] = []  # the latest multirun job's engine log


def _close_engines_into_last_log() -> None:
    """At exit after a multirun: shut the shared engine down into the last job's engine log."""
    from reasoning.build import close_generators

    with console.engine_log(_last_log[-1]):
        close_generators()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """One run (or multirun job); vLLM's output goes to <run dir>/engine.log unless verbose."""
    verbose = bool(cfg.get("verbose", False))
    # On the terminal vLLM's INFO lines would drown the progress bar; in engine.log they help.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING" if verbose else "INFO")
    from evals.experiment import format_summary, run_experiment
    from reasoning.build import close_generators

    out_dir = HydraConfig.get().runtime.output_dir
    log = Path(out_dir) / ENGINE_LOG
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        with contextlib.ExitStack() as quiet:
            if not verbose:
                quiet.enter_context(console.engine_log(log))
                quiet.enter_context(console.toolkit_warnings())
            try:
                summary = run_experiment(cfg, out_dir)
                print(format_summary(summary), file=console.stdout())
                print(f"run dir   {out_dir}", file=console.stdout(), flush=True)
            finally:
                if not multirun:
                    close_generators()  # here, not at exit, so its kill messages go to the log
    finally:
        if multirun and not verbose:
            # The engine outlives the job; re-registered after every job so that it runs
            # before the engine's own exit hooks (atexit runs last-registered first).
            _last_log[:] = [log]
            atexit.unregister(_close_engines_into_last_log)
            atexit.register(_close_engines_into_last_log)
    return summary["accuracy"]


if __name__ == "__main__":
    main()
