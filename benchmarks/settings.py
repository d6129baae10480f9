"""Settings beside the figures, for every benchmark here.

`print_settings` prints one first block of everything a run used (and returns it for a JSON
`settings` object); `engine_settings` reads a vLLM engine's settings back from its resolved
config, so a benchmark reports (and a raw baseline copies) what the engine actually runs with,
not what a script meant to ask for; `config_diff` lists every plain setting two engines differ in.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

GiB = 2**30


def vllm_config_of(engine: Any) -> Any:
    """The resolved `VllmConfig` of a started VLLMGenerator, PoolingPRM, `vllm.LLM` or AsyncLLM."""
    if hasattr(engine, "_engine"):  # VLLMGenerator (an AsyncLLM), PoolingPRM (a vllm.LLM holder)
        engine = getattr(engine._engine, "_llm", engine._engine)
        if engine is None:
            raise RuntimeError("engine not started: call start() first")
    if hasattr(engine, "llm_engine"):  # vllm.LLM
        engine = engine.llm_engine
    return engine.vllm_config


def engine_settings(engine: Any) -> dict[str, Any]:
    """The engine arguments that shape throughput, as the engine resolved them: `vllm.LLM(
    **engine_settings(x))` builds an engine with the same settings (the model path included)."""
    config = vllm_config_of(engine)
    model, cache, sched = config.model_config, config.cache_config, config.scheduler_config
    kv_bytes = cache.kv_cache_memory_bytes
    return {
        "model": model.model,
        "dtype": str(model.dtype).removeprefix("torch."),
        "max_model_len": model.max_model_len,
        "max_num_seqs": sched.max_num_seqs,
        "max_num_batched_tokens": sched.max_num_batched_tokens,
        "enable_chunked_prefill": sched.enable_chunked_prefill,
        "enable_prefix_caching": cache.enable_prefix_caching,
        "block_size": cache.block_size,
        "enforce_eager": model.enforce_eager,
        "seed": model.seed,
        "gpu_memory_utilization": cache.gpu_memory_utilization,
        "kv_cache_memory_bytes": kv_bytes,
        "kv_cache_dtype": cache.cache_dtype,
    }


def engine_summary(engine: Any) -> dict[str, Any]:
    """engine_settings for printing: KV space in GiB (and the env var that set it), no path."""
    out = engine_settings(engine)
    out.pop("model")
    kv_bytes = out.pop("kv_cache_memory_bytes")
    out["kv_cache_gib"] = round(kv_bytes / GiB, 2) if kv_bytes else None
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        out["VLLM_CPU_KVCACHE_SPACE"] = os.environ["VLLM_CPU_KVCACHE_SPACE"]
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset | dict):
        return repr(value)
    return str(value) if type(value).__module__ in ("torch", "enum") else None


def config_diff(a: Any, b: Any, ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """Every plain (scalar, container or dtype) field of the two engines' sub-configs that
    differs, as {"cache_config.block_size": (a's, b's)}; `ignore` names fields to skip (the
    engine's own `instance_id` is always skipped)."""
    ca, cb = vllm_config_of(a), vllm_config_of(b)
    ignore = ("instance_id", *ignore)
    out: dict[str, tuple[Any, Any]] = {}
    for section in dataclasses.fields(ca):
        if section.name in ignore:
            continue
        sa, sb = getattr(ca, section.name), getattr(cb, section.name)
        if not (dataclasses.is_dataclass(sa) and dataclasses.is_dataclass(sb)):
            if _plain(sa) != _plain(sb):
                out[section.name] = (_plain(sa), _plain(sb))
            continue
        for f in dataclasses.fields(sa):
            key = f"{section.name}.{f.name}"
            if key in ignore or f.name in ignore:
                continue
            va, vb = _plain(getattr(sa, f.name, None)), _plain(getattr(sb, f.name, None))
            if va != vb:
                out[key] = (va, vb)
    return out


def print_settings(settings: dict[str, Any], *, end_block: bool = True) -> dict[str, Any]:
    """Print `settings` as the run's first block (`settings:`, then one `key=value` per line, a
    nested dict on one line) and return it, for the `settings` object of a JSON result.
    `end_block=False` leaves off the closing blank line, for a caller that adds lines to it."""
    print("settings:")
    for key, value in settings.items():
        if isinstance(value, dict):
            print(f"  {key}: " + " ".join(f"{k}={v}" for k, v in value.items()))
        else:
            print(f"  {key}={value}")
    if end_block:
        print(flush=True)
    return settings
