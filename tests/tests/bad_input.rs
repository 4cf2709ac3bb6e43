//! Malformed input across the five functions: each gets a clear error that
//! names the problem, and no mutating API call is made (counted by the
//! proxy in front of moto).

mod common;

use common::pipeline;
use lambda_runtime::{Context, LambdaEvent};
use rekey::model::Provider;
use rekey_testkit::proxy::Proxy;
use rekey_testkit::{moto, test_config, World, MANAGED_PATH};
use serde_json::{json, Value};

const MUTATING: [&str; 7] = [
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "PutSecretValue",
    "UpdateSecretVersionStage",
    "TagResource",
    "UntagResource",
];

const TOKEN: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

async fn invoke(
    app: &rekey_testkit::App,
    function: &str,
    event: Value,
) -> Result<Value, lambda_runtime::Diagnostic> {
    if function == "hook" {
        rekey::lambda::hook(app, LambdaEvent::new(event, Context::default())).await
    } else {
        pipeline(app, function, event).await
    }
}

#[tokio::test]
async fn malformed_input_is_refused_clearly_without_changes() {
    let w = World::new().await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, test_config()).await;
    let managed = [("rekey:managed", "true")];

    // Malformed events.
    let mut cases: Vec<(&str, Value, &str, &str)> = vec![
        ("hook", json!(null), "InvalidEvent", "JSON object"),
        ("hook", json!([1, 2]), "InvalidEvent", "JSON object"),
        ("hook", json!("createSecret"), "InvalidEvent", "JSON object"),
        (
            "hook",
            json!({"SecretId": "s", "ClientRequestToken": TOKEN}),
            "InvalidEvent",
            "Step",
        ),
        (
            "hook",
            json!({"SecretId": 5, "ClientRequestToken": TOKEN, "Step": "createSecret"}),
            "InvalidEvent",
            "invalid type",
        ),
        (
            "hook",
            json!({"SecretId": "s", "ClientRequestToken": "abc", "Step": "createSecret"}),
            "InvalidEvent",
            "ClientRequestToken",
        ),
        (
            "hook",
            json!({"SecretId": "s", "ClientRequestToken": "a".repeat(65), "Step": "createSecret"}),
            "InvalidEvent",
            "ClientRequestToken",
        ),
        (
            "hook",
            json!({"SecretId": "s", "ClientRequestToken": format!("{}/..", &TOKEN[..32]), "Step": "createSecret"}),
            "InvalidEvent",
            "ClientRequestToken",
        ),
        (
            "hook",
            json!({"SecretId": "", "ClientRequestToken": TOKEN, "Step": "createSecret"}),
            "InvalidEvent",
            "SecretId",
        ),
        (
            "hook",
            json!({"SecretId": "x".repeat(5000), "ClientRequestToken": TOKEN, "Step": "createSecret"}),
            "InvalidEvent",
            "SecretId",
        ),
        (
            "hook",
            json!({"SecretId": "s", "ClientRequestToken": TOKEN, "Step": 1}),
            "InvalidEvent",
            "invalid type",
        ),
        (
            "hook",
            json!({"SecretId": "s", "ClientRequestToken": TOKEN, "Step": "dropTables"}),
            "InvalidEvent",
            "unknown Step",
        ),
        ("create", json!({}), "InvalidEvent", "SecretId"),
        (
            "create",
            json!({"SecretId": ["a"]}),
            "InvalidEvent",
            "invalid type",
        ),
        (
            "create",
            json!({"SecretId": "s", "ClientRequestToken": 12}),
            "InvalidEvent",
            "invalid type",
        ),
        (
            "create",
            json!({"SecretId": "s", "RotationPeriod": "soon"}),
            "InvalidEvent",
            "RotationPeriod",
        ),
        (
            "create",
            json!({"SecretId": "s\u{0007}", "ClientRequestToken": TOKEN}),
            "InvalidEvent",
            "SecretId",
        ),
        (
            "create",
            json!({"SecretId": "s", "Resume": "yes"}),
            "InvalidEvent",
            "invalid type",
        ),
        (
            "test",
            json!({"SecretId": "s"}),
            "InvalidEvent",
            "ClientRequestToken",
        ),
        (
            "finish",
            json!({"SecretId": "s"}),
            "InvalidEvent",
            "ClientRequestToken",
        ),
        (
            "finish",
            json!({"SecretId": "s", "ClientRequestToken": "x".repeat(31)}),
            "InvalidEvent",
            "ClientRequestToken",
        ),
        (
            "cleanup",
            json!("everything"),
            "InvalidEvent",
            "JSON object",
        ),
        (
            "cleanup",
            json!({"SecretId": 1}),
            "InvalidEvent",
            "invalid type",
        ),
        ("cleanup", json!([]), "InvalidEvent", "JSON object"),
    ];

    // Malformed or refused secrets, each through the hook's createSecret
    // and the pipeline's create. A secret that parses is the owning secret
    // of its user (one secret owns each user), so each driver gets users of
    // its own; one that does not parse owns nothing.
    let mut secrets = Vec::new();
    for driver in ["hook", "create"] {
        let user = w.user(MANAGED_PATH).await;
        let outsider = w.user("/elsewhere/").await;
        let full = w.user(MANAGED_PATH).await;
        let nobody = format!("nobody-by-that-name-{driver}");
        let a = w.create_key(&full).await;
        w.create_key(&full).await;
        let values: Vec<(Value, &str, &str)> = vec![
            (json!([1, 2, 3]), "InvalidSecret", "JSON object"),
            (json!(42), "InvalidSecret", "JSON object"),
            (json!({}), "InvalidSecret", "UserName is missing"),
            (
                json!({"UserName": 7}),
                "InvalidSecret",
                "UserName must be a string",
            ),
            (
                json!({"UserName": "has space"}),
                "InvalidSecret",
                "UserName may contain only",
            ),
            (
                json!({"UserName": "u".repeat(129)}),
                "InvalidSecret",
                "UserName must be 1 to 128",
            ),
            (
                json!({"UserName": user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA"}),
                "InvalidSecret",
                "together",
            ),
            (
                json!({"UserName": user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "SecretAccessKey": 5}),
                "InvalidSecret",
                "SecretAccessKey must be a string",
            ),
            (
                json!({"UserName": user, "Provider": "gcp"}),
                "UnknownProvider",
                "gcp",
            ),
            (
                json!({"UserName": user, "Provider": false}),
                "InvalidSecret",
                "Provider must be a string",
            ),
            (
                json!({"UserName": nobody}),
                "UserNotFound",
                "nobody-by-that-name",
            ),
            (
                json!({"UserName": outsider}),
                "UserNotManaged",
                "REKEY_MANAGED_USER_PATH",
            ),
            (
                json!({"UserName": full, "AccessKeyId": a.access_key_id, "SecretAccessKey": a.secret.expose()}),
                "KeyLimitReached",
                "none may be removed",
            ),
        ];
        let mut refused = Vec::new();
        for (value, error_type, mention) in values {
            let secret = if matches!(error_type, "InvalidSecret" | "UnknownProvider") {
                let name = format!("rekey-test/{}", uuid::Uuid::new_v4().simple());
                w.secret_named(&name, &value, &managed).await
            } else {
                w.secret(&value, &managed).await
            };
            refused.push((secret, error_type, mention));
        }
        // Secrets that do not own their user: a name not derived from the
        // user, and the right name for a user enrolled to no secret.
        let stray = w.user(MANAGED_PATH).await;
        let value = json!({ "UserName": stray });
        let secret = w
            .secret_named(&format!("team/{stray}"), &value, &managed)
            .await;
        refused.push((secret, "SecretNotOwner", "rekey/aws/"));
        let untagged = w.user(MANAGED_PATH).await;
        let owning = rekey::ownership::owning_name("rekey/", Provider::Aws, &untagged);
        let value = json!({ "UserName": untagged });
        let secret = w.secret_named(&owning, &value, &managed).await;
        refused.push((secret, "SecretNotOwner", "tag-user"));

        for (secret, error_type, mention) in refused {
            if driver == "hook" {
                let token = w.start_rotation(&secret).await;
                secrets.push((
                    "hook",
                    json!({"SecretId": secret, "ClientRequestToken": token, "Step": "createSecret"}),
                    error_type,
                    mention,
                ));
            } else {
                secrets.push(("create", json!({ "SecretId": secret }), error_type, mention));
            }
        }
    }
    cases.extend(secrets);
    assert!(cases.len() >= 25);

    let mut failures = Vec::new();
    for (function, event, error_type, mention) in &cases {
        proxy.clear_log();
        let shown = event.to_string().chars().take(80).collect::<String>();
        match invoke(&app, function, event.clone()).await {
            Ok(v) => failures.push(format!("{function} {shown}: succeeded with {v}")),
            Err(e) => {
                if e.error_type != *error_type || !e.error_message.contains(mention) {
                    failures.push(format!(
                        "{function} {shown}: {} {:?}, want {error_type} mentioning {mention:?}",
                        e.error_type, e.error_message
                    ));
                }
                w.assert_no_secret_in(&e.error_message, "an error");
            }
        }
        let mutating: Vec<String> = proxy
            .calls()
            .into_iter()
            .filter(|c| MUTATING.contains(&c.action.as_str()))
            .map(|c| c.action)
            .collect();
        if !mutating.is_empty() {
            failures.push(format!("{function} {shown}: mutating calls {mutating:?}"));
        }
    }
    println!("{} malformed inputs refused without a change", cases.len());
    assert!(failures.is_empty(), "{failures:#?}");
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}
