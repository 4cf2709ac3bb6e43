"""The demo's view of moto: set up a user and a managed secret, play Secrets
Manager starting a rotation, and show keys and stages. Signs as the admin
whose key is in the environment (AWS_ACCESS_KEY_ID, ...)."""

import json
import sys
import uuid

import boto3

USER = "alice"
SECRET = "rekey/demo/alice"


def clients():
    return boto3.client("iam"), boto3.client("secretsmanager")


def setup():
    iam, sm = clients()
    iam.create_user(UserName=USER, Path="/rekey/")
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    sm.create_secret(
        Name=SECRET,
        SecretString=json.dumps(
            {
                "Provider": "aws",
                "UserName": USER,
                "AccessKeyId": key["AccessKeyId"],
                "SecretAccessKey": key["SecretAccessKey"],
            }
        ),
        Tags=[{"Key": "rekey:managed", "Value": "true"}],
    )


def stages(sm):
    d = sm.describe_secret(SecretId=SECRET)
    return {v: s for v, s in d.get("VersionIdsToStages", {}).items() if s}


def start_rotation():
    """What Secrets Manager does before invoking the hook: a new version for
    a new token, staged AWSPENDING, with AWSCURRENT left where it was. moto
    moves AWSCURRENT onto the new version, so the labels are put back."""
    _, sm = clients()
    before = stages(sm)
    old = next(v for v, s in before.items() if "AWSCURRENT" in s)
    token = str(uuid.uuid4())
    sm.rotate_secret(SecretId=SECRET, ClientRequestToken=token, RotationRules={"AutomaticallyAfterDays": 30})
    sm.update_secret_version_stage(SecretId=SECRET, VersionStage="AWSCURRENT", MoveToVersionId=old, RemoveFromVersionId=token)
    if "AWSPREVIOUS" in stages(sm).get(token, []):
        sm.update_secret_version_stage(SecretId=SECRET, VersionStage="AWSPREVIOUS", RemoveFromVersionId=token)
    sm.update_secret_version_stage(SecretId=SECRET, VersionStage="AWSPENDING", MoveToVersionId=token)
    print(token)


def show(title):
    iam, sm = clients()
    current = json.loads(sm.get_secret_value(SecretId=SECRET, VersionStage="AWSCURRENT")["SecretString"])
    print(f"--- {title} ---")
    print(f"IAM access keys of {USER}:")
    for k in sorted(iam.list_access_keys(UserName=USER)["AccessKeyMetadata"], key=lambda k: k["CreateDate"]):
        mark = "  <- AWSCURRENT" if k["AccessKeyId"] == current.get("AccessKeyId") else ""
        print(f"  {k['AccessKeyId']}  {k['Status']:<8}  created {k['CreateDate']:%H:%M:%S}{mark}")
    print(f"Versions of secret {SECRET}:")
    for version, labels in sorted(stages(sm).items(), key=lambda kv: "AWSCURRENT" not in kv[1]):
        value = json.loads(sm.get_secret_value(SecretId=SECRET, VersionId=version).get("SecretString") or "{}") if "AWSPENDING" not in labels or "AWSCURRENT" in labels else {}
        print(f"  {version}  {','.join(sorted(labels)):<24}  AccessKeyId={value.get('AccessKeyId', '-')}")
    sts = boto3.client(
        "sts",
        aws_access_key_id=current["AccessKeyId"],
        aws_secret_access_key=current["SecretAccessKey"],
    )
    print(f"The AWSCURRENT key authenticates as {sts.get_caller_identity()['Arn']}")
    print()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "setup":
        setup()
    elif cmd == "start-rotation":
        start_rotation()
    elif cmd == "show":
        show(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
