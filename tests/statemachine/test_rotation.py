"""The scheduled rotation state machine, executed for real.

moto's Step Functions interpreter runs infra/statemachine/rotation.asl.json
(substitutions filled in as the template does). Its Lambda tasks reach the
real function binaries running under `cargo lambda watch`, through a small
router: the interpreter sends every call to http://localhost:$MOTO_PORT, so
MOTO_PORT points at the router, which hands `/2015-03-31/functions/<name>/
invocations` to cargo lambda watch and everything else to moto.

moto runs without signature checks here: the interpreter signs its own
calls with fixed test keys. Everything listens on 127.0.0.1.

Scenario: three managed secrets are due, one is not, one names a user
outside the managed path. The run rotates the three, skips the one not due,
publishes the failing one to SNS, and the invariants hold afterwards.
"""

import http.client
import http.server
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
ROTATION_PERIOD_S = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


class Router(http.server.BaseHTTPRequestHandler):
    """Lambda invocations to cargo lambda watch, the rest to moto."""

    moto_port = 0
    watch_port = 0
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = urllib.parse.unquote(self.path)
        if path.startswith("/2015-03-31/functions/") and path.endswith("/invocations"):
            name = path[len("/2015-03-31/functions/") : -len("/invocations")].split(":function:")[-1]
            port, target = self.watch_port, f"/2015-03-31/functions/{name}/invocations"
        else:
            port, target = self.moto_port, self.path
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        conn.request(self.command, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        if port == self.watch_port and status >= 500:
            # cargo lambda watch answers a function error with 500; Lambda
            # answers 200 with X-Amz-Function-Error, which Retry/Catch read.
            status = 200
            out_headers.append(("X-Amz-Function-Error", "Unhandled"))
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward


class StateMachineRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.procs = []
        router_port = free_port()
        watch_port = free_port()
        python = str(ROOT / ".venv/bin/python")
        env = dict(os.environ, MOTO_PORT=str(router_port))
        moto = subprocess.Popen(
            [python, str(ROOT / "tests/support/moto_server.py"), "--no-auth", "--until-stdin-closes"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        cls.procs.append(moto)
        info = json.loads(moto.stdout.readline())
        cls.endpoint = info["endpoint"]
        moto_port = int(cls.endpoint.rsplit(":", 1)[1])

        Router.moto_port, Router.watch_port = moto_port, watch_port
        cls.router = http.server.ThreadingHTTPServer(("127.0.0.1", router_port), Router)
        threading.Thread(target=cls.router.serve_forever, daemon=True).start()

        cls.watch_log = open(ROOT / "target/statemachine-watch.log", "w")
        fenv = dict(
            os.environ,
            AWS_ENDPOINT_URL=cls.endpoint, AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID=info["access_key_id"], AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
            REKEY_MANAGED_USER_PATH="/rekey/", REKEY_TEST_SPACING="0s", AWS_LAMBDA_LOG_FORMAT="JSON",
        )
        fenv.pop("AWS_PROFILE", None)
        watch = subprocess.Popen(
            [str(ROOT / ".venv/bin/cargo-lambda"), "lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", str(watch_port)],
            cwd=ROOT, env=fenv, stdout=cls.watch_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        cls.procs.append(watch)
        wait_for_port(watch_port, 120)
        # cargo lambda watch builds each function on its first invocation;
        # do that now, so the run below is timed by the functions alone.
        for name in ("rekey-create", "rekey-test", "rekey-finish"):
            conn = http.client.HTTPConnection("127.0.0.1", watch_port, timeout=900)
            conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body="{}")
            conn.getresponse().read()

        session = boto3.Session(
            aws_access_key_id=info["access_key_id"], aws_secret_access_key=info["secret_access_key"], region_name=REGION
        )
        cls.iam = session.client("iam", endpoint_url=cls.endpoint)
        cls.sm = session.client("secretsmanager", endpoint_url=cls.endpoint)
        cls.sfn = session.client("stepfunctions", endpoint_url=cls.endpoint)
        cls.sns = session.client("sns", endpoint_url=cls.endpoint)
        cls.sqs = session.client("sqs", endpoint_url=cls.endpoint)

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            try:
                os.killpg(p.pid, 15) if p.args[0].endswith("cargo-lambda") else p.kill()
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
        cls.router.shutdown()
        cls.watch_log.close()

    # ---- helpers ----

    def user_with_secret(self, name, path):
        self.iam.create_user(UserName=name, Path=path)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        value = {"UserName": name, "AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
        # The owning secret of the user (rekey/aws/<user>), and the user
        # enrolled to it, as an operator does.
        arn = self.sm.create_secret(
            Name=f"rekey/aws/{name}", SecretString=json.dumps(value), Tags=[{"Key": "rekey:managed", "Value": "true"}]
        )["ARN"]
        self.iam.tag_user(UserName=name, Tags=[{"Key": "rekey:owner", "Value": arn}])
        self.secrets_seen.append(key["SecretAccessKey"])
        return arn, key["AccessKeyId"]

    def current(self, arn):
        value = json.loads(self.sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
        self.secrets_seen.append(value.get("SecretAccessKey", ""))
        return value

    def definition(self, topic_arn):
        text = (ROOT / "infra/statemachine/rotation.asl.json").read_text()
        fn = lambda name: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"  # noqa: E731
        for key, value in {
            "CreateFunctionArn": fn("rekey-create"),
            "TestFunctionArn": fn("rekey-test"),
            "FinishFunctionArn": fn("rekey-finish"),
            "TopicArn": topic_arn,
            "MaxConcurrency": "2",
            "RotationPeriod": f"{ROTATION_PERIOD_S}s",
            "Partition": "aws",
        }.items():
            text = text.replace("${" + key + "}", value)
        self.assertNotIn("${", text, "every substitution is filled")
        return text

    # ---- the scenario ----

    def test_rotates_the_due_skips_the_rest_and_reports_failures(self):
        self.secrets_seen = []
        due = [self.user_with_secret(f"due-{i}", "/rekey/") for i in range(3)]
        outsider = self.user_with_secret("outsider", "/elsewhere/")
        time.sleep(ROTATION_PERIOD_S + 1)
        fresh = self.user_with_secret("fresh", "/rekey/")
        # A secret the hook drives: listed, but left to the hook.
        hooked = self.user_with_secret("hooked", "/rekey/")
        self.sm.rotate_secret(SecretId=hooked[0], RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False)
        hooked_current = self.current(hooked[0])

        topic = self.sns.create_topic(Name="rekey-alerts")["TopicArn"]
        queue = self.sqs.create_queue(QueueName="rekey-alerts")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

        conn = http.client.HTTPConnection("127.0.0.1", int(self.endpoint.rsplit(":", 1)[1]))
        conn.request("POST", "/moto-api/config", body=json.dumps({"stepfunctions": {"execute_state_machine": True}}))
        self.assertEqual(conn.getresponse().status, 201)

        machine = self.sfn.create_state_machine(
            name="rekey-rotation", definition=self.definition(topic), roleArn=f"arn:aws:iam::{ACCOUNT}:role/rekey-sfn"
        )["stateMachineArn"]
        execution = self.sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        deadline = time.time() + 240
        while True:
            desc = self.sfn.describe_execution(executionArn=execution)
            if desc["status"] != "RUNNING":
                break
            self.assertLess(time.time(), deadline, "the execution finished in time")
            time.sleep(1)
        if desc["status"] != "SUCCEEDED":
            events = self.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
            detail = "\n".join(json.dumps(e, default=str)[:600] for e in events[-25:])
            self.fail(f"execution {desc['status']}: {desc.get('error')}: {desc.get('cause')}\n{detail}")

        # The three due secrets were rotated.
        for arn, old_key in due:
            cur = self.current(arn)
            self.assertNotEqual(cur["AccessKeyId"], old_key, arn)
            keys = {k["AccessKeyId"]: k["Status"] for k in self.iam.list_access_keys(UserName=cur["UserName"])["AccessKeyMetadata"]}
            self.assertEqual(keys.get(cur["AccessKeyId"]), "Active")
            self.assertEqual(keys.get(old_key), "Active", "the old key stays in its grace period")
            self.assertLessEqual(len(keys), 2)
            stages = self.sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
            self.assertFalse(any("AWSPENDING" in s for s in stages.values()), stages)
        # The fresh one and the outsider were not.
        for arn, old_key in (fresh, outsider):
            self.assertEqual(self.current(arn)["AccessKeyId"], old_key)
            name = self.current(arn)["UserName"]
            self.assertEqual(len(self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"]), 1)
        self.assertEqual(self.current(hooked[0])["AccessKeyId"], hooked_current["AccessKeyId"])

        # The outsider's failure reached SNS, once, with its reason.
        messages = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        self.assertEqual(len(messages), 1, messages)
        body = json.loads(messages[0]["Body"])
        self.assertEqual(body["SecretId"], outsider[0])
        self.assertEqual(body["Failure"]["Error"], "UserNotManaged")
        self.assertIn("REKEY_MANAGED_USER_PATH", json.loads(body["Failure"]["Cause"])["errorMessage"])

        # No secret value in the alert or in the functions' logs.
        self.watch_log.flush()
        logs = (ROOT / "target/statemachine-watch.log").read_text()
        for s in filter(None, self.secrets_seen):
            self.assertNotIn(s, messages[0]["Body"])
            self.assertNotIn(s, logs)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    passed = result.testsRun - len(result.failures) - len(result.errors)
    print(f"statemachine: {passed} passed, {len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
