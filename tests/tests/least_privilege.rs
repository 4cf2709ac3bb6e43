//! Least privilege, proven. Each function (hook, create, test, finish,
//! cleanup) runs signed as a moto user whose inline policies are exactly its
//! role's, from the SAM-transformed template with a deployment's parameters
//! substituted (`tests/infra/permissions.py roles`), and every call passes
//! the policy gate in front of moto (`tests/support/policy_gate.py`), which
//! matches it against the real resource ARN and the conditions the template
//! uses, Deny before Allow.
//!
//! Every path completes with no denial (a denial fails naming the action,
//! the resource and the grant it lacks), and the same credentials calling
//! AWS directly, past rekey's own checks, cannot touch a user outside the
//! managed path, a secret that is not an owning secret, or a tag rekey does
//! not own. `REKEY_TEMPLATE` runs it against another template (a candidate,
//! or one with a grant removed to watch it fail).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_iam::types::StatusType;
use aws_sdk_secretsmanager::types::Tag;
use common::*;
use rekey::model::{Credential, KeyStatus, Provider};
use rekey::Config;
use rekey_testkit::emulator::{emulator, USER_PATTERN};
use rekey_testkit::roles::{gate_log, role_policies, Decision, Role};
use rekey_testkit::{
    moto_behind_policy_gate, sdk_config, test_config, App, World, ADMIN_PREFIX, MANAGED_PATH,
    OWNING_PREFIX,
};
use serde_json::json;

/// The customer key the deployments encrypt their secrets with
/// (`SecretsKmsKeyArn`): Secrets Manager's use of it is authorized on the
/// caller's policies, as AWS does.
const SECRETS_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/0b5c7b3e-6c1f-4a53-9d5e-2f3f1a6c8e11";

const FUNCTIONS: [(&str, Function); 5] = [
    ("hook", Function::Hook),
    ("create", Function::Create),
    ("test", Function::Test),
    ("finish", Function::Finish),
    ("cleanup", Function::Cleanup),
];

/// A deployment: the template's parameters, each function's role as the
/// template grants it, the user that plays it and the steps signed as it.
struct Deployment {
    name: &'static str,
    roles: BTreeMap<String, Role>,
    /// function -> (the user's ARN, its key)
    principals: BTreeMap<String, (String, Credential)>,
    apps: BTreeMap<String, App>,
    /// How many of this deployment's decisions have been checked.
    checked: Mutex<usize>,
    /// function -> actions the gate allowed it.
    exercised: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

/// The template's parameters of a deployment that deactivates superseded
/// keys after `deactivate_after` (`0s`: at promotion), with Alibaba and
/// SCloud enabled (so admin secrets are read) and secrets under a
/// customer key.
fn parameters(deactivate_after: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ManagedUserPath", MANAGED_PATH.to_owned()),
        ("SecretPrefix", OWNING_PREFIX.to_owned()),
        ("AdminSecretPrefix", ADMIN_PREFIX.to_owned()),
        ("AlibabaUserPattern", USER_PATTERN.to_owned()),
        ("SCloudUserPattern", USER_PATTERN.to_owned()),
        ("SecretsKmsKeyArn", SECRETS_KEY.to_owned()),
        ("DeactivateAfter", deactivate_after.to_owned()),
        ("DeleteAfter", "0s".to_owned()),
        ("IdleBeforeDeactivate", "0s".to_owned()),
        ("MemberAccounts", String::new()),
    ]
}

/// The functions' settings of that deployment: the same periods and
/// prefixes, the emulators for Alibaba and SCloud, no member account.
fn config(deactivate_after: &str) -> Config {
    let period = |s: &str| humantime::parse_duration(s).unwrap();
    let mut config = test_config();
    config.managed_user_path = Some(MANAGED_PATH.to_owned());
    config.secret_prefix = OWNING_PREFIX.to_owned();
    config.admin_secret_prefix = ADMIN_PREFIX.to_owned();
    config.deactivate_after = period(deactivate_after);
    config.delete_after = Duration::ZERO;
    config.idle_before_deactivate = Duration::ZERO;
    config.alibaba = emulator(Provider::Alibaba).config().alibaba;
    config.scloud = emulator(Provider::SCloud).config().scloud;
    config.member.accounts = Vec::new();
    config
}

/// The roles of a deployment, transformed once per test process.
fn roles(deactivate_after: &str) -> BTreeMap<String, Role> {
    static CACHE: Mutex<BTreeMap<String, BTreeMap<String, Role>>> = Mutex::new(BTreeMap::new());
    let mut cache = CACHE.lock().unwrap();
    cache
        .entry(deactivate_after.to_owned())
        .or_insert_with(|| {
            let params = parameters(deactivate_after);
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            role_policies(&params)
        })
        .clone()
}

impl Deployment {
    async fn new(w: &World, name: &'static str, deactivate_after: &str) -> Deployment {
        let roles = roles(deactivate_after);
        let config = config(deactivate_after);
        let mut principals = BTreeMap::new();
        let mut apps = BTreeMap::new();
        for (function, _) in FUNCTIONS {
            let role = roles
                .get(function)
                .unwrap_or_else(|| panic!("the template has no function rekey-{function}"));
            let (arn, key) = w.role_user(function, role).await;
            apps.insert(function.to_owned(), w.app_as(&key, config.clone()).await);
            principals.insert(function.to_owned(), (arn, key));
        }
        Deployment {
            name,
            roles,
            principals,
            apps,
            checked: Mutex::new(0),
            exercised: Mutex::new(BTreeMap::new()),
        }
    }

    fn app(&self, function: &str) -> &App {
        &self.apps[function]
    }

    fn function_of(&self, principal: &str) -> Option<&str> {
        self.principals
            .iter()
            .find(|(_, (arn, _))| arn == principal)
            .map(|(f, _)| f.as_str())
    }

    /// This deployment's decisions, in order.
    async fn decisions(&self) -> Vec<(String, Decision)> {
        gate_log()
            .await
            .into_iter()
            .filter_map(|d| Some((self.function_of(&d.principal)?.to_owned(), d)))
            .collect()
    }

    /// Fails if the gate denied any call of this deployment's functions
    /// since the last check, or if `path` made no call at all.
    async fn assert_no_denial(&self, path: &str) {
        let decisions = self.decisions().await;
        let mut checked = self.checked.lock().unwrap();
        let new = &decisions[*checked..];
        *checked = decisions.len();
        assert!(
            !new.is_empty(),
            "{} / {path}: the policy gate saw no call of the functions",
            self.name
        );
        let denied: Vec<String> = new
            .iter()
            .filter(|(_, d)| !d.allowed)
            .map(|(f, d)| format!("  rekey-{f} ({} policies): {d}", self.roles[f].logical_id))
            .collect();
        assert!(
            denied.is_empty(),
            "{} / {path}: the template's roles deny calls the functions make:\n{}",
            self.name,
            denied.join("\n")
        );
        let mut exercised = self.exercised.lock().unwrap();
        for (f, d) in new {
            exercised
                .entry(f.clone())
                .or_default()
                .insert(d.action.clone());
        }
    }

    /// Every function made calls, and the grants no path exercised (the
    /// runtime's logs and traces aside) are reported.
    fn report_coverage(&self) {
        let exercised = self.exercised.lock().unwrap();
        for (function, _) in FUNCTIONS {
            let made = exercised.get(function).cloned().unwrap_or_default();
            assert!(
                !made.is_empty(),
                "{}: rekey-{function} made no call on any path",
                self.name
            );
            let unused: Vec<String> = self.roles[function]
                .actions()
                .into_iter()
                .filter(|a| !a.starts_with("logs:") && !a.starts_with("xray:"))
                .filter(|a| !made.contains(a))
                .collect();
            eprintln!(
                "{}: rekey-{function} made {made:?}; granted and not exercised here: {unused:?}",
                self.name
            );
        }
    }
}

/// Puts `secret` under the deployment's customer key (as its operator
/// would), so reading and writing it needs the role's KMS grants.
async fn encrypt(w: &World, secret: &str) {
    w.sm.update_secret()
        .secret_id(secret)
        .kms_key_id(SECRETS_KEY)
        .send()
        .await
        .expect("UpdateSecret KmsKeyId");
}

/// The answer of a step, or a failure that names the gate's denials first.
async fn must(
    d: &Deployment,
    what: &str,
    result: Result<serde_json::Value, lambda_runtime::Diagnostic>,
) -> serde_json::Value {
    match result {
        Ok(v) => v,
        Err(e) => {
            d.assert_no_denial(what).await;
            panic!("{what}: {}: {}", e.error_type, e.error_message)
        }
    }
}

/// The pipeline's rotation, each step run by its own function.
async fn pipeline(d: &Deployment, secret: &str) -> serde_json::Value {
    let event = json!({ "SecretId": secret });
    let created = invoke(d.app("create"), Function::Create, event).await;
    let created = must(d, "rekey-create", created).await;
    let tested = invoke(d.app("test"), Function::Test, created.clone()).await;
    must(d, "rekey-test", tested).await;
    let finished = invoke(d.app("finish"), Function::Finish, created).await;
    must(d, "rekey-finish", finished).await
}

/// The hook's rotation, as Secrets Manager starts and drives it.
async fn hook(d: &Deployment, w: &World, secret: &str) {
    let token = w.start_rotation(secret).await;
    for step in STEPS {
        let out = common::hook(d.app("hook"), step, secret, &token).await;
        must(d, &format!("rekey-hook {step}"), out).await;
    }
}

/// An AWS user under the managed path with one key, its owning secret
/// under the customer key: (user, key, secret).
async fn aws_secret(w: &World) -> (String, Credential, String) {
    let (user, key, secret) = w.enrolled(MANAGED_PATH).await;
    encrypt(w, &secret).await;
    (user, key, secret)
}

fn current_key(keys: &[rekey::model::AccessKey], id: &str) -> bool {
    keys.iter()
        .any(|k| k.id == id && k.status == KeyStatus::Active)
}

#[tokio::test]
async fn every_path_runs_with_exactly_its_roles_grants() {
    moto_behind_policy_gate();
    let w = World::new().await;
    let d = Deployment::new(&w, "DeactivateAfter 1s", "1s").await;

    // The hook rotates an IAM user's key.
    let (user, old, hooked) = aws_secret(&w).await;
    hook(&d, &w, &hooked).await;
    let new = w.current_credential(&hooked).await.unwrap();
    assert_ne!(new.access_key_id, old.access_key_id);
    d.assert_no_denial("hook rotation").await;

    // The pipeline rotates another.
    let (piped_user, piped_old, piped) = aws_secret(&w).await;
    pipeline(&d, &piped).await;
    let keys = w.keys(&piped_user).await;
    assert_eq!(
        keys.len(),
        2,
        "the old key stays active in its grace period"
    );
    assert_ne!(
        w.current_credential(&piped).await.unwrap().access_key_id,
        piped_old.access_key_id
    );
    d.assert_no_denial("pipeline rotation").await;

    // At the limit of 2 keys: the inactive one is deleted to make room, by
    // the hook and by the pipeline.
    for driver in ["hook", "pipeline"] {
        let user = w.user(MANAGED_PATH).await;
        let stale = w.create_key(&user).await;
        w.deactivate(&user, &stale.access_key_id).await;
        next_second().await;
        let current = w.create_key(&user).await;
        let secret = w.managed_secret(&user, Some(&current)).await;
        encrypt(&w, &secret).await;
        if driver == "hook" {
            hook(&d, &w, &secret).await;
        } else {
            pipeline(&d, &secret).await;
        }
        let ids = w.key_ids(&user).await;
        assert_eq!(ids.len(), 2, "{driver}: {ids:?}");
        assert!(!ids.contains(&stale.access_key_id), "{driver}: {ids:?}");
        d.assert_no_denial(&format!("{driver} rotation at the key limit"))
            .await;
    }

    // Cleanup deactivates the superseded key after its second, then
    // deletes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = cleanup(d.app("cleanup"), &hooked).await;
    assert_eq!(
        report["Deactivated"],
        json!([old.access_key_id]),
        "{report}"
    );
    let report = cleanup(d.app("cleanup"), &hooked).await;
    assert_eq!(report["Deleted"], json!([old.access_key_id]), "{report}");
    assert_eq!(w.key_ids(&user).await, vec![new.access_key_id.clone()]);
    d.assert_no_denial("cleanup deactivating, then deleting")
        .await;

    // The sweep's triage lists the managed secrets.
    let answer = invoke(
        d.app("cleanup"),
        Function::Cleanup,
        json!({"Triage": {"RotationPeriod": "90d"}}),
    )
    .await
    .unwrap();
    assert!(answer["Listed"].as_u64().unwrap() >= 4, "{answer}");
    d.assert_no_denial("triage").await;

    // Alibaba and SCloud secrets signed with an admin secret: the hook,
    // the pipeline and cleanup read it.
    for kind in [Provider::Alibaba, Provider::SCloud] {
        let e = emulator(kind);
        let admin = w.admin_secret(e).await;
        encrypt(&w, &admin).await;
        let (user, key, secret) = w.provider_enrolled(e, Some(&admin)).await;
        encrypt(&w, &secret).await;
        hook(&d, &w, &secret).await;
        let (piped_user, piped_key, piped) = w.provider_enrolled(e, Some(&admin)).await;
        encrypt(&w, &piped).await;
        pipeline(&d, &piped).await;
        for (user, key, secret) in [(&user, &key, &secret), (&piped_user, &piped_key, &piped)] {
            let current = w.current_credential(secret).await.unwrap();
            assert_ne!(current.access_key_id, key.access_key_id);
            assert!(current_key(&e.keys(user).await, &current.access_key_id));
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let report = cleanup(d.app("cleanup"), &secret).await;
        assert_eq!(
            report["Deactivated"],
            json!([key.access_key_id]),
            "{report}"
        );
        d.assert_no_denial(&format!("{} with an admin secret", kind.name()))
            .await;
        let reads = d
            .decisions()
            .await
            .into_iter()
            .filter(|(_, x)| x.action == "secretsmanager:GetSecretValue" && x.resource == admin)
            .map(|(f, _)| f)
            .collect::<BTreeSet<_>>();
        assert_eq!(
            reads,
            ["cleanup", "create", "hook"]
                .into_iter()
                .map(String::from)
                .collect(),
            "{}: the functions that sign with the admin key read it",
            kind.name()
        );
    }
    // A managed admin secret rotates itself (the pipeline and the hook),
    // and a secret it signs for rotates with its new key.
    for kind in [Provider::Alibaba, Provider::SCloud] {
        let e = emulator(kind);
        let (_, old, admin) = w.managed_admin(e).await;
        encrypt(&w, &admin).await;
        pipeline(&d, &admin).await;
        let (_, _, dependent) = w.provider_enrolled(e, Some(&admin)).await;
        encrypt(&w, &dependent).await;
        pipeline(&d, &dependent).await;
        let current = w.current_credential(&admin).await.unwrap();
        assert_ne!(current.access_key_id, old.access_key_id);
        let (_, old, hooked) = w.managed_admin(e).await;
        encrypt(&w, &hooked).await;
        hook(&d, &w, &hooked).await;
        let current = w.current_credential(&hooked).await.unwrap();
        assert_ne!(current.access_key_id, old.access_key_id);
        d.assert_no_denial(&format!("{} admin secret rotating itself", kind.name()))
            .await;
    }
    d.report_coverage();
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}

#[tokio::test]
async fn deactivation_at_promotion_runs_with_exactly_its_roles_grants() {
    moto_behind_policy_gate();
    let w = World::new().await;
    let d = Deployment::new(&w, "DeactivateAfter 0s", "0s").await;

    // The hook's finishSecret, and rekey-finish, deactivate the superseded
    // key at promotion; cleanup then deletes it.
    let (user, old, secret) = aws_secret(&w).await;
    hook(&d, &w, &secret).await;
    assert_eq!(
        status(&w.keys(&user).await, &old.access_key_id),
        Some(KeyStatus::Inactive)
    );
    d.assert_no_denial("hook rotation, deactivating at promotion")
        .await;
    let (piped_user, piped_old, piped) = aws_secret(&w).await;
    pipeline(&d, &piped).await;
    assert_eq!(
        status(&w.keys(&piped_user).await, &piped_old.access_key_id),
        Some(KeyStatus::Inactive)
    );
    d.assert_no_denial("pipeline rotation, deactivating at promotion")
        .await;
    let report = cleanup(d.app("cleanup"), &piped).await;
    assert_eq!(
        report["Deleted"],
        json!([piped_old.access_key_id]),
        "{report}"
    );
    d.assert_no_denial("cleanup deleting").await;

    // rekey-finish signs an Alibaba secret's deactivation with its admin key.
    let e = emulator(Provider::Alibaba);
    let admin = w.admin_secret(e).await;
    encrypt(&w, &admin).await;
    let (user, key, secret) = w.provider_enrolled(e, Some(&admin)).await;
    encrypt(&w, &secret).await;
    pipeline(&d, &secret).await;
    assert_eq!(
        status(&e.keys(&user).await, &key.access_key_id),
        Some(KeyStatus::Inactive)
    );
    d.assert_no_denial("Alibaba pipeline rotation, deactivating at promotion")
        .await;
    assert!(
        d.decisions()
            .await
            .iter()
            .any(|(f, x)| f == "finish" && x.allowed && x.resource == admin),
        "rekey-finish read the admin secret"
    );
    d.report_coverage();
    let current = w.current_credential(&secret).await.unwrap();
    assert!(current_key(&e.keys(&user).await, &current.access_key_id));
}

/// A call made directly with a role's credentials, and what the gate made
/// of it.
struct Probe {
    what: String,
    action: &'static str,
    resource: String,
}

#[tokio::test]
async fn the_roles_alone_keep_out_of_what_rekey_does_not_own() {
    moto_behind_policy_gate();
    let w = World::new().await;
    // Both deployments: the finish role holds IAM grants only when it
    // deactivates at promotion.
    let deployments = [
        Deployment::new(&w, "DeactivateAfter 1s", "1s").await,
        Deployment::new(&w, "DeactivateAfter 0s", "0s").await,
    ];

    // A user outside the managed path, with a key.
    let outsider = w.user("/other/").await;
    let outsider_key = w.create_key(&outsider).await;
    let outsider_arn = format!("arn:aws:iam::123456789012:user/other/{outsider}");
    // An owning secret, a tagged secret outside the prefix and an untagged
    // one inside it.
    let (inside, _, owning) = aws_secret(&w).await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let foreign = w
        .secret_named(
            &format!("payroll/{unique}"),
            &json!({ "UserName": inside }),
            &[("rekey:managed", "true")],
        )
        .await;
    let untagged = w
        .secret_named(
            &format!("{OWNING_PREFIX}aws/u-{}", &unique[..12]),
            &json!({ "UserName": "nobody" }),
            &[],
        )
        .await;
    let before = (
        w.key_ids(&outsider).await,
        w.tags(&foreign).await,
        w.tags(&untagged).await,
        w.tags(&owning).await,
    );

    for d in &deployments {
        for (function, _) in FUNCTIONS {
            let (principal, key) = &d.principals[function];
            let sdk = sdk_config(key).await;
            let iam = aws_sdk_iam::Client::new(&sdk);
            let sm = aws_sdk_secretsmanager::Client::new(&sdk);
            let mut probes: Vec<(Probe, Option<String>)> = Vec::new();
            let mut probe = |what: String, action, resource: &str, code: Option<String>| {
                probes.push((
                    Probe {
                        what,
                        action,
                        resource: resource.to_owned(),
                    },
                    code,
                ))
            };
            let code = |e: Option<&str>| e.map(str::to_owned).or(Some("none".to_owned()));

            // IAM: the user outside the managed path.
            let u = &outsider;
            let k = outsider_key.access_key_id.as_str();
            let r = iam.get_user().user_name(u).send().await;
            probe(
                "GetUser".into(),
                "iam:GetUser",
                &outsider_arn,
                r.err().and_then(|e| code(e.code())),
            );
            let r = iam.list_access_keys().user_name(u).send().await;
            probe(
                "ListAccessKeys".into(),
                "iam:ListAccessKeys",
                &outsider_arn,
                r.err().and_then(|e| code(e.code())),
            );
            let r = iam.create_access_key().user_name(u).send().await;
            probe(
                "CreateAccessKey".into(),
                "iam:CreateAccessKey",
                &outsider_arn,
                r.err().and_then(|e| code(e.code())),
            );
            let r = iam
                .update_access_key()
                .user_name(u)
                .access_key_id(k)
                .status(StatusType::Inactive)
                .send()
                .await;
            probe(
                "UpdateAccessKey".into(),
                "iam:UpdateAccessKey",
                &outsider_arn,
                r.err().and_then(|e| code(e.code())),
            );
            let r = iam
                .delete_access_key()
                .user_name(u)
                .access_key_id(k)
                .send()
                .await;
            probe(
                "DeleteAccessKey".into(),
                "iam:DeleteAccessKey",
                &outsider_arn,
                r.err().and_then(|e| code(e.code())),
            );
            let r = iam.get_access_key_last_used().access_key_id(k).send().await;
            probe(
                "GetAccessKeyLastUsed".into(),
                "iam:GetAccessKeyLastUsed",
                &outsider_arn,
                r.err().and_then(|e| code(e.code())),
            );

            // Secrets Manager: a secret outside the prefix, and one inside
            // it that is not tagged managed.
            for (which, s) in [
                ("outside the prefix", &foreign),
                ("not tagged managed", &untagged),
            ] {
                let r = sm.describe_secret().secret_id(s).send().await;
                probe(
                    format!("DescribeSecret {which}"),
                    "secretsmanager:DescribeSecret",
                    s,
                    r.err().and_then(|e| code(e.code())),
                );
                let r = sm.get_secret_value().secret_id(s).send().await;
                probe(
                    format!("GetSecretValue {which}"),
                    "secretsmanager:GetSecretValue",
                    s,
                    r.err().and_then(|e| code(e.code())),
                );
                let r = sm
                    .put_secret_value()
                    .secret_id(s)
                    .secret_string("{}")
                    .send()
                    .await;
                probe(
                    format!("PutSecretValue {which}"),
                    "secretsmanager:PutSecretValue",
                    s,
                    r.err().and_then(|e| code(e.code())),
                );
                let r = sm
                    .update_secret_version_stage()
                    .secret_id(s)
                    .version_stage("AWSPENDING")
                    .move_to_version_id(uuid::Uuid::new_v4().to_string())
                    .send()
                    .await;
                probe(
                    format!("UpdateSecretVersionStage {which}"),
                    "secretsmanager:UpdateSecretVersionStage",
                    s,
                    r.err().and_then(|e| code(e.code())),
                );
                let tag = Tag::builder()
                    .key("rekey:created:AKIAPROBE")
                    .value("2026-01-01T00:00:00Z")
                    .build();
                let r = sm.tag_resource().secret_id(s).tags(tag).send().await;
                probe(
                    format!("TagResource {which}"),
                    "secretsmanager:TagResource",
                    s,
                    r.err().and_then(|e| code(e.code())),
                );
                let r = sm
                    .untag_resource()
                    .secret_id(s)
                    .tag_keys("rekey:created:AKIAPROBE")
                    .send()
                    .await;
                probe(
                    format!("UntagResource {which}"),
                    "secretsmanager:UntagResource",
                    s,
                    r.err().and_then(|e| code(e.code())),
                );
            }

            // Tags rekey does not own, on an owning secret.
            for (key, value) in [
                ("rekey:managed", "false"),
                ("rekey:paused", "true"),
                ("team", "ops"),
            ] {
                let tag = Tag::builder().key(key).value(value).build();
                let r = sm.tag_resource().secret_id(&owning).tags(tag).send().await;
                probe(
                    format!("TagResource {key} on an owning secret"),
                    "secretsmanager:TagResource",
                    &owning,
                    r.err().and_then(|e| code(e.code())),
                );
            }
            let r = sm
                .untag_resource()
                .secret_id(&owning)
                .tag_keys("rekey:managed")
                .send()
                .await;
            probe(
                "UntagResource rekey:managed on an owning secret".into(),
                "secretsmanager:UntagResource",
                &owning,
                r.err().and_then(|e| code(e.code())),
            );

            // Every probe was refused, by the gate, for its scope wherever
            // the role holds the action.
            let log = gate_log().await;
            let granted = d.roles[function].actions();
            for (p, code) in &probes {
                let who = format!("{} rekey-{function}: {}", d.name, p.what);
                assert!(
                    matches!(
                        code.as_deref(),
                        Some("AccessDenied" | "AccessDeniedException")
                    ),
                    "{who}: expected AccessDenied, got {code:?}"
                );
                let decision = log
                    .iter()
                    .rev()
                    .find(|x| {
                        &x.principal == principal
                            && x.action == p.action
                            && x.resource == p.resource
                    })
                    .unwrap_or_else(|| panic!("{who}: the policy gate has no decision for it"));
                assert!(!decision.allowed, "{who}: {decision}");
                if granted.iter().any(|a| a == p.action) {
                    assert!(
                        decision.why.contains("statements for this action"),
                        "{who}: the role holds {} but is refused for another reason: {decision}",
                        p.action
                    );
                }
            }

            // The same role is let in where rekey's own things are.
            let r = sm.describe_secret().secret_id(&owning).send().await;
            assert!(
                r.is_ok(),
                "{} rekey-{function}: DescribeSecret of an owning secret: {r:?}",
                d.name
            );
            if granted.iter().any(|a| a == "iam:ListAccessKeys") {
                let r = iam.list_access_keys().user_name(&inside).send().await;
                assert!(
                    r.is_ok(),
                    "{} rekey-{function}: ListAccessKeys of a managed user: {r:?}",
                    d.name
                );
            }
        }
    }

    // Nothing changed.
    let after = (
        w.key_ids(&outsider).await,
        w.tags(&foreign).await,
        w.tags(&untagged).await,
        w.tags(&owning).await,
    );
    assert_eq!(after, before);
}
