"""Counters of the gateway, rendered in the Prometheus text format at ``GET /metrics``.

    metrics = Metrics()
    metrics.inc("gateway_requests_total", 204)
    print(metrics.render(spools))
    # gateway_requests_total{status="204"} 1
    # gateway_spool_lines_total{pipeline="demo"} 1 ...
"""
from __future__ import annotations

from collections import defaultdict


class Metrics:
    def __init__(self):
        self.counters: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.accepted = 0  # 204s, counted on the hot path without a lookup

    def _merged(self) -> dict:
        merged = {name: dict(by_status) for name, by_status in self.counters.items()}
        if self.accepted:
            requests = merged.setdefault("gateway_requests_total", {})
            requests[204] = requests.get(204, 0) + self.accepted
        return merged

    def inc(self, name: str, status: int, amount: int = 1) -> None:
        self.counters[name][status] += amount

    def value(self, name: str, status: int) -> int:
        return self._merged().get(name, {}).get(status, 0)

    def render(self, spools: dict) -> str:
        lines = []
        for name, by_status in sorted(self._merged().items()):
            lines.append(f"# TYPE {name} counter")
            lines += [f'{name}{{status="{status}"}} {count}' for status, count in sorted(by_status.items())]
        lines.append("# TYPE gateway_spool_lines_total counter")
        lines += [f'gateway_spool_lines_total{{pipeline="{n}"}} {s.lines}' for n, s in sorted(spools.items())]
        lines.append("# TYPE gateway_spool_fsync_batches_total counter")
        lines += [f'gateway_spool_fsync_batches_total{{pipeline="{n}"}} {s.batches}' for n, s in sorted(spools.items())]
        return "\n".join(lines) + "\n"
