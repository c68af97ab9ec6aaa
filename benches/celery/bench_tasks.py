"""Celery side of the comparison: no-op tasks on the same RabbitMQ, PostgreSQL as the result
backend (chords need one). Configured from NAXOS_BENCH_AMQP_URL and NAXOS_BENCH_CELERY_DB."""
import os

from celery import Celery

app = Celery(
    "naxos_bench",
    broker=os.environ["NAXOS_BENCH_AMQP_URL"],
    backend="db+" + os.environ["NAXOS_BENCH_CELERY_DB"],
)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4, result_extended=False,
                broker_connection_retry_on_startup=True, task_default_queue="naxos_bench_celery")


@app.task
def noop(*_args):
    return None
