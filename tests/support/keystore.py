"""What the provider emulators share: an account's users and access keys, a
per-user key limit, the faults tests ask for, the log of API requests, the
control endpoints the tests use as the operator, and the HTTP server.

An emulator module gives a `Dialect` (its key format and its `api` method:
parse, verify the signature with the provider's official SDK, answer) and
calls `serve`.

Control endpoints, JSON:
  POST /_emulator/users        {"UserName", "SelfManage"?, "Admin"?}
  POST /_emulator/keys         {"UserName"} -> {"AccessKeyId", "AccessKeySecret"}
  POST /_emulator/keys/status  {"AccessKeyId", "Status"}
  POST /_emulator/keys/use     {"AccessKeyId"}   (as if used just now)
  POST /_emulator/check        {"AccessKeyId", "AccessKeySecret"} -> {"User"} or {"Error"}
  POST /_emulator/faults       {"Throttle": n, "UnreadySeconds": s}
       Throttle: the next n API requests are throttled;
       UnreadySeconds: keys made through the API are refused as unknown
       until this old (eventual consistency).
  GET  /_emulator/users/<name>/keys -> [{"AccessKeyId","Status","CreateDate","LastUsedDate"}]
  GET  /_emulator/log          -> [{"Action","Signer","UserName","Code"}]
"""

import json
import os
import secrets
import string
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

ACCOUNT = "1234567890123456"


def iso(t):
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_chars(n):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


class Store:
    """An account's users and keys. The root key (user None) and the keys of
    a user made with Admin (an administrator's policy) manage every user's
    keys; another user's key may manage only its own keys, and only if the
    user was made with SelfManage."""

    def __init__(self, new_key_id, key_limit):
        self.lock = threading.Lock()
        self.new_key_id = new_key_id
        self.key_limit = key_limit
        self.users = {}  # name -> {"self_manage": bool, "admin": bool}
        self.keys = {}  # id -> {"user", "secret", "status", "created", "last_used", "by_api"}
        self.throttle = 0
        self.unready_seconds = 0.0
        self.log = []
        self.root_key = self.new_key(None)

    def new_key(self, user, by_api=False):
        key_id = self.new_key_id()
        self.keys[key_id] = {
            "user": user,
            "secret": random_chars(30),
            "status": "Active",
            "created": time.time(),
            "last_used": None,
            "by_api": by_api,
        }
        return key_id

    def user_keys(self, user):
        return sorted(
            (k for k in self.keys.items() if k[1]["user"] == user),
            key=lambda kv: (kv[1]["created"], kv[0]),
        )

    def at_limit(self, user):
        return len(self.user_keys(user)) >= self.key_limit

    def take_throttle(self):
        """Whether this request is one of the throttled ones."""
        if self.throttle > 0:
            self.throttle -= 1
            return True
        return False

    def signing_key(self, key_id):
        """The key that signs a request, or None if it is unknown (or not
        known yet: unready)."""
        key = self.keys.get(key_id)
        if key is None:
            return None
        if key["by_api"] and time.time() - key["created"] < self.unready_seconds:
            return None
        return key

    def may_manage(self, signer, user):
        """Whether the signing key may manage `user`'s keys."""
        own = self.users.get(signer["user"], {})
        return (
            signer["user"] is None
            or own.get("admin", False)
            or (signer["user"] == user and own.get("self_manage", False))
        )

    def control(self, method, path, body):
        if method == "GET" and path == "/_emulator/log":
            return 200, self.log
        if method == "GET" and path.startswith("/_emulator/users/") and path.endswith("/keys"):
            user = path[len("/_emulator/users/") : -len("/keys")]
            return 200, [
                {
                    "AccessKeyId": k,
                    "Status": v["status"],
                    "CreateDate": iso(v["created"]),
                    "LastUsedDate": iso(v["last_used"]) if v["last_used"] else "",
                }
                for k, v in self.user_keys(user)
            ]
        if method != "POST":
            return 404, {"Error": "unknown control endpoint"}
        if path == "/_emulator/users":
            self.users[body["UserName"]] = {
                "self_manage": bool(body.get("SelfManage")),
                "admin": bool(body.get("Admin")),
            }
            return 200, {}
        if path == "/_emulator/keys":
            user = body["UserName"]
            if user not in self.users:
                return 404, {"Error": "no such user"}
            if self.at_limit(user):
                return 409, {"Error": "the user is at the key limit"}
            key_id = self.new_key(user)
            return 200, {"AccessKeyId": key_id, "AccessKeySecret": self.keys[key_id]["secret"]}
        if path == "/_emulator/faults":
            self.throttle = int(body.get("Throttle", 0))
            self.unready_seconds = float(body.get("UnreadySeconds", 0))
            return 200, {}
        key = self.keys.get(body.get("AccessKeyId", ""))
        if path == "/_emulator/check":
            if key is None or key["secret"] != body.get("AccessKeySecret"):
                return 200, {"Error": "unknown key or wrong secret"}
            if key["status"] != "Active":
                return 200, {"Error": "the key is inactive"}
            return 200, {"User": key["user"]}
        if key is None:
            return 404, {"Error": "no such key"}
        if path == "/_emulator/keys/status":
            key["status"] = body["Status"]
            return 200, {}
        if path == "/_emulator/keys/use":
            key["last_used"] = time.time()
            return 200, {}
        return 404, {"Error": "unknown control endpoint"}

    def logged(self, params, answer):
        """Records an API request: its action, signer, the user it is about,
        and how it was answered (`OK` or a code)."""
        self.log.append(
            {
                "Action": params.get("Action", ""),
                "Signer": answer.signer,
                "UserName": answer.about or params.get("UserName"),
                "Code": answer.code,
                "Signature": answer.scheme,
            }
        )


class Answer:
    """An API answer: HTTP status, JSON body, and for the log the signer,
    `OK` or the error code, the user the call is about when no UserName
    parameter says it, and the signature scheme where there are several."""

    def __init__(self, status, body, signer, code, about=None, scheme=None):
        self.status, self.body, self.signer, self.code, self.about = status, body, signer, code, about
        self.scheme = scheme  # the signature scheme, where a provider has several


def parse_params(url, headers, raw):
    """The request's parameters (query and form body), or None if a form is
    malformed or a name repeats."""
    pairs = parse_qsl(url.query, keep_blank_values=True)
    if raw and headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        try:
            pairs += parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
    params = dict(pairs)
    return params if len(params) == len(pairs) else None


class Request:
    """An API request as received: its path, query pairs (decoded), headers
    (names lowercased) and raw body, for signatures over more than the
    parameters."""

    def __init__(self, path, query, headers, raw):
        self.path, self.query, self.headers, self.raw = path, query, headers, raw


def serve(store, api, malformed):
    """Runs the emulator on 127.0.0.1: `api(method, params, request) ->
    Answer` for API requests, `malformed() -> Answer` for requests that
    cannot be read.
    Prints one JSON line: {"endpoint", "account_id", "access_key_id",
    "access_key_secret", "key_limit"} (the root key, the per-user limit). With --until-stdin-closes it stops
    when its parent goes away."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self, method):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with store.lock:
                if url.path.startswith("/_emulator/"):
                    status, answer = store.control(method, url.path, json.loads(raw or b"{}"))
                else:
                    params = parse_params(url, self.headers, raw)
                    request = Request(
                        url.path,
                        parse_qsl(url.query, keep_blank_values=True),
                        {k.lower(): v for k, v in self.headers.items()},
                        raw,
                    )
                    result = malformed() if params is None or url.path != "/" else api(method, params, request)
                    store.logged(params or {}, result)
                    status, answer = result.status, result.body
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

    port = 0
    if "--port" in sys.argv:
        port = int(sys.argv[sys.argv.index("--port") + 1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(
        json.dumps(
            {
                "endpoint": f"http://127.0.0.1:{server.server_address[1]}",
                "account_id": ACCOUNT,
                "access_key_id": store.root_key,
                "access_key_secret": store.keys[store.root_key]["secret"],
                "key_limit": store.key_limit,
            }
        ),
        flush=True,
    )
    if "--until-stdin-closes" in sys.argv:
        sys.stdin.read()
        os._exit(0)
    threading.Event().wait()
