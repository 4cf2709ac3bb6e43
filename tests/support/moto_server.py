"""Start moto_server on 127.0.0.1 with request signatures checked.

The first three requests are not checked: they create an admin user, its
policy and its access key. Every later request must be signed by a key moto
knows, so a key that does not authenticate really fails.

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
args = parser.parse_args()

if not args.no_auth:
    # Read by moto at import time.
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

import boto3  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402

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
