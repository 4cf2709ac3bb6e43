//! The Lambda edge: event parsing, one handler per function, and `serve`,
//! which builds everything once per process and runs the runtime loop.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{error, info, Instrument};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Record;
use crate::model::MAX_SECRET_ID;
use crate::ports::{Clock, Providers, Vault};
use crate::providers::LiveProviders;
use crate::steps::{CleanupReport, Created, Driver, Finished, Probing, Rekey};
use crate::vault::SecretsManager;

/// The steps as deployed: Secrets Manager and every provider.
pub type App = Rekey<SecretsManager, LiveProviders>;

/// Reads the settings and builds the clients, once per process.
pub async fn app_from_env() -> Result<App> {
    let config = Config::from_env()?;
    let sdk = crate::sdk::load_config().await;
    Ok(App::new(
        SecretsManager::new(&sdk),
        LiveProviders::new(&sdk, &config),
        config,
    ))
}

/// Runs a function's handler under the Lambda runtime. Invalid settings
/// stop the function at start with a message naming the setting.
pub async fn serve<F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(&'static App, LambdaEvent<Value>) -> Fut,
    Fut: Future<Output = Result<Value, Diagnostic>>,
{
    lambda_runtime::tracing::init_default_subscriber();
    let app: &'static App = match app_from_env().await {
        Ok(app) => Box::leak(Box::new(app)),
        Err(e) => {
            error!(error_type = e.kind(), "{e}");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(|event| Box::pin(handler(app, event)))).await
}

fn parse_event<T: DeserializeOwned>(payload: Value, expected: &str) -> Result<T> {
    if !payload.is_object() {
        return Err(Error::InvalidEvent(format!(
            "expected a JSON object {expected}"
        )));
    }
    serde_json::from_value(payload)
        .map_err(|e| Error::InvalidEvent(format!("{e}; expected {expected}")))
}

fn check_secret_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_SECRET_ID || id.chars().any(char::is_control) {
        return Err(Error::InvalidEvent(format!(
            "SecretId must be a secret name or ARN of 1 to {MAX_SECRET_ID} printable characters"
        )));
    }
    Ok(())
}

fn check_token(token: &str) -> Result<()> {
    if !(32..=64).contains(&token.len())
        || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::InvalidEvent(
            "ClientRequestToken must be 32 to 64 letters, digits or '-' (a UUID)".into(),
        ));
    }
    Ok(())
}

/// The time left at `now` before the invocation's deadline, if that lies
/// in the future (local runtimes may send one in the past: it is ignored
/// then).
fn time_left(now: SystemTime, deadline_ms: u64) -> Option<Duration> {
    let now = now.duration_since(UNIX_EPOCH).ok()?;
    Duration::from_millis(deadline_ms).checked_sub(now)
}

/// The hook's test must end before the invocation's deadline, with margin.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

fn probe_until<V, P, C: Clock>(app: &Rekey<V, P, C>, deadline_ms: u64) -> Probing {
    let now = app.clock.now();
    let mut budget = app.config.test_timeout;
    if let Some(left) = time_left(now, deadline_ms) {
        budget = budget.min(left.saturating_sub(DEADLINE_MARGIN));
    }
    Probing::Until(now + budget)
}

/// Runs one invocation's work in a span carrying the step, SecretId and
/// token, logs its end, and counts a failure in the metrics.
async fn traced<T: Serialize>(
    function: &'static str,
    step: &str,
    secret_id: &str,
    token: Option<&str>,
    work: impl Future<Output = Result<T>>,
) -> Result<Value, Diagnostic> {
    let span = tracing::info_span!("rekey", step, secret_id, token);
    // Boxed: the step futures are deep, and boxing keeps each function's
    // future small and quick to compile.
    let work = Box::pin(work);
    async {
        match work.await {
            Ok(out) => {
                info!("step succeeded");
                Ok(serde_json::to_value(out).unwrap_or(Value::Null))
            }
            Err(e) => {
                error!(error_type = e.kind(), "{e}");
                // rekey-test's KeyNotReady is Step Functions' cue to wait:
                // counted apart; the run alerts when the retries run out.
                let name = match (function, &e) {
                    ("cleanup", _) => "CleanupFailed",
                    ("test", Error::KeyNotReady { .. }) => "KeyNotReady",
                    _ => "RotationsFailed",
                };
                Record::new(function)
                    .dimension("ErrorType", e.kind())
                    .count(name, 1)
                    .property("SecretId", secret_id)
                    .emit();
                Err(e.into())
            }
        }
    }
    .instrument(span)
    .await
}

fn count_created(function: &'static str, secret_id: &str, created: &Created) {
    match created {
        Created::New { removed, .. } => Record::new(function)
            .count("KeysCreated", 1)
            .count("KeysDeleted", removed.len())
            .property("SecretId", secret_id)
            .emit(),
        Created::NotDue { .. } => count_skipped(function, secret_id, "not-due"),
        Created::AlreadyPending { .. } | Created::AlreadyCurrent => {}
    }
}

fn count_finished(function: &'static str, secret_id: &str, finished: &Finished) {
    if let Finished::Promoted { deactivated } = finished {
        Record::new(function)
            .count("RotationsSucceeded", 1)
            .count("KeysDeactivated", usize::from(deactivated.is_some()))
            .property("SecretId", secret_id)
            .emit();
    }
}

fn count_skipped(function: &'static str, secret_id: &str, reason: &str) {
    Record::new(function)
        .dimension("Reason", reason)
        .count("SecretsSkipped", 1)
        .property("SecretId", secret_id)
        .emit();
}

/// `rekey-hook`: the Secrets Manager rotation function.
pub async fn hook<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let parsed = parse_event::<SecretsManagerSecretRotationEvent>(
        event.payload,
        r#"{"SecretId", "ClientRequestToken", "Step"} from Secrets Manager"#,
    )
    .and_then(|e| {
        check_secret_id(&e.secret_id)?;
        check_token(&e.client_request_token)?;
        Ok(e)
    });
    let e = match parsed {
        Ok(e) => e,
        Err(err) => return traced::<()>("hook", "hook", "", None, async { Err(err) }).await,
    };
    let (id, token) = (e.secret_id.as_str(), e.client_request_token.as_str());
    let deadline = event.context.deadline;
    traced("hook", &e.step, id, Some(token), async {
        match e.step.as_str() {
            "createSecret" => app
                .create(id, token, Driver::Hook)
                .await
                .map(|c| count_created("hook", id, &c)),
            "setSecret" => app.set(id, token, Driver::Hook).await,
            "testSecret" => {
                app.verify(id, token, Driver::Hook, probe_until(app, deadline))
                    .await
            }
            "finishSecret" => app
                .finish(id, token, Driver::Hook)
                .await
                .map(|f| count_finished("hook", id, &f)),
            other => Err(Error::InvalidEvent(format!(
                "unknown Step {:?}: expected createSecret, setSecret, testSecret or finishSecret",
                crate::model::truncate(other, 40)
            ))),
        }
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PipelineEvent {
    secret_id: String,
    #[serde(default)]
    client_request_token: Option<String>,
    /// rekey-create only: start a rotation only if AWSCURRENT is at least
    /// this old (`30d`); the scheduled pipeline passes it.
    #[serde(default)]
    rotation_period: Option<String>,
    /// rekey-create only: when another token's rotation is in progress,
    /// carry on with that one instead of refusing (the scheduled pipeline
    /// passes `true`, so a rotation that stalled resumes on the next run).
    #[serde(default)]
    resume: bool,
}

/// What each pipeline function returns, for the next state.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct PipelineOutput {
    secret_id: String,
    client_request_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
}

#[derive(Clone, Copy)]
enum PipelineStep {
    Create,
    Test,
    Finish,
}

async fn pipeline<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    event: LambdaEvent<Value>,
    step: PipelineStep,
) -> Result<Value, Diagnostic> {
    let (name, expected) = match step {
        PipelineStep::Create => (
            "create",
            r#"{"SecretId", "ClientRequestToken"?, "RotationPeriod"?, "Resume"?}"#,
        ),
        PipelineStep::Test => ("test", r#"{"SecretId", "ClientRequestToken"}"#),
        PipelineStep::Finish => ("finish", r#"{"SecretId", "ClientRequestToken"}"#),
    };
    let parsed = parse_event::<PipelineEvent>(event.payload, expected).and_then(|e| {
        check_secret_id(&e.secret_id)?;
        let token = match (e.client_request_token, step) {
            (Some(t), _) => t,
            (None, PipelineStep::Create) => uuid::Uuid::new_v4().to_string(),
            (None, _) => {
                return Err(Error::InvalidEvent(format!(
                    "ClientRequestToken is missing: pass on the output of the previous state; expected {expected}"
                )))
            }
        };
        check_token(&token)?;
        let period = match e.rotation_period {
            Some(p) => Some(
                crate::config::parse_duration("RotationPeriod", &p)
                    .map_err(|e| Error::InvalidEvent(e.to_string()))?,
            ),
            None => None,
        };
        Ok((e.secret_id, token, period, e.resume))
    });
    let (id, token, period, resume) = match parsed {
        Ok(p) => p,
        Err(err) => return traced::<()>(name, name, "", None, async { Err(err) }).await,
    };
    traced(name, name, &id, Some(&token), async {
        let mut token = token.clone();
        let done = match step {
            PipelineStep::Create => {
                let mut created = app
                    .create_if_due(&id, &token, Driver::Pipeline, period)
                    .await;
                if let Err(Error::RotationInProgress { other_token, .. }) = &created {
                    if resume {
                        info!(other_token, "resuming the rotation in progress");
                        let other = other_token.clone();
                        created = app.create(&id, &other, Driver::Pipeline).await;
                        match &created {
                            // It could never finish and was replaced: start
                            // anew with this run's token.
                            Err(Error::RotationAbandoned { .. }) => {
                                created = app
                                    .create_if_due(&id, &token, Driver::Pipeline, period)
                                    .await;
                            }
                            _ => token = other,
                        }
                    }
                }
                created.map(|c| {
                    count_created(name, &id, &c);
                    matches!(c, Created::NotDue { .. }).then(|| "not-due".to_owned())
                })
            }
            PipelineStep::Test => app
                .verify(&id, &token, Driver::Pipeline, Probing::Once)
                .await
                .map(|()| None),
            PipelineStep::Finish => app.finish(&id, &token, Driver::Pipeline).await.map(|f| {
                count_finished(name, &id, &f);
                None
            }),
        };
        let skipped = match done {
            Ok(skipped) => skipped,
            // The pipeline passes over a paused secret rather than failing.
            Err(Error::SecretPaused { .. }) => {
                info!("secret is paused: skipped");
                count_skipped(name, &id, "paused");
                Some("paused".to_owned())
            }
            Err(e) => return Err(e),
        };
        Ok(PipelineOutput {
            secret_id: id.clone(),
            client_request_token: token,
            skipped,
        })
    })
    .await
}

/// `rekey-create`.
pub async fn create<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    pipeline(app, event, PipelineStep::Create).await
}

/// `rekey-test`.
pub async fn test<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    pipeline(app, event, PipelineStep::Test).await
}

/// `rekey-finish`.
pub async fn finish<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    pipeline(app, event, PipelineStep::Finish).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CleanupEvent {
    #[serde(default)]
    secret_id: Option<String>,
}

/// `rekey-cleanup`: `{}` sweeps every managed secret, `{"SecretId"}` one.
pub async fn cleanup<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let payload = match event.payload {
        Value::Null => Value::Object(Default::default()),
        p => p,
    };
    let parsed = parse_event::<CleanupEvent>(payload, r#"{} or {"SecretId"}"#).and_then(|e| {
        if let Some(id) = &e.secret_id {
            check_secret_id(id)?;
        }
        Ok(e)
    });
    match parsed {
        Err(err) => traced::<()>("cleanup", "cleanup", "", None, async { Err(err) }).await,
        Ok(CleanupEvent {
            secret_id: Some(id),
        }) => {
            traced("cleanup", "cleanup", &id, None, async {
                let report = CleanupReport {
                    secrets: vec![app.cleanup(&id).await?],
                };
                count_cleanup(&report, app.clock.now());
                Ok(report)
            })
            .await
        }
        Ok(CleanupEvent { secret_id: None }) => {
            traced("cleanup", "cleanup", "*", None, async {
                let report = app.cleanup_all().await?;
                count_cleanup(&report, app.clock.now());
                Ok(report)
            })
            .await
        }
    }
}

/// Metrics for each secret of a cleanup report, made at `now`.
fn count_cleanup(report: &CleanupReport, now: SystemTime) {
    for s in &report.secrets {
        if let Some(error_type) = s.error_type {
            count_skipped("cleanup", &s.secret_id, error_type);
        }
        let mut record = Record::new("cleanup")
            .count("KeysDeactivated", s.deactivated.len())
            .count("KeysDeleted", s.deleted.len())
            .count("KeysInUse", s.in_use.len())
            .property("SecretId", s.secret_id.as_str());
        if let Some(age) = s
            .current_since
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| now.duration_since(t).ok())
        {
            record = record.value("CurrentVersionAgeDays", age.as_secs_f64() / 86_400.0);
        }
        record.emit();
    }
}
