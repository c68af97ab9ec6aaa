"""The diamond workload on Celery: a -> (b, c) -> d as chain(a, group(b, c), d) (a chord),
N at once, then some alone. Prints one line and writes JSON like examples/loadgen.

Usage: bench_diamond.py COUNT ALONE JSON_PATH
"""
import json
import sys
import time

from celery import chain, group

from bench_tasks import noop

count, alone, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


def diamond():
    return chain(noop.si(), group(noop.si(), noop.si()), noop.si())


# Warm-up: connections, tables, the worker's pool.
for _ in range(3):
    diamond().apply_async().get(timeout=120)

start = time.perf_counter()
submitted = [(time.perf_counter(), diamond().apply_async()) for _ in range(count)]
latencies = []
for at, result in submitted:
    result.get(timeout=600)
    latencies.append(time.perf_counter() - at)
wall = time.perf_counter() - start

alone_latencies = []
for _ in range(alone):
    at = time.perf_counter()
    diamond().apply_async().get(timeout=120)
    alone_latencies.append(time.perf_counter() - at)


def q(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * (len(values) - 1)))] * 1000 if values else 0.0


report = {
    "stack": "celery", "workload": "diamond", "count": count, "wallSeconds": wall,
    "executionsPerSecond": count / wall, "tasksPerSecond": 4 * count / wall,
    "latencyMs": {"p50": q(latencies, .5), "p90": q(latencies, .9), "p99": q(latencies, .99)},
    "alone": {"runs": alone, "latencyMs": {"p50": q(alone_latencies, .5), "p90": q(alone_latencies, .9),
                                           "p99": q(alone_latencies, .99)}},
}
with open(out, "w") as f:
    json.dump(report, f, indent=2)
print(f"celery diamond x{count} (2 prefork workers, PostgreSQL result backend): "
      f"{report['executionsPerSecond']:.1f} executions/s, {report['tasksPerSecond']:.1f} tasks/s; "
      f"alone submit->complete p50 {report['alone']['latencyMs']['p50']:.1f} ms")
