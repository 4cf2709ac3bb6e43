//! The built `rekey-hook` binary under a Lambda Runtime API, against moto
//! (and the Alibaba RAM + STS emulator).

use rekey::model::{Provider, AWSCURRENT, AWSPENDING};
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_rekey-hook");

#[tokio::test]
async fn rotates_a_key_through_the_runtime_api() {
    let w = World::new().await;
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    let events = [
        "createSecret",
        "setSecret",
        "testSecret",
        "finishSecret",
        "rotateSecret",
    ]
    .iter()
    .map(|step| json!({"SecretId": secret, "ClientRequestToken": token, "Step": step}))
    .collect();

    let run = w.run_function(BIN, &test_config(), events).await;

    assert_eq!(run.outcomes.len(), 5, "{}", run.logs);
    for outcome in &run.outcomes[..4] {
        assert!(
            matches!(outcome, rekey_testkit::runtime::Outcome::Ok(_)),
            "{outcome:?}\n{}",
            run.logs
        );
    }
    assert_eq!(run.outcomes[4].error_type(), Some("InvalidEvent"));
    assert_eq!(w.stages(&secret).await[&token], vec![AWSCURRENT]);
    assert_ne!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    assert!(
        run.logs.contains(&token) && run.logs.contains("\"step\":\"finishSecret\""),
        "logs carry the token and step:\n{}",
        run.logs
    );
    w.assert_invariants(&secret, &user).await;
    // The new key's secret is known now: it is in no log line either.
    w.assert_no_secret_in(&run.logs, "the function's logs");
}

#[tokio::test]
async fn rotates_alibaba_and_scloud_keys_through_the_runtime_api() {
    let w = World::new().await;
    for kind in [Provider::Alibaba, Provider::SCloud] {
        let e = rekey_testkit::emulator::emulator(kind);
        let admin = w.admin_secret(e).await;
        let (user, old, secret) = w.provider_enrolled(e, Some(&admin)).await;
        let token = w.start_rotation(&secret).await;
        let events = ["createSecret", "setSecret", "testSecret", "finishSecret"]
            .iter()
            .map(|step| json!({"SecretId": secret, "ClientRequestToken": token, "Step": step}))
            .collect();

        let run = w.run_function(BIN, &e.config(), events).await;

        for outcome in &run.outcomes {
            assert!(
                matches!(outcome, rekey_testkit::runtime::Outcome::Ok(_)),
                "{}: {outcome:?}\n{}",
                kind.name(),
                run.logs
            );
        }
        assert_eq!(run.outcomes.len(), 4);
        assert_eq!(w.stages(&secret).await[&token], vec![AWSCURRENT]);
        let new = w.current_credential(&secret).await.unwrap();
        assert_ne!(new.access_key_id, old.access_key_id);
        assert_eq!(e.check(&new).await.as_deref(), Ok(user.as_str()));
        w.assert_provider_invariants(e, &secret, &user).await;
        // The new key's secret is known now: it is in no log line either.
        w.assert_no_secret_in(&run.logs, "the function's logs");
    }
}

#[tokio::test]
async fn refuses_with_a_bare_error_type() {
    let w = World::new().await;
    let user = w.user("/outside/").await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;
    let run = w
        .run_function(
            BIN,
            &test_config(),
            vec![json!({"SecretId": secret, "ClientRequestToken": token, "Step": "createSecret"})],
        )
        .await;
    assert_eq!(
        run.outcomes[0].error_type(),
        Some("UserNotManaged"),
        "{:?}",
        run.outcomes
    );
    assert!(w.keys(&user).await.is_empty());
    assert!(w.stages(&secret).await[&token].contains(&AWSPENDING.to_owned()));
}

#[tokio::test]
async fn invalid_settings_stop_the_function_at_start() {
    let w = World::new().await;
    for (setting, value) in [
        ("REKEY_MANAGED_USER_PATH", "rekey"),
        ("REKEY_ALIBABA_USER_PATTERN", "ops-("),
        ("REKEY_ALIBABA_RAM_ENDPOINT", "http://ram.aliyuncs.com"),
    ] {
        let mut env = w.function_env(&test_config());
        env.retain(|(k, _)| k != setting);
        env.push((setting.to_owned(), value.to_owned()));
        let run = rekey_testkit::runtime::invoke(
            std::path::Path::new(BIN),
            &env,
            vec![json!({})],
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(20),
        )
        .await;
        assert!(
            run.outcomes.is_empty(),
            "{setting}: no invocation is served"
        );
        assert!(run.logs.contains(setting), "{}", run.logs);
    }
}

#[tokio::test]
async fn a_missing_provider_setting_refuses_that_providers_secrets() {
    let w = World::new().await;
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;
    let mut env = w.function_env(&test_config());
    env.retain(|(k, _)| k != "REKEY_MANAGED_USER_PATH");
    let run = rekey_testkit::runtime::invoke(
        std::path::Path::new(BIN),
        &env,
        vec![json!({"SecretId": secret, "ClientRequestToken": token, "Step": "createSecret"})],
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(20),
    )
    .await;
    assert_eq!(run.outcomes[0].error_type(), Some("InvalidConfig"));
    assert!(run.logs.contains("REKEY_MANAGED_USER_PATH"), "{}", run.logs);
    assert!(w.keys(&user).await.is_empty(), "no key was created");
}
