"""The scheduled state machine, executed for real.

moto's Step Functions interpreter runs infra/statemachine/rotation.asl.json
(substitutions filled in as the template does, but for two). Its Lambda
tasks reach the real function binaries running under `cargo lambda watch`,
through a small router: the interpreter sends every call to
http://localhost:$MOTO_PORT, so MOTO_PORT points at the router, which hands
`/2015-03-31/functions/<name>/invocations` to cargo lambda watch and
everything else to moto.

Where moto differs from AWS:
- It runs only STANDARD child executions, so ChildExecutionType is STANDARD
  here (EXPRESS in the template), and its grammar reads
  ToleratedFailurePercentage only as a decimal number (10.0).
- Its Distributed Map ignores ToleratedFailurePercentage: it counts a
  failed child in the map run (DescribeMapRun's itemCounts) and the map, and
  the execution, succeed whatever fails. On AWS a map run whose failed
  children pass the percentage fails, and the execution with it.
- It checks no signatures here (the interpreter signs its own calls with
  fixed test keys), and its STS accepts AssumeRole for any role.

moto runs with two member accounts besides the central one, each with the
member role rekey assumes there; everything listens on 127.0.0.1.

Scenario: the same user name in three accounts (central and two members),
each with its owning secret driven by the pipeline and due; a secret not
due; a secret the hook drives, rotated by the hook just before. Run 1
(input `{}`) rotates the three due secrets in their own accounts and passes
over the others; after the grace period (REKEY_DEACTIVATE_AFTER of a few
seconds) run 2 retires (deactivates) the superseded key of each rotated
secret and of the hook's, and rotates nothing. Every secret is then checked
at the source: its user's keys in its account and its stages. A separate
execution naming one secret (`{"SecretIds": [...], "RotationPeriod": "0s"}`)
whose user is outside the managed path publishes UserNotManaged to SNS
(from its full check, then from its rotation, which still runs) and
its map run counts one failed child. A third execution names a secret of
SCloud (its emulator, tests/support/scloud_emulator.py) signed by a managed
admin secret whose own rotation is in progress: the dependent's create is
refused (RotationInProgress naming the admin secret) and waits (Create's
Retry); the admin's rotation finishes meanwhile, and the dependent rotates
in the same execution, signed by the admin's new key, with no alert. No
secret value reaches an alert or a log.
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
import uuid

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
MEMBERS = ["111111111111", "222222222222"]
EXTERNAL_ID = "rekey-tests"
REGION = "us-east-1"
# The pipeline rotates a secret whose AWSCURRENT is this old: long enough
# that the secret made just before run 1 is still not due at run 2 (a run
# takes about a second here).
ROTATION_PERIOD_S = 20
# The SCloud users rekey may manage (REKEY_SCLOUD_USER_PATTERN).
SCLOUD_USERS = "ops-[0-9a-f]+"
# REKEY_DEACTIVATE_AFTER: the grace period run 2 waits out, and that the
# hook's secret is still in when run 1 checks it.
GRACE_S = 6
FUNCTIONS = ("rekey-hook", "rekey-create", "rekey-test", "rekey-finish", "rekey-cleanup")


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


def operator_iams(session, endpoint, central):
    """An operator's IAM client in each account: the central one (keyed
    `central`), and each member's through its test admin role."""
    iams = {central: session.client("iam", endpoint_url=endpoint)}
    sts = session.client("sts", endpoint_url=endpoint)
    for account in MEMBERS:
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/rekey-test-admin", RoleSessionName="operator")["Credentials"]
        iams[account] = boto3.client(
            "iam", endpoint_url=endpoint, region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
    return iams


def alerts_queue(sns, sqs):
    """The alerts topic and an SQS queue subscribed to it (raw messages):
    (topic ARN, queue URL)."""
    topic = sns.create_topic(Name="rekey-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="rekey-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def execute_state_machines(moto_port):
    """Turns moto's Step Functions interpreter on (it only records
    executions by default)."""
    conn = http.client.HTTPConnection("127.0.0.1", moto_port)
    conn.request("POST", "/moto-api/config", body=json.dumps({"stepfunctions": {"execute_state_machine": True}}))
    assert conn.getresponse().status == 201


class Router(http.server.BaseHTTPRequestHandler):
    """Lambda invocations to cargo lambda watch, the rest to moto."""

    moto_port = 0
    watch_port = 0
    protocol_version = "HTTP/1.1"
    # How long an invocation may wait for its answer, and how often it is
    # sent again after that (fleet.py: cargo lambda watch can leave an
    # invocation undelivered under load; the steps are idempotent by token).
    invoke_timeout = 300
    invoke_retries = 0
    resent = 0

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
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        attempts = 1 + (self.invoke_retries if port == self.watch_port else 0)
        for attempt in range(attempts):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.invoke_timeout)
            try:
                conn.request(self.command, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except TimeoutError:
                if attempt + 1 == attempts:
                    raise
                type(self).resent += 1
            finally:
                conn.close()
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
        cls.watch_port = watch_port = free_port()
        python = str(ROOT / ".venv/bin/python")
        env = dict(os.environ, MOTO_PORT=str(router_port))
        moto = subprocess.Popen(
            [
                python, str(ROOT / "tests/support/moto_server.py"), "--no-auth", "--until-stdin-closes",
                "--member-accounts", ",".join(MEMBERS),
            ],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        cls.procs.append(moto)
        info = json.loads(moto.stdout.readline())
        cls.endpoint = info["endpoint"]
        moto_port = int(cls.endpoint.rsplit(":", 1)[1])

        scloud = subprocess.Popen(
            [python, str(ROOT / "tests/support/scloud_emulator.py"), "--until-stdin-closes"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        cls.procs.append(scloud)
        cls.scloud = json.loads(scloud.stdout.readline())["endpoint"]

        Router.moto_port, Router.watch_port = moto_port, watch_port
        cls.router = http.server.ThreadingHTTPServer(("127.0.0.1", router_port), Router)
        threading.Thread(target=cls.router.serve_forever, daemon=True).start()

        cls.watch_log_path = ROOT / "target/statemachine-watch.log"
        cls.watch_log = open(cls.watch_log_path, "w")
        fenv = dict(
            os.environ,
            AWS_ENDPOINT_URL=cls.endpoint, AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID=info["access_key_id"], AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
            REKEY_MANAGED_USER_PATH="/rekey/", REKEY_TEST_SPACING="0s", AWS_LAMBDA_LOG_FORMAT="JSON",
            REKEY_DEACTIVATE_AFTER=f"{GRACE_S}s", REKEY_IDLE_BEFORE_DEACTIVATE="0s",
            REKEY_MEMBER_ACCOUNTS=",".join(MEMBERS), REKEY_MEMBER_EXTERNAL_ID=EXTERNAL_ID,
            REKEY_SCLOUD_ENDPOINT=cls.scloud, REKEY_SCLOUD_USER_PATTERN=SCLOUD_USERS,
        )
        fenv.pop("AWS_PROFILE", None)
        watch = subprocess.Popen(
            [str(ROOT / ".venv/bin/cargo-lambda"), "lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", str(watch_port)],
            cwd=ROOT, env=fenv, stdout=cls.watch_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        cls.procs.append(watch)
        wait_for_port(watch_port, 120)
        # cargo lambda watch builds each function on its first invocation;
        # do that now, so the runs below are timed by the functions alone.
        # (rekey-cleanup {} sweeps no secret yet; the others refuse {}.)
        for name in FUNCTIONS:
            cls.invoke(name, {})

        session = boto3.Session(
            aws_access_key_id=info["access_key_id"], aws_secret_access_key=info["secret_access_key"], region_name=REGION
        )
        cls.session = session
        cls.sm = session.client("secretsmanager", endpoint_url=cls.endpoint)
        cls.sfn = session.client("stepfunctions", endpoint_url=cls.endpoint)
        cls.sns = session.client("sns", endpoint_url=cls.endpoint)
        cls.sqs = session.client("sqs", endpoint_url=cls.endpoint)
        # An operator's IAM in each account: the central one, and each
        # member's through its test admin role.
        cls.iams = operator_iams(session, cls.endpoint, None)
        cls.topic, cls.queue = alerts_queue(cls.sns, cls.sqs)
        execute_state_machines(moto_port)
        cls.machine = cls.sfn.create_state_machine(
            name="rekey-rotation", definition=cls.definition(cls.topic), roleArn=f"arn:aws:iam::{ACCOUNT}:role/rekey-sfn"
        )["stateMachineArn"]
        cls.secrets_seen = []
        cls.alerts = []

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

    @classmethod
    def invoke(cls, function, event):
        """One invocation through cargo lambda watch: (status, answer)."""
        conn = http.client.HTTPConnection("127.0.0.1", cls.watch_port, timeout=900)
        conn.request("POST", f"/2015-03-31/functions/{function}/invocations", body=json.dumps(event))
        resp = conn.getresponse()
        return resp.status, resp.read()

    @classmethod
    def definition(cls, topic_arn, max_concurrency=8, rotation_period=f"{ROTATION_PERIOD_S}s"):
        text = (ROOT / "infra/statemachine/rotation.asl.json").read_text()
        fn = lambda name: f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"  # noqa: E731
        for key, value in {
            "CleanupFunctionArn": fn("rekey-cleanup"),
            "CreateFunctionArn": fn("rekey-create"),
            "TestFunctionArn": fn("rekey-test"),
            "FinishFunctionArn": fn("rekey-finish"),
            "TopicArn": topic_arn,
            # Every child at once, so each secret's turn comes right after
            # triage (the hook's secret must be checked within its grace).
            "MaxConcurrency": str(max_concurrency),
            # moto: a decimal, and ignored (see the docstring).
            "ToleratedFailurePercentage": "10.0",
            # moto runs only STANDARD children (EXPRESS in the template).
            "ChildExecutionType": "STANDARD",
            "RotationPeriod": rotation_period,
            "Partition": "aws",
        }.items():
            text = text.replace("${" + key + "}", value)
        assert "${" not in text, "every substitution is filled"
        return text

    def user_with_secret(self, user, account=None, path="/rekey/"):
        """An IAM user of `account` (None: the central one) with one key,
        its owning secret (kept in the central account), and the user
        enrolled to it, as an operator does: (arn, account, old key id)."""
        iam = self.iams[account]
        iam.create_user(UserName=user, Path=path)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        value = {"UserName": user, "AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
        name = f"rekey/aws/{user}"
        if account:
            value["AccountId"] = account
            name = f"rekey/aws/{account}/{user}"
        arn = self.sm.create_secret(
            Name=name, SecretString=json.dumps(value), Tags=[{"Key": "rekey:managed", "Value": "true"}]
        )["ARN"]
        iam.tag_user(UserName=user, Tags=[{"Key": "rekey:owner", "Value": arn}])
        self.secrets_seen.append(key["SecretAccessKey"])
        return arn, account, key["AccessKeyId"]

    def scloud_call(self, method, path, body=None):
        """The SCloud emulator's control endpoint (keystore.py)."""
        url = urllib.parse.urlsplit(self.scloud)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request(method, f"/_emulator/{path}", body=json.dumps(body) if body is not None else None,
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        self.assertEqual(resp.status, 200, answer)
        return answer

    def scloud_user_with_secret(self, name, value, admin=False):
        """An SCloud user (an administrator with `admin`) with one key, and
        the managed secret `name` holding `value` with the key: (arn, key
        id)."""
        user = f"ops-{uuid.uuid4().hex[:12]}"
        self.scloud_call("POST", "users", {"UserName": user, "Admin": admin})
        key = self.scloud_call("POST", "keys", {"UserName": user})
        self.secrets_seen.append(key["AccessKeySecret"])
        value = dict(value, Provider="scloud", UserName=user, AccessKeyId=key["AccessKeyId"], AccessKeySecret=key["AccessKeySecret"])
        arn = self.sm.create_secret(
            Name=name.format(user=user), SecretString=json.dumps(value), Tags=[{"Key": "rekey:managed", "Value": "true"}]
        )["ARN"]
        # Out of the scheduled runs' way whatever the order of the tests.
        self.addCleanup(self.sm.untag_resource, SecretId=arn, TagKeys=["rekey:managed"])
        return arn, user, key["AccessKeyId"]

    def value(self, arn, **which):
        value = json.loads(self.sm.get_secret_value(SecretId=arn, **which)["SecretString"])
        self.secrets_seen.append(value.get("SecretAccessKey", ""))
        return value

    def current(self, arn):
        return self.value(arn, VersionStage="AWSCURRENT")

    def stages(self, arn):
        return {v: sorted(s) for v, s in self.sm.describe_secret(SecretId=arn)["VersionIdsToStages"].items() if s}

    def keys(self, secret):
        """{key id: status} of the secret's user, in its account."""
        arn, account, _ = secret
        user = self.current(arn)["UserName"]
        listed = self.iams[account].list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {k["AccessKeyId"]: k["Status"] for k in listed}

    def hook_rotation(self, arn):
        """What Secrets Manager does to rotate a secret with the hook: rotation
        on, a version for a new token staged AWSPENDING (moto's RotateSecret
        moves AWSCURRENT onto it, so the labels are put back where AWS
        leaves them), then the hook's four steps with that token."""
        before = self.stages(arn)
        current = next(v for v, s in before.items() if "AWSCURRENT" in s)
        token = str(uuid.uuid4())
        self.sm.rotate_secret(SecretId=arn, ClientRequestToken=token, RotationRules={"AutomaticallyAfterDays": 30})
        for stage, to in (("AWSCURRENT", current), ("AWSPENDING", token)):
            at = next((v for v, s in self.stages(arn).items() if stage in s), None)
            if at != to:
                moves = {"MoveToVersionId": to} | ({"RemoveFromVersionId": at} if at else {})
                self.sm.update_secret_version_stage(SecretId=arn, VersionStage=stage, **moves)
        prev = next((v for v, s in self.stages(arn).items() if "AWSPREVIOUS" in s), None)
        if prev:
            self.sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSPREVIOUS", RemoveFromVersionId=prev)
        self.assertEqual(self.stages(arn), {current: ["AWSCURRENT"], token: ["AWSPENDING"]})
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            status, body = self.invoke("rekey-hook", {"SecretId": arn, "ClientRequestToken": token, "Step": step})
            self.assertEqual(status, 200, f"{step}: {body[:300]!r}")

    def run_machine(self, given):
        """Starts an execution with input `given` and waits for its end:
        (its description, its map runs' item counts)."""
        execution = self.sfn.start_execution(stateMachineArn=self.machine, name=str(uuid.uuid4()), input=json.dumps(given))["executionArn"]
        deadline = time.time() + 120
        while (desc := self.sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            self.assertLess(time.time(), deadline, "the execution finished in time")
            time.sleep(0.5)
        runs = [
            self.sfn.describe_map_run(mapRunArn=r["mapRunArn"])["itemCounts"]
            for r in self.sfn.list_map_runs(executionArn=execution)["mapRuns"]
        ]
        return desc, runs

    def assert_succeeded(self, desc):
        if desc["status"] != "SUCCEEDED":
            events = self.sfn.get_execution_history(executionArn=desc["executionArn"], maxResults=1000)["events"]
            detail = "\n".join(json.dumps(e, default=str)[:600] for e in events[-25:])
            self.fail(f"execution {desc['status']}: {desc.get('error')}: {desc.get('cause')}\n{detail}")

    def received_alerts(self):
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in messages:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        bodies = [m["Body"] for m in messages]
        self.alerts.extend(bodies)
        return bodies

    def assert_no_secret_leaked(self):
        self.watch_log.flush()
        logs = self.watch_log_path.read_text()
        for s in filter(None, self.secrets_seen):
            self.assertNotIn(s, logs)
            for alert in self.alerts:
                self.assertNotIn(s, alert)

    # ---- the scenarios ----

    def test_scheduled_runs_rotate_the_due_in_every_account_then_retire(self):
        # The same user name in three accounts: three users, three secrets.
        due = [self.user_with_secret("app", account) for account in (None, *MEMBERS)]
        time.sleep(ROTATION_PERIOD_S + 1)
        fresh = self.user_with_secret("fresh", MEMBERS[0])
        hooked = self.user_with_secret("hooked")
        self.hook_rotation(hooked[0])
        hooked_current = self.current(hooked[0])["AccessKeyId"]
        self.assertNotEqual(hooked_current, hooked[2])

        # Run 1: the due secrets are rotated, each in its account; the
        # others are only checked.
        desc, runs = self.run_machine({})
        self.assert_succeeded(desc)
        self.assertTrue(runs)
        self.assertEqual(sum(r["failed"] for r in runs), 0, runs)
        rotated = {}
        for secret in due:
            arn, account, old = secret
            new = self.current(arn)["AccessKeyId"]
            self.assertNotEqual(new, old, arn)
            self.assertEqual(self.keys(secret), {new: "Active", old: "Active"}, f"{arn}: the old key stays in its grace period")
            rotated[arn] = new
            tags = {t["Key"]: t["Value"] for t in self.sm.describe_secret(SecretId=arn)["Tags"]}
            self.assertIn("rekey:current", tags, arn)
            self.assertIn(f"rekey:superseded:{old}", tags, arn)
        self.assertEqual(self.keys(fresh), {fresh[2]: "Active"}, "not due: not rotated")
        self.assertEqual(self.keys(hooked), {hooked_current: "Active", hooked[2]: "Active"}, "the hook's: not rotated, old key in its grace")
        for arn, *_ in (*due, fresh, hooked):
            tags = {t["Key"] for t in self.sm.describe_secret(SecretId=arn)["Tags"]}
            self.assertIn("rekey:checked", tags, f"{arn} was checked in full")
        self.assertEqual(self.received_alerts(), [])

        # Run 2, past the grace period: the superseded keys are retired
        # (deactivated), the hook's included; nothing is rotated.
        time.sleep(GRACE_S + 1)
        desc, runs = self.run_machine({})
        self.assert_succeeded(desc)
        self.assertEqual(sum(r["failed"] for r in runs), 0, runs)
        self.assertEqual(sum(r["total"] for r in runs), len(due) + 1, f"only the secrets with a retirement due: {runs}")
        self.assertEqual(self.received_alerts(), [])

        # Every secret at the source: its user's keys in its account, its
        # stages in Secrets Manager.
        for secret in due:
            arn, account, old = secret
            new = rotated[arn]
            self.assertEqual(self.keys(secret), {new: "Active", old: "Inactive"}, arn)
            stages = self.stages(arn)
            self.assertEqual(sorted(stages.values()), [["AWSCURRENT"], ["AWSPREVIOUS"]], arn)
            for version, labels in stages.items():
                held = self.value(arn, VersionId=version)
                self.assertEqual(held["AccessKeyId"], new if labels == ["AWSCURRENT"] else old, arn)
                self.assertEqual(held.get("AccountId"), account, arn)
        self.assertEqual(self.keys(hooked), {hooked_current: "Active", hooked[2]: "Inactive"})
        self.assertEqual(self.current(hooked[0])["AccessKeyId"], hooked_current)
        self.assertEqual(sorted(self.stages(hooked[0]).values()), [["AWSCURRENT"], ["AWSPREVIOUS"]])
        self.assertEqual(self.keys(fresh), {fresh[2]: "Active"})
        self.assertEqual(list(self.stages(fresh[0]).values()), [["AWSCURRENT"]])
        # Each account's user is its own: three users named app, one key
        # pair each, none of another account's.
        all_keys = [set(self.keys(s)) for s in due]
        self.assertEqual(len(set.union(*all_keys)), 2 * len(due))
        self.assert_no_secret_leaked()

    def test_a_dependent_waits_in_the_run_for_its_admin_secrets_rotation(self):
        admin, admin_user, admin_old = self.scloud_user_with_secret("rekey/admin/scloud/{user}", {}, admin=True)
        dependent, user, old = self.scloud_user_with_secret("rekey/scloud/{user}", {"AdminSecretId": admin})
        # The admin's rotation, started by the pipeline's create and left
        # in progress.
        token = str(uuid.uuid4())
        status, body = self.invoke("rekey-create", {"SecretId": admin, "ClientRequestToken": token, "RotationPeriod": "0s"})
        self.assertEqual(status, 200, body[:300])
        self.assertIn("AWSPENDING", json.dumps(self.stages(admin)))
        refused = lambda: [line for line in self.watch_log_path.read_text().splitlines() if "RotationInProgress" in line]  # noqa: E731
        before = len(refused())

        execution = self.sfn.start_execution(
            stateMachineArn=self.machine, name=str(uuid.uuid4()),
            input=json.dumps({"SecretIds": [dependent], "RotationPeriod": "0s"}),
        )["executionArn"]
        # The dependent's create is refused once (it waits 5 s before the
        # next attempt): then the admin's rotation is finished.
        deadline = time.time() + 60
        while len(refused()) == before:
            self.assertLess(time.time(), deadline, "the dependent's create was refused while its admin rotated")
            self.watch_log.flush()
            time.sleep(0.2)
        self.assertTrue([line for line in refused()[before:] if admin in line], "the refusal names the admin secret")
        keys = self.scloud_call("GET", f"users/{user}/keys")
        self.assertEqual([k["AccessKeyId"] for k in keys], [old], "refused: nothing changed")
        for function in ("rekey-test", "rekey-finish"):
            status, body = self.invoke(function, {"SecretId": admin, "ClientRequestToken": token})
            self.assertEqual(status, 200, f"{function}: {body[:300]!r}")
        admin_new = self.current(admin)["AccessKeyId"]
        self.assertNotEqual(admin_new, admin_old)

        deadline = time.time() + 120
        while (desc := self.sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            self.assertLess(time.time(), deadline, "the execution finished in time")
            time.sleep(0.5)
        self.assert_succeeded(desc)
        runs = [self.sfn.describe_map_run(mapRunArn=r["mapRunArn"])["itemCounts"] for r in self.sfn.list_map_runs(executionArn=execution)["mapRuns"]]
        self.assertEqual([(r["total"], r["failed"]) for r in runs], [(1, 0)], runs)
        self.assertEqual(self.received_alerts(), [], "a wait, not a failure")
        # Rotated in this execution, its new key made with the admin's new
        # key; the admin's old key still active (its grace).
        new = self.current(dependent)["AccessKeyId"]
        self.assertNotEqual(new, old)
        self.secrets_seen.append(self.current(dependent)["AccessKeySecret"])
        made = [e for e in self.scloud_call("GET", "log") if e["Action"] == "CreateAccessKey" and e["UserName"] == user and e["Code"] == "OK"]
        self.assertEqual([e["Signer"] for e in made], [admin_new])
        keys = {k["AccessKeyId"]: k["Status"] for k in self.scloud_call("GET", f"users/{admin_user}/keys")}
        self.assertEqual(keys, {admin_old: "Active", admin_new: "Active"})
        self.assert_no_secret_leaked()

    def test_a_named_secret_outside_the_managed_path_is_reported(self):
        outsider = self.user_with_secret("outsider", path="/elsewhere/")
        # Out of the scheduled runs' way whatever the order of the tests.
        self.addCleanup(self.sm.untag_resource, SecretId=outsider[0], TagKeys=["rekey:managed"])
        desc, runs = self.run_machine({"SecretIds": [outsider[0]], "RotationPeriod": "0s"})
        # AWS fails the map run and the execution (one failed child of one
        # is past 10%); moto only counts it (see the docstring).
        self.assertIn(desc["status"], ("SUCCEEDED", "FAILED"))
        self.assertEqual([(r["total"], r["failed"]) for r in runs], [(1, 1)], runs)
        # Nothing changed, and each failure reached SNS once, with its
        # reason: the full check's, then the rotation's (a failed cleanup
        # does not stop the rotation, which fails here for the same reason).
        self.assertEqual(self.keys(outsider), {outsider[2]: "Active"})
        self.assertEqual(list(self.stages(outsider[0]).values()), [["AWSCURRENT"]])
        alerts = self.received_alerts()
        self.assertEqual(len(alerts), 2, alerts)
        for alert in alerts:
            body = json.loads(alert)
            self.assertEqual(body["SecretId"], outsider[0])
            self.assertEqual(body["Failure"]["Error"], "UserNotManaged")
            self.assertIn("REKEY_MANAGED_USER_PATH", json.loads(body["Failure"]["Cause"])["errorMessage"])
        self.assert_no_secret_leaked()


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    passed = result.testsRun - len(result.failures) - len(result.errors)
    print(f"statemachine: {passed} passed, {len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
