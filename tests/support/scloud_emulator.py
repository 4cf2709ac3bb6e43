"""A small stateful SCloud (UCloud API dialect) IAM emulator on 127.0.0.1.

Every request must carry Action, PublicKey and a Signature that the official
Python SDK (ucloud-sdk-python3) computes the same. Answers are JSON with
`RetCode` (0 on success) inside HTTP 200, as SCloud does. It keeps users and
their access keys, enforces a per-user key limit (--key-limit, default 2),
refuses inactive keys, and can throttle or keep new keys unready.

RetCodes: 110 timeout is never produced; 130 for a request whose key is
unknown (or not ready yet), whose signature is wrong, whose key is
inactive, or whose key may not do it; 150 when throttled; 160 no Action; 161
unknown action; 230 a parameter that names nothing (no such user or key);
8040 the user is at the key limit.

The answers deliberately mix the spellings the published examples and the
model disagree on: CreateAccessKey answers `AccessKeyID` and times as
numbers, ListAccessKeys `AccessKeyId`/`UserID` and times as numeric strings.
Users, keys, faults and the control endpoints: keystore.py.
"""

import sys
import time

from ucloud.core.auth import Credential

from keystore import Answer, Store, random_chars, serve

KEY_LIMIT = int(sys.argv[sys.argv.index("--key-limit") + 1]) if "--key-limit" in sys.argv else 2
STORE = Store(lambda: random_chars(40), key_limit=KEY_LIMIT)
ACTIONS = {"CreateAccessKey", "ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey"}


class ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(code)
        self.code, self.message = code, message


def api(method, params, request):
    signer = params.get("PublicKey", "")
    action = params.get("Action", "")
    # Update and Delete name a key, not a user: log the key's owner.
    target = STORE.keys.get(params.get("AccessKeyID", ""))
    about = target["user"] if target else None
    try:
        body = {"Action": f"{action}Response", "RetCode": 0, **authenticated(params)}
        return Answer(200, body, signer, "OK", about)
    except ApiError as e:
        body = {"Action": f"{action}Response", "RetCode": e.code, "Message": e.message}
        return Answer(200, body, signer, str(e.code), about)


def malformed():
    return Answer(200, {"RetCode": 230, "Message": "the form is malformed or repeats a name"}, "", "230")


def authenticated(params):
    if STORE.take_throttle():
        raise ApiError(150, "Service busy: too many requests, retry later")
    if not params.get("Action"):
        raise ApiError(160, "Missing Action")
    public_key, signature = params.get("PublicKey", ""), params.get("Signature", "")
    key = STORE.signing_key(public_key)
    if key is None or not signature:
        raise ApiError(130, "Invalid public key or missing signature")
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    if Credential(public_key, key["secret"]).verify_ac(unsigned) != signature:
        raise ApiError(130, "Signature verify error")
    if key["status"] != "Active":
        raise ApiError(130, "The access key is inactive")
    action = params["Action"]
    if action not in ACTIONS:
        raise ApiError(161, f"Action [{action}] not found")
    key["last_used"] = time.time()
    if action in ("CreateAccessKey", "ListAccessKeys"):
        user = params.get("UserName")
        if not user:
            raise ApiError(230, "Params [UserName] not available")
        if not STORE.may_manage(key, user) and not (action == "ListAccessKeys" and key["user"] == user):
            raise ApiError(130, f"Permission denied: {action} on user {user}")
        if user not in STORE.users:
            raise ApiError(230, f"Params [UserName] not available: no user {user}")
        if action == "CreateAccessKey":
            if STORE.at_limit(user):
                raise ApiError(8040, f"The number of access keys of user {user} reached the limit {KEY_LIMIT}")
            key_id = STORE.new_key(user, by_api=True)
            made = STORE.keys[key_id]
            return {
                "AccessKey": {
                    "AccessKeyID": key_id,
                    "AccessKeySecret": made["secret"],
                    "UserId": abs(hash(user)) % 10**8,
                    "Description": "",
                    "Status": "Active",
                    "CreatedAt": int(made["created"]),
                    "ExpiredAt": 0,
                    "UpdatedAt": int(made["created"]),
                    "DeletedAt": 0,
                }
            }
        return {
            "AccessKey": [
                {
                    "AccessKeyId": k,
                    "UserID": str(abs(hash(user)) % 10**8),
                    "Status": v["status"],
                    "CreatedAt": str(int(v["created"])),
                    "UpdatedAt": str(int(v["created"])),
                }
                for k, v in STORE.user_keys(user)
            ]
        }
    target_id = params.get("AccessKeyID")
    target = STORE.keys.get(target_id or "")
    if target is None or target["user"] is None:
        raise ApiError(230, f"Params [AccessKeyID] not available: no key {target_id}")
    if not STORE.may_manage(key, target["user"]):
        raise ApiError(130, f"Permission denied: {action} on a key of user {target['user']}")
    if action == "UpdateAccessKey":
        status = params.get("Status")
        if status not in ("Active", "Inactive"):
            raise ApiError(230, "Params [Status] not available: Active or Inactive")
        target["status"] = status
        return {}
    del STORE.keys[target_id]  # DeleteAccessKey
    return {}


if __name__ == "__main__":
    serve(STORE, api, malformed)
