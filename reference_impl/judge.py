"""A larger LLM as the judge of the fine-tuned model's answers (chapter 7.8), through Ollama.

Ollama (https://ollama.com) serves open models such as Llama 3 on your own machine, over a
small HTTP API. Start it with ``ollama serve`` and fetch the judge once with
``ollama pull llama3``; then ``generate_model_scores`` asks it to score each response from
0 to 100. Only the standard library is used (``urllib.request``).

When Ollama is not running, the calls raise ``OllamaUnavailable``, whose message says
what to do; ``reference_impl.instruct.score_responses`` scores offline, without it.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from .instruct import format_input

OLLAMA_URL = "http://localhost:11434"
CHAT_URL = OLLAMA_URL + "/api/chat"


class OllamaError(RuntimeError):
    """Ollama answered, but not with a usable result (an HTTP error, a broken stream, ...)."""


class OllamaUnavailable(OllamaError):
    """No Ollama server answers at the URL."""


class ScoringInterrupted(OllamaError):
    """A query failed in the middle of ``generate_model_scores``: ``.scores`` keeps the scores
    given so far, ``.index`` is the entry whose query failed (resume from there)."""

    def __init__(self, message: str, scores: list[int], index: int):
        super().__init__(message)
        self.scores, self.index = scores, index


class OllamaModelNotFound(OllamaError):
    """The server runs, but does not have the model (it was never pulled)."""


def check_if_running(url: str = OLLAMA_URL, timeout: float = 5.0) -> bool:
    """Whether an Ollama server answers at ``url`` (its root or any of its API URLs)."""
    try:
        with urllib.request.urlopen(_server_root(url) + "/api/tags", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, timed out, HTTP error (URLError is an OSError)
        return False


def query_model(
    prompt: str,
    model: str = "llama3",
    url: str = CHAT_URL,
    seed: int = 123,
    num_ctx: int = 2048,
    timeout: float = 300.0,
) -> str:
    """Send ``prompt`` to ``model`` through Ollama's chat API and return its whole answer.

    Deterministic, as in the book: temperature 0 and a fixed seed. Ollama streams its answer
    as one JSON object per line (``{"message": {"content": ...}, "done": false}``); the
    pieces are joined. ``timeout`` bounds each wait for the server, in seconds (the first
    answer can take a while: Ollama loads the model into memory first) and the whole answer:
    a server that streams slowly or forever gives an ``OllamaError`` after about ``timeout``
    seconds. An answer is complete only with Ollama's closing ``"done": true`` line: a stream
    that stops before it is an ``OllamaError``, never a shortened answer (a judge's "85" cut
    after the "8" must not score 8).
    """
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"seed": seed, "temperature": 0, "num_ctx": num_ctx},
    }
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # "from None": the message says all there is to say; urllib's traceback would only bury it.
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _read_chat_stream(response, url, deadline, timeout)
    except urllib.error.HTTPError as err:
        raise _http_error(err, model, url) from None
    except urllib.error.URLError as err:
        raise OllamaUnavailable(_unavailable_message(url, model, err.reason)) from None
    except TimeoutError:
        raise OllamaError(
            f"Ollama at {url} sent nothing for {timeout} s; try again, or pass a larger timeout"
        ) from None
    except ConnectionError as err:
        raise OllamaUnavailable(_unavailable_message(url, model, err)) from None
    except http.client.HTTPException as err:  # a reply that is not HTTP, or cut off mid-chunk
        raise OllamaError(f"Ollama at {url} sent a broken HTTP reply ({type(err).__name__}: {err})") from None


def _read_chat_stream(response, url: str, deadline: float, timeout: float) -> str:
    """Join the streamed pieces of an answer; only a final ``"done": true`` line completes it.

    Reads whatever has arrived (``read1``) and checks the deadline between reads, so that a
    server that streams slowly, or forever, cannot hold the call past ``timeout`` seconds
    (plus at most one wait of ``timeout`` for the next bytes).
    """
    pieces: list[str] = []
    buffer = b""
    while True:
        if time.monotonic() > deadline:
            raise OllamaError(
                f"Ollama at {url} did not finish its answer within {timeout} s "
                f"({len(pieces)} pieces so far); try again, or pass a larger timeout"
            )
        chunk = response.read1(1 << 16)
        if not chunk:  # the server closed the stream
            break
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            if _read_chat_line(line, pieces, url):
                return "".join(pieces)
    if buffer.strip() and _read_chat_line(buffer, pieces, url):
        return "".join(pieces)
    so_far = "".join(pieces)
    raise OllamaError(
        f'Ollama at {url} ended its answer without its closing line ("done": true), so the answer '
        f"may be cut off (received so far: {so_far[:80]!r}); try again"
    )


def _read_chat_line(line: bytes, pieces: list[str], url: str) -> bool:
    """Add one streamed line's piece to ``pieces``; True when it is the closing line."""
    if not line.strip():
        return False
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        raise OllamaError(f"Ollama at {url} sent a line that is not JSON: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise OllamaError(f"Ollama at {url} sent a line that is not a JSON object: {line[:200]!r}")
    if "error" in message:  # an error after the stream started comes as a line of its own
        raise OllamaError(f"Ollama at {url} reported an error: {message['error']}")
    content = (message.get("message") or {}).get("content", "")
    if not isinstance(content, str):
        raise OllamaError(f"Ollama at {url} sent a piece that is not text: {line[:200]!r}")
    pieces.append(content)
    return message.get("done") is True


def _http_error(err: urllib.error.HTTPError, model: str, url: str) -> OllamaError:
    try:
        server_says = json.loads(err.read()).get("error", "")
    except (ValueError, AttributeError, OSError):
        server_says = ""
    detail = f": {server_says}" if server_says else ""
    if err.code == 404:
        return OllamaModelNotFound(
            f"Ollama at {url} answered HTTP 404{detail}.\n"
            f"Either the model {model!r} is not there (fetch it with `ollama pull {model}`; "
            f"`ollama list` shows the models you have), or {url} is not Ollama's chat "
            f"endpoint (it is {CHAT_URL} by default)."
        )
    return OllamaError(f"Ollama at {url} answered HTTP {err.code} {err.reason}{detail}")


def _unavailable_message(url: str, model: str, reason) -> str:
    return (
        f"cannot reach Ollama at {url} ({reason}).\n"
        f"The LLM judge needs a running Ollama server: start it with `ollama serve` and fetch "
        f"the judge model once with `ollama pull {model}` (see https://ollama.com).\n"
        f"Without Ollama, reference_impl.instruct.score_responses gives an offline score "
        f"(ROUGE-L against the reference answers) that always works."
    )


def _server_root(url: str) -> str:
    """``http://host:port`` of any URL on the server, e.g. of its chat endpoint."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL such as {OLLAMA_URL}, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


# ---------------------------------------------------------------------------------------
# Scoring the responses
# ---------------------------------------------------------------------------------------


def judge_prompt(entry: dict, json_key: str = "model_response") -> str:
    """The book's request to the judge: the prompt, the reference answer, the model's answer."""
    return (
        f"Given the input `{format_input(entry)}` "
        f"and correct output `{entry['output']}`, "
        f"score the model response `{entry[json_key]}`"
        f" on a scale from 0 to 100, where 100 is the best score. "
        f"Respond with the integer number only."
    )


# The scale itself ("0 to 100", "0-100", "/100", "out of 100") is not the score.
_SCALE = re.compile(r"\b0\s*(?:to|-)\s*100\b|(?:/|\bout of)\s*100\b", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_score(answer: str) -> int | None:
    """The score in the judge's answer, or None when there is no single score in 0-100.

    Judges do not always answer with the number only: "85", "Score: 85.", "85/100" and
    "On a scale from 0 to 100, I would give it 85" all give 85. A decimal is rounded
    ("92.7" gives 93). No number, two different numbers ("80 or 90") or a number outside
    0-100 give None.
    """
    numbers = {float(number) for number in _NUMBER.findall(_SCALE.sub(" ", answer))}
    if len(numbers) != 1:
        return None
    score = round(numbers.pop())
    return score if 0 <= score <= 100 else None


def generate_model_scores(
    entries: Sequence[dict],
    json_key: str = "model_response",
    model: str = "llama3",
    url: str = CHAT_URL,
    show_progress: bool = True,
    **query_options,
) -> list[int]:
    """Ask the judge to score each ``entry[json_key]``; returns the scores it gave, in order.

    An answer without a usable score is reported and skipped, as in the book, so the list
    can be shorter than ``entries``. ``query_options`` go to ``query_model`` (``seed``,
    ``num_ctx``, ``timeout``). When a query fails (the server stopped, an answer cut off),
    raises ``ScoringInterrupted``, which keeps the scores given so far in ``.scores`` (or
    the query's own error when there is none yet).
    """
    from tqdm.auto import tqdm

    scores = []
    for i, entry in enumerate(tqdm(entries, desc="Scoring entries", disable=not show_progress)):
        try:
            answer = query_model(judge_prompt(entry, json_key), model=model, url=url, **query_options)
        except OllamaError as err:
            if not scores:  # nothing to keep: the error as it is (e.g. OllamaUnavailable)
                raise
            raise ScoringInterrupted(
                f"{err}\nScoring stopped at entry {i} of {len(entries)}: the {len(scores)} scores given so far "
                f"are kept in this error's .scores; resume with entries[{i}:]",
                scores,
                i,
            ) from err
        score = parse_score(answer)
        if score is None:
            tqdm.write(f"Could not read a score from the judge's answer to entry {i}, skipped: {answer!r}")
            continue
        scores.append(score)
    return scores
