//! The rotation hook against moto with signature checking on: Secrets
//! Manager is played by RotateSecret plus the label fixes it needs, then the
//! hook handler runs the four steps. The scenarios every provider shares
//! (the key limit, idempotent steps, orphans) are in providers.rs, where
//! they run against IAM on moto too (`providers::aws::*`).

mod common;

use std::time::Duration;

use common::*;
use rekey::model::{KeyStatus, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use rekey_testkit::{test_config, version_with, World, MANAGED_PATH};
use serde_json::json;

#[tokio::test]
async fn first_rotation_from_user_name_only() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let keys = w.keys(&user).await;
    assert_eq!(keys.len(), 1);
    let cred = w.current_credential(&secret).await.unwrap();
    assert_eq!(cred.access_key_id, keys[0].id);
    let stages = w.stages(&secret).await;
    assert_eq!(
        stages[&token],
        vec![AWSCURRENT],
        "AWSPENDING is taken off the promoted version"
    );
    assert_eq!(
        version_with(&stages, AWSPREVIOUS)
            .as_deref()
            .map(|v| v != token),
        Some(true)
    );
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn rotation_with_one_existing_key_keeps_it_in_grace() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let keys = w.keys(&user).await;
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter().all(|k| k.status == KeyStatus::Active),
        "the old key stays active in its grace period"
    );
    let new = w.current_credential(&secret).await.unwrap();
    assert_ne!(new.access_key_id, old.access_key_id);
    let previous = w.value(&secret, AWSPREVIOUS).await.unwrap();
    assert_eq!(previous["AccessKeyId"], old.access_key_id.as_str());
    let tags = w.tags(&secret).await;
    assert!(
        tags.contains_key(&format!("rekey:superseded:{}", old.access_key_id)),
        "finish records when the old key was superseded: {tags:?}"
    );
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn unknown_fields_are_kept() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w
        .secret(
            &json!({"UserName": user, "Team": "ops", "Extra": {"a": [1, 2]}}),
            &[("rekey:managed", "true")],
        )
        .await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    let v = w.value(&secret, AWSCURRENT).await.unwrap();
    assert_eq!(v["Team"], "ops");
    assert_eq!(v["Extra"], json!({"a": [1, 2]}));
    assert!(v["AccessKeyId"].is_string() && v["SecretAccessKey"].is_string());
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn with_two_inactive_keys_the_oldest_goes() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let oldest = w.create_key(&user).await;
    next_second().await;
    let newer = w.create_key(&user).await;
    w.deactivate(&user, &oldest.access_key_id).await;
    w.deactivate(&user, &newer.access_key_id).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let ids = w.key_ids(&user).await;
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&oldest.access_key_id));
    assert!(ids.contains(&newer.access_key_id));
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn previous_key_in_grace_blocks_and_says_when_it_ends() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, first, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();

    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, &secret, &user).await;
    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "KeyLimitReached",
        &[&first.access_key_id, "superseded key", "grace period (ends"],
    );
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn whole_rotation_run_twice_with_one_token() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();
    let after_first = snapshot(&w, &secret, &user).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    assert_eq!(snapshot(&w, &secret, &user).await, after_first);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_pending_key_that_cannot_authenticate_fails_the_test_and_current_still_works() {
    let w = World::new().await;
    let mut config = test_config();
    config.test_timeout = Duration::from_secs(2);
    let app = w.app(config);
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook(&app, "createSecret", &secret, &token).await.unwrap();
    let pending = w.value(&secret, AWSPENDING).await.unwrap();
    w.delete_key(&user, pending["AccessKeyId"].as_str().unwrap())
        .await;

    let msg = assert_error(
        hook(&app, "testSecret", &secret, &token).await,
        "KeyNotReady",
        &[
            pending["AccessKeyId"].as_str().unwrap(),
            "AWSCURRENT is unchanged",
        ],
    );
    w.assert_no_secret_in(&msg, "the error");
    assert_eq!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    assert!(w.stages(&secret).await[&token].contains(&AWSPENDING.to_owned()));
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn finish_with_zero_grace_deactivates_the_previous_key() {
    let w = World::new().await;
    let mut config = test_config();
    config.deactivate_after = Duration::ZERO;
    let app = w.app(config);
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let keys = w.keys(&user).await;
    let old_now = keys.iter().find(|k| k.id == old.access_key_id).unwrap();
    assert_eq!(old_now.status, KeyStatus::Inactive);
    assert!(w
        .tags(&secret)
        .await
        .contains_key(&format!("rekey:inactive:{}", old.access_key_id)));
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_user_outside_the_managed_path_is_refused() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user("/elsewhere/").await;
    let key = w.create_key(&user).await;
    let secret = w.managed_secret(&user, Some(&key)).await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, &secret, &user).await;

    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "UserNotManaged",
        &[&user, "/elsewhere/", "REKEY_MANAGED_USER_PATH"],
    );
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_paused_secret_is_refused() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;
    w.tag(&secret, "rekey:paused", "true").await;
    let before = snapshot(&w, &secret, &user).await;

    for step in STEPS {
        assert_error(
            hook(&app, step, &secret, &token).await,
            "SecretPaused",
            &["rekey:paused"],
        );
    }
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn an_unmanaged_secret_is_refused() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.secret(&json!({"UserName": user}), &[]).await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, &secret, &user).await;
    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "SecretNotManaged",
        &["rekey:managed"],
    );
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn the_key_in_the_secret_deleted_out_of_band_still_rotates() {
    let w = World::new().await;
    let mut config = test_config();
    config.deactivate_after = Duration::ZERO;
    let app = w.app(config);
    let (user, gone, secret) = w.enrolled(MANAGED_PATH).await;
    w.delete_key(&user, &gone.access_key_id).await;
    let token = w.start_rotation(&secret).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    assert_eq!(w.keys(&user).await.len(), 1);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn malformed_secret_values_are_refused_without_change() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let cases = [
        (json!([1, 2, 3]), "InvalidSecret", "JSON object"),
        (json!(42), "InvalidSecret", "JSON object"),
        (
            json!({"UserName": 7}),
            "InvalidSecret",
            "UserName must be a string",
        ),
        (
            json!({"User": user}),
            "InvalidSecret",
            "UserName is missing",
        ),
        (
            json!({"UserName": user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA"}),
            "InvalidSecret",
            "together",
        ),
        (
            json!({"UserName": user, "Provider": "gcp"}),
            "UnknownProvider",
            "gcp",
        ),
    ];
    for (value, error_type, mention) in cases {
        let secret = w.secret(&value, &[("rekey:managed", "true")]).await;
        let token = w.start_rotation(&secret).await;
        let before = snapshot(&w, &secret, &user).await;
        assert_error(
            hook(&app, "createSecret", &secret, &token).await,
            error_type,
            &[mention],
        );
        assert_eq!(snapshot(&w, &secret, &user).await, before, "{value}");
    }
    // Not JSON at all.
    let secret =
        w.sm.create_secret()
            .name(format!("rekey-test/{}", uuid_like()))
            .secret_string("{not json")
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("rekey:managed")
                    .value("true")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_owned();
    let token = w.start_rotation(&secret).await;
    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "InvalidSecret",
        &["not valid JSON"],
    );
    assert!(w.keys(&user).await.is_empty());
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn missing_secret_unknown_token_and_unknown_step() {
    let w = World::new().await;
    let app = w.app(test_config());
    let token = "11111111-2222-3333-4444-555555555555";
    assert_error(
        hook(&app, "createSecret", "rekey-test/does-not-exist", token).await,
        "SecretNotFound",
        &["does-not-exist"],
    );

    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    w.start_rotation(&secret).await;
    let before = snapshot(&w, &secret, &user).await;
    assert_error(
        hook(&app, "createSecret", &secret, token).await,
        "TokenNotFound",
        &[token],
    );
    let real = version_with(&w.stages(&secret).await, AWSPENDING).unwrap();
    assert_error(
        hook(&app, "rotateEverything", &secret, &real).await,
        "InvalidEvent",
        &["unknown Step", "createSecret"],
    );
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn the_hook_refuses_a_secret_without_rotation_enabled() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = "11111111-2222-3333-4444-555555555555";
    assert_error(
        hook(&app, "createSecret", &secret, token).await,
        "RotationNotEnabled",
        &["rotation"],
    );
    assert!(w.keys(&user).await.is_empty());
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn malformed_hook_events_are_refused() {
    let w = World::new().await;
    let app = w.app(test_config());
    let events = [
        json!(null),
        json!([1]),
        json!("createSecret"),
        json!({"SecretId": "x", "Step": "createSecret"}),
        json!({"SecretId": 5, "ClientRequestToken": "11111111-2222-3333-4444-555555555555", "Step": "createSecret"}),
        json!({"SecretId": "x", "ClientRequestToken": "short", "Step": "createSecret"}),
        json!({"SecretId": "", "ClientRequestToken": "11111111-2222-3333-4444-555555555555", "Step": "createSecret"}),
        json!({"SecretId": "x".repeat(3000), "ClientRequestToken": "11111111-2222-3333-4444-555555555555", "Step": "createSecret"}),
        json!({"SecretId": "x", "ClientRequestToken": "11111111-2222-3333-4444-555555555555", "Step": 1}),
    ];
    for event in events {
        let got = rekey::lambda::handle(
            &app,
            Function::Hook,
            lambda_runtime::LambdaEvent::new(event.clone(), Default::default()),
        )
        .await;
        let err = got.expect_err(&event.to_string());
        assert_eq!(
            err.error_type, "InvalidEvent",
            "{event}: {}",
            err.error_message
        );
    }
}

#[tokio::test]
async fn a_configuration_check_tests_the_current_key() {
    // RotateSecret with RotateImmediately=false runs only testSecret, on a
    // version that holds no new key: the current key is probed instead.
    let w = World::new().await;
    let (user, key, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    let proxy = rekey_testkit::proxy::Proxy::start(&rekey_testkit::moto().endpoint).await;
    let app = w.app_via(&proxy, test_config()).await;

    hook(&app, "testSecret", &secret, &token).await.unwrap();

    assert_eq!(
        proxy.counts().get("GetCallerIdentity"),
        Some(&3),
        "the current key was probed REKEY_TEST_CONSECUTIVE times"
    );
    assert_eq!(
        w.key_ids(&user).await,
        vec![key.access_key_id.clone()],
        "no key was created"
    );
    assert_eq!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        key.access_key_id
    );
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn an_orphan_below_the_limit_is_reclaimed_too() {
    // A first rotation that crashed after CreateAccessKey: the user has one
    // key, held by no version. The retry must not leave it behind.
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;
    next_second().await;
    let orphan = w.create_key(&user).await;

    hook_rotation(&app, &secret, &token).await.unwrap();

    let ids = w.key_ids(&user).await;
    assert_eq!(ids.len(), 1, "only the new key is left: {ids:?}");
    assert_ne!(ids[0], orphan.access_key_id);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_used_unreferenced_key_is_never_reclaimed() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;
    next_second().await;
    let someones = w.create_key(&user).await;
    assert!(w.whoami(&someones).await.is_some(), "someone uses it");

    hook_rotation(&app, &secret, &token).await.unwrap();

    let ids = w.key_ids(&user).await;
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&someones.access_key_id));
    w.assert_invariants(&secret, &user).await;
}
