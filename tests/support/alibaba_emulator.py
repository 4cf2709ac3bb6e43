"""A small stateful Alibaba Cloud RAM + STS emulator on 127.0.0.1.

Every API request must carry a valid signature, checked with the official
Python SDK's own code (alibabacloud-tea-openapi 0.4.6): V3
(`ACS3-HMAC-SHA256` in the Authorization header, `Utils.get_authorization`
with its canonical query and header helpers; `host` and every `x-acs-*`
header signed, `x-acs-content-sha256` the body's hash) or version 1.0
(HMAC-SHA1 form parameters, `Utils.get_rpcsignature`); a time within 15
minutes and a nonce never seen before. It keeps users and their
AccessKeys, enforces 2 keys per user (LimitExceeded.User.AccessKey),
refuses a disabled key (Forbidden.AccessKeyDisabled), and answers
GetAccessKeyLastUsed from the requests it has seen. RAM (2015-05-01) and STS
(2015-04-01) share the port; the Version parameter tells them apart.

The account's root key may manage every user's keys; a RAM user's key may
manage only its own keys, and only if the user was made with
"SelfManage": true (the RAM policy the README gives for self-rotation).
Throttled requests answer Throttling.User. Users, keys, faults and the
control endpoints: keystore.py.
"""

import hashlib
import re
import time
import uuid
from datetime import datetime, timezone

from alibabacloud_tea_openapi.utils import Utils

from keystore import ACCOUNT, Answer, Store, iso, random_chars, serve

RAM_VERSION = "2015-05-01"
STS_VERSION = "2015-04-01"
MAX_SKEW = 15 * 60
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

STORE = Store(lambda: "LTAI" + random_chars(20), key_limit=2)
NONCES = {}  # nonce -> when seen


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


def error_body(code, message):
    return {
        "RequestId": str(uuid.uuid4()).upper(),
        "HostId": "emulator",
        "Code": code,
        "Message": message,
        "Recommend": "",
    }


V3 = "ACS3-HMAC-SHA256"
V3_AUTHORIZATION = re.compile(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)")
V3_HEADERS = ["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"]


def api(method, params, request):
    v3 = request.headers.get("authorization", "").startswith(V3)
    if v3:
        # For the log: V3 names the action in a header.
        params.setdefault("Action", request.headers.get("x-acs-action", ""))
        match = V3_AUTHORIZATION.fullmatch(request.headers["authorization"])
        signer = match.group(1) if match else ""
    else:
        signer = params.get("AccessKeyId", "")
    scheme = "v3" if v3 else "v1"
    try:
        return Answer(200, authenticated(method, params, request, v3), signer, "OK", scheme=scheme)
    except ApiError as e:
        return Answer(e.status, error_body(e.code, e.message), signer, e.code, scheme=scheme)


def malformed():
    return Answer(400, error_body("InvalidParameter", "the form is malformed or repeats a name"), "", "InvalidParameter")


def authenticated(method, params, request, v3):
    if STORE.take_throttle():
        raise ApiError(400, "Throttling.User", "Request was denied due to user flow control.")
    key, nonce, action, version = signed_v3(method, request) if v3 else signed_v1(method, params)
    if key["status"] != "Active":
        raise ApiError(403, "Forbidden.AccessKeyDisabled", "The Access Key is disabled.")
    now = time.time()
    for n, seen in list(NONCES.items()):
        if now - seen > 2 * MAX_SKEW:
            del NONCES[n]
    if nonce in NONCES:
        raise ApiError(400, "SignatureNonceUsed", "The request signature nonce has been used.")
    NONCES[nonce] = now
    key["last_used"] = now
    if version == STS_VERSION and action == "GetCallerIdentity":
        return caller_identity(key)
    if version == RAM_VERSION and action in RAM_ACTIONS:
        return ram(action, params, key)
    raise ApiError(404, "InvalidAction.NotFound", f"{action} is not an action of version {version}")


def fresh(when):
    """Refuses a time more than 15 minutes off."""
    try:
        ts = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ApiError(400, "InvalidTimeStamp.Format", "the time must be yyyy-MM-ddTHH:mm:ssZ")
    if abs(time.time() - ts.timestamp()) > MAX_SKEW:
        raise ApiError(400, "IllegalTimestamp", "the time is more than 15 minutes off")


def signing_key(key_id):
    key = STORE.signing_key(key_id)
    if key is None:
        raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    return key


def mismatch():
    return ApiError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")


def signed_v1(method, params):
    """Signature version 1.0: (key, nonce, action, version)."""
    missing = [p for p in COMMON if not params.get(p)]
    if missing:
        raise ApiError(400, "MissingParameter", f"missing {', '.join(missing)}")
    if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
        raise ApiError(400, "InvalidParameter", "unsupported signature method or version")
    fresh(params["Timestamp"])
    key = signing_key(params["AccessKeyId"])
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    if params["Signature"] != Utils.get_rpcsignature(unsigned, method, key["secret"]):
        raise mismatch()
    return key, params["SignatureNonce"], params["Action"], params["Version"]


class SignedRequest:
    """What `Utils.get_authorization` reads of a request."""

    def __init__(self, method, pathname, query, headers):
        self.method, self.pathname, self.query, self.headers = method, pathname, query, headers


def signed_v3(method, request):
    """Signature V3: (key, nonce, action, version)."""
    headers = request.headers
    match = V3_AUTHORIZATION.fullmatch(headers["authorization"])
    if not match:
        raise ApiError(400, "IncompleteSignature", "the Authorization header is malformed")
    key_id, signed_names, _ = match.groups()
    missing = [h for h in V3_HEADERS if not headers.get(h)]
    if missing:
        raise ApiError(400, "MissingParameter", f"missing headers {', '.join(missing)}")
    names = signed_names.split(";")
    unsigned = [h for h in headers if (h == "host" or h.startswith("x-acs-")) and h not in names]
    if unsigned or any(n not in headers for n in names):
        raise ApiError(400, "IncompleteSignature", f"host and every x-acs-* header must be signed, and only headers sent: {signed_names}")
    if hashlib.sha256(request.raw).hexdigest() != headers["x-acs-content-sha256"]:
        raise ApiError(400, "InvalidParameter", "x-acs-content-sha256 is not the SHA-256 of the body")
    fresh(headers["x-acs-date"])
    key = signing_key(key_id)
    query = dict(request.query)
    if len(query) != len(request.query):
        raise ApiError(400, "InvalidParameter", "a query parameter repeats")
    signed = SignedRequest(method, request.path, query, {n: headers[n] for n in names})
    expected = Utils.get_authorization(signed, V3, headers["x-acs-content-sha256"], key_id, key["secret"])
    if headers["authorization"] != expected:
        raise mismatch()
    return key, headers["x-acs-signature-nonce"], headers["x-acs-action"], headers["x-acs-version"]


def caller_identity(signer):
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


def ram(action, params, signer):
    user = params.get("UserName") or signer["user"]
    if user is None:
        raise ApiError(400, "MissingParameter.UserName", "UserName is mandatory for this action.")
    if not STORE.may_manage(signer, user):
        raise ApiError(403, "NoPermission", f"You are not authorized to do {action} on user/{user}.")
    if user not in STORE.users:
        raise ApiError(404, "EntityNotExist.User", f"The user does not exist: {user}.")
    request_id = str(uuid.uuid4()).upper()
    if action == "CreateAccessKey":
        if STORE.at_limit(user):
            raise ApiError(409, "LimitExceeded.User.AccessKey", "The count of access keys of the user exceeds the limit 2.")
        key_id = STORE.new_key(user, by_api=True)
        key = STORE.keys[key_id]
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
        keys = [{"AccessKeyId": k, "Status": v["status"], "CreateDate": iso(v["created"])} for k, v in STORE.user_keys(user)]
        return {"RequestId": request_id, "AccessKeys": {"AccessKey": keys}}
    key_id = params.get("UserAccessKeyId")
    if not key_id:
        raise ApiError(400, "MissingParameter.UserAccessKeyId", "UserAccessKeyId is mandatory for this action.")
    key = STORE.keys.get(key_id)
    if key is None or key["user"] != user:
        raise ApiError(404, "EntityNotExist.User.AccessKey", f"The access key does not exist: {key_id}.")
    if action == "UpdateAccessKey":
        status = params.get("Status")
        if status not in ("Active", "Inactive"):
            raise ApiError(400, "InvalidParameter.Status", "Status must be Active or Inactive.")
        key["status"] = status
        return {"RequestId": request_id}
    if action == "DeleteAccessKey":
        del STORE.keys[key_id]
        return {"RequestId": request_id}
    used = key["last_used"]  # GetAccessKeyLastUsed
    return {"RequestId": request_id, "AccessKeyLastUsed": {"LastUsedDate": iso(used) if used else ""}}


if __name__ == "__main__":
    serve(STORE, api, malformed)
