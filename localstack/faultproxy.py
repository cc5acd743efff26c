#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for tests: forwards every request to UPSTREAM unchanged, except
requests that match a rule, which get the rule's fault instead. Standard library only.

Usage: faultproxy.py PORT UPSTREAM_URL RULES_JSON
Point services at it with AWS_ENDPOINT_URL (all) or AWS_ENDPOINT_URL_<SERVICE> (one).

Each request is classified by service (from the SigV4 credential scope of its Authorization
header: organizations, sts, cloudformation, s3, ...) and operation (X-Amz-Target for JSON
protocols, the form's Action for query protocols, `<METHOD> <first path part>` for S3).
RULES_JSON is a list of rules, the first matching one applies:

  {"service": "organizations",    # optional; default: any
   "action": "MoveAccount",       # optional operation name; default: any
   "contains": "arn:aws:...",     # optional substring of the URL-decoded body
   "rate": 0.2,                   # optional probability per matching request (seeded); default 1
   "nth": [1, 3],                 # optional: only these matching calls (1-based)
   "times": 2,                    # optional: only the first N matching calls
   "fault": "throttle"}           # what to do (below); default "error"

Faults:
  error        status/code/message from the rule, in the service's error format (Organizations:
               plus the rule's "fields", e.g. {"Reason": "ACCOUNT_NUMBER_LIMIT_EXCEEDED"})
  throttle     the service's own throttling error (Organizations TooManyRequestsException 400,
               STS/CloudFormation Throttling 400, S3 503 SlowDown)
  internal     500 InternalFailure (S3: InternalError)
  reset        close the connection without answering (the request never reaches upstream);
               with "ms", after holding the request that many milliseconds
  latency      wait "ms" milliseconds (default 200), then forward
  concurrent   Organizations ConcurrentModificationException 400
  create_slow  forward DescribeCreateAccountStatus, but answer IN_PROGRESS for the first
               "polls" (default 3) polls of each request id; with "seconds", instead for that
               many seconds from the CreateAccount that made it (or, for one not seen, the
               first poll): as a real CreateAccount, which takes a minute or more
  stack_slow   on CreateStack, UpdateStack or DeleteStack (give them as "action": [...]): forward,
               then for "seconds" answer every DescribeStacks of that stack by the same
               credentials with the operation still running (*_COMPLETE read as *_IN_PROGRESS),
               as a real CloudFormation that takes tens of seconds
  rate_limit   a token bucket of "per_second" requests (burst "burst", default per_second) over
               the matching requests: within it a request goes on to the next rules; over it,
               the service's throttling error (as "throttle"), as a real service's request quota
  create_failed forward DescribeCreateAccountStatus, but answer FAILED with "reason"
               (EMAIL_ALREADY_EXISTS, ACCOUNT_LIMIT_EXCEEDED, CONCURRENT_ACCOUNT_MODIFICATION,
               INTERNAL_FAILURE, ...)
  create_rejected answer CreateAccount itself (it never reaches upstream) with a request id of
               its own; DescribeCreateAccountStatus of that id answers FAILED with "reason":
               the request created no account, as in AWS
  list_in_progress forward ListCreateAccountStatus without its States filter and answer every
               request as IN_PROGRESS (an emulator that creates accounts at once never shows one)
  lose         forward the request (it is carried out), then drop the connection: the answer is
               lost
  rewrite      forward the request with every "from" in its body replaced by "to" (as an
               endpoint that answers for another resource would: e.g. STS AssumeRole into the
               role of another account than the one asked for), and answer with every
               "answer_from" in the upstream answer replaced by "answer_to" (each pair optional);
               with "expire_in" (seconds, may be negative), every <Expiration> of the answer
               (STS credentials) is set to that long from now
  kill         SIGKILL the client process, whose pid is read from the rule's "pid_file"
               (waiting up to 10 s for the file), then drop the connection. "when": "before"
               (default: the request never reaches upstream) or "after" (it is forwarded and
               carried out, and its answer is lost)

FAULTPROXY_ROUTE (JSON, optional) sends some services elsewhere than UPSTREAM, e.g.
{"organizations": "http://127.0.0.1:4567"} in front of LocalStack, whose community edition has no
Organizations (moto serves it there).

FAULTPROXY_SEED (default 1) seeds the random choices, so a run is reproducible for a given
sequence of requests. With FAULTPROXY_RTT_MS=<ms>, every request is held that long before anything
else happens to it (a round trip to a distant endpoint). With FAULTPROXY_LOG=<file>, every request is appended to that file as one
line (method, path, service:operation, URL-decoded body), every injected fault as a line
starting with "FAULT"; the same request arriving again (same credentials, path and body) while an
earlier copy is held back by "latency" as "RETRIED-DURING-DELAY" (the client's attempt timed
out), and an answer the client no longer took as "UNDELIVERED". Prints "ready" on stdout once listening.
"""
import http.client
import signal
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM, RULES = int(sys.argv[1]), urllib.parse.urlparse(sys.argv[2]), json.loads(sys.argv[3])
LOG = os.environ.get("FAULTPROXY_LOG")
ROUTE = {k: urllib.parse.urlparse(v) for k, v in json.loads(os.environ.get("FAULTPROXY_ROUTE") or "{}").items()}
LOCK = threading.Lock()
RNG = random.Random(int(os.environ.get("FAULTPROXY_SEED", "1")))
COUNTS = [0] * len(RULES)
POLLS = {}
FIRST_POLL = {}
STACK_OPS = {}
BUCKETS = {}
RTT_MS = float(os.environ.get("FAULTPROXY_RTT_MS") or 0)
REJECTED = {}
DELAYED = {}
AKID = re.compile(r"Credential=([^/]+)/")
SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def log(line):
    if LOG:
        with LOCK, open(LOG, "a") as f:
            f.write(line.replace("\n", " ").rstrip() + "\n")


def classify(handler, body):
    auth = handler.headers.get("Authorization", "")
    m = SCOPE.search(auth)
    service = m.group(1) if m else ""
    target = handler.headers.get("X-Amz-Target", "")
    if target:
        return service, target.split(".")[-1]
    if service == "s3":
        part = urllib.parse.urlparse(handler.path).path.strip("/").split("/")[0]
        return service, f"{handler.command} {part}"
    params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
    return service, params.get("Action", "")


def error_payload(service, code, message, fields=None):
    if service == "organizations":
        return "application/x-amz-json-1.1", json.dumps({"__type": code, "Message": message, **(fields or {})}).encode()
    if service == "s3":
        return "application/xml", f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>faultproxy</RequestId></Error>".encode()
    return "text/xml", (
        f'<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>'
        "<RequestId>faultproxy</RequestId></ErrorResponse>"
    ).encode()


def pick(service, action, text):
    """The first rule that applies to this request, if any (counts and random draws under LOCK)."""
    with LOCK:
        for i, rule in enumerate(RULES):
            if rule.get("service") not in (None, service):
                continue
            want = rule.get("action")
            if want is not None and action not in (want if isinstance(want, list) else [want]):
                continue
            if rule.get("contains", "") not in text:
                continue
            COUNTS[i] += 1
            n = COUNTS[i]
            if "nth" in rule and n not in rule["nth"]:
                continue
            if "times" in rule and n > rule["times"]:
                continue
            if RNG.random() >= rule.get("rate", 1.0):
                continue
            if rule.get("fault") == "rate_limit":
                now = time.monotonic()
                rate = float(rule["per_second"])
                burst = float(rule.get("burst", rate))
                tokens, last = BUCKETS.get(i, (burst, now))
                tokens = min(burst, tokens + (now - last) * rate)
                if tokens >= 1:
                    BUCKETS[i] = (tokens - 1, now)
                    continue
                BUCKETS[i] = (tokens, now)
            return rule
    return None


IN_PROGRESS = re.compile(rb"<StackStatus>(CREATE|UPDATE|DELETE)_COMPLETE</StackStatus>")


def stack_key(handler, text):
    """(access key id, stack name) of a CloudFormation form request, if it names a stack."""
    m = AKID.search(handler.headers.get("Authorization", ""))
    name = dict(urllib.parse.parse_qsl(text)).get("StackName")
    return (m.group(1) if m else "", name) if name else None


def kill_client(pid_file):
    deadline = time.time() + 10
    while True:
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
            break
        except (OSError, ValueError):
            if time.time() > deadline:
                log(f"FAULT kill-failed no pid in {pid_file}")
                return
            time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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

    def _reply(self, status, content_type, payload, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(self, body):
        upstream = ROUTE.get(self._service, UPSTREAM)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in ("transfer-encoding", "content-length", "connection")], data

    def _send(self, status, headers, data):
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up on this request before the answer.
            log(f"UNDELIVERED {self._op}")
            self.close_connection = True

    def _handle(self):
        body = self._body()
        text = urllib.parse.unquote_plus(body.decode("utf-8", "replace"))
        service, action = classify(self, body)
        self._op = f"{service}:{action}"
        self._service = service
        log(f"{self.command} {self.path} {service}:{action} {text}")
        if RTT_MS:
            time.sleep(RTT_MS / 1000)
        if action == "DescribeCreateAccountStatus":
            with LOCK:
                rejected = [(rid, r) for rid, r in REJECTED.items() if rid in text]
            if rejected:
                rid, (name, reason) = rejected[0]
                log(f"FAULT create_rejected {service}:{action}")
                doc = {"CreateAccountStatus": {"Id": rid, "AccountName": name, "State": "FAILED", "FailureReason": reason,
                                               "RequestedTimestamp": time.time(), "CompletedTimestamp": time.time()}}
                return self._reply(200, "application/x-amz-json-1.1", json.dumps(doc).encode())
        m = AKID.search(self.headers.get("Authorization", ""))
        key = (service, self.command, self.path, m.group(1) if m else "", body)
        with LOCK:
            retried = bool(DELAYED.get(key))
        if retried:
            # The same request again while an earlier copy is still held back: the client gave
            # up on that attempt (its timeout) and retried.
            log(f"RETRIED-DURING-DELAY {service}:{action}")
        rule = pick(service, action, text)
        fault = rule.get("fault", "error") if rule else None
        if fault:
            log(f"FAULT {fault} {service}:{action}" + (f" {rule.get('ms', 200)} ms" if fault == "latency" else ""))
        if fault == "lose":
            self._forward(body)
            fault = "reset"
        if fault == "kill":
            if rule.get("when", "before") == "after":
                self._forward(body)
            kill_client(rule["pid_file"])
            fault = "reset"
        if fault == "reset":
            if rule.get("fault") == "reset" and rule.get("ms"):
                time.sleep(rule["ms"] / 1000)
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if fault == "latency":
            with LOCK:
                DELAYED[key] = DELAYED.get(key, 0) + 1
            time.sleep(rule.get("ms", 200) / 1000)
            with LOCK:
                DELAYED[key] -= 1
        elif fault in ("throttle", "rate_limit"):
            if service == "s3":
                return self._reply(503, *error_payload(service, "SlowDown", "Please reduce your request rate."))
            code = "TooManyRequestsException" if service == "organizations" else "Throttling"
            return self._reply(400, *error_payload(service, code, "Rate exceeded"))
        elif fault == "internal":
            code = "InternalError" if service == "s3" else ("ServiceException" if service == "organizations" else "InternalFailure")
            return self._reply(500, *error_payload(service, code, "injected by faultproxy"))
        elif fault == "concurrent":
            return self._reply(400, *error_payload(service, "ConcurrentModificationException", "The target of the operation is being modified by another operation."))
        elif fault == "create_rejected":
            name = json.loads(body or b"{}").get("AccountName", "")
            with LOCK:
                rid = f"car-faultproxy{len(REJECTED) + 1:08d}"
                REJECTED[rid] = (name, rule.get("reason", "INTERNAL_FAILURE"))
            doc = {"CreateAccountStatus": {"Id": rid, "AccountName": name, "State": "IN_PROGRESS", "RequestedTimestamp": time.time()}}
            return self._reply(200, "application/x-amz-json-1.1", json.dumps(doc).encode())
        elif fault == "error":
            return self._reply(rule.get("status", 400), *error_payload(service, rule["code"], rule.get("message", "injected by faultproxy"), rule.get("fields")))
        if fault == "list_in_progress":
            doc = json.loads(body or b"{}")
            doc.pop("States", None)
            status, headers, data = self._forward(json.dumps(doc).encode())
            if status == 200:
                listed = json.loads(data)
                for st in listed.get("CreateAccountStatuses", []):
                    st["State"] = "IN_PROGRESS"
                    st.pop("AccountId", None)
                data = json.dumps(listed).encode()
            return self._send(status, headers, data)
        if fault == "rewrite" and "from" in rule:
            body = body.replace(rule["from"].encode(), rule["to"].encode())
        status, headers, data = self._forward(body)
        if fault == "rewrite" and "answer_from" in rule:
            data = data.replace(rule["answer_from"].encode(), rule["answer_to"].encode())
        if fault == "rewrite" and "expire_in" in rule:
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + float(rule["expire_in"])))
            data = re.sub(rb"<Expiration>[^<]*</Expiration>", f"<Expiration>{at}</Expiration>".encode(), data)
        if action == "CreateAccount" and status == 200:
            # "create_slow" with "seconds" counts from here: when the request was made.
            try:
                rid = json.loads(data)["CreateAccountStatus"]["Id"]
                with LOCK:
                    FIRST_POLL.setdefault(rid, time.monotonic())
            except (KeyError, ValueError):
                pass
        if fault == "stack_slow" and status == 200:
            key = stack_key(self, body.decode("utf-8", "replace"))
            if key:
                with LOCK:
                    STACK_OPS[key] = time.monotonic() + rule.get("seconds", 30)
        if action == "DescribeStacks" and status == 200 and STACK_OPS:
            key = stack_key(self, body.decode("utf-8", "replace"))
            with LOCK:
                running = key in STACK_OPS and time.monotonic() < STACK_OPS[key]
            if running:
                data = IN_PROGRESS.sub(rb"<StackStatus>\1_IN_PROGRESS</StackStatus>", data)
        if fault in ("create_slow", "create_failed") and status == 200:
            try:
                doc = json.loads(data)
                st = doc["CreateAccountStatus"]
                with LOCK:
                    n = POLLS[st["Id"]] = POLLS.get(st["Id"], 0) + 1
                    first = FIRST_POLL.setdefault(st["Id"], time.monotonic())
                slow = (time.monotonic() - first < rule["seconds"]) if "seconds" in rule else n <= rule.get("polls", 3)
                if fault == "create_slow" and slow:
                    st["State"] = "IN_PROGRESS"
                    st.pop("AccountId", None)
                elif fault == "create_failed":
                    st["State"] = "FAILED"
                    st["FailureReason"] = rule.get("reason", "INTERNAL_FAILURE")
                    st.pop("AccountId", None)
                data = json.dumps(doc).encode()
            except (KeyError, ValueError):
                pass
        self._send(status, headers, data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
server.serve_forever()
