"""Checks of infra/template.yaml and infra/member.yaml that cfn-lint and
checkov cannot make: the template and the workspace agree, and the roles are
least privilege."""

import functools
import json
import os
import pathlib
import re
import sys
import tomllib
import unittest

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode_str((ROOT / "infra/template.yaml").read_text())
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
MEMBER, _ = decode_str((ROOT / "infra/member.yaml").read_text())


def workspace_binaries():
    """The workspace's binaries but the `rekey` command (cli/), which is for
    people and no Lambda function."""
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    names = set()
    for m in members:
        if m == "cli":
            continue
        manifest = tomllib.loads((ROOT / m / "Cargo.toml").read_text())
        names.update(b["name"] for b in manifest.get("bin", []))
    return names


NO_VALUE = {"Ref": "AWS::NoValue"}
SECRET_ARN = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
OWNING_SECRETS = {"Fn::Sub": SECRET_ARN + "${SecretPrefix}*"}
ADMIN_SECRETS = {"Fn::Sub": SECRET_ARN + "${AdminSecretPrefix}*"}
# The managed admin secrets, which rekey rotates as it does the owning ones,
# only where admin secrets are read at all.
IF_ADMIN_SECRETS = {"Fn::If": ["ReadsAdminSecrets", ADMIN_SECRETS, {"Ref": "AWS::NoValue"}]}
# What a function's runtime writes: its logs and its traces.
RUNTIME = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def branches(value):
    """Both branches of a condition (Fn::If, nested too) but AWS::NoValue;
    the value itself when it has no condition."""
    if isinstance(value, dict) and "Fn::If" in value:
        for b in value["Fn::If"][1:]:
            yield from branches(b)
    elif value != NO_VALUE:
        yield value


def role_of(resource):
    """The role a function or the state machine runs as: one of the
    template's own roles (none of SAM's)."""
    return RESOURCES[resource["Properties"]["Role"]["Fn::GetAtt"][0]]


def policies(resource):
    """(condition, policy) of each inline policy of the role a function or
    the state machine runs as; condition is None for a policy it always has."""
    for policy in role_of(resource)["Properties"]["Policies"]:
        condition = policy["Fn::If"][0] if "Fn::If" in policy else None
        for p in branches(policy):
            yield condition, p


def statements(resource):
    """Every inline statement of the role a function or the state machine
    runs as, on both branches of every condition."""
    for _, policy in policies(resource):
        for st in policy["PolicyDocument"]["Statement"]:
            yield from branches(st)


def implies(condition, implied):
    """Whether the template's condition `condition` holds only when
    `implied` does (it is `implied`, or an Fn::And of it)."""
    if condition == implied:
        return True
    return {"Condition": implied} in TEMPLATE["Conditions"][condition].get("Fn::And", [])


@functools.cache
def transformed():
    """The template as SAM deploys it (the roles, the schedule, the queue it
    makes from the SAM resources)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(TEMPLATE, default=str))
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
    template["Resources"]["RotationStateMachine"]["Properties"]["DefinitionUri"] = "s3://bucket/asl.json"

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(template, {}, NoManagedPolicies())


def policy_documents(node):
    """Every policy document anywhere under `node` (the roles' inline and
    trust policies, key and topic policies), each branch of a condition."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("PolicyDocument", "AssumeRolePolicyDocument", "KeyPolicy"):
                yield from branches(value)
            else:
                yield from policy_documents(value)
    elif isinstance(node, list):
        for value in node:
            yield from policy_documents(value)


def actions(statement):
    a = statement["Action"]
    return [a] if isinstance(a, str) else list(a)


MACHINE = RESOURCES["RotationStateMachine"]["Properties"]
LAMBDA_INVOKE = "arn:${Partition}:states:::lambda:invoke"
# Lambda's own errors of a synchronous invocation (Step Functions names them
# Lambda.*), retried like rekey's ServiceUnavailable.
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def error_types():
    """ERROR_TYPES of shared/src/error.rs: every error type a function reports."""
    source = (ROOT / "shared/src/error.rs").read_text()
    block = re.search(r"pub const ERROR_TYPES: &\[&str\] = &\[(.*?)\];", source, re.S).group(1)
    return set(re.findall(r'"(\w+)"', block))


def substituted_definition():
    """The state machine as the template deploys it: each substitution
    filled with what the template gives it (a parameter's default, a
    literal, a stand-in ARN for a resource)."""
    text = (ROOT / "infra" / MACHINE["DefinitionUri"]).read_text()
    for name, value in MACHINE["DefinitionSubstitutions"].items():
        if isinstance(value, str):
            filled = value
        elif "Ref" in value and value["Ref"] in TEMPLATE["Parameters"]:
            filled = str(TEMPLATE["Parameters"][value["Ref"]]["Default"])
        elif value == {"Ref": "AWS::Partition"}:
            filled = "aws"
        else:
            filled = f"arn:aws:stand-in:{name}"
        text = text.replace("${" + name + "}", filled)
    return json.loads(text)


def successors(state):
    """Every state a state may go to next."""
    out = [state[k] for k in ("Next", "Default") if k in state]
    out += [c["Next"] for c in state.get("Choices", [])]
    out += [c["Next"] for c in state.get("Catch", [])]
    return out


class Template(unittest.TestCase):
    def test_every_function_is_a_workspace_binary_and_back(self):
        in_template = {f["Metadata"]["BuildProperties"]["Binary"] for f in FUNCTIONS.values()}
        self.assertEqual(in_template, workspace_binaries())

    def test_functions_build_with_cargo_lambda_for_provided_al2023(self):
        globals_ = TEMPLATE["Globals"]["Function"]
        self.assertEqual(globals_["Runtime"], "provided.al2023")
        self.assertEqual(globals_["Handler"], "bootstrap")
        self.assertEqual(globals_["Architectures"], [{"Ref": "Architecture"}])
        self.assertEqual(TEMPLATE["Parameters"]["Architecture"]["Default"], "arm64")
        for name, f in FUNCTIONS.items():
            self.assertEqual(f["Metadata"]["BuildMethod"], "rust-cargolambda", name)
            self.assertIn("LogGroup", f["Properties"]["LoggingConfig"], name)

    def test_state_machine_substitutions_match_the_definition(self):
        machine = RESOURCES["RotationStateMachine"]["Properties"]
        text = (ROOT / "infra" / machine["DefinitionUri"]).read_text()
        used = set(re.findall(r"\$\{(\w+)\}", text))
        self.assertEqual(used, set(machine["DefinitionSubstitutions"]))
        # Unquoted substitutions are numbers.
        filled = re.sub(r":\s*\$\{\w+\}", ": 1", text)
        json.loads(re.sub(r"\$\{\w+\}", "x", filled))

    def test_the_managed_path_feeds_the_functions_and_the_policies(self):
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_MANAGED_USER_PATH"], {"Ref": "ManagedUserPath"})
        for name, f in FUNCTIONS.items():
            for st in statements(f):
                if any(a.startswith("iam:") for a in actions(st)):
                    self.assertIn("user${ManagedUserPath}*", json.dumps(st["Resource"]), name)

    def test_provider_endpoints_default_to_https(self):
        # That each setting comes from its parameter is checked against the
        # settings table itself: config.rs, the_template_sets_each_setting_from_its_parameter_with_its_default.
        for name in ("AlibabaRamEndpoint", "AlibabaStsEndpoint", "SCloudEndpoint"):
            self.assertTrue(TEMPLATE["Parameters"][name]["Default"].startswith("https://"), name)

    def test_functions_that_sign_with_admin_keys_may_read_them(self):
        # Steps that may open a provider with a signer read AdminSecretId.
        for name in ("HookFunction", "CreateFunction", "FinishFunction", "CleanupFunction"):
            resources = json.dumps([st["Resource"] for st in statements(FUNCTIONS[name])])
            self.assertIn("${AdminSecretPrefix}*", resources, name)

    def test_no_wildcard_actions_and_secrets_only_when_tagged_managed(self):
        roles = dict(FUNCTIONS, RotationStateMachine=RESOURCES["RotationStateMachine"])
        self.assertGreater(sum(1 for _ in statements(RESOURCES["RotationStateMachine"])), 0)
        for name, f in roles.items():
            for st in statements(f):
                for a in actions(st):
                    self.assertNotIn("*", a, f"{name}: {a}")
                sm = [a for a in actions(st) if a.startswith("secretsmanager:")]
                if sm and sm != ["secretsmanager:ListSecrets"] and "AdminSecretPrefix" not in json.dumps(st["Resource"]):
                    cond = st["Condition"]["StringEquals"]
                    self.assertEqual(cond["aws:ResourceTag/rekey:managed"], "true", name)

    def test_secrets_are_only_the_owning_secrets(self):
        # Every Secrets Manager grant but ListSecrets (which no policy can
        # narrow) and the admin-key read is limited to the owning prefix.
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_SECRET_PREFIX"], {"Ref": "SecretPrefix"})
        self.assertEqual(env["REKEY_ADMIN_SECRET_PREFIX"], {"Ref": "AdminSecretPrefix"})
        roles = dict(FUNCTIONS, RotationStateMachine=RESOURCES["RotationStateMachine"])
        for name, f in roles.items():
            for st in statements(f):
                sm = [a for a in actions(st) if a.startswith("secretsmanager:")]
                resource = json.dumps(st["Resource"])
                if sm and sm != ["secretsmanager:ListSecrets"] and "AdminSecretPrefix" not in resource:
                    self.assertIn(":secret:${SecretPrefix}*", resource, name)

    def test_the_example_secret_has_its_owning_name(self):
        props = RESOURCES["ExampleSecret"]["Properties"]
        self.assertEqual(props["Name"], {"Fn::Sub": "${SecretPrefix}aws/${ExampleUserName}"})

    def test_tag_grants_cover_every_tag_the_code_writes(self):
        # The record tags the code writes (their prefixes, in the source).
        source = "".join(p.read_text() for p in (ROOT / "shared/src").rglob("*.rs"))
        written = set(re.findall(r'const \w+: &str = "(rekey:[a-z]+:)"', source))
        self.assertEqual(written, {"rekey:created:", "rekey:superseded:", "rekey:inactive:"})
        records = {w + "*" for w in written}
        # And three whole tags: since when AWSCURRENT is current (finish, and
        # cleanup when it finds none), the last full check (cleanup), and
        # since when a secret is paused (cleanup's sweep and full check).
        whole = {"rekey:current", "rekey:checked", "rekey:paused-since"}
        for tag in whole:
            self.assertTrue(f'"{tag}"' in source, f"the code writes {tag}")
        granted = set()
        for name, f in FUNCTIONS.items():
            for st in statements(f):
                if "secretsmanager:TagResource" in actions(st):
                    keys = set(st["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"])
                    self.assertLessEqual(keys, records | whole, name)
                    granted |= keys
        self.assertEqual(granted, records | whole)
        # Each step may write the records it writes: create its new key's,
        # finish the timers and rekey:current, cleanup all of them, the hook
        # all but the full check's.
        def tag_keys(name):
            return {k for st in statements(FUNCTIONS[name]) if "secretsmanager:TagResource" in actions(st)
                    for k in st["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"]}
        self.assertEqual(tag_keys("CreateFunction"), {"rekey:created:*"})
        self.assertEqual(tag_keys("HookFunction"), records | {"rekey:current"})
        self.assertLessEqual({"rekey:superseded:*", "rekey:inactive:*", "rekey:current"}, tag_keys("FinishFunction"))
        self.assertEqual(tag_keys("CleanupFunction"), records | whole)
        self.assertEqual(tag_keys("HookFunction") & {"rekey:paused-since"}, set())
        # No function may pause, resume or enrol a secret: those tags are a
        # person's.
        for name in FUNCTIONS:
            for tag in ("rekey:paused", "rekey:managed", "rekey:*", "*"):
                self.assertNotIn(tag, tag_keys(name), name)

    def test_each_function_may_make_the_secrets_manager_calls_its_steps_make(self):
        # What each function's code calls (steps/*.rs through the Vault):
        # create and cleanup take AWSPENDING off a rotation that can never
        # finish; finish moves the stages; the hook does all of it.
        def granted(name):
            return {a for st in statements(FUNCTIONS[name]) for a in actions(st) if a.startswith("secretsmanager:")}
        common = {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"}
        needs = {
            "CreateFunction": common | {"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource"},
            "FinishFunction": common | {"secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource"},
            "CleanupFunction": common | {"secretsmanager:ListSecrets", "secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource", "secretsmanager:UntagResource"},
            "HookFunction": common | {"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource"},
        }
        for name, actions_needed in needs.items():
            self.assertLessEqual(actions_needed, granted(name), name)

    def test_rekey_test_only_reads_the_secret(self):
        # (and puts a Rotation Failed event when the key test fails)
        granted = {a for st in statements(FUNCTIONS["TestFunction"]) for a in actions(st)}
        self.assertEqual(
            granted,
            {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "kms:Decrypt", "events:PutEvents"} | RUNTIME,
        )

    def test_every_function_puts_rekey_events_on_the_deployments_bus_only(self):
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_EVENT_BUS"], {"Ref": "EventBus"})
        for name, f in FUNCTIONS.items():
            puts = [st for st in statements(f) if "events:PutEvents" in actions(st)]
            self.assertEqual(len(puts), 1, name)
            self.assertEqual(actions(puts[0]), ["events:PutEvents"], name)
            self.assertEqual(
                puts[0]["Resource"],
                {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBus}"},
                name,
            )
            self.assertEqual(puts[0]["Condition"], {"StringEquals": {"events:source": "rekey"}}, name)
        machine = {a for st in statements(RESOURCES["RotationStateMachine"]) for a in actions(st)}
        self.assertNotIn("events:PutEvents", machine)

    def test_the_hooks_failures_reach_the_alerts_topic_as_rekey_events(self):
        # moto does not deliver EventBridge targets to SNS: the wiring is
        # checked here. The pipeline's failures are published by its runs
        # (Notify), so the rule takes the hook's only: one alert a failure.
        rule = RESOURCES["HookRotationFailed"]["Properties"]
        self.assertEqual(rule["EventBusName"], {"Ref": "EventBus"})
        self.assertEqual(
            rule["EventPattern"],
            {"source": ["rekey"], "detail-type": ["Rotation Failed"], "detail": {"Driver": ["hook"]}},
        )
        self.assertEqual(rule["Targets"], [{"Id": "alerts", "Arn": {"Ref": "AlertsTopic"}}])
        topic_policy = RESOURCES["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
        self.assertIn("events.amazonaws.com", topic_policy["Principal"]["Service"])

    def test_a_dry_run_deployment_changes_nothing_and_pages_no_one_for_it(self):
        p = TEMPLATE["Parameters"]["DryRun"]
        self.assertEqual((p["Default"], sorted(p["AllowedValues"])), ("false", ["false", "true"]))
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_DRY_RUN"], {"Ref": "DryRun"})
        # Every createSecret of the hook fails with DryRun by design: the
        # alarm on the hook's Lambda errors is off in a dry run.
        self.assertEqual(TEMPLATE["Conditions"]["IsLive"], {"Fn::Equals": [{"Ref": "DryRun"}, "false"]})
        self.assertEqual(RESOURCES["HookErrors"].get("Condition"), "IsLive")

    def test_the_hook_outlives_its_test_timeout(self):
        mapping = TEMPLATE["Mappings"]["HookTimeout"]
        allowed = TEMPLATE["Parameters"]["TestTimeout"]["AllowedValues"]
        self.assertEqual(set(mapping), set(allowed))
        for test_timeout, row in mapping.items():
            self.assertGreaterEqual(row["Seconds"], int(test_timeout) + 30)

    def test_every_role_of_the_transformed_template_takes_the_permissions_boundary(self):
        # Checked on SAM's output, so that a role SAM would make counts too.
        out = transformed()
        roles = {k: v for k, v in out["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
        # The five functions', the state machine's and its schedule's.
        self.assertGreaterEqual(len(roles), 7, sorted(roles))
        boundary = {"Fn::If": ["HasBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "AWS::NoValue"}]}
        for name, role in roles.items():
            self.assertEqual(role["Properties"].get("PermissionsBoundary"), boundary, name)

    def test_the_pipeline_is_a_distributed_map_fed_by_triage(self):
        asl = substituted_definition()
        states = asl["States"]
        # The first triage event: the execution input over the defaults.
        self.assertEqual(states["Defaults"]["Parameters"]["Defaults"], {"RotationPeriod": TEMPLATE["Parameters"]["RotationPeriod"]["Default"]})
        self.assertEqual(
            states["FirstTriage"]["Parameters"], {"Triage.$": "States.JsonMerge($.Defaults, $.Input, false)", "Exceeded": False}
        )
        # Triage: rekey-cleanup with the triage event; its answer under
        # $.Page.Answer; a failure fails the run.
        triage = states["Triage"]
        self.assertEqual(
            triage["Parameters"], {"FunctionName": "arn:aws:stand-in:CleanupFunctionArn", "Payload": {"Triage.$": "$.Triage"}}
        )
        self.assertEqual(triage["ResultSelector"], {"Answer.$": "$.Payload"})
        self.assertEqual(triage["ResultPath"], "$.Page")
        self.assertNotIn("Catch", triage)
        self.assertEqual(triage["Next"], "Handle")
        # The map: distributed, Express children in the template, bounded by
        # the parameters.
        handle = states["Handle"]
        self.assertEqual(handle["Type"], "Map")
        self.assertEqual(handle["ItemsPath"], "$.Page.Answer.Items")
        self.assertIsNone(handle["ResultPath"])
        self.assertTrue(handle["Label"])
        self.assertNotIn("ItemSelector", handle, "each child gets its item, nothing more")
        config = handle["ItemProcessor"]["ProcessorConfig"]
        self.assertEqual(config, {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"})
        subs = MACHINE["DefinitionSubstitutions"]
        self.assertEqual(subs["ChildExecutionType"], "EXPRESS")
        self.assertEqual(subs["MaxConcurrency"], {"Ref": "MaxConcurrency"})
        self.assertEqual(subs["ToleratedFailurePercentage"], {"Ref": "ToleratedFailurePercentage"})
        tolerated = TEMPLATE["Parameters"]["ToleratedFailurePercentage"]
        self.assertEqual((tolerated["Type"], tolerated["MinValue"], tolerated["MaxValue"]), ("Number", 0, 100))
        self.assertEqual(handle["MaxConcurrency"], TEMPLATE["Parameters"]["MaxConcurrency"]["Default"])
        self.assertEqual(handle["ToleratedFailurePercentage"], tolerated["Default"])
        # Past the tolerated failures the map run stops, the run notes it and
        # goes on with the next pages (one broken secret never stops the
        # others), and fails at its end.
        self.assertEqual(
            handle["Catch"], [{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "ResultPath": None, "Next": "NoteExceeded"}]
        )
        self.assertEqual(states["NoteExceeded"]["Parameters"], {"Triage.$": "$.Triage", "Page.$": "$.Page", "Exceeded": True})
        self.assertEqual(states["NoteExceeded"]["Next"], "MorePages")
        # The next page: Next is the next triage event.
        self.assertEqual(handle["Next"], "MorePages")
        self.assertEqual(states["MorePages"]["Choices"], [{"Variable": "$.Page.Answer.Next", "IsPresent": True, "Next": "NextPage"}])
        self.assertEqual(states["NextPage"]["Parameters"], {"Triage.$": "$.Page.Answer.Next.Triage", "Exceeded.$": "$.Exceeded"})
        self.assertEqual(states["NextPage"]["Next"], "Triage")
        done = states[states["MorePages"]["Default"]]
        self.assertEqual(done["Choices"], [{"Variable": "$.Exceeded", "BooleanEquals": True, "Next": "TooManyFailures"}])
        self.assertEqual(states["TooManyFailures"]["Type"], "Fail")
        self.assertEqual(states[done["Default"]]["Type"], "Succeed")

    def test_each_secret_is_cleaned_then_rotated_as_before(self):
        child = substituted_definition()["States"]["Handle"]["ItemProcessor"]
        states = child["States"]
        fn = lambda name: f"arn:aws:stand-in:{name}FunctionArn"  # noqa: E731
        # Clean first, when due: a full cleanup of the one secret.
        self.assertEqual(child["StartAt"], "CleanFirst")
        self.assertIn("$.Clean", json.dumps(states["CleanFirst"]["Choices"]))
        self.assertEqual(states["CleanFirst"]["Choices"][0]["Next"], "Clean")
        self.assertEqual(states["Clean"]["Parameters"], {"FunctionName": fn("Cleanup"), "Payload": {"SecretId.$": "$.SecretId"}})
        self.assertIsNone(states["Clean"]["ResultPath"])
        # Then the rotation, when due: a fresh token, create with the item's
        # period and Resume, test, finish.
        for before in ("Clean", "CleanFirst"):
            self.assertIn("RotateNext", successors(states[before]))
        self.assertIn("$.Rotate", json.dumps(states["RotateNext"]["Choices"]))
        self.assertEqual(states["RotateNext"]["Choices"][0]["Next"], "NewToken")
        self.assertEqual(states["NewToken"]["Parameters"]["ClientRequestToken.$"], "States.UUID()")
        create = states["Create"]
        self.assertEqual(create["Parameters"]["FunctionName"], fn("Create"))
        self.assertEqual(create["Parameters"]["Payload"]["RotationPeriod.$"], "$.RotationPeriod")
        self.assertIs(create["Parameters"]["Payload"]["Resume"], True)
        self.assertEqual(states["Started"]["Default"], "Test")
        self.assertEqual(states["Test"]["Parameters"]["FunctionName"], fn("Test"))
        self.assertEqual(states["Test"]["Next"], "Finish")
        self.assertEqual(states["Finish"]["Parameters"]["FunctionName"], fn("Finish"))
        # No RotationEnabled check here any more: triage answers Rotate false
        # for the hook's secrets.
        self.assertNotIn("RotationEnabled", json.dumps(child))

    def test_every_failing_path_of_a_child_goes_through_notify_to_a_fail_state(self):
        states = substituted_definition()["States"]["Handle"]["ItemProcessor"]["States"]
        tasks = {n for n, st in states.items() if st["Type"] == "Task"}
        lambda_tasks = {n for n in tasks if states[n]["Resource"] == "arn:aws:states:::lambda:invoke"}
        self.assertEqual(lambda_tasks, {"Clean", "Create", "Test", "Finish"})
        rotation_tasks = lambda_tasks - {"Clean"}
        for name in lambda_tasks:
            catches = states[name]["Catch"]
            self.assertEqual([c["ErrorEquals"] for c in catches], [["States.ALL"]], name)
            self.assertEqual(catches[0]["Next"], "ReportClean" if name == "Clean" else "Report", name)
            self.assertEqual(catches[0]["ResultPath"], "$.Failure", name)
        # A cleanup's failure is published, and the rotation still runs.
        self.assertEqual(states["ReportClean"]["Parameters"], {"SecretId.$": "$.SecretId", "Failure.$": "$.Failure"})
        self.assertEqual(states["ReportClean"]["ResultPath"], "$.Alert", "the item stays for the rotation")
        self.assertEqual(successors(states["ReportClean"]), ["NotifyClean"])
        notify_clean = states["NotifyClean"]
        self.assertEqual(notify_clean["Resource"], "arn:aws:states:::sns:publish")
        self.assertEqual(notify_clean["Parameters"]["Message.$"], "States.JsonToString($.Alert)")
        self.assertIsNone(notify_clean["ResultPath"])
        self.assertEqual(set(successors(notify_clean)), {"RotateNext"})
        # A rotation's failure is published and fails the child.
        self.assertEqual(states["Report"]["Parameters"], {"SecretId.$": "$.SecretId", "Failure.$": "$.Failure"})
        self.assertEqual(successors(states["Report"]), ["Notify"])
        notify = states["Notify"]
        self.assertEqual(notify["Resource"], "arn:aws:states:::sns:publish")
        self.assertEqual(notify["Parameters"]["TopicArn"], "arn:aws:stand-in:TopicArn")
        self.assertEqual(notify["Parameters"]["Message.$"], "States.JsonToString($)")
        for n in (notify, notify_clean):
            self.assertTrue(n["Retry"])
            self.assertEqual([c["ErrorEquals"] for c in n["Catch"]], [["States.ALL"]])
        after_notify = set(successors(notify))
        self.assertEqual(len(after_notify), 1, "Notify, published or not, goes to one place")
        fail = after_notify.pop()
        self.assertEqual(states[fail]["Type"], "Fail", "so that the map run counts the failure")
        self.assertTrue(states[fail]["Error"])
        # Every way into Report, Notify or a Fail state is one of these; every
        # other end of a child is a success.
        into = {n: {m for m, st in states.items() if n in successors(st)} for n in states}
        self.assertEqual(into["Report"], rotation_tasks)
        self.assertEqual(into["Notify"], {"Report"})
        self.assertEqual(into["ReportClean"], {"Clean"})
        for name, st in states.items():
            if st["Type"] == "Fail":
                self.assertEqual(into[name], {"Notify"}, name)
            if not successors(st) and st["Type"] != "Fail":
                self.assertEqual(st["Type"], "Succeed", name)

    def test_a_child_stays_within_express_five_minutes(self):
        # Each Lambda task has a timeout (a hung call is reported, not cut
        # off with the child), and the long waits (the KeyNotReady retries
        # of test and finish, create's wait for an admin secret's rotation)
        # leave a minute for the calls themselves.
        states = substituted_definition()["States"]["Handle"]["ItemProcessor"]["States"]
        waits = 0
        for name in ("Clean", "Create", "Test", "Finish"):
            self.assertLessEqual(states[name]["TimeoutSeconds"], 60, name)
            for retry in states[name]["Retry"]:
                if retry["ErrorEquals"] in (["KeyNotReady"], ["RotationInProgress"]):
                    interval, rate = retry["IntervalSeconds"], retry.get("BackoffRate", 2.0)
                    waits += sum(interval * rate**i for i in range(retry["MaxAttempts"]))
        self.assertLessEqual(waits, 240, "the long waits of create, test and finish")

    def test_create_waits_a_little_for_the_admin_secrets_rotation(self):
        # With Resume, create's RotationInProgress is the admin secret's
        # rotation (its own is resumed): a dependent due in the same run as
        # its admin waits for it rather than being reported.
        states = substituted_definition()["States"]["Handle"]["ItemProcessor"]["States"]
        self.assertIs(states["Create"]["Parameters"]["Payload"]["Resume"], True)
        waits = [r for r in states["Create"]["Retry"] if r["ErrorEquals"] == ["RotationInProgress"]]
        self.assertEqual(len(waits), 1)
        wait = waits[0]
        total = sum(wait["IntervalSeconds"] * wait.get("BackoffRate", 2.0) ** i for i in range(wait["MaxAttempts"]))
        self.assertGreaterEqual(total, 30, "long enough for an admin rotation without KeyNotReady waits")
        for name in ("Clean", "Test", "Finish"):
            self.assertNotIn("RotationInProgress", json.dumps(states[name]["Retry"]), name)

    def test_lambda_tasks_retry_and_match_only_error_types_that_exist(self):
        known = error_types()
        self.assertIn("KeyNotReady", known)
        asl = substituted_definition()
        every = dict(asl["States"], **asl["States"]["Handle"]["ItemProcessor"]["States"])
        lambda_tasks = {n: st for n, st in every.items() if st.get("Resource") == "arn:aws:states:::lambda:invoke"}
        self.assertEqual(set(lambda_tasks), {"Triage", "Clean", "Create", "Test", "Finish"})
        for name, st in lambda_tasks.items():
            retried = [set(r["ErrorEquals"]) for r in st["Retry"]]
            self.assertIn({"ServiceUnavailable"} | LAMBDA_SERVICE_ERRORS, retried, name)
            for rule in st["Retry"] + st.get("Catch", []):
                for error in rule["ErrorEquals"]:
                    self.assertTrue(error in known or error in LAMBDA_SERVICE_ERRORS or error == "States.ALL", f"{name}: {error}")
            if name == "Clean":
                self.assertIsNone(st["ResultPath"], "the item goes on to the rotation unchanged")
            elif name == "Triage":
                self.assertEqual(st["ResultPath"], "$.Page", name)
            else:
                self.assertEqual(st["OutputPath"], "$.Payload", name)

    def test_the_machine_role_invokes_the_four_functions_and_runs_its_own_children(self):
        machine = RESOURCES["RotationStateMachine"]
        invokes = [st for st in statements(machine) if "lambda:InvokeFunction" in actions(st)]
        self.assertEqual([actions(st) for st in invokes], [["lambda:InvokeFunction"]])
        invoked = [r["Fn::GetAtt"] for r in invokes[0]["Resource"]]
        self.assertEqual(sorted(invoked), [[f, "Arn"] for f in ("CleanupFunction", "CreateFunction", "FinishFunction", "TestFunction")])
        publish = [st["Resource"] for st in statements(machine) if "sns:Publish" in actions(st)]
        self.assertEqual(publish, [{"Ref": "AlertsTopic"}])
        # The machine has a fixed name: its role names it without referring
        # to it (a role cannot !Ref the machine that uses it).
        self.assertEqual(MACHINE["Name"], {"Fn::Sub": "${AWS::StackName}-rotation"})
        grants = {a: st["Resource"] for st in statements(machine) for a in actions(st)}
        prefix = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
        self.assertEqual(grants["states:StartExecution"], {"Fn::Sub": prefix + "stateMachine:${AWS::StackName}-rotation"})
        for a in ("states:DescribeExecution", "states:StopExecution"):
            self.assertEqual(grants[a], {"Fn::Sub": prefix + "execution:${AWS::StackName}-rotation/*"}, a)
        self.assertNotIn("RotationStateMachine", json.dumps([st["Resource"] for st in statements(machine)]))
        # Triage lists the secrets now; the machine reads none.
        self.assertFalse([a for a in grants if a.startswith("secretsmanager:")], grants)

    def test_one_schedule_and_an_alarm_on_failed_runs(self):
        self.assertNotIn("CleanupSchedule", TEMPLATE["Parameters"])
        for name, f in FUNCTIONS.items():
            self.assertNotIn("Events", f["Properties"], f"{name}: the pipeline's schedule runs every step")
        events = MACHINE["Events"]
        self.assertEqual([e["Type"] for e in events.values()], ["ScheduleV2"])
        self.assertEqual(list(events.values())[0]["Properties"]["Input"], "{}")
        alarms = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
        self.assertIn(
            ("AWS/States", "ExecutionsFailed", [{"Name": "StateMachineArn", "Value": {"Ref": "RotationStateMachine"}}]),
            [(a["Namespace"], a["MetricName"], a["Dimensions"]) for a in alarms],
        )
        grouped = [p for g in TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"] for p in g["Parameters"]]
        self.assertEqual(sorted(grouped), sorted(TEMPLATE["Parameters"]))

    def test_an_alarm_on_secrets_paused_for_too_long(self):
        # Nothing goes silent: the sweep counts the secrets paused longer
        # than PausedAlertAfter (REKEY_PAUSED_ALERT_AFTER), and any one of
        # them raises the alarm, as an overdue rotation does.
        alarms = {k: r["Properties"] for k, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        paused = alarms["PausedTooLong"]
        overdue = alarms["RotationOverdue"]
        self.assertEqual((paused["Namespace"], paused["MetricName"]), ("rekey", "SecretsPausedTooLong"))
        self.assertEqual(paused["Dimensions"], [{"Name": "Function", "Value": "cleanup"}])
        self.assertEqual(paused["Dimensions"], overdue["Dimensions"])
        self.assertEqual((paused["Threshold"], paused["ComparisonOperator"]), (1, "GreaterThanOrEqualToThreshold"))
        for k in ("Statistic", "Period", "EvaluationPeriods", "TreatMissingData", "AlarmActions"):
            self.assertEqual(paused[k], overdue[k], k)
        self.assertEqual(paused["AlarmActions"], [{"Ref": "AlertsTopic"}])
        # The bound is a parameter that feeds the functions' setting.
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_PAUSED_ALERT_AFTER"], {"Ref": "PausedAlertAfter"})
        p = TEMPLATE["Parameters"]["PausedAlertAfter"]
        self.assertEqual(p["Default"], "7d")
        for ok in ("7d", "12h", "1s"):
            self.assertRegex(ok, p["AllowedPattern"])
        for bad in ("0d", "0s", "7", "d", "-1d"):
            self.assertNotRegex(bad, p["AllowedPattern"])
        # The code counts under the alarm's metric name.
        source = (ROOT / "shared/src/metrics.rs").read_text()
        self.assertIn('"SecretsPausedTooLong"', source)

    def test_the_state_machine_names_no_partition(self):
        text = (ROOT / "infra/statemachine/rotation.asl.json").read_text()
        self.assertNotIn("arn:aws:", text)
        self.assertIn("arn:${Partition}:states:::", text)

    def test_parameters_are_described(self):
        for name, p in TEMPLATE["Parameters"].items():
            self.assertTrue(p.get("Description"), name)


class LeastPrivilege(unittest.TestCase):
    """What the deployment grants beyond the steps' own calls, and only
    where a setting needs it: the hook's invokers, the secrets' key, admin
    secrets, the managed path, deactivation at promotion, logs and traces,
    the alerts key and the services' trust."""

    def test_secrets_manager_may_invoke_the_hook_for_the_owning_secrets_only(self):
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_SECRET_PREFIX"], {"Ref": "SecretPrefix"})
        permissions = {k: r["Properties"] for k, r in RESOURCES.items() if r["Type"] == "AWS::Lambda::Permission"}
        self.assertEqual(list(permissions), ["HookInvokedBySecretsManager"])
        p = permissions["HookInvokedBySecretsManager"]
        self.assertEqual(p["FunctionName"], {"Fn::GetAtt": ["HookFunction", "Arn"]})
        self.assertEqual((p["Principal"], p["Action"]), ("secretsmanager.amazonaws.com", "lambda:InvokeFunction"))
        self.assertEqual(p["SourceAccount"], {"Ref": "AWS::AccountId"})
        self.assertEqual(p["SourceArn"], OWNING_SECRETS)
        # The example secret is one of them.
        self.assertTrue(RESOURCES["ExampleSecret"]["Properties"]["Name"]["Fn::Sub"].startswith("${SecretPrefix}"))

    def test_the_secrets_key_is_used_through_secrets_manager_for_rekeys_secrets_only(self):
        via = {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
        for name, f in FUNCTIONS.items():
            owning = 0
            for condition, policy in policies(f):
                listed = policy["PolicyDocument"]["Statement"]
                reads_admin = any(st["Resource"] == ADMIN_SECRETS for s in listed for st in branches(s))
                for s in listed:
                    # A statement on the key is made only with the key: its
                    # policy's condition or its own.
                    own = s["Fn::If"][0] if "Fn::If" in s else None
                    for st in branches(s):
                        if not any(a.startswith("kms:") for a in actions(st)):
                            continue
                        self.assertIn("HasSecretsKey", (condition, own), name)
                        self.assertEqual(st["Resource"], {"Ref": "SecretsKmsKeyArn"}, name)
                        self.assertEqual(st["Condition"]["StringEquals"], via, name)
                        secret = st["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"]
                        # The owning secrets, and with a non-AWS provider the
                        # managed admin secrets rotated like them.
                        if isinstance(secret, list):
                            self.assertEqual(secret, [OWNING_SECRETS, IF_ADMIN_SECRETS], name)
                            secret = OWNING_SECRETS
                        # The admin secrets' decryption goes with their reading.
                        self.assertIn(secret, [OWNING_SECRETS, ADMIN_SECRETS] if reads_admin else [OWNING_SECRETS], name)
                        owning += secret == OWNING_SECRETS
            self.assertEqual(owning, 1, f"{name}: one grant on the owning secrets' key")

    def test_admin_secrets_are_read_only_when_alibaba_or_scloud_is_enabled(self):
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        conditions = TEMPLATE["Conditions"]
        for provider, parameter in (("HasAlibaba", "AlibabaUserPattern"), ("HasSCloud", "SCloudUserPattern")):
            self.assertEqual(conditions[provider], {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]})
        self.assertEqual(env["REKEY_ALIBABA_USER_PATTERN"], {"Ref": "AlibabaUserPattern"})
        self.assertEqual(env["REKEY_SCLOUD_USER_PATTERN"], {"Ref": "SCloudUserPattern"})
        self.assertEqual(
            conditions["ReadsAdminSecrets"],
            {"Fn::And": [{"Condition": "HasAdminSecrets"}, {"Fn::Or": [{"Condition": "HasAlibaba"}, {"Condition": "HasSCloud"}]}]},
        )
        readers = set()
        for name, f in FUNCTIONS.items():
            for condition, policy in policies(f):
                if ADMIN_SECRETS in [st["Resource"] for s in policy["PolicyDocument"]["Statement"] for st in branches(s)]:
                    self.assertTrue(condition and implies(condition, "ReadsAdminSecrets"), f"{name}: {condition}")
                    readers.add(name)
        self.assertEqual(readers, {"HookFunction", "CreateFunction", "FinishFunction", "CleanupFunction"})

    def test_managed_admin_secrets_are_rotated_like_owning_ones_where_admin_secrets_are_read(self):
        managed = {"StringEquals": {"aws:ResourceTag/rekey:managed": "true"}}
        for name, f in FUNCTIONS.items():
            covering = 0
            for st in statements(f):
                if not any(a.startswith("secretsmanager:") for a in actions(st)) or st["Resource"] == "*":
                    continue
                if isinstance(st["Resource"], list):
                    # Both folders, on the same terms: managed secrets only.
                    self.assertEqual(st["Resource"], [OWNING_SECRETS, IF_ADMIN_SECRETS], name)
                    self.assertLessEqual(managed.items(), st["Condition"].items(), name)
                    covering += 1
                else:
                    # Elsewhere only the admin keys are read.
                    self.assertEqual(st["Resource"], ADMIN_SECRETS, name)
                    self.assertEqual(set(actions(st)), {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"}, name)
            self.assertGreaterEqual(covering, 1, name)

    def test_the_admin_prefix_is_a_folder_so_it_covers_no_longer_names(self):
        p = TEMPLATE["Parameters"]["AdminSecretPrefix"]
        accepts = lambda v: re.fullmatch(p["AllowedPattern"], v) is not None  # noqa: E731
        self.assertTrue(accepts(p["Default"]))
        for ok in ("rekey/admin/", "admins/", "a/b/c/", ""):
            self.assertTrue(accepts(ok), ok)
        # "rekey/admin" would also cover rekey/administrators...
        for bad in ("rekey/admin", "rekey/admin/x", "admins", "rekey admin/"):
            self.assertFalse(accepts(bad), bad)

    def test_the_managed_path_is_never_the_root_in_either_template(self):
        for template in (TEMPLATE, MEMBER):
            p = template["Parameters"]["ManagedUserPath"]
            accepts = lambda v: re.fullmatch(p["AllowedPattern"], v) is not None  # noqa: E731
            self.assertEqual(p["Default"], "/rekey/")
            for ok in ("/rekey/", "/a/b/", "/team-1/rekey/"):
                self.assertTrue(accepts(ok), ok)
            for bad in ("/", "", "//", "rekey/", "/rekey", "/a//b/"):
                self.assertFalse(accepts(bad), bad)

    def test_deactivating_at_promotion_is_every_way_the_parameter_can_say_zero(self):
        env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["REKEY_DEACTIVATE_AFTER"], {"Ref": "DeactivateAfter"})
        p = TEMPLATE["Parameters"]["DeactivateAfter"]
        accepts = lambda v: re.fullmatch(p["AllowedPattern"], v) is not None  # noqa: E731
        self.assertTrue(accepts(p["Default"]))
        spelled = []
        for equals in TEMPLATE["Conditions"]["DeactivatesAtPromotion"]["Fn::Or"]:
            ref, value = equals["Fn::Equals"]
            self.assertEqual(ref, {"Ref": "DeactivateAfter"})
            spelled.append(value)
        allowed = {
            n + unit
            for n in [str(i) for i in range(120)] + ["00", "000", "007"]
            for unit in ("ms", "s", "m", "h", "d")
            if accepts(n + unit)
        }
        zeros = {v for v in allowed if int(re.match(r"\d+", v).group()) == 0}
        self.assertEqual(sorted(spelled), sorted(zeros))
        self.assertIn("24h", allowed)
        self.assertNotIn("00s", allowed)

    def test_only_cleanup_always_deactivates_finish_and_the_hook_only_at_promotion(self):
        def deactivate_grants(name):
            return [(c, st) for c, p in policies(FUNCTIONS[name]) for s in p["PolicyDocument"]["Statement"]
                    for st in branches(s) if "iam:UpdateAccessKey" in actions(st)]
        cleanup = deactivate_grants("CleanupFunction")
        self.assertEqual([c for c, _ in cleanup], [None])
        for name in ("FinishFunction", "HookFunction"):
            grants = deactivate_grants(name)
            self.assertEqual([c for c, _ in grants], ["DeactivatesAtPromotion"], name)
            for _, st in grants:
                self.assertEqual(st["Resource"], {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user${ManagedUserPath}*"})
        self.assertNotIn("iam:UpdateAccessKey", {a for st in statements(FUNCTIONS["CreateFunction"]) for a in actions(st)})
        # Finish calls a provider only to deactivate: every grant that
        # reaches a provider (its keys, an admin key, a member account) is
        # made only then.
        for condition, policy in policies(FUNCTIONS["FinishFunction"]):
            granted = {a for s in policy["PolicyDocument"]["Statement"] for st in branches(s) for a in actions(st)}
            admin_keys = any(st["Resource"] == ADMIN_SECRETS for s in policy["PolicyDocument"]["Statement"] for st in branches(s))
            if granted & {"iam:GetUser", "iam:ListAccessKeys", "sts:AssumeRole"} or admin_keys:
                self.assertTrue(condition and implies(condition, "DeactivatesAtPromotion"), condition)

    def test_each_function_writes_only_its_own_log_group_and_its_traces(self):
        groups = set()
        for name, f in FUNCTIONS.items():
            group = f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            self.assertEqual(RESOURCES[group]["Type"], "AWS::Logs::LogGroup", name)
            groups.add(group)
            runtime = [(c, st) for c, p in policies(f) for s in p["PolicyDocument"]["Statement"] for st in branches(s)
                       if any(a.startswith(("logs:", "xray:")) for a in actions(st))]
            self.assertEqual(
                sorted((c, sorted(actions(st)), st["Resource"]) for c, st in runtime),
                [
                    (None, ["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::GetAtt": [group, "Arn"]}),
                    (None, ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "*"),
                ],
                name,
            )
        self.assertEqual(len(groups), len(FUNCTIONS), "a log group per function")

    def test_no_role_of_the_transformed_template_takes_a_managed_policy(self):
        out = transformed()["Resources"]
        roles = {k: v for k, v in out.items() if v["Type"] == "AWS::IAM::Role"}
        self.assertEqual(set(roles), {k for k, v in RESOURCES.items() if v["Type"] == "AWS::IAM::Role"}, "SAM makes no role")
        for name, role in roles.items():
            self.assertNotIn("ManagedPolicyArns", role["Properties"], name)
        functions = {k: v for k, v in out.items() if v["Type"] == "AWS::Lambda::Function"}
        self.assertEqual(set(functions), set(FUNCTIONS))
        used = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
        self.assertEqual(sorted(used), sorted(f"{name}Role" for name in FUNCTIONS), "a role per function")
        machine = out["RotationStateMachine"]["Properties"]
        self.assertEqual(machine["RoleArn"], {"Fn::GetAtt": ["RotationStateMachineRole", "Arn"]})

    def test_the_alerts_key_serves_each_service_for_this_accounts_resources_only(self):
        key = RESOURCES["AlertsKey"]["Properties"]["KeyPolicy"]
        by_service = {}
        for st in key["Statement"]:
            if "Service" not in st["Principal"]:
                continue
            service = st["Principal"]["Service"]
            service = service["Fn::Sub"] if isinstance(service, dict) else service
            self.assertIsInstance(service, str, "one service a statement")
            by_service[service] = st["Condition"]
        self.assertEqual(set(by_service), {"logs.${AWS::Region}.amazonaws.com", "cloudwatch.amazonaws.com", "events.amazonaws.com"})
        account = "${AWS::AccountId}"
        # The alarms: their account and their ARNs.
        alarms = by_service["cloudwatch.amazonaws.com"]
        self.assertEqual(alarms["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})
        self.assertEqual(
            alarms["ArnLike"]["aws:SourceArn"], {"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:" + account + ":alarm:*"}
        )
        # Logs and EventBridge send KMS no source keys: the encryption
        # context (the log group's, the topic's ARN) names this account.
        self.assertEqual(
            by_service["logs.${AWS::Region}.amazonaws.com"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"],
            {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:" + account + ":log-group:*"},
        )
        self.assertEqual(
            by_service["events.amazonaws.com"]["ArnLike"]["kms:EncryptionContext:aws:sns:topicArn"],
            {"Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:" + account + ":*"},
        )
        # The topic takes their messages from this account only, too.
        topic = RESOURCES["AlertsTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        for st in topic:
            self.assertEqual(st["Condition"]["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})

    def test_the_pipelines_and_schedules_roles_trust_their_service_for_this_account_only(self):
        out = transformed()["Resources"]
        scheduled = {}
        for name, r in out.items():
            if r["Type"] != "AWS::IAM::Role":
                continue
            for st in r["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                services = st["Principal"].get("Service", [])
                services = [services] if isinstance(services, str) else services
                if {"scheduler.amazonaws.com", "events.amazonaws.com", "states.amazonaws.com"} & set(services):
                    self.assertEqual(st["Condition"]["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"}, name)
                    scheduled[name] = services
        self.assertEqual(
            scheduled,
            {"RotationStateMachineScheduledRole": ["scheduler.amazonaws.com"], "RotationStateMachineRole": ["states.amazonaws.com"]},
        )
        schedules = [r["Properties"] for r in out.values() if r["Type"] == "AWS::Scheduler::Schedule"]
        self.assertEqual([s["Target"]["RoleArn"] for s in schedules], [{"Fn::GetAtt": ["RotationStateMachineScheduledRole", "Arn"]}])
        queue = schedules[0]["Target"]["DeadLetterConfig"]["Arn"]
        sends = [st["Resource"] for st in role_statements(out["RotationStateMachineScheduledRole"]) if "sqs:SendMessage" in actions(st)]
        self.assertEqual(sends, [queue])

    def test_every_policy_document_of_both_templates_states_its_version(self):
        documents = list(policy_documents(transformed())) + list(policy_documents(MEMBER))
        # The seven roles' trust and inline policies, the key's and the
        # topic's; the member roles'.
        self.assertGreater(len(documents), 40)
        for document in documents:
            self.assertEqual(document.get("Version"), "2012-10-17", json.dumps(document)[:200])


def role_statements(role):
    for policy in role["Properties"]["Policies"]:
        yield from policy["PolicyDocument"]["Statement"]


def trust_statements(role):
    for st in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
        if isinstance(st, dict) and "Fn::If" in st:
            st = st["Fn::If"][1]
        yield st


class MemberTemplate(unittest.TestCase):
    """The member account's roles: the member role does what the central
    functions do to keys, on users under the managed path only, and trusts
    only those functions' roles with the external id; the operator role only
    reads."""

    def test_the_member_role_grants_the_functions_key_actions_on_the_managed_path_only(self):
        role = MEMBER["Resources"]["MemberRole"]
        granted = {a for st in role_statements(role) for a in actions(st)}
        central = {
            a
            for name in ("HookFunction", "CreateFunction", "FinishFunction", "CleanupFunction")
            for st in statements(FUNCTIONS[name])
            for a in actions(st)
            if a.startswith("iam:")
        }
        self.assertEqual(granted, central, "the member role grants what the functions do in their own account")
        for st in role_statements(role):
            self.assertEqual(st["Effect"], "Allow")
            self.assertEqual(
                st["Resource"], {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:user${ManagedUserPath}*"}
            )

    def test_the_member_role_trusts_only_the_central_functions_with_the_external_id(self):
        role = MEMBER["Resources"]["MemberRole"]
        allow, deny = list(trust_statements(role))
        self.assertEqual(allow["Effect"], "Allow")
        self.assertEqual(allow["Action"], "sts:AssumeRole")
        self.assertEqual(allow["Condition"]["StringEquals"]["sts:ExternalId"], {"Ref": "ExternalId"})
        self.assertIn("FunctionRole-*", allow["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"])
        self.assertIn("${CentralStackName}-", allow["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"])
        self.assertEqual(deny["Effect"], "Deny")
        self.assertIn("aws:PrincipalOrgID", deny["Condition"]["StringNotEquals"])

    def test_the_central_functions_may_assume_only_the_member_role(self):
        for name in ("HookFunction", "CreateFunction", "FinishFunction", "CleanupFunction"):
            sts = [st for st in statements(FUNCTIONS[name]) if "sts:AssumeRole" in actions(st)]
            self.assertEqual(len(sts), 1, name)
            self.assertEqual(sts[0]["Resource"], {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role${MemberRole}"})
        granted = {a for st in statements(FUNCTIONS["TestFunction"]) for a in actions(st)}
        self.assertNotIn("sts:AssumeRole", granted, "the key test signs with the new key")

    def test_the_operator_role_only_reads(self):
        role = MEMBER["Resources"]["OperatorReadOnlyRole"]
        self.assertEqual(role["Condition"], "HasOperatorRole")
        for st in role_statements(role):
            for a in actions(st):
                self.assertRegex(a, r"^iam:(List|Get)", a)

    def test_every_role_takes_the_permissions_boundary(self):
        for name, r in MEMBER["Resources"].items():
            if r["Type"] == "AWS::IAM::Role":
                self.assertIn("PermissionsBoundary", r["Properties"], name)

    def test_parameters_are_described(self):
        for name, p in MEMBER["Parameters"].items():
            self.assertTrue(p.get("Description"), name)

if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"infra: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
