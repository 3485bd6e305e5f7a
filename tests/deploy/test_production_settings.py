"""orchestrator/settings_production.py: `check --deploy` passes with it, and it refuses to load
without what a deployment must set (a strong SECRET_KEY, ALLOWED_HOSTS) or with DEBUG on."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items()
               if key not in {"SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "CSRF_TRUSTED_ORIGINS",
                              "DJANGO_ALLOW_ASYNC_UNSAFE"}}  # set by the browser tests' Playwright
    environ.update({"DJANGO_SETTINGS_MODULE": "orchestrator.settings_production", **env})
    return subprocess.run([sys.executable, MANAGE, *args], env=environ, capture_output=True, text=True, timeout=120)


def strong_key() -> str:
    return secrets.token_urlsafe(50)


def test_check_deploy_passes_with_the_production_settings():
    done = manage("check", "--deploy", "--fail-level", "WARNING",
                  SECRET_KEY=strong_key(), ALLOWED_HOSTS="ratchet.example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_fails_with_the_development_settings():
    """The check is able to fail: the same command on the settings `make run` uses does."""
    done = manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_SETTINGS_MODULE="orchestrator.settings")
    assert done.returncode != 0
    assert "security.W008" in done.stderr + done.stdout  # no HTTPS redirect in development


@pytest.mark.parametrize(("env", "reason"), [
    ({"ALLOWED_HOSTS": "ratchet.example.com"}, "SECRET_KEY is not set"),
    ({"ALLOWED_HOSTS": "ratchet.example.com", "SECRET_KEY": "short-key"}, "SECRET_KEY is too weak"),
    ({"ALLOWED_HOSTS": "ratchet.example.com", "SECRET_KEY": "a" * 60}, "SECRET_KEY is too weak"),
    ({"ALLOWED_HOSTS": "ratchet.example.com",
      "SECRET_KEY": "ratchet-insecure-development-key-change-me-in-production"}, "development key"),
    ({"SECRET_KEY": "x" + secrets.token_urlsafe(50)}, "ALLOWED_HOSTS is not set"),
    ({"ALLOWED_HOSTS": "ratchet.example.com", "SECRET_KEY": "x" + secrets.token_urlsafe(50), "DEBUG": "1"},
     "DEBUG is on"),
])
def test_production_settings_refuse_to_load_without_what_a_deployment_must_set(env, reason):
    done = manage("check", **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and reason in done.stderr, done.stderr


def test_production_settings_turn_on_https_cookies_hsts_and_hashed_static_files():
    done = manage("shell", "-c", "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, "
                  "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.DEBUG, "
                  "s.SECURE_PROXY_SSL_HEADER, s.STORAGES['staticfiles']['BACKEND'])",
                  SECRET_KEY=strong_key(), ALLOWED_HOSTS="ratchet.example.com", RATCHET_BEHIND_PROXY="1")
    assert done.returncode == 0, done.stderr
    shown = done.stdout.strip().splitlines()[-1].split()  # `shell` may first say what it imported
    assert shown == ["True", "True", "True", "31536000", "False", "('HTTP_X_FORWARDED_PROTO',", "'https')",
                     "whitenoise.storage.CompressedManifestStaticFilesStorage"]
