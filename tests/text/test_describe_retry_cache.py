"""Backoff arithmetic, Retry-After parsing, and the on-disk completion cache."""

import json
from email.utils import formatdate

import pytest

from medguna.errors import ConfigError
from medguna.text.describe.backends import Completion, SamplingSettings
from medguna.text.describe.cache import CompletionCache, cache_key, cache_key_fields
from medguna.text.describe.retry import RetryPolicy, parse_retry_after


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=3.0)
    assert [policy.backoff_s(k) for k in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_wins_when_longer_and_too_long_gives_up() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_retry_after_s=30.0)
    assert policy.wait_s(1, 7.0) == 7.0
    assert policy.wait_s(3, 2.0) == 4.0  # the backoff is already longer
    assert policy.wait_s(1, 31.0) is None


def test_parse_retry_after_seconds_date_and_garbage() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 12, usegmt=True), now=now) == pytest.approx(12.0)
    assert parse_retry_after(formatdate(now - 12, usegmt=True), now=now) == 0.0


def test_bad_policy_and_sampling_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="max_attempts must be >= 1, got 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="temperature must be > 0.*got 0"):
        SamplingSettings(temperature=0)
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\], got 1.5"):
        SamplingSettings(top_p=1.5)
    with pytest.raises(ConfigError, match="max_tokens must be >= 1, got 0"):
        SamplingSettings(max_tokens=0)


def _fields(index: int = 0, temperature: float = 0.99) -> dict:
    return cache_key_fields("openai-chat", "gpt-x", "Describe TB.",
                            SamplingSettings(temperature=temperature), index)


def test_cache_round_trip_and_key_sensitivity(tmp_path) -> None:
    cache = CompletionCache(tmp_path / "cache")
    assert cache.get(_fields()) is None
    cache.put(_fields(), Completion("Cavities are seen.", "stop"))
    assert cache.get(_fields()) == Completion("Cavities are seen.", "stop")
    assert cache.get(_fields(index=1)) is None
    assert cache.get(_fields(temperature=0.7)) is None
    files = list((tmp_path / "cache").rglob("*.json"))
    assert [f.name for f in files] == [cache_key(_fields()) + ".json"]
    assert json.loads(files[0].read_text())["fields"]["prompt"] == "Describe TB."


def test_cache_key_is_independent_of_dict_order() -> None:
    fields = _fields()
    assert cache_key(dict(reversed(list(fields.items())))) == cache_key(fields)


def test_corrupt_or_mismatched_entries_are_misses(tmp_path) -> None:
    cache = CompletionCache(tmp_path)
    cache.put(_fields(), Completion("Text here.", None))
    [path] = tmp_path.rglob("*.json")
    path.write_text("{not json")
    assert cache.get(_fields()) is None
    path.write_text(json.dumps({"fields": _fields(index=9), "text": "Other."}))
    assert cache.get(_fields()) is None
    cache.put(_fields(), Completion("Text again.", None))  # overwrites the bad entry
    assert cache.get(_fields()) == Completion("Text again.", None)
