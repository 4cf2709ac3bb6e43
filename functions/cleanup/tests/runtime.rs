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
    let names_secret = |answer: &serde_json::Value, list: &str| {
        answer[list]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["SecretId"] == secret.as_str())
    };
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
