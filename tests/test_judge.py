"""The LLM-as-judge client, against a stand-in Ollama server on 127.0.0.1.

The stand-in speaks Ollama's real HTTP API: ``GET /api/tags`` lists the models, ``POST
/api/chat`` streams the answer as newline-delimited JSON in chunked transfer encoding, and
an unknown model gets HTTP 404 with ``{"error": ...}``. It records every request it gets,
so the tests can check the exact payload the client sent.
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reference_impl.judge import (
    OllamaError,
    OllamaModelNotFound,
    OllamaUnavailable,
    ScoringInterrupted,
    check_if_running,
    generate_model_scores,
    judge_prompt,
    parse_score,
    query_model,
)

TIMEOUT = 5  # seconds; every request to the stand-in is answered at once


class FakeOllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # as Ollama: keep-alive, chunked streaming

    def log_message(self, format, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        if self.path == "/api/tags":
            models = [{"name": f"{name}:latest", "model": f"{name}:latest"} for name in self.server.models]
            self._send_json(200, {"models": models})
        else:
            self._send_json(404, {"error": "page not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": body})
        if self.path != "/api/chat":
            self._send_json(404, {"error": "page not found"})
        elif body["model"] not in self.server.models:
            self._send_json(404, {"error": f'model "{body["model"]}" not found, try pulling it first'})
        elif isinstance(self.server.answers[0], float):  # a server too slow to answer
            time.sleep(self.server.answers.pop(0))
        elif isinstance(self.server.answers[0], tuple):  # a misbehaving server
            self._misbehave(body["model"], *self.server.answers.pop(0))
        else:
            self._stream_answer(body["model"], self.server.answers.pop(0))

    def _stream_answer(self, model, answer):
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if isinstance(answer, dict):  # an error in the middle of the stream
            lines = [answer]
        else:  # the answer in pieces of 3 characters, then the closing line
            pieces = [answer[i : i + 3] for i in range(0, len(answer), 3)]
            lines = [{"model": model, "message": {"role": "assistant", "content": p}, "done": False} for p in pieces]
            lines.append({"model": model, "message": {"role": "assistant", "content": ""}, "done": True})
        # Recorded before sending: the client may return (and the test check it) as soon as
        # the last line arrives, before this thread would get past the writes.
        self.server.lines_sent.append(len(lines))
        for line in lines:
            data = json.dumps(line).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _misbehave(self, model, how, value):
        if how == "garbage":  # not HTTP at all
            self.wfile.write(value)
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if how == "cut":  # the pieces of the answer, then the end of the stream without "done": true
            lines = [
                {"model": model, "message": {"content": value[i : i + 1]}, "done": False} for i in range(len(value))
            ]
        else:  # "trickle": one piece every `value` seconds, for at most 10 s (bounded: it is a test)
            lines = [{"model": model, "message": {"content": "."}, "done": False}] * int(10 / value)
        try:
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                if how == "trickle":
                    time.sleep(value)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass

    def _send_json(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(autouse=True)
def no_proxy_for_localhost(monkeypatch):
    # A proxy set in the environment must not intercept the requests to the stand-in.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def ollama():
    """A stand-in Ollama on a free port of 127.0.0.1; set ``.answers`` before querying it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllamaHandler)
    server.daemon_threads = True
    server.models, server.answers, server.requests, server.lines_sent = ["llama3"], [], [], []
    host, port = server.server_address
    server.url = f"http://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=TIMEOUT)


@pytest.fixture
def closed_port():
    """A port of 127.0.0.1 that is bound but not listening: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


ENTRY = {
    "instruction": "Rewrite the sentence using a simile.",
    "input": "The car is very fast.",
    "output": "The car is as fast as lightning.",
    "model_response": "The car is as fast as a bullet.",
}


def test_check_if_running(ollama, closed_port):
    assert check_if_running(ollama.url) is True
    assert check_if_running(ollama.url + "/api/chat") is True  # any URL on the server works
    assert check_if_running(f"http://127.0.0.1:{closed_port}", timeout=TIMEOUT) is False


def test_query_model_sends_ollamas_chat_payload_and_joins_the_streamed_answer(ollama):
    ollama.answers = ["The answer is 4, of course."]
    answer = query_model("What is 2 + 2?", url=ollama.url + "/api/chat", timeout=TIMEOUT)

    assert answer == "The answer is 4, of course."
    assert ollama.lines_sent == [10]  # 9 pieces + the closing line, all joined
    (request,) = ollama.requests
    assert request["path"] == "/api/chat"
    assert request["content_type"] == "application/json"
    assert request["body"] == {
        "model": "llama3",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
    }


def test_query_model_passes_model_seed_and_context(ollama):
    ollama.models.append("phi3")
    ollama.answers = ["ok"]
    query_model("hi", model="phi3", url=ollama.url + "/api/chat", seed=7, num_ctx=4096, timeout=TIMEOUT)
    body = ollama.requests[0]["body"]
    assert body["model"] == "phi3"
    assert body["options"] == {"seed": 7, "temperature": 0, "num_ctx": 4096}


def test_judge_prompt_is_the_books():
    assert judge_prompt(ENTRY) == (
        "Given the input `Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request.\n\n### Instruction:\nRewrite the sentence using a simile."
        "\n\n### Input:\nThe car is very fast.` and correct output `The car is as fast as lightning.`, "
        "score the model response `The car is as fast as a bullet.` on a scale from 0 to 100, "
        "where 100 is the best score. Respond with the integer number only."
    )


def test_generate_model_scores_asks_once_per_entry_and_parses_the_scores(ollama):
    entries = [ENTRY, {**ENTRY, "model_response": "Fast car."}]
    ollama.answers = ["85", "Score: 40"]
    scores = generate_model_scores(entries, url=ollama.url + "/api/chat", show_progress=False, timeout=TIMEOUT)
    assert scores == [85, 40]
    prompts = [request["body"]["messages"][0]["content"] for request in ollama.requests]
    assert prompts == [judge_prompt(entries[0]), judge_prompt(entries[1])]


def test_generate_model_scores_reads_another_key(ollama):
    ollama.answers = ["60"]
    entry = {**ENTRY, "other_response": "A quick car."}
    assert generate_model_scores(
        [entry], json_key="other_response", url=ollama.url + "/api/chat", show_progress=False, timeout=TIMEOUT
    ) == [60]
    assert "score the model response `A quick car.`" in ollama.requests[0]["body"]["messages"][0]["content"]


def test_an_unparsable_answer_is_reported_and_skipped(ollama, capsys):
    ollama.answers = ["90", "I cannot judge this.", "7"]
    scores = generate_model_scores([ENTRY] * 3, url=ollama.url + "/api/chat", show_progress=False, timeout=TIMEOUT)
    assert scores == [90, 7]
    out = capsys.readouterr().out
    assert "entry 1" in out and "'I cannot judge this.'" in out


@pytest.mark.parametrize(
    "answer, score",
    [
        ("85", 85),
        ("  85\n", 85),
        ("Score: 85.", 85),
        ("85/100", 85),
        ("I would give it 85 out of 100.", 85),
        ("On a scale from 0 to 100, I would give it 85", 85),
        ("0", 0),
        ("100", 100),
        ("100/100", 100),
        ("92.7", 93),
        ("I cannot judge this.", None),
        ("", None),
        ("80 or 90", None),
        ("150", None),
        ("-5", None),
    ],
)
def test_parse_score(answer, score):
    assert parse_score(answer) == score


def test_a_missing_model_says_how_to_pull_it(ollama):
    with pytest.raises(OllamaModelNotFound) as err:
        query_model("hi", model="llama3.1", url=ollama.url + "/api/chat", timeout=TIMEOUT)
    message = str(err.value)
    assert "HTTP 404" in message
    assert 'model "llama3.1" not found, try pulling it first' in message  # the server's own words
    assert "ollama pull llama3.1" in message
    assert ollama.url + "/api/chat" in message
    assert isinstance(err.value, OllamaError)


def test_an_error_inside_the_stream_is_raised(ollama):
    ollama.answers = [{"error": "model runner has unexpectedly stopped"}]
    with pytest.raises(OllamaError, match="model runner has unexpectedly stopped"):
        query_model("hi", url=ollama.url + "/api/chat", timeout=TIMEOUT)


def test_a_server_that_does_not_answer_in_time_gives_a_clear_error(ollama):
    ollama.answers = [0.5]
    with pytest.raises(OllamaError, match=r"sent nothing for 0.1 s"):
        query_model("hi", url=ollama.url + "/api/chat", timeout=0.1)


def test_an_unreachable_server_gives_ollama_unavailable(closed_port):
    url = f"http://127.0.0.1:{closed_port}/api/chat"
    with pytest.raises(OllamaUnavailable) as err:
        query_model("hi", url=url, timeout=TIMEOUT)
    message = str(err.value)
    assert url in message
    assert "ollama serve" in message and "ollama pull llama3" in message
    assert "score_responses" in message  # the offline score that always works
    assert err.value.__suppress_context__  # no urllib traceback chained to it

    with pytest.raises(OllamaUnavailable):
        generate_model_scores([ENTRY], url=url, show_progress=False, timeout=TIMEOUT)


def test_an_answer_cut_off_before_its_closing_line_is_an_error_not_a_shorter_answer(ollama):
    ollama.answers = [("cut", "85")]  # "8", "5", and no "done": true
    with pytest.raises(OllamaError, match=r'without its closing line \("done": true\).*received so far'):
        query_model("hi", url=ollama.url + "/api/chat", timeout=TIMEOUT)


def test_a_server_that_streams_forever_cannot_hold_the_call_past_its_timeout(ollama):
    ollama.answers = [("trickle", 0.05)]
    start = time.monotonic()
    with pytest.raises(OllamaError, match=r"did not finish its answer within 0.5 s"):
        query_model("hi", url=ollama.url + "/api/chat", timeout=0.5)
    assert time.monotonic() - start < 2.0


def test_a_reply_that_is_not_http_is_an_ollama_error(ollama):
    ollama.answers = [("garbage", b"this is not HTTP\r\n\r\n")]
    with pytest.raises(OllamaError, match="broken HTTP reply"):
        query_model("hi", url=ollama.url + "/api/chat", timeout=TIMEOUT)


def test_scores_given_before_a_failed_query_are_kept(ollama):
    entries = [{"instruction": f"Say {n}.", "input": "", "output": str(n), "model_response": str(n)} for n in range(3)]
    ollama.answers = ["70", "80", ("cut", "9")]
    with pytest.raises(ScoringInterrupted, match=r"stopped at entry 2 of 3.*entries\[2:\]") as err:
        generate_model_scores(entries, url=ollama.url + "/api/chat", show_progress=False, timeout=TIMEOUT)
    assert err.value.scores == [70, 80] and err.value.index == 2
