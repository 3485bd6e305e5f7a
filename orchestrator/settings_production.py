"""Production settings: ``DJANGO_SETTINGS_MODULE=orchestrator.settings_production``.

Everything in ``orchestrator.settings`` (database, Redis, queues, the content security policy),
plus what only makes sense behind HTTPS: redirect to HTTPS, secure cookies, HSTS, hashed and
compressed static files served by WhiteNoise. A separate module rather than switches in
settings.py, so ``make run`` (plain http on localhost) and the tests never get them by accident
and a deployment never runs without them by accident: choosing this module is the one switch.

``manage.py check --deploy --fail-level WARNING`` passes with it (tests/deploy). It refuses to
load without a strong SECRET_KEY or without ALLOWED_HOSTS. Environment variables: README
"Deploying".
"""

import os

from django.core.exceptions import ImproperlyConfigured

from orchestrator.settings import *  # noqa: F403
from orchestrator.settings import env_bool

DEVELOPMENT_SECRET_KEY = "ratchet-insecure-development-key-change-me-in-production"


def strong_secret_key(value: str) -> str:
    """The key itself, or ImproperlyConfigured saying why it is refused.

    The same bar as Django's security.W009: at least 50 characters, at least 5 distinct ones,
    not Django's generated insecure prefix, and not the development key of settings.py.
    """
    if not value:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: production settings need one (for example: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))')")
    if value == DEVELOPMENT_SECRET_KEY or value.startswith("django-insecure"):
        raise ImproperlyConfigured("SECRET_KEY is a development key: generate a new one for production")
    if len(value) < 50 or len(set(value)) < 5:
        raise ImproperlyConfigured("SECRET_KEY is too weak: use at least 50 random characters")
    return value


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


DEBUG = False
if env_bool("DEBUG", False):
    raise ImproperlyConfigured("DEBUG is on: production settings never run with DEBUG (unset it)")
SECRET_KEY = strong_secret_key(os.environ.get("SECRET_KEY", ""))

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is not set: name the host names this site answers to, comma-separated")
# Only needed when a page is posted from another origin than its own host (e.g. a proxy that
# rewrites Host): full origins, "https://ratchet.example.com".
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# HTTPS. Behind a proxy that ends TLS, set RATCHET_BEHIND_PROXY=1 and make the proxy set
# X-Forwarded-Proto (and strip it from clients): Django then knows the request was HTTPS.
if env_bool("RATCHET_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Paths answered over plain http too (regular expressions without the leading slash), e.g.
# "^metrics$" for a Prometheus inside the network.
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# HSTS: a year by default. Start lower (300) on a first deployment if unsure, then raise it.
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Turning one off is a decision made in the environment: the check that warns about it is silenced.
SILENCED_SYSTEM_CHECKS = [
    *(["security.W005"] if not SECURE_HSTS_INCLUDE_SUBDOMAINS else []),
    *(["security.W021"] if not SECURE_HSTS_PRELOAD else []),
]

# Static files: `manage.py collectstatic` writes hashed, compressed copies to STATIC_ROOT, and
# WhiteNoise serves them with far-future cache headers. A page naming a file that was not
# collected fails loudly instead of linking to a 404.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False
