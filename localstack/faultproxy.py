#!/usr/bin/env python3
"""A small fault-injecting HTTP proxy for tests: forwards every request to UPSTREAM unchanged,
except requests that match a rule, which get the rule's AWS error response instead.

Usage: faultproxy.py PORT UPSTREAM_URL RULES_JSON
RULES_JSON: a list of {"action": "AssumeRole", "contains": "arn:aws:iam::123:role/",
                        "status": 403, "code": "AccessDenied", "message": "..."}
"action" is the query-protocol Action (STS, ...); "contains" is matched against the URL-decoded
request body. Point one service at it with AWS_ENDPOINT_URL_<SERVICE> (e.g. AWS_ENDPOINT_URL_STS).
With FAULTPROXY_LOG=<file>, every request is appended to that file as one line: method, path,
the X-Amz-Target header (JSON protocols) and the URL-decoded body (tests use it to prove which
accounts a command reached). Prints "ready" on stdout once listening. Standard library only.
"""
import os
import threading
import http.client
import json
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, RULES = int(sys.argv[1]), urllib.parse.urlparse(sys.argv[2]), json.loads(sys.argv[3])
LOG = os.environ.get("FAULTPROXY_LOG")
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

    def _handle(self):
        body = self._body()
        text = urllib.parse.unquote_plus(body.decode("utf-8", "replace"))
        if LOG:
            with LOCK, open(LOG, "a") as f:
                f.write(f"{self.command} {self.path} {self.headers.get('X-Amz-Target', '')} {text}\n".replace("\n", " ").rstrip() + "\n")
        params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        for rule in RULES:
            if params.get("Action") == rule.get("action") and rule.get("contains", "") in text:
                payload = (
                    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                    f'<Code>{rule["code"]}</Code><Message>{rule.get("message", "injected by faultproxy")}</Message>'
                    '</Error><RequestId>faultproxy</RequestId></ErrorResponse>'
                ).encode()
                self.send_response(rule.get("status", 400))
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
        conn = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
