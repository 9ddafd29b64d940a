from django.db import models


class Order(models.Model):
    """An order; `process_order` handles it once (`times_processed` counts how often)."""

    reference = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    times_processed = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.reference


class Heartbeat(models.Model):
    """One row per beat tick: a second scheduler would double them."""

    at = models.DateTimeField(auto_now_add=True)
