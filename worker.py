"""The Temporal worker: the renewal workflow and its activities, on the `renewals` task queue.

`python worker.py` reads the configuration from the environment; SIGTERM or Ctrl-C stops polling
and lets running activities finish before it exits.
"""

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.mail import Mailer
from activities.store import Store
from renewals.config import Settings, load_settings
from workflows.renewal import RenewalWorkflow


def build_worker(client: Client, store: Store, mailer: Mailer, task_queue: str) -> Worker:
    """One worker for the workflow and every activity; tests build theirs the same way."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[RenewalWorkflow],
        activities=[
            store.load_service,
            store.find_discount_code,
            store.create_order,
            store.settle_payment,
            store.activate,
            store.close_order,
            store.change_due_by,
            mailer.send_email,
        ],
        graceful_shutdown_timeout=timedelta(seconds=30),
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    client = await connect(settings)
    store = await Store.connect(settings.database_url)
    mailer = Mailer(store, settings.smtp_host, settings.smtp_port, settings.smtp_sender)
    worker = build_worker(client, store, mailer, settings.temporal_task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        logging.info("worker polling task queue %s", settings.temporal_task_queue)
        await stop.wait()
        logging.info("stopping: letting running activities finish")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
