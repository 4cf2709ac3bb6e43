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
Throttled requests answer Throttling.User. Users, keys, faults and the
control endpoints: keystore.py.
"""

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


def api(method, params):
    signer = params.get("AccessKeyId", "")
    try:
        return Answer(200, authenticated(method, params), signer, "OK")
    except ApiError as e:
        return Answer(e.status, error_body(e.code, e.message), signer, e.code)


def malformed():
    return Answer(400, error_body("InvalidParameter", "the form is malformed or repeats a name"), "", "InvalidParameter")


def authenticated(method, params):
    if STORE.take_throttle():
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
    key = STORE.signing_key(params["AccessKeyId"])
    if key is None:
        raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    if params["Signature"] != Utils.get_rpcsignature(unsigned, method, key["secret"]):
        raise ApiError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
    if key["status"] != "Active":
        raise ApiError(403, "Forbidden.AccessKeyDisabled", "The Access Key is disabled.")
    now = time.time()
    for n, seen in list(NONCES.items()):
        if now - seen > 2 * MAX_SKEW:
            del NONCES[n]
    if params["SignatureNonce"] in NONCES:
        raise ApiError(400, "SignatureNonceUsed", "The request signature nonce has been used.")
    NONCES[params["SignatureNonce"]] = now
    key["last_used"] = now
    version, action = params["Version"], params["Action"]
    if version == STS_VERSION and action == "GetCallerIdentity":
        return caller_identity(key)
    if version == RAM_VERSION and action in RAM_ACTIONS:
        return ram(action, params, key)
    raise ApiError(404, "InvalidAction.NotFound", f"{action} is not an action of version {version}")


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
