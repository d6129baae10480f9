"""The `reason-serve` command: a Hydra app (see `reason-serve --help`) that builds the server's
parts once (one generator for the server's life) and serves them with uvicorn."""

from __future__ import annotations

import contextlib
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def serve(cfg: DictConfig, overrides: list[str]) -> None:
    """Build the state, start the engine (not in replay), listen until SIGINT/SIGTERM: uvicorn
    stops accepting, gives in-flight requests `server.shutdown_grace_s`, then the app cancels
    what is left and the engine shuts down."""
    import uvicorn

    from reasoning.build import ConfigError, close_generators
    from reasoning.process import (
        default_engine_log,
        engine_output_to,
        install_lifeline,
        spawn_without_main,
    )
    from serve.app import create_app
    from serve.state import ServerState

    install_lifeline()  # the engine's processes end with the server, also on kill -9
    verbose = cfg.get("verbose", False) is True
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING" if verbose else "INFO")
    log = None if verbose else default_engine_log()
    try:
        with spawn_without_main(), engine_output_to(log):
            try:
                state = ServerState(cfg, overrides=overrides)
            except ConfigError:
                raise
            except ValueError as exc:  # a bad server.* value: its message, not a traceback
                raise ConfigError(str(exc)) from None
            replay = OmegaConf.select(cfg, "cache.mode", default="off") == "replay"
            start = None if replay else getattr(state.generator, "start", None)
            if callable(start):
                start()
        if log is not None:
            print(f"reason-serve: engine output in {log}", file=sys.stderr)
        settings = state.server
        if settings.host not in ("127.0.0.1", "localhost", "::1") and not state.keys:
            print(
                f"reason-serve: warning: listening on {settings.host} without an API key "
                "(set REASONING_API_KEY or server.api_key)",
                file=sys.stderr,
            )
        config = uvicorn.Config(
            create_app(state),
            host=settings.host,
            port=settings.port,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
            log_level="info",
        )
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for
        # the caller: after a clean shutdown that is the normal end, not an error to trace
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run()
        print("reason-serve: stopped", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            close_generators()


@hydra.main(config_path="../conf", config_name="serve", version_base="1.3")
def run(cfg: DictConfig) -> None:
    serve(cfg, list(HydraConfig.get().overrides.task))


def main() -> None:
    """`reason-serve [key=value ...]` (Hydra's arguments: --help, --cfg job, ...)."""
    run()


if __name__ == "__main__":
    main()
