//! Dry-run deployments (`REKEY_DRY_RUN`): every function decides and
//! reports what it would do and makes no mutating call, counted by the
//! proxy between rekey and moto, action by action; the keys, stages and
//! records are as they were.

mod common;

use common::*;
use rekey::model::KeyStatus;
use rekey::Config;
use rekey_testkit::proxy::Proxy;
use rekey_testkit::{moto, test_config, World, MANAGED_PATH};
use serde_json::json;

fn dry(mut config: Config) -> Config {
    config.dry_run = true;
    config
}

#[tokio::test]
async fn the_hooks_create_fails_with_dry_run_naming_what_it_would_do() {
    let w = World::new().await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, dry(test_config())).await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, &secret, &user).await;
    let tags = w.tags(&secret).await;
    proxy.clear_log();

    let message = assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "DryRun",
        &[
            "nothing was changed",
            &format!("create a new access key for user {user}"),
        ],
    );
    assert!(message.contains("REKEY_DRY_RUN"), "{message}");
    proxy.assert_no_change("createSecret");
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    assert_eq!(w.tags(&secret).await, tags);
}

#[tokio::test]
async fn at_the_key_limit_it_names_the_key_it_would_delete_first() {
    let w = World::new().await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, dry(test_config())).await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    let spare = w.create_key(&user).await;
    w.deactivate(&user, &spare.access_key_id).await;
    let before = snapshot(&w, &secret, &user).await;
    proxy.clear_log();

    // The pipeline goes on to the next secret: a dry run is no failure.
    let out = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    assert_eq!(out["Skipped"], "dry-run", "{out}");
    proxy.assert_no_change("rekey-create");
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    assert_eq!(
        status(&w.keys(&user).await, &spare.access_key_id),
        Some(KeyStatus::Inactive)
    );

    // The hook says what it would have done, in order.
    let token = w.start_rotation(&secret).await;
    proxy.clear_log();
    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "DryRun",
        &[&format!(
            "delete key {} of user {user}, then create a new access key for user {user}",
            spare.access_key_id
        )],
    );
    proxy.assert_no_change("createSecret at the limit");
}

#[tokio::test]
async fn cleanup_reports_what_it_would_retire_and_retires_nothing() {
    let w = World::new().await;
    let live = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&live, &secret, &token).await.unwrap();
    let old = old.access_key_id;

    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, dry(zero_periods(test_config()))).await;
    let before = snapshot(&w, &secret, &user).await;
    let tags = w.tags(&secret).await;
    proxy.clear_log();
    let out = invoke(&app, Function::Cleanup, json!({ "SecretId": secret }))
        .await
        .unwrap();
    assert_eq!(out["DryRun"], true, "{out}");
    assert_eq!(out["Secrets"][0]["Deactivated"], json!([old]), "{out}");
    proxy.assert_no_change("rekey-cleanup");
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    assert_eq!(status(&w.keys(&user).await, &old), Some(KeyStatus::Active));
    assert_eq!(w.tags(&secret).await, tags, "no record is written either");

    // The sweep of every secret in a dry run changes nothing either.
    let out = invoke(&app, Function::Cleanup, json!({})).await.unwrap();
    assert_eq!(out["DryRun"], true, "{out}");
    proxy.assert_no_change("rekey-cleanup {}");
    assert_eq!(snapshot(&w, &secret, &user).await, before);

    // Live again, the same cleanup does what the dry run said.
    let report = cleanup(&w.app(zero_periods(test_config())), &secret).await;
    assert_eq!(report["Deactivated"], json!([old]));
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn finish_holds_back_the_promotion() {
    let w = World::new().await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    // A rotation a live deployment started; the deployment turned dry since.
    let live = w.app(test_config());
    for step in ["createSecret", "setSecret", "testSecret"] {
        hook(&live, step, &secret, &token).await.unwrap();
    }
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, dry(test_config())).await;
    let before = snapshot(&w, &secret, &user).await;
    proxy.clear_log();
    assert_error(
        hook(&app, "finishSecret", &secret, &token).await,
        "DryRun",
        &[&format!("promote version {token}")],
    );
    proxy.assert_no_change("finishSecret");
    assert_eq!(snapshot(&w, &secret, &user).await, before);
}
