//! The built `rekey-create` binary under a Lambda Runtime API, against moto.

use rekey::model::AWSPENDING;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_rekey-create");

#[tokio::test]
async fn creates_a_pending_key_and_hands_on_the_token() {
    let w = World::new().await;
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;

    let run = w
        .run_function(
            BIN,
            &test_config(),
            vec![json!({"SecretId": secret}), json!({"SecretId": 42})],
        )
        .await;

    let out = run.outcomes[0].clone().unwrap();
    assert_eq!(out["SecretId"], secret.as_str());
    let token = out["ClientRequestToken"]
        .as_str()
        .expect("a token was made");
    assert_eq!(w.stages(&secret).await[token], vec![AWSPENDING]);
    let pending = w.value(&secret, AWSPENDING).await.unwrap();
    assert_eq!(
        w.key_ids(&user).await,
        vec![pending["AccessKeyId"].as_str().unwrap().to_owned()]
    );
    assert_eq!(run.outcomes[1].error_type(), Some("InvalidEvent"));

    // What the benchmark reads from the harness is there and consistent.
    let init = run.init.expect("the time to the first `next` was taken");
    let first = run
        .first_answer
        .expect("the time to the first answer was taken");
    assert!(init < first, "{init:?} {first:?}");
    assert!(run.usage.peak_rss_kib.is_some_and(|kib| kib > 1024));
    assert!(!(run.usage.user + run.usage.sys).is_zero());

    // Metrics in embedded metric format, on stdout.
    let emf: Vec<serde_json::Value> = run
        .logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert!(
        emf.iter()
            .any(|m| m["KeysCreated"] == 1.0 && m["Function"] == "create"),
        "{emf:?}"
    );
    assert!(
        emf.iter()
            .any(|m| m["RotationsFailed"] == 1.0 && m["ErrorType"] == "InvalidEvent"),
        "{emf:?}"
    );
}
