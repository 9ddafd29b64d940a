"""URLs of the ERP example: the admin, a health check, orders and their stats."""

from django.contrib import admin
from django.urls import path

from orders import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", views.health),
    path("orders/", views.create_order),
    path("orders/stats/", views.stats),
]
