"""A small stateful Alibaba Cloud RAM + STS emulator on 127.0.0.1.

Every API request must carry a valid signature version 1.0, checked with the
official Python SDK's signer (alibabacloud-tea-openapi), a timestamp within
15 minutes and a nonce never seen before. It keeps users and their
AccessKeys, enforces 2 keys per user (LimitExceeded.User.AccessKey),
refuses a disabled key (Forbidden.AccessKeyDisabled), and answers
GetAccessKeyLastUsed from the requests it has seen. RAM (2015-05-01) and STS
(2015-04-01) share the port; the Version parameter tells them apart.

The account's root key may manage every user's keys; a RAM user's key may
manage only its own keys, and only if the user was made with
"SelfManage": true (the RAM policy the README gives for self-rotation).

Control endpoints, JSON, for tests (they play the operator and the faults):
  POST /_emulator/users        {"UserName", "SelfManage"?}
  POST /_emulator/keys         {"UserName"} -> {"AccessKeyId", "AccessKeySecret"}
  POST /_emulator/keys/status  {"AccessKeyId", "Status"}
  POST /_emulator/keys/delete  {"AccessKeyId"}
  POST /_emulator/keys/use     {"AccessKeyId"}   (as if used just now)
  POST /_emulator/check        {"AccessKeyId", "AccessKeySecret"} -> {"User"} or {"Error"}
  POST /_emulator/faults       {"Throttle": n, "UnreadySeconds": s}
       Throttle: the next n API requests answer Throttling.User;
       UnreadySeconds: keys made by CreateAccessKey are refused as
       unknown until this old (eventual consistency).
  GET  /_emulator/users/<name>/keys -> [{"AccessKeyId","Status","CreateDate","LastUsedDate"}]
  GET  /_emulator/log          -> [{"Action","Signer","UserName","Code"}]

Prints one JSON line: {"endpoint", "account_id", "access_key_id",
"access_key_secret"} (the root key). With --until-stdin-closes the server
stops when its parent goes away.
"""

import argparse
import json
import os
import secrets
import string
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from alibabacloud_tea_openapi.utils import Utils

ACCOUNT = "1234567890123456"
RAM_VERSION = "2015-05-01"
STS_VERSION = "2015-04-01"
MAX_SKEW = 15 * 60
KEY_LIMIT = 2
COMMON = [
    "Action",
    "Format",
    "Version",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
]
RAM_ACTIONS = {
    "CreateAccessKey",
    "ListAccessKeys",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "GetAccessKeyLastUsed",
}


def iso(t):
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_chars(n):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.users = {}  # name -> {"self_manage": bool}
        self.keys = {}  # id -> {"user", "secret", "status", "created", "last_used"}
        self.nonces = {}  # nonce -> when seen
        self.throttle = 0
        self.unready_seconds = 0.0
        self.log = []
        root = self.new_key(None)
        self.root_key = root

    def new_key(self, user, by_api=False):
        key_id = "LTAI" + random_chars(20)
        secret = random_chars(30)
        self.keys[key_id] = {
            "user": user,
            "secret": secret,
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

    # --- API requests -------------------------------------------------

    def api(self, method, params):
        action = params.get("Action", "")
        signer = params.get("AccessKeyId", "")
        entry = {"Action": action, "Signer": signer, "UserName": params.get("UserName")}
        self.log.append(entry)
        try:
            result = self.authenticated(method, params)
            entry["Code"] = "OK"
            return 200, result
        except ApiError as e:
            entry["Code"] = e.code
            return e.status, {
                "RequestId": str(uuid.uuid4()).upper(),
                "HostId": "emulator",
                "Code": e.code,
                "Message": e.message,
                "Recommend": "",
            }

    def authenticated(self, method, params):
        if self.throttle > 0:
            self.throttle -= 1
            raise ApiError(400, "Throttling.User", "Request was denied due to user flow control.")
        missing = [p for p in COMMON if not params.get(p)]
        if missing:
            raise ApiError(400, "MissingParameter", f"missing {', '.join(missing)}")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise ApiError(400, "InvalidParameter", "unsupported signature method or version")
        try:
            ts = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise ApiError(400, "InvalidTimeStamp.Format", "Timestamp must be yyyy-MM-ddTHH:mm:ssZ")
        if abs(time.time() - ts.timestamp()) > MAX_SKEW:
            raise ApiError(400, "IllegalTimestamp", "the Timestamp is more than 15 minutes off")
        key = self.keys.get(params["AccessKeyId"])
        unready = key is not None and key["by_api"] and time.time() - key["created"] < self.unready_seconds
        if key is None or unready:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        unsigned = {k: v for k, v in params.items() if k != "Signature"}
        expected = Utils.get_rpcsignature(unsigned, method, key["secret"])
        if params["Signature"] != expected:
            raise ApiError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        if key["status"] != "Active":
            raise ApiError(403, "Forbidden.AccessKeyDisabled", "The Access Key is disabled.")
        now = time.time()
        for n, seen in list(self.nonces.items()):
            if now - seen > 2 * MAX_SKEW:
                del self.nonces[n]
        if params["SignatureNonce"] in self.nonces:
            raise ApiError(400, "SignatureNonceUsed", "The request signature nonce has been used.")
        self.nonces[params["SignatureNonce"]] = now
        key["last_used"] = now
        return self.dispatch(params, key)

    def dispatch(self, params, signer):
        version, action = params["Version"], params["Action"]
        if version == STS_VERSION and action == "GetCallerIdentity":
            return self.caller_identity(params["AccessKeyId"], signer)
        if version == RAM_VERSION and action in RAM_ACTIONS:
            return self.ram(action, params, signer)
        raise ApiError(404, "InvalidAction.NotFound", f"{action} is not an action of version {version}")

    def caller_identity(self, key_id, signer):
        request_id = str(uuid.uuid4()).upper()
        if signer["user"] is None:
            return {
                "AccountId": ACCOUNT,
                "UserId": ACCOUNT,
                "Arn": f"acs:ram::{ACCOUNT}:root",
                "IdentityType": "Account",
                "PrincipalId": ACCOUNT,
                "RequestId": request_id,
            }
        user_id = str(abs(hash(signer["user"])) % 10**16)
        return {
            "AccountId": ACCOUNT,
            "UserId": user_id,
            "Arn": f"acs:ram::{ACCOUNT}:user/{signer['user']}",
            "IdentityType": "RAMUser",
            "PrincipalId": user_id,
            "RequestId": request_id,
        }

    def ram(self, action, params, signer):
        user = params.get("UserName") or signer["user"]
        if user is None:
            raise ApiError(400, "MissingParameter.UserName", "UserName is mandatory for this action.")
        if signer["user"] is not None and not (
            signer["user"] == user and self.users.get(user, {}).get("self_manage")
        ):
            raise ApiError(403, "NoPermission", f"You are not authorized to do {action} on user/{user}.")
        if user not in self.users:
            raise ApiError(404, "EntityNotExist.User", f"The user does not exist: {user}.")
        request_id = str(uuid.uuid4()).upper()
        if action == "CreateAccessKey":
            if len(self.user_keys(user)) >= KEY_LIMIT:
                raise ApiError(409, "LimitExceeded.User.AccessKey", "The count of access keys of the user exceeds the limit 2.")
            key_id = self.new_key(user, by_api=True)
            key = self.keys[key_id]
            return {
                "RequestId": request_id,
                "AccessKey": {
                    "AccessKeyId": key_id,
                    "AccessKeySecret": key["secret"],
                    "Status": "Active",
                    "CreateDate": iso(key["created"]),
                },
            }
        if action == "ListAccessKeys":
            return {
                "RequestId": request_id,
                "AccessKeys": {
                    "AccessKey": [
                        {"AccessKeyId": k, "Status": v["status"], "CreateDate": iso(v["created"])}
                        for k, v in self.user_keys(user)
                    ]
                },
            }
        key_id = params.get("UserAccessKeyId")
        if not key_id:
            raise ApiError(400, "MissingParameter.UserAccessKeyId", "UserAccessKeyId is mandatory for this action.")
        key = self.keys.get(key_id)
        if key is None or key["user"] != user:
            raise ApiError(404, "EntityNotExist.User.AccessKey", f"The access key does not exist: {key_id}.")
        if action == "UpdateAccessKey":
            status = params.get("Status")
            if status not in ("Active", "Inactive"):
                raise ApiError(400, "InvalidParameter.Status", "Status must be Active or Inactive.")
            key["status"] = status
            return {"RequestId": request_id}
        if action == "DeleteAccessKey":
            del self.keys[key_id]
            return {"RequestId": request_id}
        # GetAccessKeyLastUsed
        used = key["last_used"]
        return {"RequestId": request_id, "AccessKeyLastUsed": {"LastUsedDate": iso(used) if used else ""}}

    # --- control ------------------------------------------------------

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
            self.users[body["UserName"]] = {"self_manage": bool(body.get("SelfManage"))}
            return 200, {}
        if path == "/_emulator/keys":
            user = body["UserName"]
            if user not in self.users:
                return 404, {"Error": "no such user"}
            if len(self.user_keys(user)) >= KEY_LIMIT:
                return 409, {"Error": "LimitExceeded.User.AccessKey"}
            key_id = self.new_key(user)
            return 200, {"AccessKeyId": key_id, "AccessKeySecret": self.keys[key_id]["secret"]}
        key = self.keys.get(body.get("AccessKeyId", ""))
        if path == "/_emulator/check":
            if key is None or key["secret"] != body.get("AccessKeySecret"):
                return 200, {"Error": "InvalidAccessKeyId.NotFound"}
            if key["status"] != "Active":
                return 200, {"Error": "Forbidden.AccessKeyDisabled"}
            return 200, {"User": key["user"]}
        if path == "/_emulator/faults":
            self.throttle = int(body.get("Throttle", 0))
            self.unready_seconds = float(body.get("UnreadySeconds", 0))
            return 200, {}
        if key is None:
            return 404, {"Error": "no such key"}
        if path == "/_emulator/keys/status":
            key["status"] = body["Status"]
            return 200, {}
        if path == "/_emulator/keys/delete":
            del self.keys[body["AccessKeyId"]]
            return 200, {}
        if path == "/_emulator/keys/use":
            key["last_used"] = time.time()
            return 200, {}
        return 404, {"Error": "unknown control endpoint"}


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self, method):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with STATE.lock:
            if url.path.startswith("/_emulator/"):
                status, answer = STATE.control(method, url.path, json.loads(raw or b"{}"))
            elif url.path != "/":
                status, answer = 404, {"Code": "InvalidURI", "Message": "not found"}
            else:
                pairs = parse_qsl(url.query, keep_blank_values=True)
                form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
                try:
                    if raw and form:
                        pairs += parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
                except ValueError:
                    pairs = None
                params = dict(pairs or [])
                if pairs is None:
                    status, answer = 400, {"Code": "InvalidParameter", "Message": "the form is malformed"}
                elif len(params) != len(pairs):
                    status, answer = 400, {"Code": "InvalidParameter", "Message": "a parameter is repeated"}
                else:
                    status, answer = STATE.api(method, params)
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--until-stdin-closes", action="store_true")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = STATE.root_key
    print(
        json.dumps(
            {
                "endpoint": f"http://127.0.0.1:{server.server_address[1]}",
                "account_id": ACCOUNT,
                "access_key_id": root,
                "access_key_secret": STATE.keys[root]["secret"],
            }
        ),
        flush=True,
    )
    if args.until_stdin_closes:
        sys.stdin.read()
        os._exit(0)
    threading.Event().wait()


if __name__ == "__main__":
    main()
