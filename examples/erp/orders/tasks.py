import time

from celery import shared_task
from django.db.models import F
from django.utils import timezone

from .models import Heartbeat, Order


@shared_task
def process_order(order_id: int, work_seconds: float = 0.2) -> None:
    """Takes a while (as real work does), then marks the order processed."""
    time.sleep(work_seconds)
    Order.objects.filter(pk=order_id).update(
        times_processed=F("times_processed") + 1, processed_at=timezone.now()
    )


@shared_task
def heartbeat() -> None:
    Heartbeat.objects.create()
