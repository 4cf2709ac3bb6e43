//! The pipeline functions (rekey-create, rekey-test, rekey-finish) against
//! moto, as Step Functions would call them. A whole rotation through the
//! pipeline, for every provider, is `providers::*::the_pipeline_rotates_a_secret`.

mod common;

use std::time::Duration;

use common::*;
use rekey::model::AWSPENDING;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

#[tokio::test]
async fn a_given_token_is_used_and_every_function_is_idempotent() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    let input = json!({ "SecretId": secret, "ClientRequestToken": token });
    for function in [
        Function::Create,
        Function::Create,
        Function::Test,
        Function::Test,
        Function::Finish,
        Function::Finish,
    ] {
        let out = invoke(&app, function, input.clone()).await.unwrap();
        assert_eq!(out["ClientRequestToken"], token);
    }
    // Running the whole pipeline again with the token changes nothing.
    let before = snapshot(&w, &secret, &user).await;
    for function in [Function::Create, Function::Test, Function::Finish] {
        invoke(&app, function, input.clone()).await.unwrap();
    }
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    assert_eq!(w.keys(&user).await.len(), 1);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn the_pipeline_refuses_a_secret_the_hook_owns() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let token = w.start_rotation(&secret).await;
    let before = snapshot(&w, &secret, &user).await;
    for function in [Function::Create, Function::Test, Function::Finish] {
        assert_error(
            invoke(
                &app,
                function,
                json!({"SecretId": secret, "ClientRequestToken": token}),
            )
            .await,
            "RotationOwnedByHook",
            &["rotation"],
        );
    }
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_second_rotation_is_refused_while_one_is_in_progress() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let first = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    let before = snapshot(&w, &secret, &user).await;

    assert_error(
        invoke(&app, Function::Create, json!({ "SecretId": secret })).await,
        "RotationInProgress",
        &[first["ClientRequestToken"].as_str().unwrap()],
    );
    assert_eq!(snapshot(&w, &secret, &user).await, before);

    // The first one can still finish.
    let tested = invoke(&app, Function::Test, first).await.unwrap();
    invoke(&app, Function::Finish, tested).await.unwrap();
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn a_dead_pending_key_is_not_ready_for_test_nor_finish() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let created = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    let pending = w.value(&secret, AWSPENDING).await.unwrap();
    let new_id = pending["AccessKeyId"].as_str().unwrap().to_owned();
    // moto accepts an inactive key, so the key is deleted: the pending
    // version then holds a key that cannot authenticate.
    w.delete_key(&user, &new_id).await;
    let before = snapshot(&w, &secret, &user).await;

    let started = std::time::Instant::now();
    assert_error(
        invoke(&app, Function::Test, created.clone()).await,
        "KeyNotReady",
        &[&new_id],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "returns without waiting"
    );
    // finish probes once more and refuses to promote it.
    assert_error(
        invoke(&app, Function::Finish, created).await,
        "KeyNotReady",
        &[&new_id],
    );
    assert_eq!(
        snapshot(&w, &secret, &user).await,
        before,
        "nothing changed"
    );
    assert_eq!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old.access_key_id
    );
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn the_scheduled_pipeline_resumes_a_stalled_rotation() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let first = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();

    let resumed = invoke(
        &app,
        Function::Create,
        json!({ "SecretId": secret, "Resume": true }),
    )
    .await
    .unwrap();
    assert_eq!(resumed["ClientRequestToken"], first["ClientRequestToken"]);
    assert_eq!(w.keys(&user).await.len(), 1, "no second key");
    let tested = invoke(&app, Function::Test, resumed).await.unwrap();
    invoke(&app, Function::Finish, tested).await.unwrap();
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn paused_secrets_are_skipped_by_the_pipeline() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    w.tag(&secret, "rekey:paused", "true").await;
    let before = snapshot(&w, &secret, &user).await;
    let out = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    assert_eq!(out["Skipped"], "paused");
    for function in [Function::Test, Function::Finish] {
        let again = invoke(&app, function, out.clone()).await.unwrap();
        assert_eq!(again["Skipped"], "paused");
    }
    assert_eq!(snapshot(&w, &secret, &user).await, before);
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn malformed_pipeline_events_are_refused() {
    let w = World::new().await;
    let app = w.app(test_config());
    let cases = [
        (Function::Create, json!({})),
        (Function::Create, json!([])),
        (Function::Create, json!({"SecretId": null})),
        (Function::Create, json!({"SecretId": ["a"]})),
        (
            Function::Create,
            json!({"SecretId": "s", "ClientRequestToken": 12}),
        ),
        (
            Function::Create,
            json!({"SecretId": "s", "ClientRequestToken": "../../etc/passwd-is-not-a-token-value"}),
        ),
        (Function::Test, json!({"SecretId": "s"})),
        (Function::Finish, json!({"SecretId": "s"})),
        (
            Function::Finish,
            json!({"SecretId": "s\u{0000}x", "ClientRequestToken": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"}),
        ),
        (Function::Cleanup, json!({"SecretId": 1})),
        (Function::Cleanup, json!("everything")),
    ];
    for (function, event) in cases {
        let err = invoke(&app, function, event.clone())
            .await
            .expect_err(&event.to_string());
        assert_eq!(
            err.error_type, "InvalidEvent",
            "{function} {event}: {}",
            err.error_message
        );
    }
}

#[tokio::test]
async fn pipeline_test_and_finish_need_an_existing_token() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let input =
        json!({"SecretId": secret, "ClientRequestToken": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"});
    for function in [Function::Test, Function::Finish] {
        assert_error(
            invoke(&app, function, input.clone()).await,
            "TokenNotFound",
            &["rekey-create"],
        );
    }
    assert!(w.keys(&user).await.is_empty(), "no key was created");
    w.assert_invariants(&secret, &user).await;
}

#[tokio::test]
async fn create_skips_a_secret_that_is_not_due() {
    let w = World::new().await;
    let app = w.app(test_config());
    let user = w.user(MANAGED_PATH).await;
    let secret = w.managed_secret(&user, None).await;
    let before = snapshot(&w, &secret, &user).await;

    let out = invoke(
        &app,
        Function::Create,
        json!({"SecretId": secret, "RotationPeriod": "30d"}),
    )
    .await
    .unwrap();
    assert_eq!(out["Skipped"], "not-due");
    assert_eq!(
        snapshot(&w, &secret, &user).await,
        before,
        "nothing changed"
    );

    let out = invoke(
        &app,
        Function::Create,
        json!({"SecretId": secret, "RotationPeriod": "0s"}),
    )
    .await
    .unwrap();
    assert!(out.get("Skipped").is_none(), "{out}");
    assert_eq!(w.keys(&user).await.len(), 1);

    assert_error(
        invoke(
            &app,
            Function::Create,
            json!({"SecretId": secret, "RotationPeriod": "monthly"}),
        )
        .await,
        "InvalidEvent",
        &["RotationPeriod"],
    );
    w.assert_invariants(&secret, &user).await;
}
