//! Events for consumers, as an application's team would receive them: an
//! EventBridge rule on rekey's events (source `rekey`) sends them to an SQS
//! queue, read back here. `Key Rotated` after each promotion (hook and
//! pipeline), `Key Deactivated` and `Key Deleted` after each retirement,
//! `Rotation Failed` when a step fails; the owner comes from the secret's
//! `rekey:owner` tag, and no event carries a secret.

mod common;

use common::*;
use rekey::model::{AWSCURRENT, AWSPREVIOUS};
use rekey_testkit::inbox::Inbox;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::Value;

/// The detail of the one event of `detail_type` among `events`.
fn detail<'a>(events: &'a [Value], detail_type: &str) -> &'a Value {
    let found: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail-type"] == detail_type)
        .collect();
    assert_eq!(found.len(), 1, "one {detail_type}: {events:#?}");
    assert_eq!(found[0]["source"], "rekey");
    &found[0]["detail"]
}

#[tokio::test]
async fn a_promotion_and_each_retirement_reach_the_owners_queue() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    w.tag(&secret, "rekey:owner", "team-payments").await;
    let inbox = Inbox::for_secret(&w, &secret).await;

    let token = w.start_rotation(&secret).await;
    hook_rotation(&app, &secret, &token).await.unwrap();
    let new = w.current_credential(&secret).await.unwrap().access_key_id;
    w.value(&secret, AWSCURRENT).await;
    w.value(&secret, AWSPREVIOUS).await;
    let events = inbox.take(1).await;
    let rotated = detail(&events, "Key Rotated");
    assert_eq!(rotated["SecretArn"], secret.as_str());
    assert_eq!(rotated["Provider"], "aws");
    assert_eq!(rotated["AccountId"], secret.split(':').nth(4).unwrap());
    assert_eq!(rotated["UserName"], user.as_str());
    assert_eq!(rotated["Owner"], "team-payments");
    assert_eq!(rotated["Driver"], "hook");
    assert_eq!(rotated["NewKeyId"], new.as_str());
    assert_eq!(rotated["OldKeyId"], old.access_key_id.as_str());
    assert!(
        rotated["Time"].as_str().unwrap().ends_with('Z'),
        "{rotated}"
    );
    assert!(rotated.get("DryRun").is_none(), "{rotated}");

    let retire = w.app(zero_periods(test_config()));
    cleanup(&retire, &secret).await;
    cleanup(&retire, &secret).await;
    let events = inbox.take(2).await;
    for (detail_type, event) in [("Key Deactivated", 0), ("Key Deleted", 1)] {
        assert_eq!(events[event]["detail-type"], detail_type, "{events:#?}");
        let d = detail(&events, detail_type);
        assert_eq!(d["KeyId"], old.access_key_id.as_str());
        assert_eq!(d["UserName"], user.as_str());
        assert_eq!(d["Owner"], "team-payments");
    }

    let all = serde_json::to_string(&events).unwrap();
    w.assert_no_secret_in(&all, "the events");
    w.assert_invariants(&secret, &user).await;
    assert_ne!(new, old.access_key_id);
}

#[tokio::test]
async fn the_pipelines_promotion_says_so() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let inbox = Inbox::for_secret(&w, &secret).await;
    pipeline_rotation(&app, &secret).await.unwrap();
    let new = w.current_credential(&secret).await.unwrap().access_key_id;
    let events = inbox.take(1).await;
    let rotated = detail(&events, "Key Rotated");
    assert_eq!(rotated["Driver"], "pipeline");
    assert_eq!(rotated["NewKeyId"], new.as_str());
    assert_eq!(rotated["OldKeyId"], old.access_key_id.as_str());
    assert!(
        rotated.get("Owner").is_none(),
        "no rekey:owner tag: {rotated}"
    );
    w.assert_no_secret_in(&events[0].to_string(), "the event");
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_failed_rotation_and_a_dry_runs_retirement_say_so() {
    let w = World::new().await;
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    w.tag(&secret, "rekey:owner", "team-search").await;
    let inbox = Inbox::for_secret(&w, &secret).await;
    let token = w.start_rotation(&secret).await;
    hook_rotation(&w.app(test_config()), &secret, &token)
        .await
        .unwrap();
    inbox.take(1).await;

    // Paused by hand: the hook's next rotation fails, and says why.
    w.tag(&secret, "rekey:paused", "true").await;
    let token = w.start_rotation(&secret).await;
    let app = w.app(test_config());
    assert_error(
        hook(&app, "createSecret", &secret, &token).await,
        "SecretPaused",
        &[],
    );
    let events = inbox.take(1).await;
    let failed = detail(&events, "Rotation Failed");
    assert_eq!(failed["SecretArn"], secret.as_str());
    assert_eq!(failed["Owner"], "team-search");
    assert_eq!(failed["Driver"], "hook");
    assert_eq!(failed["ErrorType"], "SecretPaused");
    assert!(
        failed["Message"]
            .as_str()
            .unwrap()
            .contains("remove the tag"),
        "{failed}"
    );
    w.tag(&secret, "rekey:paused", "false").await;

    // A dry run's cleanup: the events say what it would retire.
    let mut config = zero_periods(test_config());
    config.dry_run = true;
    cleanup(&w.app(config), &secret).await;
    let events = inbox.take(1).await;
    let would = detail(&events, "Key Deactivated");
    assert_eq!(would["KeyId"], old.access_key_id.as_str());
    assert_eq!(would["DryRun"], true);
    assert_eq!(would["UserName"], user.as_str());
}
