"""Engine settings (orchestrator/conf.py): typed from environment strings, unknown keys refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from orchestrator.conf import ratchet_setting


def test_a_value_from_the_environment_takes_the_default_s_type(settings):
    settings.RATCHET = {"INLINE_CHAIN_LIMIT": "7", "LEASE_SECONDS": "2.5", "LEAN_JOBS": ""}
    assert ratchet_setting("INLINE_CHAIN_LIMIT") == 7
    assert ratchet_setting("LEASE_SECONDS") == 2.5
    assert ratchet_setting("LEAN_JOBS") is False


@pytest.mark.parametrize(("word", "meaning"), [("false", False), ("0", False), ("off", False), ("True", True),
                                               ("1", True), ("yes", True)])
def test_a_switch_from_the_environment_reads_its_word(settings, word, meaning):
    settings.RATCHET = {"FAST_CHECKPOINT": word}
    assert ratchet_setting("FAST_CHECKPOINT") is meaning


def test_a_switch_that_is_no_word_for_on_or_off_is_refused(settings):
    settings.RATCHET = {"LEAN_JOBS": "sometimes"}
    with pytest.raises(ImproperlyConfigured, match="LEAN_JOBS must be true or false"):
        ratchet_setting("LEAN_JOBS")


def test_an_unknown_key_is_refused_even_after_a_valid_dict_was_read(settings):
    settings.RATCHET = {"INLINE_CHAIN_LIMIT": 3}
    assert ratchet_setting("INLINE_CHAIN_LIMIT") == 3
    settings.RATCHET = {"INLINE_CHAIN_LIMT": 3}
    with pytest.raises(ImproperlyConfigured, match="INLINE_CHAIN_LIMT"):
        ratchet_setting("LEASE_SECONDS")


def test_an_unknown_name_asked_for_is_a_programming_error(settings):
    with pytest.raises(KeyError):
        ratchet_setting("NO_SUCH_SETTING")


def test_a_new_settings_dict_is_read_afresh_after_its_values_were_kept(settings):
    settings.RATCHET = {"INLINE_CHAIN_LIMIT": "7"}
    assert ratchet_setting("INLINE_CHAIN_LIMIT") == 7
    assert ratchet_setting("INLINE_CHAIN_LIMIT") == 7  # kept, converted once
    settings.RATCHET = {"INLINE_CHAIN_LIMIT": "9"}
    assert ratchet_setting("INLINE_CHAIN_LIMIT") == 9


def test_the_sink_path_follows_var_dir(settings, tmp_path):
    settings.RATCHET = {}
    settings.VAR_DIR = tmp_path / "a"
    assert ratchet_setting("SINK_PATH") == str(tmp_path / "a" / "sink.sqlite3")
    settings.VAR_DIR = tmp_path / "b"
    assert ratchet_setting("SINK_PATH") == str(tmp_path / "b" / "sink.sqlite3")
