"""Prometheus series of one server (its own registry, so several apps in one process, as in
tests, never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from reasoning.budget import Ledger

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))


class Metrics:
    """The server's counters, histograms and gauges."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, in_flight: Callable[[], float], queued: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "reasoning_requests",
            "requests answered, by HTTP status and controller",
            ["status", "controller", "endpoint"],
            registry=r,
        )
        self.rejections = Counter(
            "reasoning_rejections",
            "requests refused before a search ran, by reason",
            ["reason"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "reasoning_generated_tokens",
            "tokens the generator produced for requests",
            ["controller"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "reasoning_prompt_tokens",
            "prompt tokens of generator calls",
            ["controller"],
            registry=r,
        )
        self.verifier_tokens = Counter(
            "reasoning_verifier_tokens", "tokens the verifier read", ["controller"], registry=r
        )
        self.verifier_calls = Counter(
            "reasoning_verifier_calls",
            "verifier calls (one per scored chain)",
            ["controller"],
            registry=r,
        )
        self.latency = Histogram(
            "reasoning_request_latency_seconds",
            "request wall time, admission to answer",
            ["controller"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "reasoning_queue_wait_seconds",
            "time a request waited for a search slot",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cut = Counter(
            "reasoning_cut_answers",
            "answers cut by their deadline or budget",
            ["controller"],
            registry=r,
        )
        self.disconnects = Counter(
            "reasoning_client_disconnects",
            "searches cancelled because the client left",
            registry=r,
        )
        flight = Gauge("reasoning_searches_in_flight", "searches running now", registry=r)
        flight.set_function(in_flight)
        queue = Gauge("reasoning_queue_length", "requests waiting for a search slot", registry=r)
        queue.set_function(queued)
        self.engine_running = Gauge(
            "reasoning_engine_running_requests",
            "generator requests in the engine now (in-process engine only; else 0)",
            registry=r,
        )

    def watch_engine(self, running: Callable[[], int] | None) -> None:
        """Report the engine's running requests (None-safe: a generator without the count)."""
        if running is not None:
            self.engine_running.set_function(lambda: float(running()))

    def spent(self, controller: str, ledger: Ledger) -> None:
        self.generated_tokens.labels(controller).inc(ledger.generated_tokens)
        self.prompt_tokens.labels(controller).inc(ledger.prompt_tokens)
        self.verifier_tokens.labels(controller).inc(ledger.verifier_tokens)
        self.verifier_calls.labels(controller).inc(ledger.verifier_calls)

    def text(self) -> bytes:
        return generate_latest(self.registry)
