import json

from django.db import connection
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Heartbeat, Order
from .tasks import process_order


@require_GET
def health(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok")


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    """Creates the order and queues its processing; the reference makes a POST idempotent:
    sent again (a client retrying after a lost answer), it returns the order, queues nothing."""
    body = json.loads(request.body or b"{}")
    order, created = Order.objects.get_or_create(reference=str(body["reference"]))
    if created:
        process_order.delay(order.pk, float(body.get("work_seconds", 0.2)))
    return JsonResponse(
        {"id": order.pk, "reference": order.reference}, status=201 if created else 200
    )


@require_GET
def stats(request: HttpRequest) -> JsonResponse:
    counts = Order.objects.aggregate(
        orders=Count("id"),
        processed=Count("id", filter=Q(times_processed__gte=1)),
        twice=Count("id", filter=Q(times_processed__gte=2)),
    )
    return JsonResponse({**counts, "heartbeats": Heartbeat.objects.count()})
