//! Alibaba Cloud RAM and SCloud keys rotated through the same functions:
//! Secrets Manager on moto (signatures checked), the provider on its
//! emulator (every signature checked with the provider's official SDK).
//! Both signing modes: an admin key pair from `AdminSecretId`, and the
//! user's own key. Each scenario runs once per provider (see the end); the
//! scenarios every provider shares (the key limit, idempotent steps,
//! orphans, a pipeline rotation) run against AWS IAM on moto too, through
//! [`Subject`].

mod common;

use std::time::Duration;

use common::*;
use rekey::model::{Credential, KeyStatus, Provider, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use rekey::{Driver, Probing};
use rekey_testkit::emulator::{emulator, Emulator};
use rekey_testkit::{test_config, version_with, App, World, MANAGED_PATH};
use serde_json::{json, Value};

/// How each provider words what the scenarios check.
struct Dialect {
    /// The provider's answer to a disabled key.
    disabled: &'static str,
    /// Its answer to an unknown key.
    unknown_key: &'static str,
    /// Its answer to a key without the permission.
    no_permission: &'static str,
    /// The code logged for a throttled request.
    throttled: &'static str,
    /// Whether it reports when a key was last used.
    reports_use: bool,
}

fn dialect(kind: Provider) -> Dialect {
    match kind {
        Provider::Alibaba => Dialect {
            disabled: "Forbidden.AccessKeyDisabled",
            unknown_key: "InvalidAccessKeyId.NotFound",
            no_permission: "NoPermission",
            throttled: "Throttling.User",
            reports_use: true,
        },
        _ => Dialect {
            disabled: "RetCode 130",
            unknown_key: "RetCode 130",
            no_permission: "RetCode 130",
            throttled: "150",
            reports_use: false,
        },
    }
}

/// Everything a refused step must leave as it was (`common::snapshot`, with
/// the user's keys in the emulator).
async fn snapshot(w: &World, e: &Emulator, secret: &str, user: &str) -> Snapshot {
    snapshot_with(w, secret, e.keys(user).await).await
}

/// An admin-mode world: the shared emulator, an admin secret, the app.
async fn admin_world(kind: Provider) -> (World, &'static Emulator, String, App) {
    let w = World::new().await;
    let e = emulator(kind);
    let admin = w.admin_secret(e).await;
    let app = w.app(e.config());
    (w, e, admin, app)
}

/// The provider a scenario shared by every provider runs against: IAM on
/// moto (a user under the managed path, the function's own credentials),
/// or the provider's emulator with an admin key pair from `AdminSecretId`.
enum Subject {
    Aws,
    Emulated { e: &'static Emulator, admin: String },
}

impl Subject {
    /// A world, the subject of provider `kind` and the steps set up for it.
    async fn world(kind: Provider) -> (World, Subject, App) {
        if kind == Provider::Aws {
            let w = World::new().await;
            let app = w.app(test_config());
            return (w, Subject::Aws, app);
        }
        let (w, e, admin, app) = admin_world(kind).await;
        (w, Subject::Emulated { e, admin }, app)
    }

    /// A new user rekey may manage.
    async fn user(&self, w: &World) -> String {
        match self {
            Subject::Aws => w.user(MANAGED_PATH).await,
            Subject::Emulated { e, .. } => e.user(false).await,
        }
    }

    /// A new key of `user`, as an operator makes it (none may be logged).
    async fn create_key(&self, w: &World, user: &str) -> Credential {
        match self {
            Subject::Aws => w.create_key(user).await,
            Subject::Emulated { e, .. } => {
                let key = e.create_key(user).await;
                w.saw_credential(&key);
                key
            }
        }
    }

    /// Deactivates a key of `user`, as an operator would.
    async fn deactivate(&self, w: &World, user: &str, key_id: &str) {
        match self {
            Subject::Aws => w.deactivate(user, key_id).await,
            Subject::Emulated { e, .. } => e.set_status(key_id, KeyStatus::Inactive).await,
        }
    }

    /// The managed secret of `user`, holding `key` if given.
    async fn secret(&self, w: &World, user: &str, key: Option<&Credential>) -> String {
        match self {
            Subject::Aws => w.managed_secret(user, key).await,
            Subject::Emulated { e, admin } => w.provider_secret(e, user, key, Some(admin)).await,
        }
    }

    /// A user with one key, and its managed secret holding it.
    async fn enrolled(&self, w: &World) -> (String, Credential, String) {
        let user = self.user(w).await;
        let key = self.create_key(w, &user).await;
        let secret = self.secret(w, &user, Some(&key)).await;
        (user, key, secret)
    }

    /// The ids of the user's keys, oldest first.
    async fn key_ids(&self, w: &World, user: &str) -> Vec<String> {
        match self {
            Subject::Aws => w.key_ids(user).await,
            Subject::Emulated { e, .. } => e.key_ids(user).await,
        }
    }

    /// Everything a refused step must leave as it was.
    async fn snapshot(&self, w: &World, secret: &str, user: &str) -> Snapshot {
        match self {
            Subject::Aws => common::snapshot(w, secret, user).await,
            Subject::Emulated { e, .. } => snapshot(w, e, secret, user).await,
        }
    }

    /// The invariants every scenario ends with.
    async fn assert_invariants(&self, w: &World, secret: &str, user: &str) {
        match self {
            Subject::Aws => w.assert_invariants(secret, user).await,
            Subject::Emulated { e, .. } => w.assert_provider_invariants(e, secret, user).await,
        }
    }
}

async fn first_rotation_from_user_name_only_with_an_admin_key(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let user = e.user(false).await;
    let secret = w.provider_secret(e, &user, None, Some(&admin)).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let keys = e.keys(&user).await;
    assert_eq!(keys.len(), 1);
    let current = w.value(&secret, AWSCURRENT).await.unwrap();
    assert_eq!(current["AccessKeyId"], keys[0].id.as_str());
    assert!(current["AccessKeySecret"].is_string());
    assert!(current.get("SecretAccessKey").is_none());
    assert_eq!(current["Provider"], kind.name());
    assert_eq!(current["AdminSecretId"], admin.as_str());
    assert_eq!(w.stages(&secret).await[&token], vec![AWSCURRENT]);
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn rotation_with_an_admin_key_keeps_the_old_key_in_grace(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let (user, old, secret) = w.provider_enrolled(e, Some(&admin)).await;
    let since = e.log().await.len();
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let keys = e.keys(&user).await;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.status == KeyStatus::Active));
    let new = w.current_credential(&secret).await.unwrap();
    assert_ne!(new.access_key_id, old.access_key_id);
    let previous = w.value(&secret, AWSPREVIOUS).await.unwrap();
    assert_eq!(previous["AccessKeyId"], old.access_key_id.as_str());
    assert!(w
        .tags(&secret)
        .await
        .contains_key(&format!("rekey:superseded:{}", old.access_key_id)));
    // Every call about the user was signed with the admin key, but the key
    // test's (signed with the new key; SCloud's names the user).
    let calls = e.requests_since(since, &user).await;
    assert!(calls.iter().any(|r| r.action == "CreateAccessKey"));
    assert!(
        calls
            .iter()
            .filter(|r| r.signer != new.access_key_id)
            .all(|r| r.signer == e.root.access_key_id),
        "{calls:?}"
    );
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn self_rotation_signs_with_the_users_own_keys(kind: Provider) {
    let w = World::new().await;
    let e = emulator(kind);
    let app = w.app(zero_periods(e.config()));
    let (user, old, secret) = w.provider_enrolled(e, None).await;
    let since = e.log().await.len();
    let token = w.start_rotation(&secret).await;

    // Deactivate-after 0s: finish deactivates the old key at once, signed
    // by the new one.
    hook_rotation(&app, &secret, &token).await.unwrap();

    let new = w.current_credential(&secret).await.unwrap();
    assert_ne!(new.access_key_id, old.access_key_id);
    let ram = e.requests_since(since, &user).await;
    let signer_of = |ram: &[rekey_testkit::emulator::Request], action: &str| -> Vec<String> {
        ram.iter()
            .filter(|r| r.action == action && r.code == "OK")
            .map(|r| r.signer.clone())
            .collect()
    };
    assert_eq!(
        signer_of(&ram, "CreateAccessKey"),
        vec![old.access_key_id.clone()]
    );
    assert_eq!(
        signer_of(&ram, "UpdateAccessKey"),
        vec![new.access_key_id.clone()]
    );
    assert!(ram.iter().all(|r| r.signer != e.root.access_key_id));
    let keys = e.keys(&user).await;
    let old_status = keys
        .iter()
        .find(|k| k.id == old.access_key_id)
        .unwrap()
        .status;
    assert_eq!(old_status, KeyStatus::Inactive);

    // Cleanup deletes the inactive key, again signed by the current key.
    let since = e.log().await.len();
    let report = cleanup(&app, &secret).await;
    assert_eq!(report["Deleted"], json!([old.access_key_id]));
    let ram = e.requests_since(since, &user).await;
    assert_eq!(
        signer_of(&ram, "DeleteAccessKey"),
        vec![new.access_key_id.clone()]
    );
    assert_eq!(e.key_ids(&user).await, vec![new.access_key_id.clone()]);
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn self_rotation_without_the_policy_is_refused_and_changes_nothing(kind: Provider) {
    let w = World::new().await;
    let e = emulator(kind);
    let app = w.app(e.config());
    let user = e.user(false).await;
    let key = e.create_key(&user).await;
    w.saw_credential(&key);
    let secret = w.provider_secret(e, &user, Some(&key), None).await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, e, &secret, &user).await;

    let msg = assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "SignerRejected",
        &[
            &key.access_key_id,
            dialect(kind).no_permission,
            "own key",
            "README",
        ],
    );
    w.assert_no_secret_in(&msg, "the error");
    assert_eq!(snapshot(&w, e, &secret, &user).await, before);
}

async fn at_the_limit_the_inactive_key_is_deleted(kind: Provider) {
    let (w, s, app) = Subject::world(kind).await;
    let user = s.user(&w).await;
    let stale = s.create_key(&w, &user).await;
    s.deactivate(&w, &user, &stale.access_key_id).await;
    let current = s.create_key(&w, &user).await;
    let secret = s.secret(&w, &user, Some(&current)).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let ids = s.key_ids(&w, &user).await;
    assert_eq!(ids.len(), 2);
    assert!(
        !ids.contains(&stale.access_key_id),
        "the inactive key was deleted"
    );
    assert!(
        ids.contains(&current.access_key_id),
        "the old current key stays"
    );
    s.assert_invariants(&w, &secret, &user).await;
}

async fn two_active_keys_block_with_a_clear_error_and_no_change(kind: Provider) {
    let (w, s, app) = Subject::world(kind).await;
    let user = s.user(&w).await;
    let current = s.create_key(&w, &user).await;
    let other = s.create_key(&w, &user).await;
    let secret = s.secret(&w, &user, Some(&current)).await;
    let token = w.start_rotation(&secret).await;
    let before = s.snapshot(&w, &secret, &user).await;
    let since = match &s {
        Subject::Emulated { e, .. } => e.log().await.len(),
        Subject::Aws => 0,
    };

    let msg = assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "KeyLimitReached",
        &[
            &user,
            &current.access_key_id,
            &other.access_key_id,
            "AWSCURRENT",
        ],
    );
    w.assert_no_secret_in(&msg, "the error");
    assert_eq!(
        s.snapshot(&w, &secret, &user).await,
        before,
        "nothing changed"
    );
    if let Subject::Emulated { e, .. } = &s {
        let changes = e.key_changes_since(since, &user).await;
        assert!(changes.is_empty(), "{changes:?}");
    }
    s.assert_invariants(&w, &secret, &user).await;
}

async fn every_step_invoked_twice_gives_one_key(kind: Provider) {
    let (w, s, app) = Subject::world(kind).await;
    let (user, old, secret) = s.enrolled(&w).await;
    let token = w.start_rotation(&secret).await;

    for step in STEPS {
        hook(&app, step, &secret, &token).await.unwrap();
        hook(&app, step, &secret, &token).await.unwrap();
    }
    assert_eq!(
        s.key_ids(&w, &user).await.len(),
        2,
        "one token creates one key"
    );
    let after = s.snapshot(&w, &secret, &user).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    assert_eq!(s.snapshot(&w, &secret, &user).await, after);
    assert_ne!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    s.assert_invariants(&w, &secret, &user).await;
}

async fn an_orphan_never_used_is_reclaimed(kind: Provider) {
    let (w, s, app) = Subject::world(kind).await;
    let (user, current, secret) = s.enrolled(&w).await;
    let token = w.start_rotation(&secret).await;
    next_second().await;
    // A crash between CreateAccessKey and PutSecretValue: the key exists,
    // no version holds it, it was never used.
    let orphan = s.create_key(&w, &user).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let ids = s.key_ids(&w, &user).await;
    assert_eq!(ids.len(), 2);
    assert!(
        !ids.contains(&orphan.access_key_id),
        "the orphan was reclaimed"
    );
    assert!(ids.contains(&current.access_key_id));
    s.assert_invariants(&w, &secret, &user).await;
}

/// A key held by no version, younger than AWSCURRENT but used: a provider
/// that reports use keeps it; without that report it is judged an orphan
/// (SCloud: the README says so).
async fn a_used_unreferenced_key_is_kept_where_use_is_reported(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let (user, current, secret) = w.provider_enrolled(e, Some(&admin)).await;
    next_second().await;
    let other = e.create_key(&user).await;
    w.saw_credential(&other);
    e.use_key(&other.access_key_id).await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, e, &secret, &user).await;

    let created = hook(&app, "createSecret", &secret, &token).await;
    if dialect(kind).reports_use {
        assert_error(
            created,
            "KeyLimitReached",
            &[&other.access_key_id, "was used at", &current.access_key_id],
        );
        assert_eq!(snapshot(&w, e, &secret, &user).await, before);
    } else {
        created.unwrap();
        assert!(!e.key_ids(&user).await.contains(&other.access_key_id));
    }
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn an_unreferenced_key_older_than_current_is_never_reclaimed(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let user = e.user(false).await;
    let other = e.create_key(&user).await;
    let current = e.create_key(&user).await;
    w.saw_credential(&other);
    w.saw_credential(&current);
    next_second().await;
    let secret = w
        .provider_secret(e, &user, Some(&current), Some(&admin))
        .await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, e, &secret, &user).await;

    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "KeyLimitReached",
        &[&other.access_key_id, "older than its current version"],
    );
    assert_eq!(snapshot(&w, e, &secret, &user).await, before);
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn a_pending_key_that_fails_its_test_leaves_current_working(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let (user, old, secret) = w.provider_enrolled(e, Some(&admin)).await;
    let token = w.start_rotation(&secret).await;
    hook(&app, "createSecret", &secret, &token).await.unwrap();
    hook(&app, "setSecret", &secret, &token).await.unwrap();
    let pending = w.value(&secret, AWSPENDING).await.unwrap();
    let pending_id = pending["AccessKeyId"].as_str().unwrap().to_owned();
    e.set_status(&pending_id, KeyStatus::Inactive).await;

    let msg = assert_error(
        hook(&app, "testSecret", &secret, &token).await,
        "KeyNotReady",
        &[
            &pending_id,
            dialect(kind).disabled,
            "AWSCURRENT is unchanged",
        ],
    );
    w.assert_no_secret_in(&msg, "the error");
    assert_error(
        hook(&app, "finishSecret", &secret, &token).await,
        "KeyNotReady",
        &[&pending_id],
    );
    let stages = w.stages(&secret).await;
    assert_eq!(stages[&token], vec![AWSPENDING]);
    assert_eq!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn cleanup_deactivates_then_deletes_on_its_periods(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let (user, old, secret) = w.provider_enrolled(e, Some(&admin)).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    let old = old.access_key_id;
    let report = cleanup(&app, &secret).await;
    assert_eq!(report["Waiting"][0]["AccessKeyId"], old.as_str());
    assert_eq!(report["Waiting"][0]["Next"], "deactivation");
    assert_eq!(status(&e.keys(&user).await, &old), Some(KeyStatus::Active));

    // Still in use within the idle window: it stays active where the
    // provider reports use; without that report the check is skipped.
    let mut idle = zero_periods(e.config());
    idle.idle_before_deactivate = Duration::from_secs(3600);
    e.use_key(&old).await;
    let report = cleanup(&w.app(idle), &secret).await;
    if dialect(kind).reports_use {
        assert_eq!(report["InUse"][0]["AccessKeyId"], old.as_str());
        assert_eq!(status(&e.keys(&user).await, &old), Some(KeyStatus::Active));
        let report = cleanup(&w.app(zero_periods(e.config())), &secret).await;
        assert_eq!(report["Deactivated"], json!([old]));
    } else {
        assert!(report.get("InUse").is_none(), "{report}");
        assert_eq!(report["Deactivated"], json!([old]));
    }

    let zero = w.app(zero_periods(e.config()));
    assert_eq!(
        status(&e.keys(&user).await, &old),
        Some(KeyStatus::Inactive)
    );
    let report = cleanup(&zero, &secret).await;
    assert_eq!(report["Deleted"], json!([old]));
    assert_eq!(status(&e.keys(&user).await, &old), None);
    assert_eq!(e.keys(&user).await.len(), 1);
    w.assert_provider_invariants(e, &secret, &user).await;
}

async fn a_user_outside_the_pattern_is_refused_before_any_change(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let user = format!("admin-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    e.named_user(&user, false).await;
    let key = e.create_key(&user).await;
    w.saw_credential(&key);
    let secret = w.provider_secret(e, &user, Some(&key), Some(&admin)).await;
    let since = e.log().await.len();

    assert_error(
        invoke(&app, Function::Cleanup, json!({ "SecretId": secret })).await,
        "UserNotManaged",
        &[&user],
    );
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, e, &secret, &user).await;
    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "UserNotManaged",
        &[&user, e.pattern_setting()],
    );
    assert_eq!(snapshot(&w, e, &secret, &user).await, before);
    assert!(
        e.requests_since(since, &user).await.is_empty(),
        "no RAM call at all"
    );
}

async fn the_pipeline_rotates_a_secret(kind: Provider) {
    let (w, s, app) = Subject::world(kind).await;
    let (user, old, secret) = s.enrolled(&w).await;

    let created = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    let tested = invoke(&app, Function::Test, created.clone()).await.unwrap();
    assert_eq!(tested, created, "each function hands its input on");
    let out = invoke(&app, Function::Finish, tested).await.unwrap();

    assert_eq!(out["SecretId"], secret.as_str());
    let token = out["ClientRequestToken"].as_str().unwrap();
    assert_eq!(w.stages(&secret).await[token], vec![AWSCURRENT]);
    assert_eq!(s.key_ids(&w, &user).await.len(), 2);
    assert_ne!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    assert!(version_with(&w.stages(&secret).await, AWSPREVIOUS).is_some());
    s.assert_invariants(&w, &secret, &user).await;
}

async fn a_new_key_unready_for_a_while_is_waited_for(kind: Provider) {
    let w = World::new().await;
    let e = Emulator::start(kind);
    let admin = w.admin_secret(&e).await;
    let mut config = e.config();
    config.test_timeout = Duration::from_secs(20);
    let app = w.app(config);
    e.faults(0, 3.0).await;

    // The pipeline's rekey-test reports KeyNotReady at once...
    let (user, _, secret) = w.provider_enrolled(&e, Some(&admin)).await;
    let created = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    assert_error(
        invoke(&app, Function::Test, created.clone()).await,
        "KeyNotReady",
        &[dialect(kind).unknown_key],
    );
    // ... and passes once the key is ready.
    tokio::time::sleep(Duration::from_secs(3)).await;
    invoke(&app, Function::Test, created.clone()).await.unwrap();
    invoke(&app, Function::Finish, created).await.unwrap();
    w.assert_provider_invariants(&e, &secret, &user).await;

    // The hook's testSecret waits inside the function.
    let (user, old, secret) = w.provider_enrolled(&e, Some(&admin)).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    assert_ne!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    w.assert_provider_invariants(&e, &secret, &user).await;
}

async fn a_rotation_completes_while_the_provider_throttles(kind: Provider) {
    let w = World::new().await;
    let e = Emulator::start(kind);
    let admin = w.admin_secret(&e).await;
    let app = w.app(e.config());
    let (user, old, secret) = w.provider_enrolled(&e, Some(&admin)).await;
    let token = w.start_rotation(&secret).await;
    // ListAccessKeys is throttled three times, then answers.
    e.faults(3, 0.0).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let throttled = e
        .log()
        .await
        .iter()
        .filter(|r| r.code == dialect(kind).throttled)
        .count();
    assert_eq!(throttled, 3);
    assert_ne!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    assert_eq!(e.keys(&user).await.len(), 2);
    w.assert_provider_invariants(&e, &secret, &user).await;
}

async fn bad_secrets_and_settings_are_refused_without_change(kind: Provider) {
    let (w, e, admin, app) = admin_world(kind).await;
    let bogus_admin = w
        .admin_secret_holding(
            &json!({"AccessKeyId": "LTAI0000000000000000bad", "AccessKeySecret": "not-a-real-secret"}),
        )
        .await;
    let not_a_pair = w
        .admin_secret_holding(&json!({"AccessKeyId": "LTAI00000000000000001"}))
        .await;
    // A working key pair, but in a secret outside the admin prefix.
    let outside = w
        .secret_named(
            &format!("team/{}", uuid::Uuid::new_v4().simple()),
            &json!({"AccessKeyId": e.root.access_key_id, "AccessKeySecret": e.root.secret.expose()}),
            &[],
        )
        .await;
    let user = e.user(true).await;
    let key = e.create_key(&user).await;
    w.saw_credential(&key);
    let id = key.access_key_id.as_str();
    let half = key.secret.expose();
    let cases: Vec<(Value, &str, Vec<&str>)> = vec![
        (
            json!({"Provider": kind.name(), "UserName": user}),
            "InvalidSecret",
            vec!["AdminSecretId", "no key to sign"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AdminSecretId": "rekey/admin/missing"}),
            "InvalidSecret",
            vec!["rekey/admin/missing", "not found"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AdminSecretId": not_a_pair}),
            "InvalidSecret",
            vec!["AdminSecretId", "AccessKeySecret"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AdminSecretId": bogus_admin}),
            "SignerRejected",
            vec![
                "LTAI0000000000000000bad",
                dialect(kind).unknown_key,
                "admin key",
            ],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AdminSecretId": outside}),
            "SecretNotOwner",
            vec!["REKEY_ADMIN_SECRET_PREFIX", "rekey/admin/"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AdminSecretId": 5}),
            "InvalidSecret",
            vec!["AdminSecretId must be a string"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AccessKeyId": id}),
            "InvalidSecret",
            vec!["AccessKeySecret must be given together"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": user, "AccessKeyId": id, "SecretAccessKey": half}),
            "InvalidSecret",
            vec!["AccessKeySecret"],
        ),
        (
            json!({"Provider": kind.name(), "UserName": "ops bot", "AdminSecretId": admin}),
            "InvalidSecret",
            vec!["UserName may contain only"],
        ),
        (
            json!({"Provider": "aliyun", "UserName": user, "AdminSecretId": admin}),
            "UnknownProvider",
            vec!["aliyun", "alibaba"],
        ),
        (
            json!({"Provider": "aws", "UserName": user, "AdminSecretId": admin}),
            "InvalidSecret",
            vec!["AdminSecretId is not used by provider aws"],
        ),
    ];
    let since = e.log().await.len();
    for (value, error_type, mentions) in cases {
        let secret = w.secret(&value, &[("rekey:managed", "true")]).await;
        let cleaned = invoke(&app, Function::Cleanup, json!({ "SecretId": secret })).await;
        let token = w.start_rotation(&secret).await;
        let before = snapshot(&w, e, &secret, &user).await;
        for result in [cleaned, hook(&app, "createSecret", &secret, &token).await] {
            let msg = assert_error(result, error_type, &mentions);
            w.assert_no_secret_in(&msg, "the error");
            assert!(!msg.contains("not-a-real-secret"), "{msg}");
        }
        assert_eq!(snapshot(&w, e, &secret, &user).await, before, "{value}");
        // One secret owns each user: free the name for the next case.
        w.delete_secret(&secret).await;
    }

    // A deployment without the provider's user pattern refuses its secrets,
    // secrets, naming the setting.
    let mut unset = e.config();
    unset.alibaba.user_pattern = None;
    unset.scloud.user_pattern = None;
    let secret = w.provider_secret(e, &user, Some(&key), Some(&admin)).await;
    let token = w.start_rotation(&secret).await;
    assert_error(
        hook(&w.app(unset), "createSecret", &secret, &token).await,
        "InvalidConfig",
        &[e.pattern_setting(), kind.name()],
    );
    let changes = e.key_changes_since(since, &user).await;
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(e.key_ids(&user).await, vec![key.access_key_id.clone()]);
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}

#[tokio::test]
async fn scloud_plans_with_its_key_limit_setting() {
    let w = World::new().await;
    let e = Emulator::start_with(Provider::SCloud, &["--key-limit", "3"]);
    let admin = w.admin_secret(&e).await;
    let user = e.user(false).await;
    let other = e.create_key(&user).await;
    let current = e.create_key(&user).await;
    w.saw_credential(&other);
    w.saw_credential(&current);
    let secret = w
        .provider_secret(&e, &user, Some(&current), Some(&admin))
        .await;

    // With the limit at 2, the user is full and nothing may go.
    let token = w.start_rotation(&secret).await;
    assert_error(
        hook(&w.app(e.config()), "createSecret", &secret, &token).await,
        "KeyLimitReached",
        &["already has 2 access keys", &other.access_key_id],
    );
    // With REKEY_SCLOUD_KEY_LIMIT=3 there is room: nothing is deleted.
    let mut config = e.config();
    config.scloud.key_limit = 3;
    hook_rotation(&w.app(config), &secret, &token)
        .await
        .unwrap();
    let ids = e.key_ids(&user).await;
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&other.access_key_id) && ids.contains(&current.access_key_id));
    w.assert_provider_invariants(&e, &secret, &user).await;
}

/// Each scenario above, once per provider: `alibaba::<scenario>` and
/// `scloud::<scenario>`.
/// Issue case 5: with `REKEY_DEACTIVATE_AFTER=0s` finish deactivates the
/// superseded key by the id AWSCURRENT holds. An id put there that is not
/// one of the user's keys (SCloud changes a key by id alone) is refused:
/// the other user's key stays active.
async fn finish_deactivates_only_a_key_of_the_user(kind: Provider) {
    let (w, e, admin, _) = admin_world(kind).await;
    let app = w.app(zero_periods(e.config()));
    let (user, _old, secret) = w.provider_enrolled(e, Some(&admin)).await;
    let victim = e.user(false).await;
    let theirs = e.create_key(&victim).await;
    w.saw_credential(&theirs);
    // Someone with write access to the secret makes AWSCURRENT name the
    // other user's key id.
    let mut forged = w.value(&secret, AWSCURRENT).await.unwrap();
    forged["AccessKeyId"] = theirs.access_key_id.clone().into();
    w.sm.put_secret_value()
        .secret_id(&secret)
        .secret_string(forged.to_string())
        .send()
        .await
        .expect("PutSecretValue");
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    let keys = e.keys(&victim).await;
    assert_eq!(
        status(&keys, &theirs.access_key_id),
        Some(KeyStatus::Active),
        "the other user's key is untouched"
    );
    w.assert_provider_invariants(e, &secret, &user).await;
}

/// The system's clock, `ahead` in the future: a grace period has passed.
struct Ahead(Duration);

impl rekey::ports::Clock for Ahead {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now() + self.0
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

/// A managed admin secret (`<admin prefix><provider>/<user>`) rotates
/// itself, its calls signed by its own key. While its rotation is in
/// progress a dependent's create refuses with `RotationInProgress` naming
/// it and changes nothing; after the promotion the old admin key stays
/// active for at least `ADMIN_GRACE` (even with DeactivateAfter 0), so a
/// dependent that read it just before still signs validly; the next
/// invocation signs with the new key; cleanup retires the old admin key
/// only once the grace has passed.
async fn an_admin_secret_rotates_itself_while_its_dependents_wait(kind: Provider) {
    let w = World::new().await;
    let e = emulator(kind);
    // DeactivateAfter 0: an ordinary secret's old key goes at promotion.
    let config = zero_periods(e.config());
    let app = w.app(config.clone());
    let (admin_user, old_admin, admin) = w.managed_admin(e).await;
    let (user, _, dependent) = w.provider_enrolled(e, Some(&admin)).await;
    // A dependent's invocation that reads the admin key now, before the
    // admin's rotation (cleanup signs with it, and changes nothing here).
    let reader = w.app(config.clone());
    reader.cleanup(&dependent).await.unwrap();

    let since = e.log().await.len();
    let created = invoke(&app, Function::Create, json!({ "SecretId": admin }))
        .await
        .unwrap();
    let admin_token = created["ClientRequestToken"].as_str().unwrap().to_owned();
    let calls = e.requests_since(since, &admin_user).await;
    assert!(
        calls
            .iter()
            .any(|r| r.action == "CreateAccessKey" && r.code == "OK"),
        "{calls:?}"
    );
    assert!(
        calls.iter().all(|r| r.signer == old_admin.access_key_id),
        "the admin signs its own rotation: {calls:?}"
    );

    // The dependents wait, pipeline (resuming or not) and hook alike.
    let before = snapshot(&w, e, &dependent, &user).await;
    let admin_before = snapshot(&w, e, &admin, &admin_user).await;
    for event in [
        json!({ "SecretId": dependent }),
        json!({ "SecretId": dependent, "Resume": true }),
    ] {
        assert_error(
            invoke(&app, Function::Create, event).await,
            "RotationInProgress",
            &[&admin, &admin_token, "admin secret"],
        );
    }
    let (hook_user, _, hook_dependent) = w.provider_enrolled(e, Some(&admin)).await;
    let hook_token = w.start_rotation(&hook_dependent).await;
    let hook_before = snapshot(&w, e, &hook_dependent, &hook_user).await;
    assert_error(
        hook(&app, "createSecret", &hook_dependent, &hook_token).await,
        "RotationInProgress",
        &[&admin, &admin_token],
    );
    assert_eq!(
        snapshot(&w, e, &hook_dependent, &hook_user).await,
        hook_before
    );
    assert_eq!(snapshot(&w, e, &dependent, &user).await, before);
    assert_eq!(snapshot(&w, e, &admin, &admin_user).await, admin_before);

    invoke(&app, Function::Test, created.clone()).await.unwrap();
    invoke(&app, Function::Finish, created).await.unwrap();
    let new_admin = w.current_credential(&admin).await.unwrap();
    assert_ne!(new_admin.access_key_id, old_admin.access_key_id);
    assert_eq!(
        status(&e.keys(&admin_user).await, &old_admin.access_key_id),
        Some(KeyStatus::Active),
        "the old admin key stays active through its grace"
    );

    // The invocation that read the old admin key still signs with it.
    let since = e.log().await.len();
    let token = w.start_rotation(&dependent).await;
    reader
        .create(&dependent, &token, Driver::Hook)
        .await
        .unwrap();
    reader
        .verify(&dependent, &token, Driver::Hook, Probing::Once)
        .await
        .unwrap();
    reader
        .finish(&dependent, &token, Driver::Hook)
        .await
        .unwrap();
    let signers: Vec<String> = e
        .requests_since(since, &user)
        .await
        .into_iter()
        .filter(|r| r.action == "CreateAccessKey" && r.code == "OK")
        .map(|r| r.signer)
        .collect();
    assert_eq!(signers, vec![old_admin.access_key_id.clone()]);

    // The next invocation reads the admin's AWSCURRENT: its new key.
    let since = e.log().await.len();
    let token = w.start_rotation(&dependent).await;
    hook_rotation(&app, &dependent, &token).await.unwrap();
    let signers: Vec<String> = e
        .requests_since(since, &user)
        .await
        .into_iter()
        .filter(|r| matches!(r.action.as_str(), "CreateAccessKey" | "DeleteAccessKey"))
        .map(|r| r.signer)
        .collect();
    assert!(
        !signers.is_empty() && signers.iter().all(|s| *s == new_admin.access_key_id),
        "{signers:?}"
    );

    // Cleanup keeps the old admin key until the grace has passed, and the
    // sweep sends the admin secret to it only then.
    let report = cleanup(&app, &admin).await;
    assert_eq!(
        report["Waiting"][0]["AccessKeyId"],
        old_admin.access_key_id.as_str()
    );
    assert_eq!(
        status(&e.keys(&admin_user).await, &old_admin.access_key_id),
        Some(KeyStatus::Active)
    );
    assert!(!swept_for_cleanup(&app, &admin).await);
    let later = w
        .app(config)
        .with_clock(Ahead(rekey::ADMIN_GRACE + Duration::from_secs(60)));
    assert!(swept_for_cleanup(&later, &admin).await);
    let report = later.cleanup(&admin).await.unwrap();
    assert_eq!(report.deactivated, vec![old_admin.access_key_id.clone()]);
    w.assert_provider_invariants(e, &admin, &admin_user).await;
    w.assert_provider_invariants(e, &dependent, &user).await;
}

/// Whether a sweep by `app` (every page of its triage) sends `secret` to
/// cleanup.
async fn swept_for_cleanup<C: rekey::ports::Clock>(
    app: &rekey::Rekey<rekey::vault::SecretsManager, rekey::providers::LiveProviders, C>,
    secret: &str,
) -> bool {
    let mut request = rekey::steps::TriageRequest {
        rotation_period: "3650d".into(),
        period: Duration::from_secs(3650 * 86_400),
        secret_ids: Vec::new(),
        next_token: None,
    };
    loop {
        let answer = app.triage_page(&request).await.unwrap();
        if answer.items.iter().any(|i| i.secret_id == secret) {
            return answer
                .items
                .iter()
                .any(|i| i.secret_id == secret && i.clean);
        }
        match answer.next {
            Some(next) => request.next_token = Some(next.triage.next_token),
            None => return false,
        }
    }
}

/// A key-pair user has one owner: an ordinary secret naming the user of a
/// managed admin secret refuses to start a rotation, naming the admin
/// secret, and changes nothing; the admin secret rotates.
async fn an_admin_user_with_a_second_owning_secret_is_refused(kind: Provider) {
    let w = World::new().await;
    let e = emulator(kind);
    let app = w.app(e.config());
    let (admin_user, key, admin) = w.managed_admin(e).await;
    let ordinary = w.provider_secret(e, &admin_user, Some(&key), None).await;
    let before = snapshot(&w, e, &ordinary, &admin_user).await;
    let admin_name = admin
        .split(":secret:")
        .nth(1)
        .unwrap()
        .rsplit_once('-')
        .unwrap()
        .0;
    assert_error(
        invoke(&app, Function::Create, json!({ "SecretId": ordinary })).await,
        "SecretNotOwner",
        &[admin_name, "admin user"],
    );
    assert_eq!(snapshot(&w, e, &ordinary, &admin_user).await, before);
    pipeline_rotation(&app, &admin).await.unwrap();
    w.assert_provider_invariants(e, &admin, &admin_user).await;
}

/// The tests: `<provider>::<scenario>`, each scenario a function of the
/// provider. `every_provider` scenarios run against AWS too (through
/// [`Subject`]), `emulated` ones against the emulators only.
macro_rules! for_each_provider {
    (every_provider: [$($all:ident),* $(,)?], emulated: [$($emulated:ident),* $(,)?] $(,)?) => {
        mod aws {
            $(#[tokio::test]
            async fn $all() {
                super::$all(rekey::model::Provider::Aws).await
            })*
        }
        mod alibaba {
            $(#[tokio::test]
            async fn $all() {
                super::$all(rekey::model::Provider::Alibaba).await
            })*
            $(#[tokio::test]
            async fn $emulated() {
                super::$emulated(rekey::model::Provider::Alibaba).await
            })*
        }
        mod scloud {
            $(#[tokio::test]
            async fn $all() {
                super::$all(rekey::model::Provider::SCloud).await
            })*
            $(#[tokio::test]
            async fn $emulated() {
                super::$emulated(rekey::model::Provider::SCloud).await
            })*
        }
    };
}

for_each_provider!(
    every_provider: [
        at_the_limit_the_inactive_key_is_deleted,
        two_active_keys_block_with_a_clear_error_and_no_change,
        every_step_invoked_twice_gives_one_key,
        an_orphan_never_used_is_reclaimed,
        the_pipeline_rotates_a_secret,
    ],
    emulated: [
        first_rotation_from_user_name_only_with_an_admin_key,
        rotation_with_an_admin_key_keeps_the_old_key_in_grace,
        self_rotation_signs_with_the_users_own_keys,
        self_rotation_without_the_policy_is_refused_and_changes_nothing,
        a_used_unreferenced_key_is_kept_where_use_is_reported,
        an_unreferenced_key_older_than_current_is_never_reclaimed,
        a_pending_key_that_fails_its_test_leaves_current_working,
        cleanup_deactivates_then_deletes_on_its_periods,
        a_user_outside_the_pattern_is_refused_before_any_change,
        a_new_key_unready_for_a_while_is_waited_for,
        a_rotation_completes_while_the_provider_throttles,
        bad_secrets_and_settings_are_refused_without_change,
        finish_deactivates_only_a_key_of_the_user,
        an_admin_secret_rotates_itself_while_its_dependents_wait,
        an_admin_user_with_a_second_owning_secret_is_refused,
    ],
);

/// Alibaba signs with V3 unless told `v1`: each rotation's every request
/// was signed so, and the emulator verified each with the official SDK.
#[tokio::test]
async fn alibaba_signs_with_v3_by_default_and_v1_when_set() {
    use rekey::config::AlibabaSignature;
    let w = World::new().await;
    let e = Emulator::start(Provider::Alibaba);
    let admin = w.admin_secret(&e).await;
    assert_eq!(
        e.config().alibaba.signature,
        AlibabaSignature::V3,
        "the default"
    );
    for (signature, name) in [(AlibabaSignature::V3, "v3"), (AlibabaSignature::V1, "v1")] {
        let mut config = e.config();
        config.alibaba.signature = signature;
        let app = w.app(config);
        let since = e.log().await.len();
        let (_, old, secret) = w.provider_enrolled(&e, Some(&admin)).await;
        pipeline_rotation(&app, &secret).await.unwrap();
        let new = w.current_credential(&secret).await.unwrap().access_key_id;
        assert_ne!(new, old.access_key_id, "{name}: rotated");
        let seen: Vec<_> = e.log().await.into_iter().skip(since).collect();
        assert!(
            seen.iter().any(|r| r.action == "CreateAccessKey")
                && seen.iter().any(|r| r.action == "GetCallerIdentity"),
            "{name}: {seen:?}"
        );
        for r in &seen {
            assert_eq!(r.signature.as_deref(), Some(name), "{r:?}");
            assert_eq!(r.code, "OK", "{r:?}");
        }
    }
}
