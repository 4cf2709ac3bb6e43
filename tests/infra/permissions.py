"""What each function's role grants, read from the SAM-transformed template.

    permissions.py roles [--template PATH] [--param NAME=VALUE ...]
        Prints, as JSON, each function's role policies as a deployment with
        these parameters (the others: their defaults) would hold them: every
        intrinsic resolved (Ref, Fn::Sub, Fn::GetAtt, Fn::If, ...) in the
        account 123456789012, region us-east-1, stack "rekey". The
        least-privilege test (tests/tests/least_privilege.rs) gives each
        function's stand-in principal exactly these policies.

    permissions.py table [--check]
        Writes docs/permissions.md: per function, each action its role
        grants, on which resource, under which conditions, when (the
        template's condition) and why (the bench's reason for the call,
        docs/performance.md, or the reason below for a grant the bench's
        rotation does not exercise). With --check, fails if the file differs
        from what the template gives (scripts/test).

The transform is the pinned aws-sam-translator of .venv-infra.
"""

import argparse
import json
import os
import pathlib
import re
import sys

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs/permissions.md"
ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "rekey"
NO_VALUE = {"Ref": "AWS::NoValue"}

# The bench's steps (docs/performance.md, "API calls per rotation") of each function.
STEPS = {
    "hook": ["createSecret", "setSecret", "testSecret", "finishSecret"],
    "create": ["rekey-create"],
    "test": ["rekey-test"],
    "finish": ["rekey-finish"],
    "cleanup": ["rekey-cleanup", "triage"],
}

# Why a statement exists when the bench's rotation does not make its calls
# (the runtime's own writes, an encrypted secret, an admin key, a member
# account), by statement Sid ("Sid action" for one action of it).
STATEMENT_REASONS = {
    "OwnLogGroup": "the Lambda runtime writes the function's logs to its own log group, and no other",
    "Traces": "X-Ray traces of each invocation (Tracing: Active); X-Ray supports no resource-level permissions",
    "OwningSecretsKey": (
        "only when the owning secrets are encrypted with SecretsKmsKeyArn: Secrets Manager decrypts "
        "(GetSecretValue) and encrypts (PutSecretValue: GenerateDataKey) with the caller's permission, "
        "for the secrets the condition names only (kms:ViaService, kms:EncryptionContext:SecretARN)"
    ),
    "AdminSecrets": (
        "the admin key pair an Alibaba RAM or SCloud secret names (AdminSecretId) signs that provider's "
        "calls; read once per invocation"
    ),
    "AdminSecrets secretsmanager:DescribeSecret": (
        "whether an admin secret's own rotation is in progress (README \"Deploy\", admin secrets) before "
        "its key signs a call"
    ),
    "AdminSecretsKey": "the admin secrets' customer key, through Secrets Manager and for those secrets only",
    "MemberRole": (
        "a secret naming a member account (AccountId) has its user's keys rotated through the member "
        "role there (infra/member.yaml)"
    ),
}

# Why a function may make a call the bench's rotation does not make, by
# (function, action).
ACTION_REASONS = {
    ("hook", "iam:DeleteAccessKey"): (
        "createSecret makes room at the key limit: deletes the oldest inactive key, and keys an "
        "interrupted run made that no version holds"
    ),
    ("create", "iam:DeleteAccessKey"): (
        "makes room at the key limit: deletes the oldest inactive key, and keys an interrupted run "
        "made that no version holds"
    ),
    ("hook", "iam:GetAccessKeyLastUsed"): "a key that may be an orphan of an interrupted run is deleted only if unused",
    ("create", "iam:GetAccessKeyLastUsed"): "a key that may be an orphan of an interrupted run is deleted only if unused",
    ("cleanup", "iam:GetAccessKeyLastUsed"): (
        "a superseded key used within REKEY_IDLE_BEFORE_DEACTIVATE stays active: its last use is "
        "checked before it is deactivated"
    ),
    ("hook", "iam:UpdateAccessKey"): "finishSecret deactivates the superseded key at promotion (DeactivateAfter 0)",
    ("finish", "iam:GetUser"): (
        "with DeactivateAfter 0, the user's path and rekey:owner tag are checked before its superseded "
        "key is deactivated"
    ),
    ("finish", "iam:ListAccessKeys"): "with DeactivateAfter 0: the superseded key must be one of the user's keys",
    ("finish", "iam:UpdateAccessKey"): "with DeactivateAfter 0, deactivates the superseded key at promotion",
    ("cleanup", "iam:UpdateAccessKey"): "deactivates a superseded key after REKEY_DEACTIVATE_AFTER",
    ("cleanup", "iam:DeleteAccessKey"): "deletes an inactive key after REKEY_DELETE_AFTER, and orphans of an interrupted run",
    ("cleanup", "secretsmanager:UntagResource"): (
        "drops the records (rekey:created:, rekey:superseded:, rekey:inactive:) of a deleted key, and "
        "rekey:paused-since once a secret is no longer paused"
    ),
    ("create", "secretsmanager:UpdateSecretVersionStage"): "takes AWSPENDING off a rotation that can never finish",
    ("cleanup", "secretsmanager:UpdateSecretVersionStage"): "takes AWSPENDING off a rotation that can never finish",
    ("hook", "events:PutEvents"): "Rotation Failed when a step fails, and Key Deactivated with DeactivateAfter 0",
    ("create", "events:PutEvents"): "Rotation Failed when creating the key fails (README \"Events\")",
    ("test", "events:PutEvents"): "Rotation Failed when the new key never authenticates (README \"Events\")",
    ("cleanup", "events:PutEvents"): "the Key Deactivated and Key Deleted events of the keys retired, ten to a call",
}


def load_template(path):
    template, matches = decode_str(pathlib.Path(path).read_text())
    if template is None:
        raise SystemExit(f"{path}: {matches}")
    return template


def transformed(template):
    """The template as SAM deploys it."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(template, default=str))
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = "s3://bucket/asl.json"

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(template, {}, NoManagedPolicies())


def functions(template):
    """(short name, Lambda resource) of each function (hook, create, ...)."""
    out = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary", "")
        if binary.startswith("rekey-"):
            out.append((binary.removeprefix("rekey-"), resource))
    order = list(STEPS)
    return sorted(out, key=lambda f: order.index(f[0]) if f[0] in order else len(order))


def role_of(template, function):
    role = function["Properties"]["Role"]
    name = role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"].split(".")[0]
    resource = template["Resources"][name]
    if resource["Properties"].get("ManagedPolicyArns"):
        raise SystemExit(f"{name} has managed policies: this script reads inline policies only")
    return name, resource


# ------------------------------------------------------------ resolution


class Resolver:
    """CloudFormation's intrinsics for one set of parameters."""

    def __init__(self, template, params):
        self.template = template
        self.values = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        for name, value in params.items():
            if name not in self.values:
                raise SystemExit(f"no parameter {name} in the template")
            self.values[name] = value
        self.values.update(
            {
                "AWS::Partition": "aws",
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::StackName": STACK,
                "AWS::URLSuffix": "amazonaws.com",
            }
        )
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = self.truth(self.template["Conditions"][name])
        return self.conditions[name]

    def truth(self, node):
        (fn, arg), = node.items()
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Equals":
            return self.resolve(arg[0]) == self.resolve(arg[1])
        if fn == "Fn::Not":
            return not self.truth(arg[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in arg)
        raise SystemExit(f"unsupported condition function {fn}")

    def resource_arn(self, name, attribute=None):
        """A stand-in for a resource's Ref or Fn::GetAtt."""
        resource = self.template["Resources"][name]
        kind = resource["Type"]
        physical = f"{STACK}-{name}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}:*" if attribute else physical
        if kind == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{physical}" if attribute else physical
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{physical}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}"
        if kind == "AWS::KMS::Key":
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{physical}"
        return f"arn:aws:stand-in:{REGION}:{ACCOUNT}:{physical}"

    def ref(self, name):
        if name in self.values:
            return self.values[name]
        if name in self.template["Resources"]:
            return self.resource_arn(name)
        raise SystemExit(f"unknown Ref {name}")

    def sub(self, text, variables):
        def fill(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.resource_arn(resource, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", fill, text)

    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(v) for v in node]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if fn == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                return self.sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
            if fn == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.resource_arn(name, attribute)
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in self.resolve(arg[1]))
            if fn == "Fn::FindInMap":
                m, k1, k2 = (self.resolve(a) for a in arg)
                return self.template["Mappings"][m][k1][k2]
            if fn.startswith("Fn::") or fn == "Condition":
                raise SystemExit(f"unsupported intrinsic {fn}")
        out = {}
        for key, value in node.items():
            value = self.resolve(value)
            if value is not NO_VALUE:
                out[key] = value
        return out


def role_policies(template_path, params):
    """{function: {"role": logical id, "policies": [{"name", "document"}]}}."""
    template = transformed(load_template(template_path))
    resolver = Resolver(template, params)
    out = {}
    for name, function in functions(template):
        role_name, role = role_of(template, function)
        policies = resolver.resolve(role["Properties"].get("Policies", []))
        out[name] = {
            "role": role_name,
            "policies": [{"name": p["PolicyName"], "document": p["PolicyDocument"]} for p in policies],
        }
    return out


# ------------------------------------------------------------ the table


def branches(value, when=()):
    """(conditions, value) for each branch of nested Fn::If but AWS::NoValue;
    a negated condition is written "not X"."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, yes, no = value["Fn::If"]
        yield from branches(yes, when + (name,))
        yield from branches(no, when + (f"not {name}",))
    elif value != NO_VALUE:
        yield when, value


def show(node):
    """An unresolved value as the template writes it."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return ", ".join(show(v) for v in node)
    (fn, arg), = node.items()
    if fn == "Fn::Sub":
        return arg if isinstance(arg, str) else arg[0]
    if fn == "Ref":
        return "${" + arg + "}"
    if fn == "Fn::GetAtt":
        return ".".join(arg) if isinstance(arg, list) else arg
    if fn == "Fn::If":
        parts = [f"{show(v)} (when {' and '.join(w)})" for w, v in branches(node)]
        return ", ".join(parts)
    return json.dumps(node)


def show_conditions(condition):
    if not condition:
        return ""
    if isinstance(condition, dict) and set(condition) == {"Fn::If"}:
        parts = []
        for when, c in branches(condition):
            parts.append(f"{' and '.join(when)}: {show_conditions(c) or 'none'}")
        return "; ".join(parts)
    parts = []
    for operator, keys in condition.items():
        for key, values in keys.items():
            values = values if isinstance(values, list) else [values]
            parts.append(f"{operator} `{key}` = " + ", ".join(f"`{show(v)}`" for v in values))
    return "; ".join(parts)


def show_truth(node):
    (fn, arg), = node.items()
    if fn == "Condition":
        return arg
    if fn == "Fn::Equals":
        return f"{show(arg[0])} = {json.dumps(show(arg[1]))}"
    if fn == "Fn::Not":
        inner = arg[0]
        if set(inner) == {"Fn::Equals"}:
            return f"{show(inner['Fn::Equals'][0])} ≠ {json.dumps(show(inner['Fn::Equals'][1]))}"
        return f"not ({show_truth(inner)})"
    if fn in ("Fn::And", "Fn::Or"):
        word = " and " if fn == "Fn::And" else " or "
        return "(" + word.join(show_truth(a) for a in arg) + ")"
    return json.dumps(node)


def bench_reasons():
    """(step, "service:Action") -> reason, from the tables of docs/performance.md's
    "API calls per rotation" (which tests/tests/calls.rs holds to the calls
    the steps make)."""
    text = (ROOT / "docs/performance.md").read_text()
    section = next(s for s in text.split("\n## ") if s.startswith("API calls per rotation"))
    reasons = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")]
        # | step | service | action | calls | why |
        if len(cells) < 7 or not cells[4].isdigit():
            continue
        reasons.setdefault((cells[1], f"{cells[2]}:{cells[3]}"), cells[5].replace("\\|", "|"))
    if not reasons:
        raise SystemExit("docs/performance.md: no table of API calls per rotation")
    return reasons


def why(function, sid, action, bench):
    if f"{sid} {action}" in STATEMENT_REASONS:
        return STATEMENT_REASONS[f"{sid} {action}"]
    if sid in STATEMENT_REASONS:
        return STATEMENT_REASONS[sid]
    steps = [s for s in STEPS.get(function, []) if (s, action) in bench]
    if steps:
        distinct = []
        for s in steps:
            if bench[(s, action)] not in [r for _, r in distinct]:
                distinct.append((s, bench[(s, action)]))
        if len(STEPS[function]) == 1 and len(distinct) == 1:
            return distinct[0][1]
        return "; ".join(f"{s}: {r}" for s, r in distinct)
    if (function, action) in ACTION_REASONS:
        return ACTION_REASONS[(function, action)]
    raise SystemExit(
        f"rekey-{function}'s role grants {action} (statement {sid}) and no reason is known: the bench "
        f"does not make the call (docs/performance.md) and tests/infra/permissions.py gives none"
    )


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(template_path):
    raw = load_template(template_path)
    template = transformed(raw)
    bench = bench_reasons()
    used_conditions = set()
    lines = [
        "# Permissions",
        "",
        "What each function's role grants, from the SAM-transformed `infra/template.yaml`, and why.",
        "Generated by `tests/infra/permissions.py table`; `scripts/test` fails when the template and",
        "this page disagree (`permissions.py table --check`). The reasons are the benchmark's for",
        "each call (\"API calls per rotation\" in `docs/performance.md`, which",
        "`tests/tests/calls.rs` holds to the calls the steps make),",
        "or, for a grant its rotation does not exercise, the generator's own.",
        "",
        "`tests/tests/least_privilege.rs` proves the grants: every function runs signed as a",
        "principal holding exactly its role's policies (the template transformed, its parameters",
        "substituted), through a policy-evaluating layer in front of moto (`tests/support/policy_gate.py`)",
        "that matches each call against the real resource ARN and the conditions below: every path",
        "completes with no denial, and the same credentials calling AWS directly cannot touch a user",
        "outside the managed path, a secret that is not an owning secret, or a tag rekey does not own.",
        "",
        "STS `GetCallerIdentity` (the key test) is signed with the new key itself and needs no grant.",
        "Resources are written as the template writes them; \"when\" names the template's condition",
        "under which the statement exists (always, if empty).",
    ]
    for name, function in functions(template):
        role_name, role = role_of(template, function)
        lines += [
            "",
            f"## rekey-{name} (`{role_name}`)",
            "",
            "| policy | statement | action | resource | conditions | when | why |",
            "|---|---|---|---|---|---|---|",
        ]
        for policy_entry in role["Properties"].get("Policies", []):
            for policy_when, policy in branches(policy_entry):
                for entry in policy["PolicyDocument"]["Statement"]:
                    for stmt_when, statement in branches(entry):
                        when = policy_when + stmt_when
                        used_conditions.update(w.removeprefix("not ") for w in when)
                        acts = statement["Action"]
                        acts = [acts] if isinstance(acts, str) else acts
                        for action in acts:
                            lines.append(
                                "| "
                                + " | ".join(
                                    cell(c)
                                    for c in [
                                        policy["PolicyName"],
                                        statement.get("Sid", ""),
                                        f"`{action}`" if statement["Effect"] == "Allow" else f"Deny `{action}`",
                                        f"`{show(statement['Resource'])}`",
                                        show_conditions(statement.get("Condition")),
                                        " and ".join(when),
                                        why(name, statement.get("Sid", ""), action, bench),
                                    ]
                                )
                                + " |"
                            )
    lines += ["", "## The template's conditions", ""]
    conditions = template["Conditions"]
    pending = sorted(used_conditions)
    seen = set()
    while pending:
        c = pending.pop(0)
        if c in seen:
            continue
        seen.add(c)
        pending += re.findall(r'"Condition": "(\w+)"', json.dumps(conditions[c]))
    for c in sorted(seen):
        lines.append(f"- `{c}`: {cell(show_truth(conditions[c]))}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    roles = sub.add_parser("roles")
    roles.add_argument("--template", default=str(ROOT / "infra/template.yaml"))
    roles.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    tab = sub.add_parser("table")
    tab.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.command == "roles":
        params = dict(p.split("=", 1) for p in args.param)
        json.dump(role_policies(args.template, params), sys.stdout, indent=1, sort_keys=True)
        print()
        return
    text = table(ROOT / "infra/template.yaml")
    if args.check:
        current = TABLE.read_text() if TABLE.exists() else ""
        if current != text:
            import difflib

            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), "docs/permissions.md", "from the template"
                )
            )
            raise SystemExit(
                "docs/permissions.md disagrees with infra/template.yaml: run "
                ".venv-infra/bin/python tests/infra/permissions.py table"
            )
        print("docs/permissions.md agrees with infra/template.yaml")
        return
    TABLE.write_text(text)
    print(f"wrote {TABLE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
