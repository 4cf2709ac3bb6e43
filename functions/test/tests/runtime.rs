//! The built `rekey-test` binary under a Lambda Runtime API, against moto.

use rekey::model::AWSPENDING;
use rekey::Driver;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_rekey-test");

#[tokio::test]
async fn passes_a_working_key_and_reports_key_not_ready_for_a_dead_one() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let token = "aaaaaaaa-bbbb-4ccc-8ddd-000000000001";
    let good = w.managed_secret(&user, None).await;
    app.create(&good, token, Driver::Pipeline).await.unwrap();
    let other = w.user(MANAGED_PATH).await;
    let dead = w.managed_secret(&other, None).await;
    app.create(&dead, token, Driver::Pipeline).await.unwrap();
    let pending = w.value(&dead, AWSPENDING).await.unwrap();
    w.delete_key(&other, pending["AccessKeyId"].as_str().unwrap())
        .await;

    let run = w
        .run_function(
            BIN,
            &test_config(),
            vec![
                json!({"SecretId": good, "ClientRequestToken": token}),
                json!({"SecretId": dead, "ClientRequestToken": token}),
            ],
        )
        .await;

    assert_eq!(
        run.outcomes[0].clone().unwrap()["ClientRequestToken"],
        token
    );
    assert_eq!(
        run.outcomes[1].error_type(),
        Some("KeyNotReady"),
        "{:?}",
        run.outcomes[1]
    );
}
