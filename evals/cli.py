"""The `reason` command: a Hydra app (see `reason --help`)."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from evals import console
from evals.rundir import ENGINE_LOG, RunDirError

# After SIGTERM the run stops, the engine shuts down (vLLM gives its processes 5 s) and the
# process exits; whatever still holds it up then (a thread still starting the engine) is cut
# short this long after the signal: the children end with it (install_lifeline).
TERM_GRACE_S = 8.0
ENGINE_STOP_S = 2.0  # after SIGTERM, vLLM's processes get this long before they are killed

_last_log: list[Path] = []  # the latest multirun job's engine log


def _close_engines_into_last_log() -> None:
    """At exit after a multirun: shut the shared engine down into the last job's engine log."""
    from reasoning.build import close_generators

    with console.engine_log(_last_log[-1]):
        close_generators()


class Terminated(SystemExit):
    """SIGTERM arrived: unwinds the run like Ctrl-C, then exits with 128 + 15."""


def _on_sigterm(signum: int, frame: object) -> None:
    from reasoning.process import shorten_engine_shutdown

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    threading.Thread(target=_exit_after, args=(TERM_GRACE_S,), daemon=True).start()
    shorten_engine_shutdown(ENGINE_STOP_S)
    raise Terminated(128 + signum)


def _exit_after(seconds: float) -> None:
    time.sleep(seconds)
    os._exit(128 + signal.SIGTERM)


def _exit_now(code: int) -> NoReturn:
    """Exit after the exit hooks, skipping the interpreter's own teardown (seconds of C
    finalizers once torch and vLLM are loaded) and threads still busy (an engine start)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _stop_with_the_process() -> None:
    """SIGTERM stops the run and shuts the engine down; every multiprocessing child (engine
    core, workers, grading workers) ends when this process ends, also by SIGKILL."""
    from reasoning.process import install_lifeline

    install_lifeline()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def fit_dirname(name: str, limit: int = 200) -> str:
    """A folder name within the file system's 255 bytes: a sweep over many keys would name its
    job folders past that and fail, so a long name is cut and a hash of the whole keeps the
    cut names apart. A group override (`search/strategy=apr`) would nest folders: its `/` is
    written as `.`, so every job folder is one level under the sweep's."""
    name = name.replace("/", ".")
    raw = name.encode()
    if len(raw) <= limit:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:10]
    return raw[: limit - len(digest) - 1].decode(errors="ignore") + "-" + digest


# conf/config.yaml names sweep job folders with it
OmegaConf.register_new_resolver("fit_dirname", fit_dirname, replace=True)


HELP_SEARCH = "--help-search"
_DIR_OVERRIDE = re.compile(r"^\+{0,2}(hydra\.(?:run|sweep)\.dir)=(.*)$", re.DOTALL)


def run_dir_problem(argv: list[str]) -> str | None:
    """One line when a `hydra.run.dir=` or `hydra.sweep.dir=` argument names a folder that
    cannot be made because it, or a folder above it, is a file (Hydra would stop with a
    traceback making it); None when it can be. The part before a `${...}` is what is checked."""
    for arg in argv:
        match = _DIR_OVERRIDE.match(arg)
        if not match:
            continue
        key, value = match.group(1), match.group(2).strip().strip("'\"")
        fixed = value.split("${", 1)[0]
        if "${" in value:
            fixed = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
        if not fixed:
            continue
        folder = Path(fixed).expanduser()
        for place in (folder, *folder.parents):
            if place.exists() or place.is_symlink():
                if not place.is_dir():
                    return f"{key}={value}: {place} is a file, not a folder; name another folder"
                break
    return None


def main() -> float | None:
    """`reason`: one run (Hydra's arguments), or `reason --help-search NAME`, which prints the
    settings of a controller, thread strategy or trimmer (rendered from their declarations)."""
    if HELP_SEARCH in sys.argv[1:]:
        at = sys.argv.index(HELP_SEARCH)
        from evals.settings_doc import help_search

        name = sys.argv[at + 1] if at + 1 < len(sys.argv) else ""
        print(help_search(name), file=console.stdout())
        raise SystemExit(0)
    problem = run_dir_problem(sys.argv[1:])
    if problem is not None:
        print(f"reason: error: {problem}", file=console.stderr())
        raise SystemExit(1)
    return run()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float | None:
    """One run (or multirun job); vLLM's output goes to <run dir>/engine.log unless verbose."""
    _stop_with_the_process()
    verbose = cfg.get("verbose", False) is True
    # On the terminal vLLM's INFO lines would drown the progress bar; in engine.log they help.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING" if verbose else "INFO")
    from evals.experiment import format_summary, run_experiment
    from reasoning.build import close_generators

    out_dir = HydraConfig.get().runtime.output_dir
    log = Path(out_dir) / ENGINE_LOG
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    terminated = False
    try:
        with contextlib.ExitStack() as quiet:
            if not verbose:
                quiet.enter_context(console.engine_log(log))
                quiet.enter_context(console.toolkit_warnings())
            try:
                try:
                    summary = run_experiment(cfg, out_dir)
                except RunDirError as exc:  # a refused resume: its message, not a traceback
                    from reasoning.build import ConfigError

                    raise ConfigError(str(exc)) from None
                print(format_summary(summary), file=console.stdout())
                print(f"run dir   {out_dir}", file=console.stdout(), flush=True)
            except Terminated:
                terminated = True
                raise
            finally:
                if not multirun or terminated:
                    close_generators()  # here, not at exit, so its kill messages go to the log
    except Terminated:
        print(
            f"reason: stopped by SIGTERM; finished problems are saved in {out_dir} "
            "(rerun the same command to resume)",
            file=console.stderr(),
            flush=True,
        )
        _exit_now(128 + signal.SIGTERM)
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
