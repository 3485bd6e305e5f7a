"""Failure fingerprints group runs by cause, whatever ids and numbers their messages carry."""

from orchestrator.engine.fingerprints import fingerprint, normalised


def test_ids_numbers_and_quoted_values_do_not_split_a_cause():
    a = {"type": "ValueError", "message": "order 'A-17' of run 3f2a9c1e-1111-4a6b-9c0d-aaaaaaaaaaaa failed after 3"}
    b = {"type": "ValueError", "message": "order 'B-9' of run 00000000-2222-4a6b-9c0d-bbbbbbbbbbbb failed after 12"}
    assert fingerprint(a, "charge") == fingerprint(b, "charge")
    assert normalised(a["message"]) == "order <value> of run <id> failed after <n>"


def test_another_state_type_or_message_is_another_cause():
    error = {"type": "ValueError", "message": "card declined"}
    assert fingerprint(error, "charge") != fingerprint(error, "refund")
    assert fingerprint(error, "charge") != fingerprint({**error, "type": "KeyError"}, "charge")
    assert fingerprint(error, "charge") != fingerprint({**error, "message": "card expired"}, "charge")
    assert len(fingerprint(None)) == 16
