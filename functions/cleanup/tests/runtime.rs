//! The built `rekey-cleanup` binary under a Lambda Runtime API, against moto.

use std::time::Duration;

use rekey::model::KeyStatus;
use rekey::{Driver, Probing};
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_rekey-cleanup");

#[tokio::test]
async fn deactivates_the_superseded_key_then_deletes_it() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = "aaaaaaaa-bbbb-4ccc-8ddd-000000000003";
    app.create(&secret, token, Driver::Pipeline).await.unwrap();
    app.verify(&secret, token, Driver::Pipeline, Probing::Once)
        .await
        .unwrap();
    app.finish(&secret, token, Driver::Pipeline).await.unwrap();

    let mut config = test_config();
    config.deactivate_after = Duration::ZERO;
    config.delete_after = Duration::ZERO;
    let event = json!({"SecretId": secret});
    let run = w
        .run_function(
            BIN,
            &config,
            vec![
                event.clone(),
                event,
                json!({}),
                json!({"Triage": {"RotationPeriod": "90d"}}),
            ],
        )
        .await;

    assert_eq!(run.outcomes.len(), 4, "{}", run.logs);
    let first = run.outcomes[0].clone().unwrap();
    assert_eq!(
        first["Secrets"][0]["Deactivated"],
        json!([old.access_key_id])
    );
    let second = run.outcomes[1].clone().unwrap();
    assert_eq!(second["Secrets"][0]["Deleted"], json!([old.access_key_id]));
    // Checked in full just now: the sweep passes it over, by its records.
    let names_secret = |answer: &serde_json::Value, list: &str| names(answer, list, &secret);
    let sweep = run.outcomes[2].clone().unwrap();
    assert!(!names_secret(&sweep, "Secrets"), "{sweep}");
    let triage = run.outcomes[3].clone().unwrap();
    assert!(triage["Listed"].as_u64().unwrap() >= 1, "{triage}");
    assert!(!names_secret(&triage, "Items"), "{triage}");
    // The overdue alarm's metric: the secret's age, by its records.
    assert!(
        run.logs
            .lines()
            .any(|l| l.contains("\"SecretsListed\"") && l.contains("\"CurrentKeyAgeDays\":[")),
        "{}",
        run.logs
    );
    let keys = w.keys(&user).await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].status, KeyStatus::Active);
    w.assert_invariants(&secret, &user).await;
}

/// Issue 27, case 4: the sweep counts a near miss of `rekey:managed` in
/// its page's `ManagedTagNearMiss` metric and names the secret in a log
/// line; the full check is not run on it.
#[tokio::test]
async fn counts_and_names_a_near_miss_of_the_managed_tag() {
    let w = World::new().await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    w.tag(&secret, "rekey:managed", "True").await;
    let keys = w.keys(&user).await;

    let run = w
        .run_function(
            BIN,
            &test_config(),
            vec![json!({}), json!({"Triage": {"RotationPeriod": "0s"}})],
        )
        .await;
    assert_eq!(run.outcomes.len(), 2, "{}", run.logs);
    let names_secret = |answer: &serde_json::Value, list: &str| names(answer, list, &secret);
    let sweep = run.outcomes[0].clone().unwrap();
    assert!(!names_secret(&sweep, "Secrets"), "{sweep}");
    let triage = run.outcomes[1].clone().unwrap();
    assert!(!names_secret(&triage, "Items"), "{triage}");
    // One EMF line per page, each run: this secret is the only near miss
    // this test binary makes.
    let counted: Vec<f64> = run
        .logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ManagedTagNearMiss"].as_f64())
        .collect();
    assert_eq!(counted, [1.0, 1.0], "{}", run.logs);
    let named = run
        .logs
        .lines()
        .filter(|l| l.contains(secret.as_str()) && l.contains("not exactly `true`"))
        .count();
    assert_eq!(named, 2, "{}", run.logs);
    assert_eq!(w.keys(&user).await, keys, "nothing changed");
    w.assert_no_secret_in(&run.logs, "the logs");
}

/// Whether the function's answer names `secret` in its list `list`.
fn names(answer: &serde_json::Value, list: &str, secret: &str) -> bool {
    answer[list]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["SecretId"] == secret)
}

/// Issue 27, case 5: the sweep counts a paused secret in its page's
/// `SecretsPaused` metric and names it in a log line; once it is paused
/// for longer than `REKEY_PAUSED_ALERT_AFTER`, in `SecretsPausedTooLong`
/// (the `PausedTooLong` alarm's metric) too, with its id.
#[tokio::test]
async fn counts_a_paused_secret_and_alarms_past_the_bound() {
    let w = World::new().await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    w.tag(&secret, "rekey:paused", "true").await;
    let keys = w.keys(&user).await;
    let mut config = test_config();
    config.paused_alert_after = Duration::from_secs(3);
    let metric = |logs: &str, name: &str| -> Vec<f64> {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["SecretsListed"].is_number())
            .map(|v| v[name].as_f64().unwrap_or(0.0))
            .collect()
    };
    let events = || vec![json!({}), json!({"Triage": {"RotationPeriod": "0s"}})];

    // First seen: counted, named, recorded; not yet for too long. This
    // is the only paused secret this test binary makes.
    let run = w.run_function(BIN, &config, events()).await;
    assert_eq!(run.outcomes.len(), 2, "{}", run.logs);
    assert_eq!(
        metric(&run.logs, "SecretsPaused"),
        [1.0, 1.0],
        "{}",
        run.logs
    );
    assert_eq!(metric(&run.logs, "SecretsPausedTooLong"), [0.0, 0.0]);
    let named = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains(secret.as_str()) && l.contains("paused (rekey:paused) since"))
            .count()
    };
    assert_eq!(named(&run.logs), 2, "{}", run.logs);
    let since = w.tags(&secret).await["rekey:paused-since"].clone();

    // Past the bound: counted as paused for too long, and named.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let run = w.run_function(BIN, &config, events()).await;
    assert_eq!(run.outcomes.len(), 2, "{}", run.logs);
    assert_eq!(
        metric(&run.logs, "SecretsPausedTooLong"),
        [1.0, 1.0],
        "{}",
        run.logs
    );
    let longest: Vec<String> = run
        .logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["LongestPausedSecretId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(longest, [secret.clone(), secret.clone()]);
    assert!(
        run.logs
            .lines()
            .any(|l| l.contains(secret.as_str()) && l.contains("REKEY_PAUSED_ALERT_AFTER")),
        "{}",
        run.logs
    );
    assert_eq!(w.tags(&secret).await["rekey:paused-since"], since);
    assert_eq!(w.keys(&user).await, keys, "nothing changed");
}
