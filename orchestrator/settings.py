"""Django settings for Ratchet.

Every setting an operator may change comes from an environment variable; see README.md
("Configuration"). Engine tunables live in the single ``RATCHET`` dict, documented in
``orchestrator/conf.py``.
"""

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from orchestrator.conf import DEFAULTS as RATCHET_DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RATCHET_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and os.environ.get("RATCHET_REQUIRE_SECRET_KEY"):
        raise RuntimeError("SECRET_KEY must be set when RATCHET_REQUIRE_SECRET_KEY is set")
    SECRET_KEY = "ratchet-insecure-development-key-change-me-in-production"
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "django_htmx",
    "django_rq",
    "ninja",  # the API docs page serves its own Swagger UI files, no CDN
    "orchestrator.apps.OrchestratorConfig",
    "designer",
    "monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "monitoring.timezones.TimezoneMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "orchestrator.middleware.AuditAddressMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "orchestrator.wsgi.application"


def database_config(url: str | None) -> dict:
    """PostgreSQL from DATABASE_URL, or a SQLite file (default: under var/) tuned for several writers."""
    if url and not url.startswith("sqlite:"):
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
        config.setdefault("TEST", {})
        return config
    name = dj_database_url.parse(url)["NAME"] if url else VAR_DIR / "ratchet.sqlite3"
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {
            # Several worker processes write: take the write lock at BEGIN instead of failing
            # with "database is locked" on upgrade, and let readers run beside the writer.
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
            "timeout": 20,
        },
        # Worker processes must see the test database, so it cannot live in memory.
        "TEST": {"NAME": str(VAR_DIR / f"test-ratchet-{os.getpid()}.sqlite3")},
    }


DATABASES = {"default": database_config(os.environ.get("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Unset: the Redis that `make run` started under var/ if it is up, else a local server.
LOCAL_REDIS_SOCKET = VAR_DIR / "redis" / "redis.sock"
REDIS_URL = os.environ.get("REDIS_URL") or (
    f"unix://{LOCAL_REDIS_SOCKET}?db=0" if LOCAL_REDIS_SOCKET.exists() else "redis://127.0.0.1:6379/0"
)
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": -1}
    for name in os.environ.get("RATCHET_QUEUES", "default,slow").split(",")
    if name
}
RQ = {"COMMIT_MODE": "auto"}
# django-rq's dashboard breaks under Django 5.2's admin JavaScript: no link to it from the admin
# (the Queues page shows queues and workers).
RQ_SHOW_ADMIN_LINK = False

# /metrics (README "Metrics"): a bearer token, and/or client addresses (IPs or networks) that may
# scrape it without one. With neither, only signed-in staff may read it.
RATCHET_METRICS_TOKEN = os.environ.get("RATCHET_METRICS_TOKEN", "")
RATCHET_METRICS_ALLOW = [a.strip() for a in os.environ.get("RATCHET_METRICS_ALLOW", "").split(",") if a.strip()]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# UTC everywhere: Django would otherwise set the process TZ, and RQ schedules in local time.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves static files from here (``collectstatic``); with DEBUG on it serves them
# straight from the apps instead. The default directory exists, so WhiteNoise never warns.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or VAR_DIR / "staticfiles")
if "STATIC_ROOT" not in os.environ:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Content security policy (django-csp), in every settings module so tests and `make run` see
# the production policy: only this site's own files, no inline script or style, no eval. htmx
# is told not to inject its indicator <style> (templates/base.html, htmx-config).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    },
}
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "ratchet": {"handlers": ["console"], "level": os.environ.get("RATCHET_LOG_LEVEL", "INFO")},
    },
}

# Engine tunables (see orchestrator/conf.py): RATCHET_<KEY> environment variables override them.
RATCHET = {key: os.environ[f"RATCHET_{key}"] for key in RATCHET_DEFAULTS if f"RATCHET_{key}" in os.environ}
