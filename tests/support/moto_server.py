"""Start moto_server on 127.0.0.1 with request signatures checked.

The first requests are not checked: they create an admin user, its policy
and its access key, and with --member-accounts, in each member account, the
roles rekey's member template would create there (see MEMBER_ROLES). Every
later request must be signed by a key moto knows, so a key that does not
authenticate really fails.

With --policy-gate, every call passes tests/support/policy_gate.py first,
which authorizes it against its signer's IAM policies, its real resource and
its conditions (moto's own authorization, which matches only Resource "*"
and ignores conditions, is switched off; moto still checks signatures).

Prints one JSON line: {"endpoint", "access_key_id", "secret_access_key"}.
With --until-stdin-closes (tests) the server stops when its parent goes
away; otherwise it runs until killed (the demo stops it by pid).
"""

import argparse
import json
import os
import sys
import threading

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--until-stdin-closes", action="store_true")
parser.add_argument("--no-auth", action="store_true", help="do not check signatures")
parser.add_argument(
    "--member-accounts",
    default="",
    help="comma-separated account ids: give each the member role (and a test admin role)",
)
parser.add_argument(
    "--policy-gate",
    action="store_true",
    help="evaluate every call's IAM policies in front of moto (tests/support/policy_gate.py)",
)
parser.add_argument(
    "--denying-accounts",
    default="",
    help="comma-separated account ids whose member role grants nothing",
)
args = parser.parse_args()
members = [a for a in args.member_accounts.split(",") if a]
denying = [a for a in args.denying_accounts.split(",") if a]

# Each member account: one AssumeRole, then three roles of two calls each.
CALLS_PER_MEMBER = 7
if not args.no_auth:
    # Read by moto at import time.
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(3 + CALLS_PER_MEMBER * (len(members) + len(denying)))

import boto3  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402

from moto.core.config import default_user_config  # noqa: E402

# No Docker here: a Lambda function moto is asked to invoke (RotateSecret
# with a RotationLambdaARN) answers a stub instead of running.
default_user_config["lambda"]["use_docker"] = False

if args.policy_gate:
    from werkzeug.serving import make_server  # noqa: E402
    from moto.moto_server.werkzeug_app import (  # noqa: E402
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import policy_gate  # noqa: E402

    policy_gate.install()

    class GatedMotoServer(ThreadedMotoServer):
        """moto behind the policy gate: each call is authorized by the
        gate against its real resource, then moto checks the signature."""

        def _server_entry(self):
            app = policy_gate.PolicyGate(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = GatedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
else:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
server.start()
host, port = server.get_host_and_port()
endpoint = f"http://{host}:{port}"

iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="bootstrap",
    aws_secret_access_key="bootstrap",
)
iam.create_user(UserName="rekey-admin")
iam.put_user_policy(
    UserName="rekey-admin",
    PolicyName="admin",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    ),
)
key = iam.create_access_key(UserName="rekey-admin")["AccessKey"]

MEMBER_ROLE = ("/rekey/", "rekey-member")
ADMIN_ROLE = ("/", "rekey-test-admin")
# infra/member.yaml's OperatorReadOnlyRole (OperatorRole=true), on the
# member role's path, with its read-only grants.
OPERATOR_ROLE = ("/rekey/", "rekey-operator-readonly")
OPERATOR_ACTIONS = ["iam:ListUsers", "iam:GetUser", "iam:ListUserTags", "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"]
KEY_ACTIONS = [
    "iam:GetUser",
    "iam:ListAccessKeys",
    "iam:CreateAccessKey",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
]


def policy(statement):
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def make_roles(account, grants):
    """The member role (IAM key actions on users under /rekey/, as the member
    template grants; nothing if not `grants`), the read-only operator role
    `rekey audit --account` assumes, and an admin role the tests act through
    as an operator of that account. moto checks no trust policy."""
    sts = boto3.client(
        "sts", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/bootstrap", RoleSessionName="bootstrap"
    )["Credentials"]
    member_iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    trust = policy({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    # moto matches an IAM call's resource only against "*" (AWS: the member
    # template scopes it to users under the managed path).
    member = {"Effect": "Allow", "Action": KEY_ACTIONS, "Resource": "*"}
    if not grants:
        member = {"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}
    for (path, name), statement in [
        (MEMBER_ROLE, member),
        (ADMIN_ROLE, {"Effect": "Allow", "Action": "*", "Resource": "*"}),
        (OPERATOR_ROLE, {"Effect": "Allow", "Action": OPERATOR_ACTIONS, "Resource": "*"}),
    ]:
        member_iam.create_role(Path=path, RoleName=name, AssumeRolePolicyDocument=trust)
        member_iam.put_role_policy(RoleName=name, PolicyName="rekey", PolicyDocument=policy(statement))


for account in members:
    make_roles(account, grants=True)
for account in denying:
    make_roles(account, grants=False)
print(
    json.dumps(
        {
            "endpoint": endpoint,
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
    ),
    flush=True,
)

if args.until_stdin_closes:
    sys.stdin.read()
    os._exit(0)
threading.Event().wait()
