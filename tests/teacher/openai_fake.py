"""A small HTTP server on 127.0.0.1 that answers like `vllm serve` for what the server teacher
asks (/v1/models, /tokenize, /v1/completions with prompt_logprobs), with log-probs computed
from a real Hugging Face model in float32, as vLLM computes them on CPU.

The answer layout follows vLLM's OpenAI server: `prompt_logprobs` is a list with null at
position 0, then per position an object keyed by token id (as a string) holding the prompt
token first (with its rank in the whole vocabulary), then the top-k by rank; a prompt token in
the top-k appears once. It can refuse k above its `max_logprobs` (HTTP 400, vLLM's message),
answer 503 to (or hang up on) the first requests, or tokenise with another tokenizer.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


class FakeVLLMServer:
    def __init__(self, model, tokenizer, *, served_name="teacher", max_logprobs=20, max_model_len=256,
                 fail_first=0, fail_status=503, drop_first=0, api_key=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.served_name = served_name
        self.max_logprobs = max_logprobs
        self.max_model_len = max_model_len
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.drop_first = drop_first  # completions requests answered by closing the connection
        self.api_key = api_key
        self.requests: list[tuple[str, dict | None]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    # ------------------------------------------------------------------ answers

    @torch.no_grad()
    def prompt_logprobs(self, ids: list[int], k: int) -> list:
        logits = self.model(torch.tensor([ids])).logits[0].float()
        lps = logits.log_softmax(-1)
        out: list = [None]
        for t in range(1, len(ids)):
            row = lps[t - 1]
            token = ids[t]
            rank = int((row > row[token]).sum()) + 1
            entries = {str(token): {"logprob": float(row[token]), "rank": rank, "decoded_token": ""}}
            values, indices = row.topk(k)
            for r, (value, index) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
                entries.setdefault(str(index), {"logprob": value, "rank": r, "decoded_token": ""})
            out.append(entries)
        return out

    def completions(self, body: dict) -> tuple[int, dict]:
        k = body.get("prompt_logprobs")
        if k is not None and k > self.max_logprobs:
            return 400, {"error": {"message": f"Requested prompt logprobs of {k}, which is greater than "
                                              f"max allowed: {self.max_logprobs}", "type": "BadRequestError",
                                   "code": 400}}
        if body.get("model") != self.served_name:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": 404}}
        prompts = body["prompt"]
        choices = [{"index": i, "text": "", "finish_reason": "length", "logprobs": None,
                    "prompt_logprobs": self.prompt_logprobs(ids, k)} for i, ids in enumerate(prompts)]
        return 200, {"id": "cmpl-test", "object": "text_completion", "model": self.served_name, "choices": choices}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet test output
                pass

            def _send(self, status: int, doc: dict) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _authorised(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": "Unauthorized"})
                    return False
                return True

            def do_GET(self):
                with server.lock:
                    server.requests.append((self.path, None))
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": server.served_name, "object": "model", "max_model_len": server.max_model_len}]})
                elif self.path == "/health":
                    self._send(200, {})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((self.path, body))
                    failing = self.path == "/v1/completions" and server.fail_first > 0
                    if failing:
                        server.fail_first -= 1
                    dropping = self.path == "/v1/completions" and server.drop_first > 0 and not failing
                    if dropping:
                        server.drop_first -= 1
                if dropping:  # no answer at all: the client sees the connection closed
                    self.close_connection = True
                    return
                if not self._authorised():
                    return
                if failing:
                    self._send(server.fail_status, {"error": {"message": "engine busy", "code": server.fail_status}})
                elif self.path == "/tokenize":
                    tokens = server.tokenizer.encode(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))
                    self._send(200, {"tokens": tokens, "count": len(tokens), "max_model_len": server.max_model_len})
                elif self.path == "/v1/completions":
                    self._send(*server.completions(body))
                else:
                    self._send(404, {"detail": "Not Found"})

        return Handler
