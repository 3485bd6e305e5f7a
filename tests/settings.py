"""Test settings: the project's, plus an app holding handlers that only tests use.

Worker processes started by tests inherit DJANGO_SETTINGS_MODULE, so they see them too.
"""

from orchestrator.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405

# Hashing a password for each test user costs a third of a second with PBKDF2; tests need none of it.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Transactional tests empty the tables with DELETE, not TRUNCATE (tests/pg_backend: 5 ms, not 0.4 s).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"]["ENGINE"] = "tests.pg_backend"  # noqa: F405
