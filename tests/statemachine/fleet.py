"""A fleet through the Distributed Map: the scheduled state machine run
for real over many secrets, for the benchmark.

The same harness as test_rotation.py (imported from it): moto_server with
two member accounts, signatures NOT checked (moto's Step Functions
interpreter signs its own calls with fixed test keys), its Step Functions
interpreter running infra/statemachine/rotation.asl.json with STANDARD
children (EXPRESS as deployed: moto runs only Standard children), and the
router that hands its Lambda invocations to the real function binaries
under `cargo lambda watch`. Everything listens on 127.0.0.1. Under load,
cargo lambda watch can leave an invocation undelivered (the function idle,
no answer): the router sends it again after 30 s (the steps are idempotent
by token) and counts it (`invocations_resent`).

N secrets are enrolled, spread over the central account and the two
member accounts (users under the managed path, each with its owning
secret), all due (the machine's RotationPeriod is 1s, and the fleet waits
past it). Run 1 (input `{}`) rotates them all; every secret is then checked
at the source (its user's keys in its account, its stages), and a wrong one
counts as failed. Run 2 right after (input `{"RotationPeriod": "90d"}`,
which overrides the default) has nothing due.

Prints one JSON object (or writes it to --out):
{"secrets", "accounts", "max_concurrency", "build", "child_execution_type",
 "signatures_checked", "due_run": {"wall_s", "rotated", "failed",
 "history_events", "children", "alerts", "cpu_s"}, "quiet_run": {...}}.

    .venv/bin/python tests/statemachine/fleet.py --secrets 30 --concurrency 8
"""

import argparse
import http.client
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import uuid

import boto3

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from test_rotation import (  # noqa: E402
    ACCOUNT, EXTERNAL_ID, FUNCTIONS, MEMBERS, REGION, ROOT, Router, StateMachineRun, alerts_queue,
    execute_state_machines, free_port, operator_iams, wait_for_port,
)

ACCOUNTS = [ACCOUNT, *MEMBERS]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """User + system CPU seconds of a live process."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def descendants(root):
    """The pids below `root`, from /proc."""
    parent = {}
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found.extend(kids)
        todo.extend(kids)
    return found


class Fleet:
    def __init__(self, release):
        self.procs = []
        self.release = release
        router_port = free_port()
        self.watch_port = free_port()
        env = dict(os.environ, MOTO_PORT=str(router_port))
        # --no-auth: signatures are not checked (see the docstring).
        self.moto = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"), str(ROOT / "tests/support/moto_server.py"), "--no-auth",
                "--until-stdin-closes", "--member-accounts", ",".join(MEMBERS),
            ],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        self.procs.append(self.moto)
        info = json.loads(self.moto.stdout.readline())
        self.endpoint = info["endpoint"]
        self.moto_port = int(self.endpoint.rsplit(":", 1)[1])
        Router.moto_port, Router.watch_port = self.moto_port, self.watch_port
        # An invocation takes well under a second here; one cargo lambda
        # watch leaves unanswered (seen under load: the function idle, the
        # request never handed to it) is sent again, and counted.
        Router.invoke_timeout, Router.invoke_retries = 30, 5
        self.router = http.server.ThreadingHTTPServer(("127.0.0.1", router_port), Router)
        threading.Thread(target=self.router.serve_forever, daemon=True).start()

        self.watch_log = open(ROOT / "target/fleet-watch.log", "w")
        fenv = dict(
            os.environ,
            AWS_ENDPOINT_URL=self.endpoint, AWS_REGION=REGION,
            AWS_ACCESS_KEY_ID=info["access_key_id"], AWS_SECRET_ACCESS_KEY=info["secret_access_key"],
            REKEY_MANAGED_USER_PATH="/rekey/", REKEY_TEST_SPACING="0s", AWS_LAMBDA_LOG_FORMAT="JSON",
            REKEY_MEMBER_ACCOUNTS=",".join(MEMBERS), REKEY_MEMBER_EXTERNAL_ID=EXTERNAL_ID,
        )
        fenv.pop("AWS_PROFILE", None)
        command = [
            str(ROOT / ".venv/bin/cargo-lambda"), "lambda", "watch",
            "--invoke-address", "127.0.0.1", "--invoke-port", str(self.watch_port),
        ]
        if release:
            command.append("--release")
        self.watch = subprocess.Popen(
            command, cwd=ROOT, env=fenv, stdout=self.watch_log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(self.watch)
        wait_for_port(self.watch_port, 600)
        # Each function is built and started on its first invocation: done
        # now, so the runs are timed by the functions alone.
        for name in FUNCTIONS:
            conn = http.client.HTTPConnection("127.0.0.1", self.watch_port, timeout=1800)
            conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body="{}")
            conn.getresponse().read()

        session = boto3.Session(
            aws_access_key_id=info["access_key_id"], aws_secret_access_key=info["secret_access_key"], region_name=REGION
        )
        self.sm = session.client("secretsmanager", endpoint_url=self.endpoint)
        self.sfn = session.client("stepfunctions", endpoint_url=self.endpoint)
        sns = session.client("sns", endpoint_url=self.endpoint)
        self.sqs = session.client("sqs", endpoint_url=self.endpoint)
        self.iams = operator_iams(session, self.endpoint, ACCOUNT)
        self.topic, self.queue = alerts_queue(sns, self.sqs)
        execute_state_machines(self.moto_port)

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, 15) if p is self.watch else p.kill()
            except ProcessLookupError:
                pass
            p.wait(timeout=30)
        self.router.shutdown()
        self.watch_log.close()

    def machine(self, max_concurrency, rotation_period):
        definition = StateMachineRun.definition(self.topic, max_concurrency=max_concurrency, rotation_period=rotation_period)
        return self.sfn.create_state_machine(
            name="rekey-rotation", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/rekey-sfn"
        )["stateMachineArn"]

    def enrol(self, i):
        """User i in its account, with one key and its owning secret:
        (secret arn, account, user, old key id)."""
        account = ACCOUNTS[i % len(ACCOUNTS)]
        user = f"fleet-{i:05d}"
        iam = self.iams[account]
        iam.create_user(UserName=user, Path="/rekey/")
        key = iam.create_access_key(UserName=user)["AccessKey"]
        value = {"UserName": user, "AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
        name = f"rekey/aws/{user}"
        if account != ACCOUNT:
            value["AccountId"] = account
            name = f"rekey/aws/{account}/{user}"
        arn = self.sm.create_secret(
            Name=name, SecretString=json.dumps(value), Tags=[{"Key": "rekey:managed", "Value": "true"}]
        )["ARN"]
        iam.tag_user(UserName=user, Tags=[{"Key": "rekey:owner", "Value": arn}])
        return arn, account, user, key["AccessKeyId"]

    def cpu(self):
        functions = sum(cpu_s(p) for p in descendants(self.watch.pid) if pathlib.Path(f"/proc/{p}/comm").exists()
                        and pathlib.Path(f"/proc/{p}/comm").read_text().startswith("rekey-"))
        return {"moto": cpu_s(self.moto.pid), "functions": functions, "harness": cpu_s(os.getpid())}

    def run(self, machine, given, limit_s):
        """Runs the machine with input `given` until it ends: its figures."""
        before = self.cpu()
        resent = Router.resent
        start = time.monotonic()
        execution = self.sfn.start_execution(stateMachineArn=machine, name=str(uuid.uuid4()), input=json.dumps(given))["executionArn"]
        while (desc := self.sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            if time.monotonic() - start > limit_s:
                raise SystemExit(f"fleet: the execution still runs after {limit_s}s")
            time.sleep(0.2)
        wall = time.monotonic() - start
        after = self.cpu()
        events, token = 0, None
        while True:
            page = self.sfn.get_execution_history(executionArn=execution, maxResults=1000, **({"nextToken": token} if token else {}))
            events += len(page["events"])
            token = page.get("nextToken")
            if not token:
                break
        counts = [
            self.sfn.describe_map_run(mapRunArn=r["mapRunArn"])["itemCounts"]
            for r in self.sfn.list_map_runs(executionArn=execution)["mapRuns"]
        ]
        return {
            "status": desc["status"],
            "wall_s": round(wall, 2),
            "history_events": events,
            "map_runs": len(counts),
            "children": sum(c["total"] for c in counts),
            "children_failed": sum(c["failed"] for c in counts),
            "cpu_s": {k: round(after[k] - before[k], 2) for k in before},
            "invocations_resent": Router.resent - resent,
        }

    def alerts(self):
        n = 0
        while messages := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            for m in messages:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
            n += len(messages)
        return n

    def check(self, secret):
        """Whether the secret was rotated and is right at the source: a new
        AWSCURRENT key, active in its account, at most two keys, no stray
        AWSPENDING."""
        arn, account, user, old = secret
        current = json.loads(self.sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
        keys = {k["AccessKeyId"]: k["Status"] for k in self.iams[account].list_access_keys(UserName=user)["AccessKeyMetadata"]}
        stages = [s for v in self.sm.describe_secret(SecretId=arn)["VersionIdsToStages"].values() for s in v]
        return (
            current["AccessKeyId"] != old
            and keys.get(current["AccessKeyId"]) == "Active"
            and len(keys) <= 2
            and current.get("AccountId", ACCOUNT) == account
            and "AWSPENDING" not in stages
            and stages.count("AWSCURRENT") == 1
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--build", choices=("release", "debug"), default="release",
                        help="how cargo lambda watch builds the functions")
    parser.add_argument("--limit", type=int, default=1200, help="seconds an execution may take before the fleet stops")
    parser.add_argument("--out")
    args = parser.parse_args()

    say = lambda *a: print("fleet:", *a, file=sys.stderr, flush=True)  # noqa: E731
    say(f"starting moto, the router and cargo lambda watch ({args.build})")
    fleet = Fleet(release=args.build == "release")
    try:
        machine = fleet.machine(args.concurrency, "1s")
        say(f"enrolling {args.secrets} secrets over {len(ACCOUNTS)} accounts")
        started = time.monotonic()
        secrets = [fleet.enrol(i) for i in range(args.secrets)]
        say(f"enrolled in {time.monotonic() - started:.1f}s")
        time.sleep(2)

        say(f"run 1: every secret due, MaxConcurrency {args.concurrency}")
        due = fleet.run(machine, {}, args.limit)
        due["alerts"] = fleet.alerts()
        ok = sum(fleet.check(s) for s in secrets)
        due["rotated"] = ok
        due["failed"] = args.secrets - ok
        say(json.dumps(due))

        say("run 2: nothing due")
        quiet = fleet.run(machine, {"RotationPeriod": "90d"}, args.limit)
        quiet["alerts"] = fleet.alerts()
        quiet["items"] = quiet["children"]
        say(json.dumps(quiet))
    finally:
        fleet.close()

    result = {
        "secrets": args.secrets,
        "accounts": len(ACCOUNTS),
        "max_concurrency": args.concurrency,
        "build": args.build,
        "child_execution_type": "STANDARD",
        "signatures_checked": False,
        "due_run": due,
        "quiet_run": quiet,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0 if due["status"] == "SUCCEEDED" and quiet["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
