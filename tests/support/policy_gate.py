"""A policy-evaluating layer in front of moto (moto_server.py --policy-gate).

moto checks a plain user's IAM and Secrets Manager calls against Resource
"*" only and ignores conditions, so a scoped grant can neither be proven nor
broken there. This WSGI layer sits in front of moto's app and, for every
request signed by a principal moto knows (an IAM user, or an assumed role),
evaluates that principal's policies as held by moto (inline, attached, its
groups') the way IAM does:

- the action (`service:Action`) against Action / NotAction;
- the real resource ARN against Resource / NotResource: the IAM user's ARN
  with its path, the secret's full ARN, the event bus's, the role's;
- the condition keys rekey's template uses: `aws:ResourceTag/<key>` (the
  secret's or the user's tags), `aws:RequestTag/<key>` and `aws:TagKeys`
  (TagResource, UntagResource, CreateSecret), `events:source` (each
  PutEvents entry), and, for a secret encrypted with a customer key, the
  KMS call Secrets Manager makes on the caller's behalf (`kms:Decrypt` for
  GetSecretValue, `kms:GenerateDataKey` for PutSecretValue) with
  `kms:ViaService` and `kms:EncryptionContext:SecretARN`;
- an explicit Deny wins over any Allow; no Allow is a denial.

A denied call is answered AccessDenied in the service's dialect and never
reaches moto. Every decision is kept (GET /_policy_gate/log; DELETE forgets
them): the principal, action, resource, context keys and, for a denial, why.
No request parameter but names, tags and ids is kept (no secret value).

moto's own authorization is switched off by `install` (the layer decides);
moto still checks every signature. STS GetCallerIdentity is always allowed,
as in AWS.
"""

import io
import json
import re
import threading
import urllib.parse

LOG_PATH = "/_policy_gate/log"
SET_OPERATORS = ("ForAllValues:", "ForAnyValue:")
NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
DEFAULT_KMS = "alias/aws/secretsmanager"
# Actions whose resource is the secret named by SecretId.
SECRET_ID = "SecretId"


class Unsupported(Exception):
    """A policy uses something this layer cannot evaluate: a denial that
    says so, never a silent Allow."""


def install():
    """Switches moto's own authorization off: this layer decides."""
    from moto.iam.access_control import IAMRequest

    IAMRequest.check_action_permitted = lambda self, resource: None


# ------------------------------------------------------------ evaluation


def as_list(value):
    return value if isinstance(value, list) else [value]


def wildcard(pattern, value, ignore_case=False):
    """IAM's matching: `*` any run of characters, `?` any one."""
    if "${" in pattern:
        raise Unsupported(f"policy variable in {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S | (re.I if ignore_case else 0)) is not None


def action_matches(patterns, action):
    return any(wildcard(p, action, ignore_case=True) for p in as_list(patterns))


def resource_matches(patterns, resource):
    return any(wildcard(p, resource) for p in as_list(patterns))


def compare(operator, expected, actual):
    """One value against one of the condition's values."""
    base = operator.removesuffix("IfExists")
    if base in ("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals"):
        if base.startswith("Arn"):
            return wildcard(expected, actual)
        return expected == actual
    if base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return expected.lower() == actual.lower()
    if base in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike"):
        return wildcard(expected, actual)
    if base == "Bool":
        return str(expected).lower() == str(actual).lower()
    raise Unsupported(f"condition operator {operator}")


def condition_holds(operator, key, expected, context):
    """Whether one `operator: {key: expected}` holds in `context` (keys
    lower-cased; each value a list)."""
    expected = [str(e) for e in as_list(expected)]
    values = context.get(key.lower())
    qualifier = ""
    for q in SET_OPERATORS:
        if operator.startswith(q):
            qualifier, operator = q, operator[len(q):]
    base = operator.removesuffix("IfExists")
    if base == "Null":
        absent = values is None or values == []
        return any((e.lower() == "true") == absent for e in expected)
    negated = base in NEGATED

    def one(v):
        hit = any(compare(operator, e, v) for e in expected)
        return not hit if negated else hit

    if qualifier == "ForAllValues:":
        return all(one(v) for v in values or [])
    if qualifier == "ForAnyValue:":
        return any(one(v) for v in values or [])
    if values is None:
        return operator.endswith("IfExists") or negated
    return any(one(v) for v in values) if not negated else all(one(v) for v in values)


def unmet_conditions(statement, context):
    """The conditions of `statement` that do not hold, as text (none: [])."""
    unmet = []
    for operator, keys in statement.get("Condition", {}).items():
        for key, expected in keys.items():
            if not condition_holds(operator, key, expected, context):
                unmet.append(f"{operator} {key} {json.dumps(expected)} (request: {json.dumps(context.get(key.lower()))})")
    return unmet


def evaluate(policies, action, resource, context):
    """(allowed, explanation) for `action` on `resource` under `policies`
    [(name, document)]: explicit Deny, then Allow, else the implicit deny."""
    allow = None
    near = []
    for name, document in policies:
        for i, st in enumerate(as_list(document.get("Statement", []))):
            label = f"{name}/{st.get('Sid') or i}"
            if "Action" in st and not action_matches(st["Action"], action):
                continue
            if "NotAction" in st and action_matches(st["NotAction"], action):
                continue
            if "Resource" in st and not resource_matches(st["Resource"], resource):
                near.append(f"{label}: resource {json.dumps(st['Resource'])} does not match")
                continue
            if "NotResource" in st and resource_matches(st["NotResource"], resource):
                near.append(f"{label}: NotResource {json.dumps(st['NotResource'])} excludes it")
                continue
            unmet = unmet_conditions(st, context)
            if unmet:
                near.append(f"{label}: condition not met: " + "; ".join(unmet))
                continue
            if st.get("Effect") == "Deny":
                return False, f"explicitly denied by {label}"
            allow = allow or label
    if allow:
        return True, f"allowed by {allow}"
    why = "no statement allows it"
    if near:
        why += " (statements for this action: " + " | ".join(near) + ")"
    else:
        why += " (no statement names this action)"
    return False, why


# ------------------------------------------------------------ requests


def principal_of(key_id, headers):
    """(arn, account, [(policy name, document)]) of the principal moto
    knows by this access key id, or None."""
    from moto.iam.access_control import (
        AssumedRoleAccessKey,
        CreateAccessKeyFailure,
        IAMUserAccessKey,
    )
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import get_account_id_from, iam_backends
    from moto.iam.models import Policy

    account = get_account_id_from(key_id)
    try:
        if key_id.startswith("AKIA") or "X-Amz-Security-Token" not in headers:
            key = IAMUserAccessKey(account, "aws", key_id, headers)
            user = iam_backends[account]["aws"].get_user(key._owner_user_name)
            arn = user.arn
        else:
            key = AssumedRoleAccessKey(account, "aws", key_id, headers)
            arn = key.arn
        raw = key.collect_policies()
    except (CreateAccessKeyFailure, NotFoundException):
        # A key moto does not know, or a session of a role that does not
        # exist (the no-auth bootstrap's): moto decides.
        return None
    policies = []
    for p in raw:
        if isinstance(p, Policy):
            version = next(v for v in p.versions if v.is_default)
            name, document = p.name, version.document
        else:
            name, document = p.get("policy_name", "inline"), p["policy_document"]
        policies.append((name, json.loads(document) if isinstance(document, str) else document))
    return arn, account, policies


def user_resource(account, name):
    """(arn, tags) of an IAM user; a user that does not exist is named as
    IAM would name it on the default path."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    user = backend.users.get(name)
    if user is None:
        return f"arn:aws:iam::{account}:user/{name}", {}
    tags = backend.tagger.list_tags_for_resource(user.arn)["Tags"]
    return user.arn, {t["Key"]: t["Value"] for t in tags}


def secret_resource(account, region, secret_id):
    """(arn, tags, kms key) of a secret; one that does not exist is named by
    its name."""
    from moto.secretsmanager.models import secretsmanager_backends

    secrets = secretsmanager_backends[account][region].secrets
    secret = secrets.get(secret_id) if secret_id in secrets else None
    if secret is None:
        name = secret_id if not secret_id.startswith("arn:") else secret_id.split(":secret:", 1)[-1]
        return f"arn:aws:secretsmanager:{region}:{account}:secret:{name}", {}, None
    tags = {t["Key"]: t.get("Value", "") for t in (secret.tags or [])}
    return secret.arn, tags, getattr(secret, "kms_key_id", None)


def tag_context(tags):
    out = {f"aws:resourcetag/{k}".lower(): [v] for k, v in tags.items()}
    out.update({f"secretsmanager:resourcetag/{k}".lower(): [v] for k, v in tags.items()})
    return out


def checks_of(service, action, params, account, region, principal_arn):
    """[(action, resource, context)] a request needs allowed."""
    full = f"{service}:{action}"
    if service == "iam":
        if "UserName" in params or action in ("CreateAccessKey", "ListAccessKeys", "GetUser", "DeleteAccessKey", "UpdateAccessKey"):
            name = params.get("UserName") or principal_arn.rsplit("/", 1)[-1]
            arn, tags = user_resource(account, name)
            context = {f"aws:resourcetag/{k}".lower(): [v] for k, v in tags.items()}
            request_tags = {params[k]: params.get(k.replace(".Key", ".Value"), "") for k in params if re.fullmatch(r"Tags\.member\.\d+\.Key", k)}
            if request_tags:
                context["aws:tagkeys"] = list(request_tags)
                context.update({f"aws:requesttag/{k}".lower(): [v] for k, v in request_tags.items()})
            return [(full, arn, context)]
        if action == "GetAccessKeyLastUsed":
            # IAM names the key's user as the resource.
            from moto.iam.models import iam_backends

            backend = iam_backends[account]["aws"]
            for user in list(backend.users.values()):
                if any(k.access_key_id == params.get("AccessKeyId") for k in user.access_keys):
                    arn, tags = user_resource(account, user.name)
                    return [(full, arn, {f"aws:resourcetag/{k}".lower(): [v] for k, v in tags.items()})]
            return [(full, "*", {})]
        return [(full, "*", {})]
    if service == "secretsmanager":
        if SECRET_ID in params or (action == "CreateSecret" and "Name" in params):
            arn, tags, kms_key = secret_resource(account, region, params.get(SECRET_ID) or params["Name"])
            context = tag_context(tags) if action != "CreateSecret" else {}
            if action in ("TagResource", "CreateSecret"):
                request_tags = {t["Key"]: t.get("Value", "") for t in params.get("Tags") or []}
                context["aws:tagkeys"] = list(request_tags)
                context.update({f"aws:requesttag/{k}".lower(): [v] for k, v in request_tags.items()})
            if action == "UntagResource":
                context["aws:tagkeys"] = list(params.get("TagKeys") or [])
            checks = [(full, arn, context)]
            kms_action = {"GetSecretValue": "kms:Decrypt", "PutSecretValue": "kms:GenerateDataKey"}.get(action)
            if kms_action and kms_key and kms_key != DEFAULT_KMS:
                if not kms_key.startswith("arn:"):
                    kms_key = f"arn:aws:kms:{region}:{account}:key/{kms_key}"
                checks.append(
                    (
                        kms_action,
                        kms_key,
                        {
                            "kms:viaservice": [f"secretsmanager.{region}.amazonaws.com"],
                            "kms:encryptioncontext:secretarn": [arn],
                        },
                    )
                )
            return checks
        return [(full, "*", {})]
    if service == "events" and action == "PutEvents":
        checks = []
        for entry in params.get("Entries") or []:
            bus = entry.get("EventBusName") or "default"
            if not bus.startswith("arn:"):
                bus = f"arn:aws:events:{region}:{account}:event-bus/{bus}"
            context = {"events:source": [entry.get("Source", "")], "events:detail-type": [entry.get("DetailType", "")]}
            checks.append((full, bus, context))
        return checks
    if service == "sts" and action == "AssumeRole":
        return [(full, params.get("RoleArn", "*"), {})]
    return [(full, "*", {})]


def denial(service, message):
    """AccessDenied as the service answers it."""
    if service in ("iam", "sts"):
        body = (
            '<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>'
            f"<Message>{message}</Message></Error><RequestId>policy-gate</RequestId></ErrorResponse>"
        )
        return "403 Forbidden", "text/xml", body.encode()
    body = json.dumps({"__type": "AccessDeniedException", "message": message, "Message": message})
    return "400 Bad Request", "application/x-amz-json-1.1", body.encode()


class PolicyGate:
    """The WSGI layer in front of moto's app."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.log = []

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == LOG_PATH:
            with self.lock:
                if environ["REQUEST_METHOD"] == "DELETE":
                    self.log.clear()
                body = json.dumps(self.log).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        answer = self.decide(environ, raw)
        if answer is not None:
            status, content_type, body = answer
            start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)

    def decide(self, environ, raw):
        """None to forward the request to moto, or the denial to answer."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = re.search(r"Credential=([^/,\s]+)/\d+/([^/]+)/([^/]+)/", auth)
        if not scope:
            return None
        key_id, region, service = scope.groups()
        headers = {}
        if "HTTP_X_AMZ_SECURITY_TOKEN" in environ:
            headers["X-Amz-Security-Token"] = environ["HTTP_X_AMZ_SECURITY_TOKEN"]
        principal = principal_of(key_id, headers)
        if principal is None:
            return None  # unknown to moto: moto refuses it
        arn, account, policies = principal
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            action = target.rsplit(".", 1)[-1]
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                params = {}
        else:
            form = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            if raw and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
                form.update(urllib.parse.parse_qs(raw.decode("utf-8", "replace")))
            params = {k: v[0] for k, v in form.items()}
            action = params.get("Action", "")
        if service == "sts" and action == "GetCallerIdentity":
            return None  # needs no permission
        for check_action, resource, context in checks_of(service, action, params, account, region, arn):
            try:
                allowed, why = evaluate(policies, check_action, resource, context)
            except Unsupported as e:
                allowed, why = False, f"the policy gate cannot evaluate this policy: {e}"
            with self.lock:
                self.log.append(
                    {
                        "principal": arn,
                        "action": check_action,
                        "resource": resource,
                        "context": context,
                        "allowed": allowed,
                        "why": why,
                    }
                )
            if not allowed:
                message = (
                    f"User: {arn} is not authorized to perform: {check_action} on resource: {resource} "
                    f"(policy gate: {why})"
                )
                return denial(service, message)
        return None
