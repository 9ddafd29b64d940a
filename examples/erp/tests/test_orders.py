import json

import pytest
from django.test import Client

from orders.models import Heartbeat, Order
from orders.tasks import heartbeat, process_order


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.mark.django_db
def test_health_answers_ok(client: Client) -> None:
    assert client.get("/health/").content == b"ok"


@pytest.mark.django_db
def test_an_order_is_created_queued_and_processed_once(client: Client, monkeypatch) -> None:
    queued = []
    monkeypatch.setattr(process_order, "delay", lambda *args: queued.append(args))
    created = client.post("/orders/", json.dumps({"reference": "A-1"}), "application/json")
    assert created.status_code == 201
    [(order_id, _)] = queued
    process_order(order_id, 0)
    order = Order.objects.get(pk=order_id)
    assert order.times_processed == 1 and order.processed_at is not None
    stats = client.get("/orders/stats/").json()
    assert stats == {"orders": 1, "processed": 1, "twice": 0, "heartbeats": 0}
    again = client.post("/orders/", json.dumps({"reference": "A-1"}), "application/json")
    assert again.status_code == 200 and again.json()["id"] == order_id
    assert len(queued) == 1  # a POST sent again queues nothing


@pytest.mark.django_db
def test_heartbeat_counts(client: Client) -> None:
    heartbeat()
    heartbeat()
    assert Heartbeat.objects.count() == 2
    assert client.get("/orders/stats/").json()["heartbeats"] == 2


@pytest.mark.django_db
def test_only_post_creates_orders(client: Client) -> None:
    assert client.get("/orders/").status_code == 405


@pytest.mark.django_db
def test_an_order_delivered_twice_is_processed_once(client: Client, monkeypatch) -> None:
    monkeypatch.setattr(process_order, "delay", lambda *args: None)
    created = client.post("/orders/", json.dumps({"reference": "B-1"}), "application/json")
    order_id = created.json()["id"]
    process_order(order_id, 0)
    process_order(order_id, 0)  # Celery delivered it again
    assert Order.objects.get(pk=order_id).times_processed == 1
    assert client.get("/orders/stats/").json()["twice"] == 0
