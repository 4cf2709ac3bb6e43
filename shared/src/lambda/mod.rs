//! The Lambda edge: the five [`Function`]s, [`handle`] (parse the event
//! into its [`Request`], run it in a span, log its end and record its
//! metrics, the same way for every function) and [`serve`], which builds
//! everything once per process and runs the runtime loop.

mod deadline;
pub mod request;

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use tracing::{error, info, warn, Instrument};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{self, EventBridge, KeyEvent};
use crate::metrics;
use crate::ports::{Clock, Providers, Vault};
use crate::providers::LiveProviders;
use crate::steps::{CleanupReport, Created, Driver, Finished, Probing, Rekey};
use crate::vault::SecretsManager;

pub use request::{
    CleanupRequest, CreateRequest, HookRequest, HookStep, Refused, Request, Subject, TokenRequest,
};

/// The steps as deployed: Secrets Manager and every provider.
pub type App = Rekey<SecretsManager, LiveProviders>;

/// The five functions, one binary each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `rekey-hook`: the Secrets Manager rotation function.
    Hook,
    /// `rekey-create`: the pipeline's first state; starts a rotation when
    /// it is due, or resumes one in progress.
    Create,
    /// `rekey-test`: the pipeline's probe of the pending key (once; Step
    /// Functions retries `KeyNotReady`).
    Test,
    /// `rekey-finish`: the pipeline's promotion of the pending key.
    Finish,
    /// `rekey-cleanup`: `{}` sweeps every managed secret, `{"SecretId"}`
    /// one.
    Cleanup,
}

impl Function {
    /// Every function.
    pub const ALL: [Function; 5] = [
        Function::Hook,
        Function::Create,
        Function::Test,
        Function::Finish,
        Function::Cleanup,
    ];

    /// The name in spans and in the metrics' `Function` dimension (the
    /// binary is `rekey-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Function::Hook => "hook",
            Function::Create => "create",
            Function::Test => "test",
            Function::Finish => "finish",
            Function::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is none of the five functions'.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("no function {0:?}: expected hook, create, test, finish or cleanup")]
pub struct UnknownFunction(pub String);

impl FromStr for Function {
    type Err = UnknownFunction;

    /// The function of a [`Function::name`].
    fn from_str(name: &str) -> Result<Function, UnknownFunction> {
        Function::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| UnknownFunction(name.to_owned()))
    }
}

/// Reads the settings and builds the clients, once per process.
pub async fn app_from_env() -> Result<App> {
    let config = Config::from_env()?;
    let sdk = crate::sdk::load_config().await;
    let events = EventBridge::new(&sdk, &config.event_bus);
    Ok(App::new(
        SecretsManager::new(&sdk),
        LiveProviders::new(&sdk, &config),
        config,
    )
    .with_events(events))
}

/// Runs `function` under the Lambda runtime. Invalid settings stop the
/// function at start with a message naming the setting.
pub async fn serve(function: Function) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app: &'static App = match app_from_env().await {
        Ok(app) => Box::leak(Box::new(app)),
        Err(e) => {
            error!(error_type = e.kind(), "{e}");
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(move |event| {
        Box::pin(handle(app, function, event))
    }))
    .await
}

/// One invocation of `function`: parses its event, runs the request in a
/// span carrying the step, SecretId and token, logs its end, and records
/// its metrics (a failure is counted by [`metrics::count_failure`]).
pub async fn handle<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    function: Function,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    let deadline_ms = event.context.deadline;
    app.new_invocation();
    let (subject, request) = match Request::parse(function, event.payload) {
        Ok(request) => (request.subject(), Ok(request)),
        Err(refused) => {
            let Refused { error, subject } = *refused;
            (subject, Err(error))
        }
    };
    let step = subject.step.as_str();
    let secret_id = subject.secret_id.as_str();
    let token = subject.token.as_deref();
    // In a dry run every line carries `dry_run`: what it says was done
    // was held back (dry_run.rs).
    let dry_run = app.config.dry_run.then_some(true);
    let span = tracing::info_span!("rekey", step, secret_id, token, dry_run);
    // Boxed: the step futures are deep, and boxing keeps each function's
    // future small and quick to compile.
    let work = Box::pin(async move { run(app, request?, deadline_ms).await });
    // Invariant: Lambda never kills a step. A call that hangs is cut off
    // DEADLINE_MARGIN before the invocation's deadline, as a crash would
    // cut it (every step is safe to run again from any point), and the
    // step fails with ServiceUnavailable: the next attempt goes on.
    let budget = deadline::time_left(app.clock.now(), deadline_ms)
        .map(|left| left.saturating_sub(deadline::DEADLINE_MARGIN));
    let work = async move {
        let Some(budget) = budget else {
            return work.await;
        };
        crate::ports::within(&app.clock, budget, work)
            .await
            .unwrap_or_else(|| Err(deadline::out_of_time(budget)))
    };
    async {
        match work.await {
            Ok((out, events)) => {
                info!("step succeeded");
                publish(app, function, &events).await;
                Ok(out)
            }
            Err(e) => {
                error!(error_type = e.kind(), "{e}");
                metrics::count_failure(function, secret_id, &e);
                publish_failure(app, function, secret_id, &e).await;
                Err(e.into())
            }
        }
    }
    .instrument(span)
    .await
}

/// Puts `events` for consumers, ten to a call. A rotation that was done
/// stays done: an event that cannot be put is logged and counted
/// (`EventsNotPut`), never the step's failure.
async fn publish<V, P, C>(app: &Rekey<V, P, C>, function: Function, events: &[KeyEvent]) {
    let Some(sink) = &app.events else {
        return;
    };
    for batch in events.chunks(events::PUT_BATCH) {
        if let Err(e) = sink.put(batch).await {
            warn!(error_type = e.kind(), error = %e, "could not put the events for consumers");
            metrics::count_events_not_put(function, batch.len());
        }
    }
}

/// Puts `Rotation Failed` for a rotation step's failure (events.rs says
/// which), with the secret's ARN and owner when it can be described.
async fn publish_failure<V: Vault, P, C: Clock>(
    app: &Rekey<V, P, C>,
    function: Function,
    secret_id: &str,
    error: &Error,
) {
    let Some(driver) = events::failure_driver(function, error) else {
        return;
    };
    if app.events.is_none() || secret_id.is_empty() {
        return;
    }
    let info = app.vault.describe(secret_id).await.ok();
    let holder = events::KeyHolder::described(secret_id, info.as_ref());
    let event = events::failed(driver, holder, error, app.clock.now());
    publish(app, function, &[event]).await;
}

/// Runs a request: the one place that maps each request to its steps.
/// Answers the step's output and the events for consumers it gave rise to.
async fn run<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    request: Request,
    deadline_ms: u64,
) -> Result<(Value, Vec<KeyEvent>)> {
    let now = || app.clock.now();
    let no_events = |out| (out, Vec::new());
    match request {
        Request::Hook(r) => hook(app, &r, deadline_ms)
            .await
            .map(|events| (Value::Null, events)),
        Request::Create(r) => create(app, r).await.map(json).map(no_events),
        Request::Test(r) => {
            let done = app
                .verify(&r.secret_id, &r.token, Driver::Pipeline, Probing::Once)
                .await
                .map(|()| None);
            pipeline_output(Function::Test, r.secret_id, r.token, done)
                .map(json)
                .map(no_events)
        }
        Request::Finish(r) => {
            let mut events = Vec::new();
            let done = app
                .finish(&r.secret_id, &r.token, Driver::Pipeline)
                .await
                .map(|f| {
                    metrics::count_finished(Function::Finish, &r.secret_id, &f);
                    events = finished_events(&f, Driver::Pipeline, now());
                })
                .map(|()| None);
            pipeline_output(Function::Finish, r.secret_id, r.token, done)
                .map(|out| (json(out), events))
        }
        Request::Cleanup(r) => cleanup(app, r, deadline_ms).await,
    }
}

/// The events of a finish: `Key Rotated` when it promoted.
fn finished_events(finished: &Finished, driver: Driver, now: SystemTime) -> Vec<KeyEvent> {
    match finished {
        Finished::Promoted {
            promotion,
            deactivated,
        } => events::rotated(promotion, driver, deactivated.as_deref(), now),
        Finished::AlreadyCurrent => Vec::new(),
    }
}

/// A step's answer as JSON (`null` for none).
fn json<T: Serialize>(out: T) -> Value {
    serde_json::to_value(out).unwrap_or(Value::Null)
}

/// `rekey-hook`: one of Secrets Manager's four steps; answers nothing to
/// Secrets Manager, and the events of a promotion.
async fn hook<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    r: &HookRequest,
    deadline_ms: u64,
) -> Result<Vec<KeyEvent>> {
    let (id, token) = (r.secret_id.as_str(), r.token.as_str());
    match r.step {
        HookStep::Create => app
            .create(id, token, Driver::Hook)
            .await
            .map(|c| metrics::count_created(Function::Hook, id, &c))?,
        HookStep::Set => app.set(id, token, Driver::Hook).await?,
        HookStep::Test => {
            let probing = deadline::probe_until(app, deadline_ms);
            app.verify(id, token, Driver::Hook, probing).await?
        }
        HookStep::Finish => {
            let finished = app.finish(id, token, Driver::Hook).await?;
            metrics::count_finished(Function::Hook, id, &finished);
            return Ok(finished_events(&finished, Driver::Hook, app.clock.now()));
        }
    }
    Ok(Vec::new())
}

/// `rekey-create`: a new rotation when due; with `Resume`, another token's
/// rotation in progress is carried on instead (and one that can never
/// finish is replaced by a new one with this request's token).
async fn create<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    r: CreateRequest,
) -> Result<PipelineOutput> {
    let CreateRequest {
        secret_id: id,
        mut token,
        period,
        resume,
    } = r;
    let mut created = app
        .create_if_due(&id, &token, Driver::Pipeline, period)
        .await;
    // Only this secret's own rotation is resumed, not its admin secret's.
    if let Err(Error::RotationInProgress {
        other_token,
        admin: None,
        ..
    }) = &created
    {
        if resume {
            info!(other_token, "resuming the rotation in progress");
            let other = other_token.clone();
            created = app.create(&id, &other, Driver::Pipeline).await;
            match &created {
                // It could never finish and was replaced: start anew with
                // this run's token.
                Err(Error::RotationAbandoned { .. }) => {
                    created = app
                        .create_if_due(&id, &token, Driver::Pipeline, period)
                        .await;
                }
                _ => token = other,
            }
        }
    }
    let done = created.map(|c| {
        metrics::count_created(Function::Create, &id, &c);
        matches!(c, Created::NotDue { .. }).then(|| "not-due".to_owned())
    });
    pipeline_output(Function::Create, id, token, done)
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

/// A pipeline step's answer from what it did (`Some(reason)` when it
/// skipped the secret). The pipeline passes over a paused secret rather
/// than failing.
fn pipeline_output(
    function: Function,
    secret_id: String,
    token: String,
    done: Result<Option<String>>,
) -> Result<PipelineOutput> {
    let skipped = match done {
        Ok(skipped) => skipped,
        Err(Error::SecretPaused { .. }) => {
            info!("secret is paused: skipped");
            metrics::count_skipped(function, &secret_id, "paused");
            Some("paused".to_owned())
        }
        // A dry run ends the rotation where it would first change
        // something: the run goes on to the next secret.
        Err(e @ Error::DryRun { .. }) => {
            info!("{e}");
            metrics::count_skipped(function, &secret_id, "dry-run");
            Some("dry-run".to_owned())
        }
        Err(e) => return Err(e),
    };
    Ok(PipelineOutput {
        secret_id,
        client_request_token: token,
        skipped,
    })
}

/// `rekey-cleanup`: one secret's report, every due secret's (bounded by
/// the invocation's deadline), or the state machine's triage.
async fn cleanup<V: Vault, P: Providers, C: Clock>(
    app: &Rekey<V, P, C>,
    r: CleanupRequest,
    deadline_ms: u64,
) -> Result<(Value, Vec<KeyEvent>)> {
    let report = match r {
        CleanupRequest::Triage(t) => {
            return app
                .triage_page(&t)
                .await
                .map(|page| (json(page), Vec::new()))
        }
        CleanupRequest::One(id) => CleanupReport {
            secrets: vec![app.cleanup(&id).await?],
            not_reached: 0,
            dry_run: app.config.dry_run,
        },
        CleanupRequest::All => {
            let now = app.clock.now();
            let stop_at = deadline::time_left(now, deadline_ms)
                .map(|left| now + left - deadline::sweep_margin(left));
            app.cleanup_all(stop_at).await?
        }
    };
    let now = app.clock.now();
    metrics::count_cleanup(&report, now);
    let events = report
        .secrets
        .iter()
        .flat_map(|s| events::retired(s, report.dry_run, now))
        .collect();
    Ok((json(report), events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_named_as_their_binaries() {
        let names: Vec<_> = Function::ALL.iter().map(|f| f.to_string()).collect();
        assert_eq!(names, ["hook", "create", "test", "finish", "cleanup"]);
        for f in Function::ALL {
            assert_eq!(f.name().parse::<Function>(), Ok(f));
        }
        assert!("rekey-hook".parse::<Function>().is_err());
    }
}
