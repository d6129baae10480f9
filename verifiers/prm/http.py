"""The HTTP backend: POST /pooling to a vLLM server started with `PoolingPRM.server_args()`."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from verifiers.prm.formats import Rows


class HttpClient:
    """POST /pooling to a vLLM server, one request per batch, with retries."""

    RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

    def __init__(
        self,
        base_url: str,
        *,
        served_model: str | None,
        max_retries: int,
        backoff_s: float,
        request_timeout_s: float,
    ) -> None:
        import httpx

        root = base_url.rstrip("/").removesuffix("/v1")
        self.url = f"{root}/pooling"
        self.served_model = served_model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(request_timeout_s))

    async def encode(self, prompts: list[list[int]]) -> list[Rows]:
        """Raw logit rows at the step markers of each prompt, in the order given."""
        import httpx

        body: dict[str, Any] = {
            "input": prompts,
            "task": "token_classify",
            "use_activation": False,
        }
        if self.served_model is not None:
            body["model"] = self.served_model
        attempt = 0
        while True:
            try:
                response = await self.client.post(self.url, json=body)
                if response.status_code not in self.RETRY_STATUS:
                    break
                error: Exception = RuntimeError(
                    f"{self.url} answered {response.status_code}: {response.text[:500]}"
                )
            except httpx.TransportError as exc:
                error = exc
            if attempt >= self.max_retries:
                raise RuntimeError(f"PRM request to {self.url} failed: {error}") from error
            await asyncio.sleep(self.backoff_s * 2**attempt * (1 + random.random()))
            attempt += 1
        if response.status_code != 200:
            raise RuntimeError(f"{self.url} answered {response.status_code}: {response.text}")
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        return [d["data"] for d in data]

    async def aclose(self) -> None:
        await self.client.aclose()
