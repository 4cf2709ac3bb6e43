"""Checks of the provider emulators themselves: each provider's official
Python SDK client talks to its emulator (alibabacloud-tea-openapi over RPC,
with its default signature V3 and with signature 1.0; ucloud-sdk-python3),
and each emulator refuses what the provider refuses. Run by scripts/test with the venv's python."""

import json
import logging
import pathlib
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.client import Client
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_util import models as util_models
from ucloud.client import Client as SCloudClient
from ucloud.core.auth import Credential as SCloudCredential
from ucloud.core.exc import RetCodeException

HERE = pathlib.Path(__file__).resolve().parent
# The UCloud SDK logs every request and answer, keys included.
logging.getLogger("ucloud").setLevel(logging.CRITICAL)


def start(script):
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), "--until-stdin-closes"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return proc, json.loads(proc.stdout.readline())


PROC, INFO = start("alibaba_emulator.py")
ENDPOINT = INFO["endpoint"]
ROOT_ID, ROOT_SECRET = INFO["access_key_id"], INFO["access_key_secret"]
SC_PROC, SC_INFO = start("scloud_emulator.py")


def control(path, body=None, endpoint=ENDPOINT):
    data = json.dumps(body or {}).encode() if body is not None else None
    req = urllib.request.Request(f"{endpoint}/_emulator/{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def signed(action, key_id, secret, version="2015-05-01", timestamp=None, nonce=None, **extra):
    params = {
        "Action": action,
        "Format": "JSON",
        "Version": version,
        "AccessKeyId": key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or str(uuid.uuid4()),
        "Timestamp": timestamp or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    params["Signature"] = Utils.get_rpcsignature(params, "POST", secret)
    return params


def post(params):
    """(status, JSON answer) of a form POST."""
    body = urllib.parse.urlencode(params, quote_via=urllib.parse.quote).encode()
    req = urllib.request.Request(
        ENDPOINT + "/", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def official_client(key_id, secret, algorithm="v2"):
    """The SDK's client: `v2` is its name for signature 1.0; None its
    default, V3 (ACS3-HMAC-SHA256)."""
    host = ENDPOINT.removeprefix("http://")
    config = open_api_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=host,
        protocol="HTTP",
        signature_algorithm=algorithm,
    )
    return Client(config)


def post_v3(action, key_id, secret, version="2015-05-01", tamper=None, **query):
    """(status, JSON answer) of a V3 POST with `query`, signed by the SDK's
    code; `tamper(headers)` changes the headers after signing."""
    path_query = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    host = ENDPOINT.removeprefix("http://")
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }

    class Signed:
        method, pathname = "POST", "/"

    Signed.query, Signed.headers = query, headers
    headers["Authorization"] = Utils.get_authorization(Signed, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], key_id, secret)
    if tamper:
        tamper(headers)
    req = urllib.request.Request(f"{ENDPOINT}/?{path_query}", data=b"", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def call(client, action, version="2015-05-01", **query):
    params = open_api_models.Params(
        action=action,
        version=version,
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = open_api_models.OpenApiRequest(query=query)
    return client.call_api(params, request, util_models.RuntimeOptions())["body"]


class Alibaba(unittest.TestCase):
    def user(self, self_manage=False):
        name = f"ops-{uuid.uuid4().hex[:12]}"
        control("users", {"UserName": name, "SelfManage": self_manage})
        return name

    def test_the_official_client_rotates_a_key(self):
        for algorithm in ["v2", None]:
            with self.subTest(algorithm=algorithm or "v3"):
                self.rotate_with(algorithm)

    def rotate_with(self, algorithm):
        client = official_client(ROOT_ID, ROOT_SECRET, algorithm)
        user = self.user()
        created = call(client, "CreateAccessKey", UserName=user)["AccessKey"]
        self.assertTrue(created["AccessKeyId"].startswith("LTAI"))
        listed = call(client, "ListAccessKeys", UserName=user)["AccessKeys"]["AccessKey"]
        self.assertEqual([k["AccessKeyId"] for k in listed], [created["AccessKeyId"]])
        new_client = official_client(created["AccessKeyId"], created["AccessKeySecret"], algorithm)
        identity = call(new_client, "GetCallerIdentity", version="2015-04-01")
        self.assertEqual(identity["Arn"], f"acs:ram::{INFO['account_id']}:user/{user}")
        used = call(client, "GetAccessKeyLastUsed", UserName=user, UserAccessKeyId=created["AccessKeyId"])
        self.assertTrue(used["AccessKeyLastUsed"]["LastUsedDate"].endswith("Z"))
        call(client, "UpdateAccessKey", UserName=user, UserAccessKeyId=created["AccessKeyId"], Status="Inactive")
        call(client, "DeleteAccessKey", UserName=user, UserAccessKeyId=created["AccessKeyId"])
        self.assertEqual(call(client, "ListAccessKeys", UserName=user)["AccessKeys"]["AccessKey"], [])

    def test_v3_requests_are_verified(self):
        user = self.user()
        self.assertEqual(post_v3("ListAccessKeys", ROOT_ID, ROOT_SECRET, UserName=user)[0], 200)
        status, answer = post_v3("ListAccessKeys", ROOT_ID, "not-the-secret", UserName=user)
        self.assertEqual((status, answer["Code"]), (400, "SignatureDoesNotMatch"))

        def unsigned_header(headers):
            headers["x-acs-extra"] = "1"

        def changed_nonce(headers):
            headers["x-acs-signature-nonce"] = uuid.uuid4().hex

        def stale(headers):
            headers["x-acs-date"] = "2015-08-18T03:15:45Z"

        for tamper, code in [(unsigned_header, "IncompleteSignature"), (changed_nonce, "SignatureDoesNotMatch"),
                             (stale, "IllegalTimestamp")]:
            status, answer = post_v3("ListAccessKeys", ROOT_ID, ROOT_SECRET, tamper=tamper, UserName=user)
            self.assertEqual((status, answer["Code"]), (400, code), tamper.__name__)

    def test_a_stale_timestamp_is_refused(self):
        status, answer = post(signed("ListAccessKeys", ROOT_ID, ROOT_SECRET, UserName=self.user(),
                                     timestamp="2015-08-18T03:15:45Z"))
        self.assertEqual((status, answer["Code"]), (400, "IllegalTimestamp"))

    def test_a_reused_nonce_is_refused(self):
        user = self.user()
        self.assertEqual(post(signed("ListAccessKeys", ROOT_ID, ROOT_SECRET, UserName=user, nonce="n-1"))[0], 200)
        status, answer = post(signed("ListAccessKeys", ROOT_ID, ROOT_SECRET, UserName=user, nonce="n-1"))
        self.assertEqual((status, answer["Code"]), (400, "SignatureNonceUsed"))

    def test_a_wrong_signature_and_an_unknown_key_are_refused(self):
        status, answer = post(signed("ListAccessKeys", ROOT_ID, "not-the-secret", UserName=self.user()))
        self.assertEqual((status, answer["Code"]), (400, "SignatureDoesNotMatch"))
        status, answer = post(signed("ListAccessKeys", "LTAInosuchkey0000000", "x", UserName=self.user()))
        self.assertEqual((status, answer["Code"]), (404, "InvalidAccessKeyId.NotFound"))

    def test_the_limit_disabled_keys_and_permissions(self):
        user = self.user()
        first = control("keys", {"UserName": user})
        control("keys", {"UserName": user})
        status, answer = post(signed("CreateAccessKey", ROOT_ID, ROOT_SECRET, UserName=user))
        self.assertEqual((status, answer["Code"]), (409, "LimitExceeded.User.AccessKey"))
        status, answer = post(signed("ListAccessKeys", first["AccessKeyId"], first["AccessKeySecret"], UserName=user))
        self.assertEqual((status, answer["Code"]), (403, "NoPermission"), "no self-rotation policy")
        control("keys/status", {"AccessKeyId": first["AccessKeyId"], "Status": "Inactive"})
        status, answer = post(signed("GetCallerIdentity", first["AccessKeyId"], first["AccessKeySecret"],
                                     version="2015-04-01"))
        self.assertEqual((status, answer["Code"]), (403, "Forbidden.AccessKeyDisabled"))

    def test_throttling_and_unready_keys(self):
        user = self.user()
        control("faults", {"Throttle": 1, "UnreadySeconds": 60})
        try:
            status, answer = post(signed("CreateAccessKey", ROOT_ID, ROOT_SECRET, UserName=user))
            self.assertEqual((status, answer["Code"]), (400, "Throttling.User"))
            status, answer = post(signed("CreateAccessKey", ROOT_ID, ROOT_SECRET, UserName=user))
            self.assertEqual(status, 200)
            key = answer["AccessKey"]
            status, answer = post(signed("GetCallerIdentity", key["AccessKeyId"], key["AccessKeySecret"],
                                         version="2015-04-01"))
            self.assertEqual((status, answer["Code"]), (404, "InvalidAccessKeyId.NotFound"))
        finally:
            control("faults", {"Throttle": 0, "UnreadySeconds": 0})


def scloud_client(key_id, secret):
    return SCloudClient({"public_key": key_id, "private_key": secret, "base_url": SC_INFO["endpoint"], "max_retries": 0})


def scloud_signed(key_id, secret, **params):
    params["PublicKey"] = key_id
    params["Signature"] = SCloudCredential(key_id, secret).verify_ac(dict(params))
    return post_to(SC_INFO["endpoint"], params)


def post_to(endpoint, params):
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(endpoint + "/", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


class SCloud(unittest.TestCase):
    root = scloud_client(SC_INFO["access_key_id"], SC_INFO["access_key_secret"])

    def user(self, self_manage=False):
        name = f"ops-{uuid.uuid4().hex[:12]}"
        control("users", {"UserName": name, "SelfManage": self_manage}, SC_INFO["endpoint"])
        return name

    def test_the_official_client_rotates_a_key(self):
        user = self.user()
        created = self.root.iam().create_access_key({"UserName": user})["AccessKey"]
        listed = self.root.iam().list_access_keys({"UserName": user})["AccessKey"]
        self.assertEqual(len(listed), 1)
        # The user's own key may list its own keys (the key test).
        own = scloud_client(created["AccessKeyID"], created["AccessKeySecret"])
        self.assertEqual(len(own.iam().list_access_keys({"UserName": user})["AccessKey"]), 1)
        self.root.iam().update_access_key({"AccessKeyID": created["AccessKeyID"], "Status": "Inactive"})
        with self.assertRaises(RetCodeException) as refused:
            own.iam().list_access_keys({"UserName": user})
        self.assertEqual(refused.exception.code, 130)
        self.root.iam().delete_access_key({"AccessKeyID": created["AccessKeyID"]})
        self.assertEqual(self.root.iam().list_access_keys({"UserName": user})["AccessKey"], [])

    def test_a_wrong_signature_is_refused_inside_http_200(self):
        answer = scloud_signed(SC_INFO["access_key_id"], "not-the-secret", Action="ListAccessKeys", UserName=self.user())
        self.assertEqual(answer["RetCode"], 130)
        self.assertEqual(answer["Action"], "ListAccessKeysResponse")

    def test_the_limit_permissions_and_faults(self):
        user = self.user()
        first = control("keys", {"UserName": user}, SC_INFO["endpoint"])
        control("keys", {"UserName": user}, SC_INFO["endpoint"])
        with self.assertRaises(RetCodeException) as limit:
            self.root.iam().create_access_key({"UserName": user})
        self.assertEqual(limit.exception.code, 8040)
        own = scloud_client(first["AccessKeyId"], first["AccessKeySecret"])
        with self.assertRaises(RetCodeException) as denied:
            own.iam().delete_access_key({"AccessKeyID": first["AccessKeyId"]})
        self.assertEqual(denied.exception.code, 130, "no self-rotation policy")
        control("faults", {"Throttle": 1}, SC_INFO["endpoint"])
        with self.assertRaises(RetCodeException) as busy:
            self.root.iam().list_access_keys({"UserName": user})
        self.assertEqual(busy.exception.code, 150)
        with self.assertRaises(RetCodeException) as missing:
            self.root.iam().list_access_keys({"UserName": "ops-nobody"})
        self.assertEqual(missing.exception.code, 230)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    for proc in (PROC, SC_PROC):
        proc.stdin.close()
        proc.wait(timeout=10)
    failed = len(result.failures) + len(result.errors)
    print(f"provider emulators: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
