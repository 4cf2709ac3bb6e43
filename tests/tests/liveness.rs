//! The world around a rotation, end to end against moto: states that used to
//! be stuck now have a way forward (issue cases: the hook's deadlock at the
//! key limit, a console edit, a pending key that no longer exists, a timer
//! record set by hand). The hook's steps are driven as Secrets Manager
//! drives them, including its retry of a failed rotation with the same
//! token.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use rekey::model::{KeyStatus, AWSCURRENT, AWSPENDING};
use rekey_testkit::{test_config, version_with, World, MANAGED_PATH};
use serde_json::json;

/// Someone edits the secret in the console: a new AWSCURRENT version, the
/// same key, one field more. Returns the new value.
async fn edit(w: &World, secret: &str) -> serde_json::Value {
    edit_field(w, secret, "Team", json!("payments")).await
}

/// Case 1: a second rotation at the limit fails with KeyLimitReached and
/// leaves its (empty) AWSPENDING version; cleanup is not blocked by it,
/// deactivates the old key once its grace period is over, and Secrets
/// Manager's retry with the same token then succeeds.
#[tokio::test]
async fn a_rotation_blocked_at_the_limit_succeeds_once_cleanup_has_run() {
    let w = World::new().await;
    let app = w.app(test_config()); // a 24 h grace period
    let (user, first, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();

    // Rotated again early: the first key is still in its grace period.
    let again = w.start_rotation(&secret).await;
    assert_error(
        hook(&app, "createSecret", &secret, &again).await,
        "KeyLimitReached",
        &[&first.access_key_id, "grace period"],
    );

    // The grace period ends: cleanup runs although a rotation is pending.
    let cleaner = w.app(zero_periods(test_config()));
    let report = cleanup(&cleaner, &secret).await;
    assert_eq!(report["Status"], "cleaned", "{report}");
    assert_eq!(report["Deactivated"], json!([first.access_key_id]));
    assert_eq!(
        version_with(&w.stages(&secret).await, AWSPENDING).as_deref(),
        Some(again.as_str()),
        "the rotation in progress is left alone"
    );

    // Secrets Manager retries the rotation with the same token.
    hook_rotation(&app, &secret, &again).await.unwrap();
    let keys = w.key_ids(&user).await;
    assert!(
        !keys.contains(&first.access_key_id),
        "the inactive key made room"
    );
    w.assert_invariants(&secret, &user).await;
}

/// Case 3: someone edits the secret after a rotation (same key, a new
/// version: AWSPREVIOUS moves onto a version that holds the current key).
/// The superseded key is retired by rekey's record all the same, and the
/// next rotation finds room.
#[tokio::test]
async fn a_console_edit_does_not_strand_the_superseded_key() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();

    let edited = edit(&w, &secret).await;
    let previous = w.value(&secret, "AWSPREVIOUS").await.unwrap();
    assert_eq!(
        previous["AccessKeyId"], edited["AccessKeyId"],
        "AWSPREVIOUS now holds the current key"
    );

    let cleaner = w.app(zero_periods(test_config()));
    let report = cleanup(&cleaner, &secret).await;
    assert_eq!(
        report["Deactivated"],
        json!([old.access_key_id]),
        "{report}"
    );
    let report = cleanup(&cleaner, &secret).await;
    assert_eq!(report["Deleted"], json!([old.access_key_id]), "{report}");

    let next = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &next).await.unwrap();
    assert_eq!(
        w.value(&secret, AWSCURRENT).await.unwrap()["Team"],
        "payments",
        "the edit is carried into the new version"
    );
    w.assert_invariants(&secret, &user).await;
}

/// Issue 27, case 3: a job edits the secret every two seconds after a hook
/// rotation (the same key, another field changed: a new AWSCURRENT version
/// each time). The superseded key's grace period runs from its
/// supersession, not from the last edit: the time cleanup reports for its
/// deactivation does not move with the edits, and the first cleanup after
/// that time deactivates it while the edits go on. The full check after
/// each edit names the new version in `rekey:current` and keeps the key's
/// time.
#[tokio::test]
async fn edits_that_keep_the_key_do_not_restart_the_grace_period() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    let superseded = SystemTime::now();
    let grace = Duration::from_secs(8);
    let mut config = test_config();
    config.deactivate_after = grace;
    let cleaner = w.app(config);

    let old = old.access_key_id;
    let (mut due, mut since) = (None, None);
    for n in 1.. {
        tokio::time::sleep(Duration::from_secs(2)).await;
        edit_field(&w, &secret, "Edit", json!(n)).await;
        let checked_at = SystemTime::now();
        let report = cleanup(&cleaner, &secret).await;

        let record = w.tags(&secret).await["rekey:current"].clone();
        let parts: Vec<&str> = record.split(' ').collect();
        assert_eq!(
            Some(parts[0].to_owned()),
            version_with(&w.stages(&secret).await, AWSCURRENT),
            "the full check names the edit's version: {record}"
        );
        assert_eq!(
            *since.get_or_insert(parts[2].to_owned()),
            parts[2],
            "edit {n} moved rekey:current's time"
        );

        if report["Deactivated"] == json!([old]) {
            break;
        }
        assert_eq!(
            report["Waiting"][0]["AccessKeyId"],
            old.as_str(),
            "{report}"
        );
        let d = report["Waiting"][0]["Due"].as_str().unwrap().to_owned();
        assert_eq!(
            *due.get_or_insert(d.clone()),
            d,
            "edit {n} moved the end of {old}'s grace period: {report}"
        );
        let end = humantime::parse_rfc3339(&d).unwrap();
        // (The report's times are to the second.)
        assert!(
            checked_at < end + Duration::from_secs(1),
            "{old} still active after its grace period ended at {d}: {report}"
        );
        assert!(
            end <= superseded + grace,
            "{old}'s grace period ends at {d}, later than {grace:?} after it was superseded"
        );
    }
    assert_eq!(
        status(&w.keys(&user).await, &old),
        Some(KeyStatus::Inactive)
    );
    w.assert_invariants(&secret, &user).await;
}

/// Case 4: the pending key is deactivated out of band (the way to abandon
/// a rotation). The pipeline's next run replaces the rotation with a new
/// token instead of resuming it for ever.
#[tokio::test]
async fn a_rotation_whose_key_was_deactivated_is_replaced_not_resumed() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let first = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    let dead_token = first["ClientRequestToken"].as_str().unwrap().to_owned();
    let dead_key = w.value(&secret, AWSPENDING).await.unwrap()["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    w.deactivate(&user, &dead_key).await;

    // The scheduled run: a new token, Resume.
    let token = uuid::Uuid::new_v4().to_string();
    let created = invoke(
        &app,
        Function::Create,
        json!({ "SecretId": secret, "ClientRequestToken": token, "Resume": true }),
    )
    .await
    .unwrap();
    assert_eq!(
        created["ClientRequestToken"], token,
        "a new token: {created}"
    );
    let stages = w.stages(&secret).await;
    assert_eq!(
        version_with(&stages, AWSPENDING).as_deref(),
        Some(token.as_str())
    );
    assert!(
        !stages
            .get(&dead_token)
            .is_some_and(|s| s.iter().any(|s| s == AWSPENDING)),
        "the dead version lost AWSPENDING"
    );
    let tested = invoke(&app, Function::Test, created).await.unwrap();
    invoke(&app, Function::Finish, tested).await.unwrap();
    let keys = w.keys(&user).await;
    assert!(
        !keys.iter().any(|k| k.id == dead_key),
        "the inactive key made room"
    );
    assert_eq!(status(&keys, &old.access_key_id), Some(KeyStatus::Active));
    w.assert_invariants(&secret, &user).await;

    // The same token retried by Step Functions is refused, not resumed.
    assert_error(
        invoke(
            &app,
            Function::Create,
            json!({ "SecretId": secret, "ClientRequestToken": dead_token }),
        )
        .await,
        "TokenNotPending",
        &[],
    );
}

/// Case 4, through cleanup: a hook rotation whose pending key was
/// deactivated loses AWSPENDING, so Secrets Manager's next rotation comes
/// with a new token.
#[tokio::test]
async fn cleanup_takes_pending_off_a_rotation_that_can_never_finish() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, _old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook(&app, "createSecret", &secret, &token).await.unwrap();
    let key = w.value(&secret, AWSPENDING).await.unwrap()["AccessKeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    w.deactivate(&user, &key).await;

    let report = cleanup(&app, &secret).await;
    assert_eq!(report["Abandoned"], json!(token), "{report}");
    assert_eq!(version_with(&w.stages(&secret).await, AWSPENDING), None);
    assert_error(
        hook(&app, "testSecret", &secret, &token).await,
        "TokenNotPending",
        &[],
    );

    let next = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &next).await.unwrap();
    w.assert_invariants(&secret, &user).await;
}

/// Case 6: a grace-period record set by hand to long ago does not skip the
/// grace period: it is never trusted to be earlier than the version that
/// superseded the key.
#[tokio::test]
async fn a_timer_record_set_to_long_ago_does_not_skip_the_grace_period() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    w.tag(
        &secret,
        &format!("rekey:superseded:{}", old.access_key_id),
        "2000-01-01T00:00:00Z",
    )
    .await;

    let report = cleanup(&app, &secret).await;
    assert!(report.get("Deactivated").is_none(), "{report}");
    assert_eq!(report["Waiting"][0]["AccessKeyId"], old.access_key_id);
    let keys = w.keys(&user).await;
    assert_eq!(status(&keys, &old.access_key_id), Some(KeyStatus::Active));
    w.assert_invariants(&secret, &user).await;
}

/// A key whose store failed (and whose delete failed too) names its token
/// in its `created` record: after an edit made it older than AWSCURRENT,
/// where it no longer looks like an orphan, the token's retry still
/// reclaims it before making its one key (invariant one-key-per-token).
#[tokio::test]
async fn a_tokens_retry_reclaims_the_key_it_never_stored_even_after_an_edit() {
    use rekey_testkit::proxy::{Fault, Proxy, Target};
    let w = World::new().await;
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let proxy = Proxy::start(&rekey_testkit::moto().endpoint).await;
    for action in ["PutSecretValue", "DeleteAccessKey"] {
        proxy.inject(Target::FirstN(Some(action), 50), Fault::ServerError);
    }
    let failing = w.app_via(&proxy, test_config()).await;
    let token = "aaaaaaaa-bbbb-4ccc-8ddd-000000000077";
    let event = json!({"SecretId": secret, "ClientRequestToken": token});
    let err = invoke(&failing, Function::Create, event.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.error_type, "ServiceUnavailable",
        "{}",
        err.error_message
    );
    let left: Vec<String> = w
        .key_ids(&user)
        .await
        .into_iter()
        .filter(|k| *k != old.access_key_id)
        .collect();
    assert_eq!(left.len(), 1, "the unstored key is left: {left:?}");

    // An edit: the AWSCURRENT version is now newer than that key.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    edit(&w, &secret).await;

    let app = w.app(test_config());
    let created = invoke(&app, Function::Create, event).await.unwrap();
    assert_eq!(created["ClientRequestToken"], token);
    let keys = w.key_ids(&user).await;
    assert!(
        !keys.contains(&left[0]),
        "the token's unstored key is reclaimed: {keys:?}"
    );
    assert_eq!(
        keys.len(),
        2,
        "the current key and the token's one key: {keys:?}"
    );
    assert!(keys.contains(&old.access_key_id));
}
