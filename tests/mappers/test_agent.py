from __future__ import annotations

import pytest

from memory.mappers.base import MappingError, mapper_for


def test_an_agent_note_keeps_its_text_subject_and_importance() -> None:
    text = "Deploys freeze on Fridays after 3pm.\n" + "Because on-call is thin. " * 20
    mapped = mapper_for("agent").map("note", {"subject": "agent:deploys", "title": "deploys", "text": text,
                                              "importance": 0.9})  # fmt: skip
    assert (mapped.subject, mapped.kind, mapped.title) == ("agent:deploys", "note", "deploys")
    assert mapped.text == text and mapped.importance == 0.9


@pytest.mark.parametrize("importance", [7, -1, "high", True, None])
def test_odd_importance_is_clamped_or_defaulted(importance: object) -> None:
    mapped = mapper_for("agent").map("note", {"subject": "agent:x", "text": "t", "importance": importance})
    assert 0.0 <= mapped.importance <= 1.0


@pytest.mark.parametrize("payload", [{}, {"subject": "agent:x"}, {"text": "t"}, {"subject": 3, "text": "t"}])
def test_a_note_without_subject_or_text_cannot_be_mapped(payload: dict[str, object]) -> None:
    with pytest.raises(MappingError):
        mapper_for("agent").map("note", payload)
