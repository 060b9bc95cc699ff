"""The OpenAI-compatible back-end and `medguna describe` against a real local HTTP server."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medguna.errors import ConfigError, DescriptionError
from medguna.text.describe.backends import SamplingSettings
from medguna.text.describe.commands import add_commands
from medguna.text.describe.http_backend import OpenAICompatibleBackend, credential_free_url
from medguna.text.describe.retry import RetryPolicy

SECRET = "sk-test-SECRET-4f9a2c"

Action = Callable[["_Handler", dict], None]


class FakeOpenAIServer:
    """Speaks /v1/chat/completions and /v1/completions; scripted failures come first."""

    def __init__(self, honour_n: bool = True) -> None:
        self.honour_n = honour_n
        self.script: deque[Action] = deque()
        self.requests: list[dict] = []
        self.completions_served = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_completion_number(self) -> int:
        with self._lock:
            self.completions_served += 1
            return self.completions_served


def answer_text(number: int) -> str:
    """A realistic answer with debris: preamble, numbering, a near-duplicate, a one-word line."""
    return (
        "Here are some observations:\n"
        f"1. Answer {number} shows patchy opacities in the upper zones.\n"
        f"2. Finding {number} is a thickened pleural line near the apex.\n"
        f"3. FINDING {number} is a thickened pleural line near the apex!\n"
        "4. Opacities."
    )


def normal_answer(handler: _Handler, body: dict) -> None:
    fake: FakeOpenAIServer = handler.server.fake  # type: ignore[attr-defined]
    count = int(body.get("n", 1)) if fake.honour_n else 1
    chat = handler.path.endswith("/chat/completions")
    choices = []
    for index in range(count):
        text = answer_text(fake.next_completion_number())
        if chat:
            choice = {"index": index, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": index, "text": text, "logprobs": None}
        choices.append({**choice, "finish_reason": "stop"})
    handler.reply(200, {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion",
                        "model": body.get("model"), "choices": choices,
                        "usage": {"prompt_tokens": 20, "completion_tokens": 60}})


def status_answer(status: int, headers: dict[str, str] | None = None, body: str = "") -> Action:
    def act(handler: _Handler, _: dict) -> None:
        handler.reply_raw(status, body.encode(), headers or {})
    return act


def raw_answer(text: str) -> Action:
    return status_answer(200, {"Content-Type": "application/json"}, text)


def json_answer(payload: dict) -> Action:
    return raw_answer(json.dumps(payload))


def slow_answer(seconds: float) -> Action:
    def act(handler: _Handler, body: dict) -> None:
        time.sleep(seconds)
        try:
            normal_answer(handler, body)
        except OSError:
            pass  # the client gave up on us: exactly what the test wants
    return act


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        fake: FakeOpenAIServer = self.server.fake  # type: ignore[attr-defined]
        with fake._lock:
            fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            action = fake.script.popleft() if fake.script else normal_answer
        action(self, body)

    def reply(self, status: int, payload: dict) -> None:
        self.reply_raw(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def reply_raw(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    fake = FakeOpenAIServer()
    yield fake
    fake.close()


def make_backend(server: FakeOpenAIServer, sleeps: list[float] | None = None, **kwargs):
    sleep = sleeps.append if sleeps is not None else time.sleep
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, base_delay_s=0.01))
    return OpenAICompatibleBackend(server.base_url, "test-llm", api_key=SECRET, sleep=sleep,
                                   **kwargs)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="medguna")
    add_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


# ----- back-end: protocol, failures, retries -------------------------------------------------

def test_chat_request_carries_prompt_sampling_and_bearer_key(server) -> None:
    backend = make_backend(server)
    sampling = SamplingSettings(temperature=0.99, top_p=0.9, max_tokens=64, seed=5)
    completions = backend.complete("Describe TB.", sampling, count=2, first_index=3)
    assert [c.text for c in completions] == [answer_text(1), answer_text(2)]
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["body"] == {
        "model": "test-llm", "temperature": 0.99, "top_p": 0.9, "max_tokens": 64, "n": 2,
        "seed": 8, "messages": [{"role": "user", "content": "Describe TB."}],
    }


def test_completions_api_reads_choice_text(server) -> None:
    backend = make_backend(server, api="completions")
    [completion] = backend.complete("Describe TB.", SamplingSettings(), 1, 0)
    assert completion.text == answer_text(1) and completion.finish_reason == "stop"
    assert server.requests[0]["path"] == "/v1/completions"
    assert server.requests[0]["body"]["prompt"] == "Describe TB."
    assert "seed" not in server.requests[0]["body"]


def test_429_with_retry_after_is_honoured(server) -> None:
    server.script.append(status_answer(429, {"Retry-After": "2"}, '{"error": "rate limited"}'))
    sleeps: list[float] = []
    completions = make_backend(server, sleeps).complete("Describe TB.", SamplingSettings(), 1, 0)
    assert len(completions) == 1 and len(server.requests) == 2
    assert sleeps == [2.0]


def test_timeout_is_survived_by_retrying(server) -> None:
    server.script.append(slow_answer(1.0))
    backend = make_backend(server, timeout_s=0.3)  # real sleeps: 0.01 s backoff
    started = time.monotonic()
    [completion] = backend.complete("Describe TB.", SamplingSettings(), 1, 0)
    assert time.monotonic() - started < 1.0  # did not wait for the slow answer
    assert len(server.requests) == 2
    assert "shows patchy opacities" in completion.text


def test_malformed_json_and_missing_fields_are_retried(server) -> None:
    server.script.extend([
        raw_answer('{"choices": [{"message": '),
        json_answer({"object": "chat.completion", "model": "test-llm"}),
        json_answer({"choices": [{"index": 0, "message": {"role": "assistant"}}]}),
    ])
    sleeps: list[float] = []
    completions = make_backend(server, sleeps).complete("Describe TB.", SamplingSettings(), 1, 0)
    assert len(completions) == 1 and len(server.requests) == 4
    assert sleeps == [0.01, 0.02, 0.04]


def test_choices_without_text_are_skipped(server) -> None:
    server.script.append(json_answer({"choices": [
        {"index": 0, "message": {"role": "assistant", "content": None},
         "finish_reason": "content_filter"},
        {"index": 1, "message": {"role": "assistant", "content": "Cavities are seen."},
         "finish_reason": "length"},
        "garbage",
    ]}))
    completions = make_backend(server).complete("Describe TB.", SamplingSettings(), 3, 0)
    assert [(c.text, c.finish_reason) for c in completions] == [("Cavities are seen.", "length")]


def test_persistent_5xx_gives_up_with_a_clear_message(server) -> None:
    server.script.extend([status_answer(503)] * 4)
    sleeps: list[float] = []
    with pytest.raises(DescriptionError, match=r"failed 4 times, last: HTTP 503.*--max-attempts"):
        make_backend(server, sleeps).complete("Describe TB.", SamplingSettings(), 1, 0)
    assert len(server.requests) == 4 and sleeps == [0.01, 0.02, 0.04]


def test_retry_after_beyond_the_bound_stops_at_once(server) -> None:
    server.script.append(status_answer(429, {"Retry-After": "3600"}))
    with pytest.raises(DescriptionError, match=r"asks to wait 3600 s \(Retry-After\)"):
        make_backend(server, []).complete("Describe TB.", SamplingSettings(), 1, 0)
    assert len(server.requests) == 1


def test_401_names_the_key_variable(server) -> None:
    server.script.append(status_answer(401, body=f'{{"error": "bad key {SECRET}"}}'))
    with pytest.raises(DescriptionError, match=r"HTTP 401.*\$MY_LLM_KEY") as caught:
        make_backend(server, [], api_key_env="MY_LLM_KEY").complete(
            "Describe TB.", SamplingSettings(), 1, 0)
    assert SECRET not in str(caught.value)


def test_400_shows_the_server_reason_without_the_key(server) -> None:
    server.script.append(status_answer(400, body=f"unknown model; you sent key {SECRET}"))
    with pytest.raises(DescriptionError, match=r"HTTP 400\): unknown model; you sent key \*\*\*"):
        make_backend(server, []).complete("Describe TB.", SamplingSettings(), 1, 0)


def test_bad_base_url_and_api_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"--base-url 'ftp://host/v1' is not an http\(s\) URL"):
        OpenAICompatibleBackend("ftp://user:pw@host/v1", "m")
    with pytest.raises(ConfigError, match="--api must be one of chat, completions, got 'edit'"):
        OpenAICompatibleBackend("http://127.0.0.1:1/v1", "m", api="edit")


def test_openai_without_a_key_is_refused_before_any_request() -> None:
    with pytest.raises(ConfigError, match=r"no API key for api\.openai\.com: export MY_KEY=\.\.\."):
        OpenAICompatibleBackend("https://api.openai.com/v1", "gpt-4o-mini", api_key=None, api_key_env="MY_KEY")
    # A local server needs no key.
    OpenAICompatibleBackend("http://127.0.0.1:8000/v1", "local-model", api_key=None)


def test_credential_free_url_drops_userinfo_query_and_fragment() -> None:
    assert credential_free_url("https://user:pw@llm.example:8443/v1/?api-key=abc#x") == (
        "https://llm.example:8443/v1")


# ----- the command: end to end, cache, secrets -------------------------------------------------

def describe_argv(server: FakeOpenAIServer, tmp_path: Path, *extra: str) -> list[str]:
    return ["describe", "shenzhen", "--model", "test-llm", "--base-url", server.base_url,
            "--out", str(tmp_path / "out" / "shenzhen.json"),
            "--cache-dir", str(tmp_path / "cache"), "--samples", "3", "--no-progress", *extra]


def test_describe_writes_clean_file_and_provenance_then_resumes_from_cache(
    server, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert run_cli(describe_argv(server, tmp_path)) == 0
    # 2 classes x 3 families, n=3 per request: one request per prompt.
    assert len(server.requests) == 6
    assert all(r["body"]["n"] == 3 and r["body"]["temperature"] == 0.99 for r in server.requests)
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in server.requests)

    out = tmp_path / "out" / "shenzhen.json"
    descriptions = json.loads(out.read_text())
    assert list(descriptions) == ["NORMAL", "TB"]
    # Each answer keeps its two distinct sentences; preamble, near-duplicate and
    # one-word line go. NORMAL got answers 1..9, TB 10..18.
    assert descriptions["NORMAL"][:2] == [
        "Answer 1 shows patchy opacities in the upper zones.",
        "Finding 1 is a thickened pleural line near the apex."]
    assert len(descriptions["NORMAL"]) == len(descriptions["TB"]) == 18
    assert descriptions["TB"][-1] == "Finding 18 is a thickened pleural line near the apex."

    provenance = json.loads((tmp_path / "out" / "shenzhen.json.provenance.json").read_text())
    assert provenance["model"] == "test-llm"
    assert provenance["backend"] == "openai-chat"
    assert provenance["base_url"] == server.base_url
    assert provenance["sampling"] == {"temperature": 0.99, "top_p": 1.0, "max_tokens": 256,
                                      "seed": None}
    assert provenance["samples_per_prompt"] == 3
    assert len(provenance["prompts"]) == 6
    assert provenance["prompts"][3]["text"] == server.requests[3]["body"]["messages"][0]["content"]
    assert provenance["counts"]["TB"] == {"completions": 9, "raw_sentences": 45,
                                          "after_rules": 27, "kept": 18}
    assert provenance["requests_sent"] == 6 and provenance["samples_from_cache"] == 0
    assert "created_utc" in provenance and len(provenance["description_sha256"]) == 64
    first_run_report = capsys.readouterr().out
    assert "TB: 18 sentences kept of 45 (9 completions)" in first_run_report

    # Second run: everything from the cache, no HTTP request, same file.
    first_bytes = out.read_bytes()
    assert run_cli(describe_argv(server, tmp_path)) == 0
    assert len(server.requests) == 6
    assert out.read_bytes() == first_bytes
    provenance = json.loads((tmp_path / "out" / "shenzhen.json.provenance.json").read_text())
    assert provenance["requests_sent"] == 0 and provenance["samples_from_cache"] == 18

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 2 + 18  # file, provenance, one cache entry per sample
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in first_run_report + capsys.readouterr().out


def test_interrupted_run_resumes_paying_only_for_missing_samples(
    server, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script.append(normal_answer)
    server.script.extend([status_answer(400, body="quota exhausted")])  # second prompt fails
    assert run_cli(describe_argv(server, tmp_path)) == 1
    assert not (tmp_path / "out" / "shenzhen.json").exists()
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 3
    assert run_cli(describe_argv(server, tmp_path)) == 0
    assert len(server.requests) == 2 + 5  # only the 5 unanswered prompts were sent again


def test_server_ignoring_n_is_asked_again_with_distinct_seeds(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs no key
    fake = FakeOpenAIServer(honour_n=False)
    try:
        argv = describe_argv(fake, tmp_path, "--api", "completions", "--seed", "5",
                             "--families", "appearance")
        assert run_cli(argv) == 0
    finally:
        fake.close()
    assert len(fake.requests) == 2 * 3  # one choice per answer
    assert [r["body"]["seed"] for r in fake.requests] == [5, 6, 7, 5, 6, 7]
    assert [r["body"]["n"] for r in fake.requests] == [3, 2, 1, 3, 2, 1]
    assert all("Authorization" not in r["headers"] for r in fake.requests)
    descriptions = json.loads((tmp_path / "out" / "shenzhen.json").read_text())
    assert [len(v) for v in descriptions.values()] == [6, 6]


def test_cli_reports_bad_input_on_stderr(server, tmp_path, capsys) -> None:
    argv = describe_argv(server, tmp_path)
    argv[1] = "chexpert"
    assert run_cli(argv) == 1
    assert "unknown dataset 'chexpert'" in capsys.readouterr().err
    assert run_cli(describe_argv(server, tmp_path, "--families", "appearance,vibes")) == 1
    assert "unknown prompt families ['vibes']" in capsys.readouterr().err
    assert run_cli(describe_argv(server, tmp_path, "--temperature", "0")) == 1
    assert "temperature must be > 0" in capsys.readouterr().err
    argv = describe_argv(server, tmp_path)
    argv[argv.index("--samples") + 1] = "0"
    assert run_cli(argv) == 1
    assert "--samples must be >= 1, got 0" in capsys.readouterr().err
    assert run_cli(describe_argv(server, tmp_path, "--base-url", "localhost:8000")) == 1
    assert "--base-url 'localhost:8000' is not an http(s) URL" in capsys.readouterr().err
    assert server.requests == []


def test_nothing_surviving_cleaning_fails_without_writing(server, tmp_path, capsys) -> None:
    server.script.extend([json_answer({"choices": [
        {"index": i, "text": "1. Opacities.\n2. Sure, here you go:", "finish_reason": "stop"}
        for i in range(3)]})] * 6)
    assert run_cli(describe_argv(server, tmp_path, "--api", "completions")) == 1
    assert "too few sentences survived cleaning for {'NORMAL': 0, 'TB': 0}" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
