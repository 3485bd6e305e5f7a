"""A local HTTP server that speaks OpenAI's chat completions protocol, for tests: no network.

It plays a small agent: it asks the first tool its request offers to add each pair of numbers
of the user message and then answers, picking the route its user message names. A test can
queue raw replies (``server.replies.append((503, {...}))``) to be sent before that.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.replies: list[tuple[int, Any]] = []
        self.usage_cost: float | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    status, reply = 404, {"error": {"message": f"no route {self.path}"}}
                elif server.replies:
                    status, reply = server.replies.pop(0)
                else:
                    status, reply = 200, server.answer(body)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        user = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        adders = [name for name in tools if name != "choose_next_state"]
        results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
        pairs = user.get("pairs", [])
        if adders and len(results) < len(pairs):
            a, b = pairs[len(results)]
            calls = [(adders[0], {"a": a, "b": b})]
            content = None
        else:
            total = sum(r.get("sum", 0) for r in results)
            content = json.dumps({"total": total})
            calls = [("choose_next_state", {"next": user["route"]})] if "choose_next_state" in tools else []
        turn = sum(1 for m in messages if m["role"] == "assistant")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [
                {"id": f"call_{turn}_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(calls)]
        usage: dict[str, Any] = {"prompt_tokens": 100 + 10 * turn, "completion_tokens": 20}
        if self.usage_cost is not None:
            usage["cost"] = self.usage_cost
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": usage}
