"""Checks of infra/template.yaml and infra/member.yaml that cfn-lint and
checkov cannot make: the template and the workspace agree, and the roles are
least privilege."""

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
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    names = set()
    for m in members:
        manifest = tomllib.loads((ROOT / m / "Cargo.toml").read_text())
        names.update(b["name"] for b in manifest.get("bin", []))
    return names


def statements(resource):
    """Every inline statement of a function's or state machine's policies,
    on both branches of a condition (SAM policy templates have none)."""
    for policy in resource["Properties"].get("Policies", []):
        branches = policy["Fn::If"][1:] if isinstance(policy, dict) and "Fn::If" in policy else [policy]
        for p in branches:
            if isinstance(p, dict) and "Statement" in p:
                yield from p["Statement"]


def actions(statement):
    a = statement["Action"]
    return [a] if isinstance(a, str) else list(a)


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
        filled = re.sub(r"\$\{MaxConcurrency\}", "1", text)
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
        granted = set()
        for name, f in FUNCTIONS.items():
            for st in statements(f):
                if "secretsmanager:TagResource" in actions(st):
                    keys = set(st["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"])
                    self.assertLessEqual(keys, {w + "*" for w in written}, name)
                    granted |= keys
        self.assertEqual(granted, {w + "*" for w in written})
        # Each step may write the records it writes: create its new key's,
        # finish and cleanup the timers, the hook all of them.
        def tag_keys(name):
            return {k for st in statements(FUNCTIONS[name]) if "secretsmanager:TagResource" in actions(st)
                    for k in st["Condition"]["ForAllValues:StringLike"]["aws:TagKeys"]}
        self.assertEqual(tag_keys("CreateFunction"), {"rekey:created:*"})
        self.assertEqual(tag_keys("HookFunction"), {w + "*" for w in written})
        self.assertLessEqual({"rekey:superseded:*", "rekey:inactive:*"}, tag_keys("FinishFunction"))

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
        granted = {a for st in statements(FUNCTIONS["TestFunction"]) for a in actions(st)}
        self.assertEqual(granted, {"secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "kms:Decrypt"})

    def test_the_hook_outlives_its_test_timeout(self):
        mapping = TEMPLATE["Mappings"]["HookTimeout"]
        allowed = TEMPLATE["Parameters"]["TestTimeout"]["AllowedValues"]
        self.assertEqual(set(mapping), set(allowed))
        for test_timeout, row in mapping.items():
            self.assertGreaterEqual(row["Seconds"], int(test_timeout) + 30)

    def test_every_role_of_the_transformed_template_takes_the_permissions_boundary(self):
        # SAM makes the roles (the functions', the state machine's, the
        # schedules'): check them on its output.
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        from samtranslator.translator.transform import transform

        template = json.loads(json.dumps(TEMPLATE, default=str))
        template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
        template["Resources"]["RotationStateMachine"]["Properties"]["DefinitionUri"] = "s3://bucket/asl.json"

        class NoManagedPolicies:
            def load(self):
                return {}

        out = transform(template, {}, NoManagedPolicies())
        roles = {k: v for k, v in out["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
        self.assertGreaterEqual(len(roles), 8, sorted(roles))
        boundary = {"Fn::If": ["HasBoundary", {"Ref": "PermissionsBoundaryArn"}, {"Ref": "AWS::NoValue"}]}
        for name, role in roles.items():
            self.assertEqual(role["Properties"].get("PermissionsBoundary"), boundary, name)

    def test_the_state_machine_names_no_partition(self):
        text = (ROOT / "infra/statemachine/rotation.asl.json").read_text()
        self.assertNotIn("arn:aws:", text)
        self.assertIn("arn:${Partition}:states:::", text)

    def test_parameters_are_described(self):
        for name, p in TEMPLATE["Parameters"].items():
            self.assertTrue(p.get("Description"), name)



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
