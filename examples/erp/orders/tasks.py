import logging
import time

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from .models import Heartbeat, Order

logger = logging.getLogger(__name__)


@shared_task
def process_order(order_id: int, work_seconds: float = 0.2) -> None:
    """Takes a while (as real work does), then marks the order processed.

    Idempotent, as Celery tasks must be: Celery can deliver a task again, for one
    when a worker stops (a deploy's warm shutdown, celery/celery#3796). The row lock
    makes a second delivery wait for the first and then see the order done.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.processed_at is not None:
            logger.warning("order %s is processed already: delivered again, skipped", order_id)
            return
        time.sleep(work_seconds)
        order.processed_at = timezone.now()
        order.times_processed += 1
        order.save(update_fields=["processed_at", "times_processed"])


@shared_task
def heartbeat() -> None:
    Heartbeat.objects.create()
