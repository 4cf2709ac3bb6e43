//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
pub use rekey::lambda::Function;
use rekey::model::{KeyStatus, AWSCURRENT};
use rekey_testkit::{version_with, App, World};
use serde_json::{json, Value};

pub const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// Invokes `function` with `event`, as Lambda would.
pub async fn invoke(app: &App, function: Function, event: Value) -> Result<Value, Diagnostic> {
    rekey::lambda::handle(app, function, LambdaEvent::new(event, Context::default())).await
}

/// Invokes the hook handler as Secrets Manager would.
pub async fn hook(app: &App, step: &str, secret: &str, token: &str) -> Result<Value, Diagnostic> {
    let event = json!({"SecretId": secret, "ClientRequestToken": token, "Step": step});
    invoke(app, Function::Hook, event).await
}

/// Runs the four hook steps for a rotation Secrets Manager has started.
pub async fn hook_rotation(app: &App, secret: &str, token: &str) -> Result<(), Diagnostic> {
    for step in STEPS {
        hook(app, step, secret, token).await?;
    }
    Ok(())
}

/// The pipeline's rotation of `secret`: rekey-create, rekey-test and
/// rekey-finish, each given the previous one's output; finish's output.
pub async fn pipeline_rotation(app: &App, secret: &str) -> Result<Value, Diagnostic> {
    let created = invoke(app, Function::Create, json!({ "SecretId": secret })).await?;
    invoke(app, Function::Test, created.clone()).await?;
    invoke(app, Function::Finish, created).await
}

/// rekey-cleanup on one secret: its report for that secret.
pub async fn cleanup(app: &App, secret: &str) -> Value {
    let out = invoke(app, Function::Cleanup, json!({ "SecretId": secret }))
        .await
        .unwrap();
    out["Secrets"][0].clone()
}

/// `config` with no grace periods: cleanup deactivates and deletes at once.
pub fn zero_periods(mut config: rekey::Config) -> rekey::Config {
    config.deactivate_after = Duration::ZERO;
    config.delete_after = Duration::ZERO;
    config
}

/// Secret versions are timed to the second: an orphan must be younger.
pub async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Someone (a person in the console, a job) edits the secret: a new
/// AWSCURRENT version holding the same key, with `field` set to `value`
/// (AWSPREVIOUS moves onto the version it replaces). Returns the new value.
///
/// Played as PutSecretValue under a label of its own, then AWSCURRENT
/// moved onto it: moto's PutSecretValue moves AWSCURRENT off the version
/// it last made current itself, not off the one a stage move made current
/// (after a pipeline rotation it would leave two AWSCURRENT versions).
pub async fn edit_field(w: &World, secret: &str, field: &str, value: Value) -> Value {
    const EDITING: &str = "rekey-test-edit";
    let mut edited = w.value(secret, AWSCURRENT).await.unwrap();
    edited[field] = value;
    let old = version_with(&w.stages(secret).await, AWSCURRENT).expect("a current version");
    let new =
        w.sm.put_secret_value()
            .secret_id(secret)
            .secret_string(edited.to_string())
            .version_stages(EDITING)
            .send()
            .await
            .expect("PutSecretValue")
            .version_id()
            .expect("a version id")
            .to_owned();
    w.move_stage(secret, AWSCURRENT, Some(&new), Some(&old))
        .await;
    w.move_stage(secret, EDITING, None, Some(&new)).await;
    edited
}

/// The status of key `id` among `keys`, if it is there.
pub fn status(keys: &[rekey::model::AccessKey], id: &str) -> Option<KeyStatus> {
    keys.iter().find(|k| k.id == id).map(|k| k.status)
}

/// Everything a failed step must leave as it was.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub keys: Vec<(String, KeyStatus)>,
    pub stages: BTreeMap<String, Vec<String>>,
    pub current: Option<Value>,
}

pub async fn snapshot(w: &World, secret: &str, user: &str) -> Snapshot {
    snapshot_with(w, secret, w.keys(user).await).await
}

/// A snapshot with the user's keys as the provider listed them.
pub async fn snapshot_with(
    w: &World,
    secret: &str,
    keys: Vec<rekey::model::AccessKey>,
) -> Snapshot {
    Snapshot {
        keys: keys.into_iter().map(|k| (k.id, k.status)).collect(),
        stages: w.stages(secret).await,
        current: w.value(secret, AWSCURRENT).await,
    }
}

pub fn assert_error(
    result: Result<Value, Diagnostic>,
    error_type: &str,
    mentions: &[&str],
) -> String {
    match result {
        Ok(v) => panic!("expected {error_type}, got Ok({v})"),
        Err(d) => {
            assert_eq!(d.error_type, error_type, "{}", d.error_message);
            for m in mentions {
                assert!(
                    d.error_message.contains(m),
                    "{error_type} message should mention {m:?}: {}",
                    d.error_message
                );
            }
            d.error_message
        }
    }
}
