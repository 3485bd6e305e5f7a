"""Requests the designer's tests make: a new draft, a change posted as htmx, the draft's revision."""

from __future__ import annotations

from django.urls import reverse

from designer.models import Draft


def url(name: str, *args: str) -> str:
    return reverse(f"designer:{name}", args=args)


def new(client, name="shop", starter="pipeline"):
    return client.post(url("new_draft"), {"name": name, "starter": starter})


def revision(name="shop") -> int:
    return Draft.objects.get(name=name).revision


def post(client, view, draft="shop", htmx=True, **data):
    data.setdefault("revision", revision(draft))
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(url(view, draft), data, **headers)
