//! The built `rekey-finish` binary under a Lambda Runtime API, against moto.

use rekey::model::AWSCURRENT;
use rekey::{Driver, Probing};
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_rekey-finish");

#[tokio::test]
async fn promotes_the_tested_key() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = "aaaaaaaa-bbbb-4ccc-8ddd-000000000002";
    app.create(&secret, token, Driver::Pipeline).await.unwrap();
    app.verify(&secret, token, Driver::Pipeline, Probing::Once)
        .await
        .unwrap();

    let event = json!({"SecretId": secret, "ClientRequestToken": token});
    let run = w
        .run_function(BIN, &test_config(), vec![event.clone(), event])
        .await;

    assert_eq!(run.outcomes.len(), 2, "{}", run.logs);
    for outcome in run.outcomes {
        assert_eq!(outcome.unwrap()["ClientRequestToken"], token);
    }
    assert_eq!(w.stages(&secret).await[token], vec![AWSCURRENT]);
    assert_ne!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    w.assert_invariants(&secret, &user).await;
}
