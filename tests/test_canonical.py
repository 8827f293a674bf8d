"""Canonicalisation: what separates entries, what does not, and what is rejected before any cache work."""

from __future__ import annotations

import pytest

from proxy.canonical import BOOKKEEPING_FIELDS, build_chat_request, owner_of, parse_cache_control, validate_body
from proxy.errors import BadRequestError


def chat(messages, *, headers=None, shared=False, **params):
    body = validate_body({"model": "m", "messages": messages, **params})
    owner = owner_of(headers or {"authorization": "Bearer sk-a"}, fallback_key=None, share_across_keys=shared)
    return build_chat_request(body, owner)


def user(text):
    return [{"role": "user", "content": text}]


def test_tenant_is_a_hash_and_never_the_key():
    request = chat(user("hi"))
    assert "sk-a" not in request.tenant and len(request.tenant) == 64
    assert chat(user("hi"), headers={"authorization": "Bearer sk-b"}).partition != request.partition


def test_organisation_and_project_headers_are_part_of_the_tenant():
    plain = chat(user("hi"))
    org = chat(user("hi"), headers={"authorization": "Bearer sk-a", "openai-organization": "org-2"})
    assert plain.tenant != org.tenant


def test_shared_policy_drops_the_tenant():
    a = chat(user("hi"), shared=True)
    b = chat(user("hi"), headers={"authorization": "Bearer sk-b"}, shared=True)
    assert a.exact_key == b.exact_key


def test_bookkeeping_fields_do_not_change_the_key_and_the_rest_do():
    base = chat(user("hi")).exact_key
    assert chat(user("hi"), user="u", metadata={"a": 1}, stream=True, store=True,
                stream_options={"include_usage": True}).exact_key == base
    assert chat(user("hi"), temperature=0).exact_key != base
    assert chat(user("hi"), top_p=0.5).partition != chat(user("hi")).partition
    assert "messages" in BOOKKEEPING_FIELDS and "temperature" not in BOOKKEEPING_FIELDS


def test_parameter_order_does_not_matter():
    a = chat(user("hi"), tools=[{"type": "function", "function": {"name": "f", "parameters": {"a": 1, "b": 2}}}])
    b = chat(user("hi"), tools=[{"function": {"parameters": {"b": 2, "a": 1}, "name": "f"}, "type": "function"}])
    assert a.exact_key == b.exact_key


def test_system_prompt_and_history_are_context_not_question():
    plain = chat(user("What is its population?"))
    with_system = chat([{"role": "system", "content": "Be brief."}, *user("What is its population?")])
    assert plain.question == with_system.question == "What is its population?"
    assert plain.context_digest != with_system.context_digest
    assert plain.partition == with_system.partition
    assert with_system.context_text == "system: Be brief."


def test_text_parts_are_the_question_and_images_are_context():
    parts = [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "u1"}}]
    other = [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "u2"}}]
    a, b = chat(user(parts)), chat(user(other))
    assert a.question == b.question == "Describe"
    assert a.context_digest != b.context_digest


def test_only_a_final_user_turn_can_match_by_meaning():
    tool_result = [*user("weather?"), {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"}]
    assert not chat(tool_result).semantic_ok
    assert chat(user("weather?")).semantic_ok


def test_whitespace_normalisation_keeps_inner_spacing():
    assert chat(user("  a\r\nb  \n")).exact_key == chat(user("a\nb")).exact_key
    assert chat(user("def f():\n    return 1")).exact_key != chat(user("def f():\n  return 1")).exact_key


def test_namespace_separates_and_is_bounded():
    a = chat(user("hi"), headers={"authorization": "k", "x-cache-namespace": "a"})
    b = chat(user("hi"), headers={"authorization": "k", "x-cache-namespace": "b"})
    assert a.partition != b.partition
    with pytest.raises(BadRequestError):
        chat(user("hi"), headers={"x-cache-namespace": "x" * 500})


def test_fallback_key_is_the_tenant_when_no_credential_is_sent():
    body = validate_body({"model": "m", "messages": user("hi")})
    fallback = build_chat_request(body, owner_of({}, fallback_key="sk-a", share_across_keys=False))
    assert fallback.tenant == chat(user("hi")).tenant


@pytest.mark.parametrize(("header", "expected"), [
    (None, (False, False, None)),
    ("no-store", (True, False, None)),
    ("No-Cache, max-age=30", (False, True, 30)),
    ('max-age="5"', (False, False, 5)),
    ("max-age=soon, private", (False, False, None)),
])
def test_cache_control(header, expected):
    control = parse_cache_control(header)
    assert (control.no_store, control.no_cache, control.max_age) == expected
