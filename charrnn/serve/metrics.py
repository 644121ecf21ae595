"""GET /metrics: the engine's counters in Prometheus' text format (prometheus_client).

A collector reads the engine's Stats when scraped, on a registry of the app's own, so
two servers in one process (tests) never share a metric.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# why a request was refused; each is a label value of charrnn_requests_refused_total
REFUSALS = (
    "queue_full",  # 429
    "invalid",  # 400
    "unauthorized",  # 401
    "unknown_model",  # 404
    "too_large",  # 413
    "loading",  # 503: the models are not loaded yet
    "client_gone",  # the client left before its request joined the batch
)


class EngineCollector:
    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        s = self.engine.stats
        yield GaugeMetricFamily(
            "charrnn_streams_running", "Streams in the batch, generating.", s.running_streams
        )
        yield GaugeMetricFamily(
            "charrnn_streams_queued", "Streams of requests waiting to join.", s.queued_streams
        )
        yield CounterMetricFamily(
            "charrnn_characters_generated", "Characters generated, all streams.", s.characters
        )
        yield CounterMetricFamily("charrnn_steps", "Batch steps taken (one id per row).", s.steps)
        yield CounterMetricFamily("charrnn_requests", "Completion requests queued.", s.requests)
        refused = CounterMetricFamily(
            "charrnn_requests_refused", "Requests refused, by reason.", labels=["reason"]
        )
        for reason in REFUSALS:
            refused.add_metric([reason], s.refused[reason])
        yield refused
        yield GaugeMetricFamily(
            "charrnn_models_loaded", "Models loaded and served.", len(self.engine.models)
        )


def metrics_registry(engine) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(EngineCollector(engine))
    return registry


def metrics_text(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
