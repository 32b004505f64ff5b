"""`openai:<model>`: an LLM judge over any OpenAI-compatible chat-completions endpoint.

Responses are cached on disk, one JSON file per request key (sha256 of judge model, full
messages and sampling params), so re-judging unchanged answers makes no calls. Retries are
ours (the client's are off) so `accounting()` counts every request actually sent. The API
key is read from OPENAI_API_KEY at first use and is never stored or echoed anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from selm_bench.evals.base import SuiteError
from selm_bench.evals.judges import Judge
from selm_bench.harness.core.registry import register_judge
from selm_bench.harness.core.store import atomic_write_json, read_json

log = logging.getLogger(__name__)

RETRY_STATUS = (408, 409, 429)  # plus every 5xx; the same set the openai client retries
MAX_SLEEP_S = 60.0


@register_judge("openai", help="OpenAI-compatible chat judge, e.g. openai:gpt-4 (cached, retried)")
class OpenAIJudge(Judge):
    name = "openai"

    def __init__(
        self, spec: str = "openai:gpt-4", cache_dir: Path | None = None, base_url: str | None = None,
        concurrency: int = 8, max_retries: int = 5, timeout: float = 60, backoff: float = 1.0, **_: Any,
    ):
        self.model = spec.split(":", 1)[1] if ":" in spec else "gpt-4"
        if not self.model:
            raise SuiteError(f"judge spec {spec!r} names no model; use e.g. openai:gpt-4")
        self.cache_dir = Path(cache_dir) / "openai" if cache_dir else None
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self._client = None
        self._lock = threading.Lock()
        self._acct = dict(calls=0, cached=0, failures=0, retries=0, prompt_tokens=0, completion_tokens=0)
        self._reasons: dict[str, int] = {}  # why attempts failed (HTTP 429, APITimeoutError, malformed body, ...)
        self._given_up: dict[str, str] = {}  # request key -> why its last attempt failed

    # ------------------------------------------------------------ public interface
    def chat_many(self, requests: list[list[dict[str, str]]], temperature: float = 0.0,
                  max_tokens: int = 2048, **_: Any) -> list[str | None]:
        choices = self.complete_many(requests, temperature=temperature, max_tokens=max_tokens)
        return [c["message"]["content"] if c is not None else None for c in choices]

    def complete_many(self, requests: list[list[dict[str, str]]], **params: Any) -> list[dict[str, Any] | None]:
        """One chat completion per message list, as the choice's dict (`message`, `logprobs`, ...) with
        the request's `total_tokens`; None where the request failed after retries. `params` are the
        request's sampling parameters (temperature, max_tokens, logprobs, top_logprobs, ...)."""
        keys = [self._key(msgs, params) for msgs in requests]
        out: dict[str, dict[str, Any] | None] = {}
        todo: dict[str, list[dict[str, str]]] = {}
        for key, msgs in zip(keys, requests):
            if key in out or key in todo:
                continue
            hit = self._cache_get(key)
            if hit is not None:
                out[key] = hit
                self._count(cached=1)
            else:
                todo[key] = msgs
        if todo:
            client = self._get_client()
            with ThreadPoolExecutor(self.concurrency) as pool:
                done = pool.map(lambda kv: (kv[0], self._complete(client, kv[0], kv[1], params)), todo.items())
                out.update(done)
        return [out[k] for k in keys]

    def failure_reason(self, messages: list[dict[str, str]], **params: Any) -> str | None:
        """Why a request of the last `complete_many` / `chat_many` call failed (None: it did not)."""
        with self._lock:
            return self._given_up.get(self._key(messages, params))

    def accounting(self) -> dict[str, Any]:
        """calls: requests sent (retries included); cached: served from disk; failures: None results;
        failure_reasons: every failed attempt by reason."""
        with self._lock:
            return {**self._acct, "failure_reasons": dict(self._reasons)}

    # ------------------------------------------------------------ internals
    def check(self) -> None:
        self._get_client()  # builds the client only: no request is sent

    def _get_client(self):
        if self._client is None:
            key = os.environ.get("OPENAI_API_KEY")
            if not key:
                raise SuiteError("OPENAI_API_KEY is not set (the openai judge reads its key from the environment only)")
            import openai

            self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
        return self._client

    def _key(self, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
        blob = json.dumps({"model": self.model, "messages": messages, **params}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        if self.cache_dir is None:
            return None
        rec = read_json(self.cache_dir / f"{key}.json")
        if not rec:
            return None
        # Entries written before choices were kept hold the message text only.
        return rec.get("choice") or {"index": 0, "message": {"role": "assistant", "content": rec["content"]}}

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._acct[k] += v

    def _complete(self, client: Any, key: str, messages: list[dict[str, str]],
                  params: dict[str, Any]) -> dict[str, Any] | None:
        import httpx
        import openai

        for attempt in range(self.max_retries + 1):
            self._count(calls=1)
            try:
                resp = client.chat.completions.create(model=self.model, messages=messages, n=1, **params)
            except openai.APIStatusError as e:
                # Log type and status only: an error body may quote request details.
                retriable = e.status_code in RETRY_STATUS or e.status_code >= 500
                if e.status_code in (401, 403):
                    raise SuiteError(f"the judge endpoint rejected the OpenAI API key (HTTP {e.status_code})") from None
                reason = f"HTTP {e.status_code}"
            except openai.APIConnectionError as e:  # includes APITimeoutError
                retriable, reason = True, type(e).__name__
            except (ValueError, openai.APIResponseValidationError, httpx.HTTPError) as e:
                # A body that is not JSON, is cut off, or lacks the fields (json's ValueError, the
                # client's validation error, httpx's protocol errors): the endpoint misbehaved; retry.
                retriable, reason = True, f"malformed response ({type(e).__name__})"
            else:
                choices = getattr(resp, "choices", None)
                content = choices[0].message.content if choices else None
                if not isinstance(content, str):
                    retriable, reason = True, "response without a message"
                else:
                    usage = resp.usage
                    self._count(prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                                completion_tokens=getattr(usage, "completion_tokens", 0) or 0)
                    choice = {**choices[0].model_dump(mode="json"), "total_tokens": getattr(usage, "total_tokens", 0) or 0}
                    if self.cache_dir is not None:
                        atomic_write_json(self.cache_dir / f"{key}.json",
                                          {"model": self.model, "content": content, "choice": choice})
                    with self._lock:
                        self._given_up.pop(key, None)
                    return choice
            with self._lock:
                self._reasons[reason] = self._reasons.get(reason, 0) + 1
            if not retriable or attempt == self.max_retries:
                log.warning("openai judge: request failed (%s) after %d attempt(s)", reason, attempt + 1)
                with self._lock:
                    self._given_up[key] = f"{reason} after {attempt + 1} attempt(s)"
                break
            self._count(retries=1)
            time.sleep(min(MAX_SLEEP_S, self.backoff * 2**attempt))
        self._count(failures=1)
        return None
