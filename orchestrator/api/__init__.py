"""Ratchet's JSON API (django-ninja): OpenAPI at /api/schema, docs at /api/docs (served from the
package's own static files, no CDN). Authentication: the browser's session, or a per-user
token (``Authorization: Bearer rt_...``). Errors are JSON with a stable ``code``, a
``message`` that says what to fix and, for a bad field, its ``field``.

Why django-ninja: it declares each endpoint with type hints and pydantic schemas, so validation
errors name the field and the OpenAPI document comes from the same declarations; it is
maintained, async-ready and smaller than Django REST framework plus a schema generator.
"""
