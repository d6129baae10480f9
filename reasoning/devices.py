"""Where vLLM runs here: the engine's defaults (per-request seeds, eager mode, KV block size,
memory settings) differ on CPU, for the generator backend and the in-process PRM alike."""

from __future__ import annotations


def on_cpu() -> bool:
    """Whether vLLM runs on CPU here (no CUDA device visible to torch)."""
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch comes with vllm
        return True
