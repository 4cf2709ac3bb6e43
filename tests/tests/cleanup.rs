//! rekey-cleanup on one secret: periods, records that survive restarts, the
//! idle check, and keys it must never touch.

mod common;

use std::time::Duration;

use common::*;
use rekey::model::KeyStatus;
use rekey::plan::timestamp;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

/// A user whose secret was rotated once by the hook: (user, secret, old key id).
async fn rotated_once(w: &World) -> (String, String, String) {
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    (user, secret, old.access_key_id)
}

#[tokio::test]
async fn deactivates_then_deletes_on_its_periods() {
    let w = World::new().await;
    let (user, secret, old) = rotated_once(&w).await;

    // With the default periods nothing is due yet.
    let report = cleanup(&w.app(test_config()), &secret).await;
    assert_eq!(report["Status"], "cleaned");
    assert_eq!(report["Waiting"][0]["AccessKeyId"], old.as_str());
    assert_eq!(report["Waiting"][0]["Next"], "deactivation");
    assert_eq!(status(&w.keys(&user).await, &old), Some(KeyStatus::Active));

    let app = w.app(zero_periods(test_config()));
    let report = cleanup(&app, &secret).await;
    assert_eq!(report["Deactivated"], json!([old]));
    assert_eq!(
        status(&w.keys(&user).await, &old),
        Some(KeyStatus::Inactive)
    );
    assert!(w
        .tags(&secret)
        .await
        .contains_key(&format!("rekey:inactive:{old}")));

    let report = cleanup(&app, &secret).await;
    assert_eq!(report["Deleted"], json!([old]));
    assert_eq!(status(&w.keys(&user).await, &old), None);
    let tags = w.tags(&secret).await;
    assert!(
        !tags.keys().any(|t| t.ends_with(&old)),
        "records of a deleted key are dropped: {tags:?}"
    );

    // Nothing left to do; the current key is untouched.
    let report = cleanup(&app, &secret).await;
    assert!(
        report.get("Deactivated").is_none() && report.get("Deleted").is_none(),
        "{report}"
    );
    assert_eq!(w.keys(&user).await.len(), 1);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_superseded_key_still_in_use_stays_active() {
    let w = World::new().await;
    let (user, secret, old) = rotated_once(&w).await;
    let mut config = zero_periods(test_config());
    config.idle_before_deactivate = Duration::from_secs(4 * 3600);
    // Someone still uses the old key.
    let old_value = w.value(&secret, rekey::model::AWSPREVIOUS).await.unwrap();
    let old_cred = rekey::model::Credential {
        access_key_id: old.clone(),
        secret: rekey::model::Sensitive::new(old_value["SecretAccessKey"].as_str().unwrap()),
    };
    assert!(w.whoami(&old_cred).await.is_some());

    let report = cleanup(&w.app(config), &secret).await;
    assert_eq!(report["InUse"][0]["AccessKeyId"], old.as_str());
    assert_eq!(status(&w.keys(&user).await, &old), Some(KeyStatus::Active));
    assert!(rekey_testkit::captured_logs().contains("still in use"));
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_missing_record_starts_the_clock_now() {
    let w = World::new().await;
    let (user, secret, old) = rotated_once(&w).await;
    // As if finish had crashed before recording the time.
    w.sm.untag_resource()
        .secret_id(&secret)
        .tag_keys(format!("rekey:superseded:{old}"))
        .send()
        .await
        .unwrap();
    let mut config = test_config();
    config.deactivate_after = Duration::from_secs(3600);
    let report = cleanup(&w.app(config), &secret).await;
    assert_eq!(report["Waiting"][0]["AccessKeyId"], old.as_str());
    assert!(w
        .tags(&secret)
        .await
        .contains_key(&format!("rekey:superseded:{old}")));
    assert_eq!(status(&w.keys(&user).await, &old), Some(KeyStatus::Active));
}

#[tokio::test]
async fn never_touches_an_inactive_current_key_or_other_active_keys() {
    let w = World::new().await;
    let app = w.app(zero_periods(test_config()));
    let user = w.user(MANAGED_PATH).await;
    let current = w.create_key(&user).await;
    let other = w.create_key(&user).await;
    let secret = w.managed_secret(&user, Some(&current)).await;
    // Someone deactivated the current key out of band.
    w.deactivate(&user, &current.access_key_id).await;

    let report = cleanup(&app, &secret).await;
    assert_eq!(report["Status"], "cleaned");
    let keys = w.keys(&user).await;
    assert_eq!(
        status(&keys, &current.access_key_id),
        Some(KeyStatus::Inactive)
    );
    assert_eq!(status(&keys, &other.access_key_id), Some(KeyStatus::Active));
    // The current key was deactivated out of band, so the usual invariant
    // (AWSCURRENT active) does not apply; no secret in the logs still does.
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}

#[tokio::test]
async fn with_a_secret_id_errors_are_the_functions_errors() {
    let w = World::new().await;
    let app = w.app(zero_periods(test_config()));
    let user = w.user(MANAGED_PATH).await;
    let paused = w.managed_secret(&user, None).await;
    w.tag(&paused, "rekey:paused", "true").await;
    assert_error(
        invoke(&app, Function::Cleanup, json!({"SecretId": paused})).await,
        "SecretPaused",
        &[],
    );
    assert_error(
        invoke(
            &app,
            Function::Cleanup,
            json!({"SecretId": "rekey-test/nope"}),
        )
        .await,
        "SecretNotFound",
        &["rekey-test/nope"],
    );
    let outsider = w.user("/other/").await;
    let secret = w.managed_secret(&outsider, None).await;
    assert_error(
        invoke(&app, Function::Cleanup, json!({"SecretId": secret})).await,
        "UserNotManaged",
        &[&outsider],
    );
    w.assert_invariants(&secret, &user).await;
}

/// Issue 27: a `rekey:superseded:` record set by hand to long ago is
/// trusted from no earlier than the creation of the key that superseded
/// it (as the provider reports it), and edits that keep that key move this
/// floor no more than they move the grace period.
#[tokio::test]
async fn a_backdated_record_is_not_trusted_before_the_current_keys_creation() {
    let w = World::new().await;
    let (user, secret, old) = rotated_once(&w).await;
    let made = w.current_key(&secret, &user).await.created;
    w.tag(
        &secret,
        &format!("rekey:superseded:{old}"),
        "2000-01-01T00:00:00Z",
    )
    .await;
    let grace = Duration::from_secs(3600);
    let mut config = test_config();
    config.deactivate_after = grace;
    let app = w.app(config);
    for n in 0..2 {
        next_second().await;
        edit_field(&w, &secret, "Edit", json!(n)).await;
        let report = cleanup(&app, &secret).await;
        assert!(report.get("Deactivated").is_none(), "{report}");
        assert_eq!(
            report["Waiting"][0]["AccessKeyId"],
            old.as_str(),
            "{report}"
        );
        assert_eq!(
            report["Waiting"][0]["Due"],
            timestamp(made + grace),
            "the grace period ends {grace:?} after the current key's creation, whatever the edits: {report}"
        );
        assert_eq!(status(&w.keys(&user).await, &old), Some(KeyStatus::Active));
    }
    w.assert_invariants(&secret, &user).await;
}
