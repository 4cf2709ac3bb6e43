//! Races a deployment can meet: the pipeline started twice for one secret,
//! cleanup running during a rotation, and many secrets at once.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use rekey::model::KeyStatus;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::{json, Value};

/// create -> test -> finish as the state machine runs them (KeyNotReady
/// retried a few times). Returns the last error type, if any.
async fn pipeline_run(app: &rekey_testkit::App, secret: &str) -> Result<Value, String> {
    let mut input = json!({ "SecretId": secret });
    for state in [Function::Create, Function::Test, Function::Finish] {
        let mut attempts = 0;
        input = loop {
            match invoke(app, state, input.clone()).await {
                Ok(out) => break out,
                Err(e) if e.error_type == "KeyNotReady" && attempts < 3 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(format!("{}: {}", e.error_type, e.error_message)),
            }
        };
    }
    Ok(input)
}

#[tokio::test]
async fn the_pipeline_started_twice_for_one_secret() {
    let w = World::new().await;
    for _ in 0..3 {
        let app = w.app(test_config());
        let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
        next_second().await;

        let (a, b) = tokio::join!(pipeline_run(&app, &secret), pipeline_run(&app, &secret));

        let outcomes = [&a, &b];
        assert!(
            outcomes.iter().any(|o| o.is_ok()),
            "one run rotates: {a:?} {b:?}"
        );
        for o in outcomes {
            if let Err(e) = o {
                let clear = [
                    "RotationInProgress",
                    "KeyLimitReached",
                    "KeyNotReady",
                    "TokenNotPending",
                ]
                .iter()
                .any(|t| e.starts_with(t));
                assert!(clear, "the loser fails clearly: {e}");
            }
        }
        let keys = w.keys(&user).await;
        assert!(
            keys.iter().any(|k| k.id == old.access_key_id),
            "the old key was not lost"
        );
        w.assert_invariants(&secret, &user).await;
    }
}

#[tokio::test]
async fn cleanup_during_a_rotation() {
    let w = World::new().await;
    let mut config = test_config();
    config.deactivate_after = Duration::ZERO;
    config.delete_after = Duration::ZERO;
    let cleaner = w.app(config);
    let app = w.app(test_config());
    let (user, _old, secret) = w.enrolled(MANAGED_PATH).await;

    let cleanup_loop = async {
        for _ in 0..30 {
            let _ = invoke(&cleaner, Function::Cleanup, json!({ "SecretId": secret })).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (rotated, ()) = tokio::join!(pipeline_run(&app, &secret), cleanup_loop);
    rotated.expect("the rotation completes");
    let current = w.current_credential(&secret).await.unwrap();
    let keys = w.keys(&user).await;
    assert_eq!(
        status(&keys, &current.access_key_id),
        Some(KeyStatus::Active)
    );
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn fifty_secrets_rotated_at_once() {
    let w = World::new().await;
    let app = w.app(test_config());
    let mut fleet = Vec::new();
    for _ in 0..50 {
        let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
        fleet.push((user, secret, old.access_key_id));
    }
    let app = &app;
    let results: Vec<Result<Value, String>> = futures::stream::iter(fleet.iter())
        .map(|(_, secret, _)| pipeline_run(app, secret))
        .buffer_unordered(50)
        .collect()
        .await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for (user, secret, old) in &fleet {
        assert_ne!(
            &w.current_credential(secret).await.unwrap().access_key_id,
            old
        );
        w.assert_invariants(secret, user).await;
    }
}
