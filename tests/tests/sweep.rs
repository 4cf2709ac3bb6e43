//! rekey-cleanup over every managed secret, and the state machine's triage.
//! In its own test binary, so its moto holds only the secrets made here.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use rekey::model::{KeyStatus, AWSCURRENT};
use rekey::plan::timestamp;
use rekey_testkit::{test_config, version_with, World, MANAGED_PATH};
use serde_json::{json, Value};

#[tokio::test]
async fn a_sweep_handles_the_good_and_reports_the_broken() {
    let w = World::new().await;
    let rotate = w.app(test_config());

    // Good: rotated once, its previous key due for deactivation.
    let user = w.user(MANAGED_PATH).await;
    let old = w.create_key(&user).await;
    let good = w.managed_secret(&user, Some(&old)).await;
    let token = w.start_rotation(&good).await;
    hook_rotation(&rotate, &good, &token).await.unwrap();

    let managed = [("rekey:managed", "true")];
    let bad_json = w.secret(&json!([1, 2]), &managed).await;
    let unknown_provider = w
        .secret(&json!({"UserName": user, "Provider": "gcp"}), &managed)
        .await;
    let missing_user = w
        .secret(&json!({"UserName": "nobody-here"}), &managed)
        .await;
    let paused_user = w.user(MANAGED_PATH).await;
    let paused = w.managed_secret(&paused_user, None).await;
    w.tag(&paused, "rekey:paused", "true").await;
    let other = w.user(MANAGED_PATH).await;
    let in_progress = w.managed_secret(&other, None).await;
    w.start_rotation(&in_progress).await;
    // Not managed: not even listed.
    let unmanaged = w
        .secret_named(&format!("team/{user}"), &json!({ "UserName": user }), &[])
        .await;
    // Managed, but not the owning secret of its user.
    let stray = w
        .secret_named(
            &format!("team/managed/{user}"),
            &json!({ "UserName": user }),
            &managed,
        )
        .await;

    let mut config = test_config();
    config.deactivate_after = Duration::ZERO;
    let sweep = w.app(config);
    let out = invoke(&sweep, Function::Cleanup, json!({})).await.unwrap();
    let secrets = out["Secrets"].as_array().unwrap();
    let find = |id: &str| secrets.iter().find(|s| s["SecretId"] == id).cloned();

    let g = find(&good).expect("good secret reported");
    assert_eq!(g["Status"], "cleaned");
    assert_eq!(g["Deactivated"], json!([old.access_key_id]));
    let keys = w.keys(&user).await;
    assert_eq!(
        keys.iter()
            .find(|k| k.id == old.access_key_id)
            .unwrap()
            .status,
        KeyStatus::Inactive
    );

    for (id, error_type) in [
        (&bad_json, "InvalidSecret"),
        (&unknown_provider, "UnknownProvider"),
        (&missing_user, "UserNotFound"),
        (&stray, "SecretNotOwner"),
    ] {
        let s = find(id).unwrap_or_else(|| panic!("{error_type} secret not reported: {out}"));
        assert_eq!(s["Status"], "skipped", "{s}");
        assert_eq!(s["ErrorType"], error_type, "{s}");
        assert!(s["Reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    assert!(find(&unmanaged).is_none());
    // A paused secret is passed over by its tags, with no call.
    assert!(find(&paused).is_none(), "{out}");
    // A rotation in progress does not stop cleanup (one blocked at the key
    // limit waits for cleanup to deactivate the old key), and it reports
    // the secret's age for the overdue alarm.
    let p = find(&in_progress).expect("in-progress secret reported");
    assert_eq!(p["Status"], "cleaned", "{p}");
    assert!(p["CurrentSince"].is_string(), "{p}");
    let logs = rekey_testkit::captured_logs();
    assert!(logs.contains("skipped secret"));
    w.assert_no_secret_in(&out.to_string(), "the output");
    w.assert_invariants(&good, &user).await;

    // The next sweep decides from the records: the secrets checked in
    // full are passed over; the broken ones (never checked) and the
    // rotation in progress are looked at again, so their errors keep
    // being reported.
    let again = invoke(&sweep, Function::Cleanup, json!({})).await.unwrap();
    // (Only this test's secrets: the other test shares this moto.)
    let ours = [
        &good,
        &bad_json,
        &unknown_provider,
        &missing_user,
        &paused,
        &in_progress,
        &stray,
    ];
    let mut seen: Vec<&str> = again["Secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SecretId"].as_str().unwrap())
        .filter(|id| ours.iter().any(|o| o.as_str() == *id))
        .collect();
    seen.sort();
    let mut expected = vec![
        bad_json.as_str(),
        unknown_provider.as_str(),
        missing_user.as_str(),
        stray.as_str(),
        in_progress.as_str(),
    ];
    expected.sort();
    assert_eq!(seen, expected, "{again}");
}

#[tokio::test]
async fn named_secrets_are_all_due_now_and_a_missing_one_fails_the_call() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (_, _, pipeline) = w.enrolled(MANAGED_PATH).await;
    let (_, _, hooked) = w.enrolled(MANAGED_PATH).await;
    w.start_rotation(&hooked).await; // rotation on: the hook drives it

    // Named twice (the second time by name): one item.
    let name = pipeline.rsplit_once(":secret:").unwrap().1;
    let name = &name[..name.len() - 7]; // without the ARN's random suffix
    let event = json!({"Triage": {"RotationPeriod": "0s", "SecretIds": [pipeline, hooked, name]}});
    let answer = invoke(&app, Function::Cleanup, event).await.unwrap();
    assert_eq!(
        answer,
        json!({
            "Items": [
                {"SecretId": pipeline, "Rotate": true, "Clean": true, "RotationPeriod": "0s"},
                {"SecretId": hooked, "Rotate": false, "Clean": true, "RotationPeriod": "0s"},
            ],
            "Listed": 2,
        })
    );

    let event =
        json!({"Triage": {"RotationPeriod": "0s", "SecretIds": [pipeline, "rekey/aws/nobody"]}});
    let err = invoke(&app, Function::Cleanup, event).await.unwrap_err();
    assert_eq!(err.error_type, "SecretNotFound", "{}", err.error_message);
}

/// Issue 27, case 4: `rekey:managed=True` (or any value but exactly
/// `true`) is not managed by any path, and no path passes it over in
/// silence. A direct invocation refuses it naming the value to set; the
/// sweep lists it (ListSecrets filters by the tag's key alone), leaves it
/// alone and names it in a log line (the page's `ManagedTagNearMiss`
/// metric is checked on the built binary, functions/cleanup/tests).
#[tokio::test]
async fn a_near_miss_of_the_managed_tag_is_neither_rotated_nor_passed_over_in_silence() {
    let w = World::new().await;
    let app = w.app(test_config());
    let mut near_misses = Vec::new();
    for value in ["True", " true", "yes"] {
        let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
        w.tag(&secret, "rekey:managed", value).await;
        near_misses.push((user, secret, value));
    }
    // Plainly not managed: listed by its key, passed over without a word.
    let (_, _, off) = w.enrolled(MANAGED_PATH).await;
    w.tag(&off, "rekey:managed", "false").await;

    for (user, secret, value) in &near_misses {
        let before = snapshot(&w, secret, user).await;
        // Directly: the pipeline's create, the hook, a full check.
        let mentions = ["rekey:managed=true", "exactly `true`"];
        let create = invoke(&app, Function::Create, json!({ "SecretId": secret })).await;
        assert_error(create, "SecretNotManaged", &mentions);
        let token = w.start_rotation(secret).await;
        assert_error(
            hook(&app, "createSecret", secret, &token).await,
            "SecretNotManaged",
            &mentions,
        );
        let clean = invoke(&app, Function::Cleanup, json!({ "SecretId": secret })).await;
        assert_error(clean, "SecretNotManaged", &mentions);
        let after = snapshot(&w, secret, user).await;
        assert_eq!(after.keys, before.keys, "{value:?}: keys changed");
        assert_eq!(after.current, before.current, "{value:?}");
        assert_eq!(w.tags(secret).await["rekey:managed"], *value);
    }

    // The sweep: nothing sent on, nothing cleaned, each named in the logs.
    let sweep = invoke(&app, Function::Cleanup, json!({})).await.unwrap();
    let triage = invoke(
        &app,
        Function::Cleanup,
        json!({"Triage": {"RotationPeriod": "0s"}}),
    )
    .await
    .unwrap();
    let logs = rekey_testkit::captured_logs();
    for (_, secret, value) in &near_misses {
        for (answer, list) in [(&sweep, "Secrets"), (&triage, "Items")] {
            assert!(
                !answer[list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["SecretId"] == secret.as_str()),
                "{value:?} sent on: {answer}"
            );
        }
        assert!(
            logs.lines().any(|l| l.contains(secret.as_str())
                && l.contains("passed over")
                && l.contains("rekey:managed=true")),
            "{value:?}: no log line names {secret}"
        );
    }
    assert!(
        !logs
            .lines()
            .any(|l| l.contains(off.as_str()) && l.contains("passed over")),
        "an unmanaged secret is no near miss"
    );
    w.assert_no_secret_in(&logs, "the logs");
}

/// The state machine's triage of `secret` with `period`: its item, if the
/// sweep sends it on (following `Next` over every page).
async fn triage_item(app: &rekey_testkit::App, secret: &str, period: &str) -> Option<Value> {
    let mut event = json!({"Triage": {"RotationPeriod": period}});
    loop {
        let answer = invoke(app, Function::Cleanup, event).await.unwrap();
        let items = answer["Items"].as_array().unwrap();
        if let Some(item) = items.iter().find(|i| i["SecretId"] == secret) {
            return Some(item.clone());
        }
        match answer.get("Next") {
            Some(next) => event = next.clone(),
            None => return None,
        }
    }
}

/// Issue 27, case 3: a pipeline secret edited every two seconds (the same
/// key, another field changed) still comes due when its key is
/// `RotationPeriod` old. Each edit is sent on (an edit rekey did not
/// make), its full check names the new version in `rekey:current` and
/// keeps the key's creation as its time, and rekey-create finds it not
/// due; once the key is the period old, the sweep sends it on by its
/// records alone, and rekey-create rotates it even right after another
/// edit.
#[tokio::test]
async fn a_pipeline_secret_edited_regularly_still_comes_due_on_schedule() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    pipeline_rotation(&app, &secret).await.unwrap();
    let current = w.current_key(&secret, &user).await;
    let (key, made) = (current.id, current.created);
    let (period, every) = (Duration::from_secs(15), "15s");
    let create = json!({"SecretId": secret, "RotationPeriod": every, "Resume": true});

    let mut edits = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if SystemTime::now() + Duration::from_secs(2) >= made + period {
            break;
        }
        edits += 1;
        edit_field(&w, &secret, "Edit", json!(edits)).await;
        let item = triage_item(&app, &secret, every)
            .await
            .expect("an edit is sent on");
        assert_eq!(item["Clean"], true, "{item}");
        cleanup(&app, &secret).await;
        let version = version_with(&w.stages(&secret).await, AWSCURRENT).unwrap();
        assert_eq!(
            w.tags(&secret).await["rekey:current"],
            format!("{version} {key} {}", timestamp(made)),
            "after edit {edits}, the record names its version and keeps the key's time"
        );
        let out = invoke(&app, Function::Create, create.clone())
            .await
            .unwrap();
        assert_eq!(out["Skipped"], "not-due", "edit {edits}: {out}");
    }
    assert!(
        edits >= 2,
        "only {edits} edits before the key was the period old"
    );
    while SystemTime::now() < made + period + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // No edit since the last full check: due by the records alone.
    let item = triage_item(&app, &secret, every)
        .await
        .expect("due by its records");
    assert_eq!(item["Rotate"], true, "{item}");
    assert_eq!(item["Clean"], false, "nothing else is due: {item}");

    // An edit just before: rekey-create counts from the key all the same.
    edit_field(&w, &secret, "Edit", json!("last")).await;
    let created = invoke(&app, Function::Create, create).await.unwrap();
    assert!(created.get("Skipped").is_none(), "{created}");
    invoke(&app, Function::Test, created.clone()).await.unwrap();
    invoke(&app, Function::Finish, created).await.unwrap();
    let now = w.value(&secret, AWSCURRENT).await.unwrap();
    assert_ne!(now["AccessKeyId"], key.as_str(), "rotated");
    assert_eq!(
        now["Edit"], "last",
        "the edit is carried into the new version"
    );
    w.assert_invariants(&secret, &user).await;
}

/// Issue 27, case 5: a secret paused by hand is passed over, never in
/// silence: the sweep names it in a log line, records since when it is
/// paused (`rekey:paused-since`, once), names it louder once it is paused
/// for longer than `REKEY_PAUSED_ALERT_AFTER`, and drops the record once
/// the pause is over. (The page's `SecretsPaused` and
/// `SecretsPausedTooLong` metrics are checked on the built binary,
/// functions/cleanup/tests.)
#[tokio::test]
async fn a_secret_paused_by_hand_is_named_recorded_and_reported_past_the_bound() {
    let w = World::new().await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    w.tag(&secret, "rekey:paused", "true").await;
    let keys = w.keys(&user).await;
    let mut config = test_config();
    config.paused_alert_after = Duration::from_secs(3);
    let app = w.app(config);
    let names_secret = |answer: &serde_json::Value, list: &str| {
        answer[list]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["SecretId"] == secret.as_str())
    };
    let lines = |needle: &str| {
        rekey_testkit::captured_logs()
            .lines()
            .filter(|l| l.contains(secret.as_str()) && l.contains(needle))
            .count()
    };

    let sweep = invoke(&app, Function::Cleanup, json!({})).await.unwrap();
    assert!(!names_secret(&sweep, "Secrets"), "{sweep}");
    assert_eq!(lines("passed over: paused (rekey:paused) since"), 1);
    assert_eq!(lines("REKEY_PAUSED_ALERT_AFTER"), 0, "not yet for too long");
    let since = w.tags(&secret).await["rekey:paused-since"].clone();
    let at = humantime::parse_rfc3339(&since).expect("an RFC 3339 time");
    let age = std::time::SystemTime::now().duration_since(at).unwrap();
    assert!(age < Duration::from_secs(60), "{since}");

    // The state machine's triage names it too, and keeps the record.
    let triage = json!({"Triage": {"RotationPeriod": "0s"}});
    let answer = invoke(&app, Function::Cleanup, triage.clone())
        .await
        .unwrap();
    assert!(!names_secret(&answer, "Items"), "{answer}");
    assert_eq!(lines("passed over: paused (rekey:paused) since"), 2);
    assert_eq!(w.tags(&secret).await["rekey:paused-since"], since);

    // Past the bound: named as paused for too long, by the same record.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    invoke(&app, Function::Cleanup, triage).await.unwrap();
    assert_eq!(lines("longer than REKEY_PAUSED_ALERT_AFTER"), 1);
    assert_eq!(w.tags(&secret).await["rekey:paused-since"], since);
    assert_eq!(w.keys(&user).await, keys, "nothing changed but the record");

    // Resumed by hand: the record of that pause goes, so that the next
    // pause starts a clock of its own.
    w.untag(&secret, "rekey:paused").await;
    invoke(&app, Function::Cleanup, json!({})).await.unwrap();
    assert!(!w.tags(&secret).await.contains_key("rekey:paused-since"));
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}
