"""A small world on moto for the demo and for running the functions by hand:
two IAM users under /rekey/, each with one key and a managed secret holding
it. Plays Secrets Manager starting a rotation, shows keys and stages, and
checks that a rotation ended well. Signs as the admin whose key is in the
environment (AWS_ACCESS_KEY_ID, ...; `scripts/local start` sets them).

    setup                      create the users and secrets below
    start-rotation SECRET      what Secrets Manager does before calling the hook; prints the token
    show SECRET [TITLE]        the user's keys and the secret's versions
    verify SECRET...           each secret rotated: a new key is AWSCURRENT, active and authenticating
"""

import json
import sys
import uuid

import boto3

# Secret name -> IAM user. Each secret is its user's owning secret
# (rekey/aws/<user>). One secret for each driver, so that running the
# pipeline and then the hook rotates two users, each with room for a key.
WORLD = {
    "rekey/aws/alice": "alice",  # the hook (events/hook-*.json, scripts/demo)
    "rekey/aws/bob": "bob",  # the pipeline (events/create.json, ...)
}


def clients():
    return boto3.client("iam"), boto3.client("secretsmanager")


def setup():
    iam, sm = clients()
    for secret, user in WORLD.items():
        iam.create_user(UserName=user, Path="/rekey/")
        key = iam.create_access_key(UserName=user)["AccessKey"]
        arn = sm.create_secret(
            Name=secret,
            SecretString=json.dumps(
                {
                    "Provider": "aws",
                    "UserName": user,
                    "AccessKeyId": key["AccessKeyId"],
                    "SecretAccessKey": key["SecretAccessKey"],
                }
            ),
            Tags=[{"Key": "rekey:managed", "Value": "true"}],
        )["ARN"]
        # Enrolment: the user names its owning secret (the functions cannot tag users).
        iam.tag_user(UserName=user, Tags=[{"Key": "rekey:owner", "Value": arn}])
        print(f"IAM user {user} (path /rekey/) with key {key['AccessKeyId']}, owned by managed secret {secret}")


def stages(sm, secret):
    d = sm.describe_secret(SecretId=secret)
    return {v: s for v, s in d.get("VersionIdsToStages", {}).items() if s}


def holding(labels, stage):
    return next((v for v, s in labels.items() if stage in s), None)


def put_stage(sm, secret, stage, version):
    """Puts `stage` on `version` (None: on no version), from wherever it is."""
    at = holding(stages(sm, secret), stage)
    if at != version:
        moves = ({"MoveToVersionId": version} if version else {}) | ({"RemoveFromVersionId": at} if at else {})
        sm.update_secret_version_stage(SecretId=secret, VersionStage=stage, **moves)


def start_rotation(secret):
    """What Secrets Manager does before invoking the hook: rotation turned
    on, a version for a new token staged AWSPENDING, AWSCURRENT and
    AWSPREVIOUS left where they were. moto's RotateSecret moves AWSCURRENT
    onto the new version (and AWSPREVIOUS onto the old current one), so the
    labels are put back where AWS leaves them."""
    _, sm = clients()
    before = stages(sm, secret)
    current, previous = holding(before, "AWSCURRENT"), holding(before, "AWSPREVIOUS")
    token = str(uuid.uuid4())
    sm.rotate_secret(SecretId=secret, ClientRequestToken=token, RotationRules={"AutomaticallyAfterDays": 30})
    for stage, version in (("AWSCURRENT", current), ("AWSPREVIOUS", previous), ("AWSPENDING", token)):
        put_stage(sm, secret, stage, version)
    after = stages(sm, secret)
    expected = {current: ["AWSCURRENT"], token: ["AWSPENDING"]} | ({previous: ["AWSPREVIOUS"]} if previous else {})
    assert {v: sorted(s) for v, s in after.items()} == expected, f"stages of {secret} after start-rotation: {after}"
    print(token)


def value(sm, secret, version):
    return json.loads(sm.get_secret_value(SecretId=secret, VersionId=version).get("SecretString") or "{}")


def caller(credential):
    sts = boto3.client(
        "sts",
        aws_access_key_id=credential["AccessKeyId"],
        aws_secret_access_key=credential["SecretAccessKey"],
    )
    return sts.get_caller_identity()["Arn"]


def show(secret, title=None):
    iam, sm = clients()
    user = WORLD.get(secret) or sys.exit(f"unknown secret {secret}: the world has {', '.join(WORLD)}")
    labels = stages(sm, secret)
    current = value(sm, secret, holding(labels, "AWSCURRENT"))
    print(f"--- {title or secret} ---")
    print(f"IAM access keys of {user}:")
    for k in sorted(iam.list_access_keys(UserName=user)["AccessKeyMetadata"], key=lambda k: k["CreateDate"]):
        mark = "  <- AWSCURRENT" if k["AccessKeyId"] == current.get("AccessKeyId") else ""
        print(f"  {k['AccessKeyId']}  {k['Status']:<8}  created {k['CreateDate']:%H:%M:%S}{mark}")
    print(f"Versions of secret {secret}:")
    for version, names in sorted(labels.items(), key=lambda kv: "AWSCURRENT" not in kv[1]):
        # An AWSPENDING version Secrets Manager made holds no value until createSecret.
        held = value(sm, secret, version) if "AWSPENDING" not in names else {}
        print(f"  {version}  {','.join(sorted(names)):<24}  AccessKeyId={held.get('AccessKeyId', '-')}")
    print(f"The AWSCURRENT key authenticates as {caller(current)}")
    print()


def verify(secrets):
    """Each secret rotated: AWSCURRENT holds a key other than AWSPREVIOUS's,
    that key is the user's and active, it authenticates as the user, and no
    rotation is left pending."""
    iam, sm = clients()
    for secret in secrets:
        user = WORLD[secret]
        labels = stages(sm, secret)
        current, previous = holding(labels, "AWSCURRENT"), holding(labels, "AWSPREVIOUS")
        problems = []
        if holding(labels, "AWSPENDING"):
            problems.append("a rotation is still pending")
        if not previous:
            problems.append("it never rotated (no AWSPREVIOUS version)")
        new = value(sm, secret, current)
        if previous and value(sm, secret, previous).get("AccessKeyId") == new.get("AccessKeyId"):
            problems.append("AWSCURRENT holds the same key as AWSPREVIOUS")
        keys = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
        if keys.get(new.get("AccessKeyId")) != "Active":
            problems.append(f"the AWSCURRENT key is not an active key of {user}")
        else:
            arn = caller(new)
            if not arn.endswith(f":user/rekey/{user}"):
                problems.append(f"the AWSCURRENT key authenticates as {arn}, not {user}")
        if problems:
            sys.exit(f"{secret}: " + "; ".join(problems))
        print(f"{secret}: rotated; the new key {new['AccessKeyId']} is AWSCURRENT, active and authenticates as {user}")


if __name__ == "__main__":
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "setup" and not args:
        setup()
    elif cmd == "start-rotation" and len(args) == 1:
        start_rotation(args[0])
    elif cmd == "show" and 1 <= len(args) <= 2:
        show(*args)
    elif cmd == "verify" and args:
        verify(args)
    else:
        sys.exit(__doc__)
