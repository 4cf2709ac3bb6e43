//! The crash matrix: every API call of a full hook rotation, broken in turn
//! by each fault (answer dropped after the call took effect, failure before
//! it, 5xx), with the rotation retried the way Secrets Manager retries it
//! (all steps again, same token). Every cell must keep the invariants. For
//! AWS every call goes through the proxy; for Alibaba and SCloud every call
//! to the provider (Secrets Manager is reached directly).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use rekey::model::{Credential, Provider, AWSCURRENT, AWSPENDING};
use rekey_testkit::emulator::emulator;
use rekey_testkit::proxy::{Call, Fault, Proxy, Target};
use rekey_testkit::{moto, test_config, World, MANAGED_PATH};

/// Secrets Manager's attempts at one rotation.
const ATTEMPTS: usize = 4;

struct Cell {
    call: usize,
    action: String,
    fault: Option<Kind>,
    outcome: Result<&'static str, String>,
}

/// A column of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// The call's answer is lost after it took effect.
    Drop,
    /// The call fails before reaching the service.
    Before,
    /// The service answers 500 once.
    ServerError,
    /// The service answers 500 to the call and to every SDK retry of it,
    /// so the step fails and the driver retries.
    ServerErrorRun,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Drop,
        Kind::Before,
        Kind::ServerError,
        Kind::ServerErrorRun,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Drop => "drop-response",
            Kind::Before => "fail-before",
            Kind::ServerError => "5xx",
            Kind::ServerErrorRun => "5xx x5",
        }
    }

    fn inject(self, proxy: &Proxy, k: usize) {
        match self {
            Kind::Drop => proxy.inject(Target::Ordinal(k), Fault::DropResponse),
            Kind::Before => proxy.inject(Target::Ordinal(k), Fault::FailBefore),
            Kind::ServerError => proxy.inject(Target::Ordinal(k), Fault::ServerError),
            Kind::ServerErrorRun => proxy.inject(Target::Run(k, 5), Fault::ServerError),
        }
    }

    fn fault(self) -> Fault {
        match self {
            Kind::Drop => Fault::DropResponse,
            Kind::Before => Fault::FailBefore,
            Kind::ServerError | Kind::ServerErrorRun => Fault::ServerError,
        }
    }
}

/// Whose keys are rotated, and how rekey signs its calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Aws,
    /// A provider on its emulator, signed as `signer` says.
    Emulated {
        kind: Provider,
        signer: Signer,
    },
}

/// How a provider's calls are signed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// With an admin key (`AdminSecretId`) rekey does not rotate.
    Admin,
    /// With the user's own key.
    Own,
    /// The rotated secret is a managed admin secret, signing with its own
    /// key; a dependent secret it signs for is checked after each cell.
    ManagedAdmin,
}

impl Subject {
    /// A user with one key and a managed secret holding it.
    async fn enrolled(self, w: &World) -> (String, Credential, String) {
        match self {
            Subject::Aws => w.enrolled(MANAGED_PATH).await,
            Subject::Emulated { kind, signer } => {
                let e = emulator(kind);
                let admin = match signer {
                    Signer::Admin => Some(w.admin_secret(e).await),
                    Signer::Own => None,
                    Signer::ManagedAdmin => return w.managed_admin(e).await,
                };
                w.provider_enrolled(e, admin.as_deref()).await
            }
        }
    }

    async fn proxy(self) -> Proxy {
        match self {
            Subject::Aws => Proxy::start(&moto().endpoint).await,
            Subject::Emulated { kind, .. } => Proxy::start(&emulator(kind).endpoint).await,
        }
    }

    async fn app(self, w: &World, proxy: &Proxy) -> rekey_testkit::App {
        match self {
            Subject::Aws => w.app_via(proxy, test_config()).await,
            Subject::Emulated { kind, .. } => w.app(emulator(kind).config_at(&proxy.endpoint)),
        }
    }

    async fn key_ids(self, w: &World, user: &str) -> Vec<String> {
        match self {
            Subject::Aws => w.key_ids(user).await,
            Subject::Emulated { kind, .. } => emulator(kind).key_ids(user).await,
        }
    }

    async fn authenticates(self, w: &World, key: &Credential) -> bool {
        match self {
            Subject::Aws => w.whoami(key).await.is_some(),
            Subject::Emulated { kind, .. } => emulator(kind).check(key).await.is_ok(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// Secrets Manager: on a failed step, all four steps again, same token.
    Hook,
    /// Step Functions: each state retried on the errors the state machine
    /// retries (ServiceUnavailable; KeyNotReady for test and finish).
    Pipeline,
}

async fn drive(driver: Driver, app: &rekey_testkit::App, secret: &str, token: &str) -> bool {
    match driver {
        Driver::Hook => {
            for _ in 0..ATTEMPTS {
                if hook_rotation(app, secret, token).await.is_ok() {
                    return true;
                }
            }
            false
        }
        Driver::Pipeline => {
            let mut input = serde_json::json!({"SecretId": secret, "ClientRequestToken": token});
            for state in [Function::Create, Function::Test, Function::Finish] {
                let mut attempt = 0;
                input = loop {
                    match invoke(app, state, input.clone()).await {
                        Ok(out) => break out,
                        Err(e) => {
                            let retried = e.error_type == "ServiceUnavailable"
                                || (state != Function::Create && e.error_type == "KeyNotReady");
                            attempt += 1;
                            if !retried || attempt >= ATTEMPTS {
                                return false;
                            }
                        }
                    }
                };
            }
            true
        }
    }
}

/// Runs one rotation through a proxy with `fault` at call `k`.
async fn run(
    w: &World,
    provider: Subject,
    driver: Driver,
    k: Option<usize>,
    fault: Option<Kind>,
) -> (Cell, Vec<Call>) {
    let (user, old, secret) = provider.enrolled(w).await;
    let token = match driver {
        Driver::Hook => w.start_rotation(&secret).await,
        Driver::Pipeline => uuid_token(),
    };
    // Keys made by the rotation must be younger than the current version.
    next_second().await;

    let proxy = provider.proxy().await;
    if let (Some(k), Some(f)) = (k, fault) {
        f.inject(&proxy, k);
    }
    let app = provider.app(w, &proxy).await;
    let finished = drive(driver, &app, &secret, &token).await;
    let calls = proxy.calls();
    let action = k
        .and_then(|k| calls.get(k))
        .map(|c| format!("{}:{}", c.service, c.action))
        .unwrap_or_default();
    // The fault really happened where it was meant to.
    let injected = match (k, fault) {
        (Some(k), Some(f)) => calls.get(k).is_some_and(|c| c.fault == Some(f.fault())),
        _ => true,
    };
    let outcome = if injected {
        let rotation = Rotation {
            user,
            secret,
            old: old.access_key_id,
            token,
        };
        check(w, provider, &rotation, finished, &calls).await
    } else {
        Err("the fault was not injected".into())
    };
    (
        Cell {
            call: k.unwrap_or(0),
            action,
            fault,
            outcome,
        },
        calls,
    )
}

/// The rotation a cell checks: the user, the secret, the key AWSCURRENT
/// held before it, and its token.
struct Rotation {
    user: String,
    secret: String,
    old: String,
    token: String,
}

/// The invariants after one cell; `Ok` names how the rotation ended.
async fn check(
    w: &World,
    provider: Subject,
    rotation: &Rotation,
    finished: bool,
    calls: &[Call],
) -> Result<&'static str, String> {
    let Rotation {
        user,
        secret,
        old,
        token,
    } = rotation;
    let old = old.as_str();
    let stages = w.stages(secret).await;
    let current = w
        .current_credential(secret)
        .await
        .ok_or("AWSCURRENT has no key")?;
    let keys: BTreeSet<String> = provider.key_ids(w, user).await.into_iter().collect();
    // IAM's, Alibaba's and SCloud's (a RetCode in HTTP 200) words for it.
    if calls.iter().any(|c| {
        c.action == "CreateAccessKey"
            && matches!(
                c.code.as_deref(),
                Some("LimitExceeded" | "LimitExceeded.User.AccessKey" | "8040")
            )
    }) {
        return Err("the key limit was hit".into());
    }
    for c in calls {
        let touches_old = c.access_key_id.as_deref() == Some(old);
        if touches_old && matches!(c.action.as_str(), "UpdateAccessKey" | "DeleteAccessKey") {
            return Err(format!("{} on the old AWSCURRENT key", c.action));
        }
    }
    for c in calls {
        let touches_current = c.access_key_id.as_deref() == Some(current.access_key_id.as_str());
        if touches_current && matches!(c.action.as_str(), "UpdateAccessKey" | "DeleteAccessKey") {
            return Err(format!("{} on the AWSCURRENT key", c.action));
        }
    }
    if !provider.authenticates(w, &current).await {
        return Err("the AWSCURRENT key does not authenticate".into());
    }
    let created: BTreeSet<String> = calls.iter().filter_map(|c| c.created_key.clone()).collect();
    if finished {
        if !stages
            .get(token)
            .is_some_and(|s| s.iter().any(|s| s == AWSCURRENT))
        {
            return Err("finished, but the token is not AWSCURRENT".into());
        }
        let want: BTreeSet<String> = [old.to_owned(), current.access_key_id.clone()].into();
        if keys != want {
            return Err(format!(
                "keys left {keys:?}, want {want:?} (created {created:?})"
            ));
        }
        dependent_signs(w, provider, rotation, Some(&current)).await?;
        Ok("finished")
    } else {
        if current.access_key_id != old {
            return Err("failed, but AWSCURRENT changed".into());
        }
        if !stages
            .get(token)
            .is_some_and(|s| s.iter().any(|s| s == AWSPENDING))
        {
            return Err("failed, and the token is no longer AWSPENDING".into());
        }
        if keys.len() > 2 {
            return Err(format!("{} keys", keys.len()));
        }
        dependent_signs(w, provider, rotation, None).await?;
        Ok("failed cleanly")
    }
}

/// For a managed admin secret: a secret it signs for starts a rotation
/// signed by the admin's new key once the admin's rotation finished
/// (`promoted`), while the old admin key stays active through its grace;
/// while the admin's rotation is still in progress, the dependent's
/// create refuses with `RotationInProgress` naming the admin secret.
async fn dependent_signs(
    w: &World,
    provider: Subject,
    rotation: &Rotation,
    promoted: Option<&Credential>,
) -> Result<(), String> {
    let Subject::Emulated {
        kind,
        signer: Signer::ManagedAdmin,
    } = provider
    else {
        return Ok(());
    };
    let e = emulator(kind);
    let (user, key, dependent) = w.provider_enrolled(e, Some(&rotation.secret)).await;
    let since = e.log().await.len();
    let app = w.app(e.config());
    let created = invoke(
        &app,
        Function::Create,
        serde_json::json!({ "SecretId": dependent }),
    )
    .await;
    let made: Vec<_> = e
        .requests_since(since, &user)
        .await
        .into_iter()
        .filter(|r| r.action == "CreateAccessKey" && r.code == "OK")
        .collect();
    match (promoted, created) {
        (Some(admin), Ok(_)) => {
            if made.len() != 1 || made[0].signer != admin.access_key_id {
                return Err(format!(
                    "the dependent's new key was not made with the admin's new key: {made:?}"
                ));
            }
            let old = e.keys(&rotation.user).await;
            if status(&old, &rotation.old) != Some(rekey::model::KeyStatus::Active) {
                return Err("the old admin key is not active through its grace".into());
            }
            Ok(())
        }
        (None, Err(refused))
            if refused.error_type == "RotationInProgress"
                && refused.error_message.contains(&rotation.secret)
                && refused.error_message.contains(&rotation.token) =>
        {
            if !made.is_empty() || e.key_ids(&user).await != [key.access_key_id.clone()] {
                return Err("the dependent's refused create changed its keys".into());
            }
            Ok(())
        }
        (_, outcome) => Err(format!(
            "the dependent's create: {:?}",
            outcome.map_err(|e| e.error_message)
        )),
    }
}

fn uuid_token() -> String {
    // The state machine makes the token (States.UUID()) before Create.
    format!("{:032x}", rand_u128())
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            (if [8, 12, 16, 20].contains(&i) {
                Some('-')
            } else {
                None
            })
            .into_iter()
            .chain([c])
        })
        .collect()
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(7);
    (u128::from(h.finish()) << 64)
        | u128::from(
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
        )
}

/// Runs the matrix for one provider and driver and prints it; fails on any
/// violation. A rotation makes at least `min_calls` calls.
async fn matrix(provider: Subject, driver: Driver, name: &str, min_calls: usize) {
    let w = World::new().await;
    let (baseline, calls) = run(&w, provider, driver, None, None).await;
    assert_eq!(
        baseline.outcome,
        Ok("finished"),
        "the rotation works without faults"
    );
    let n = calls.len();
    assert!(n >= min_calls, "a rotation makes {n} calls");

    let jobs: Vec<(usize, Kind)> = (0..n).flat_map(|k| Kind::ALL.map(|f| (k, f))).collect();
    let w = &w;
    let mut cells: Vec<Cell> = futures::stream::iter(jobs)
        .map(|(k, f)| async move { run(w, provider, driver, Some(k), Some(f)).await.0 })
        .buffer_unordered(6)
        .collect()
        .await;
    cells.sort_by_key(|c| (c.call, c.fault));

    println!("crash matrix, {name}: call x fault -> outcome ({n} calls)");
    println!(
        "| call | action | {} |",
        Kind::ALL.map(Kind::name).join(" | ")
    );
    let mut violations = Vec::new();
    for k in 0..n {
        let row: Vec<&Cell> = cells.iter().filter(|c| c.call == k).collect();
        let action = row.first().map(|c| c.action.clone()).unwrap_or_default();
        let shown: Vec<String> = Kind::ALL
            .iter()
            .map(|f| {
                row.iter()
                    .find(|c| c.fault == Some(*f))
                    .map(|c| match &c.outcome {
                        Ok(o) => o.to_string(),
                        Err(_) => "VIOLATION".into(),
                    })
                    .unwrap_or_default()
            })
            .collect();
        println!("| {k} | {action} | {} |", shown.join(" | "));
        for c in row {
            if let Err(e) = &c.outcome {
                violations.push(format!(
                    "call {k} ({action}) {}: {e}",
                    c.fault.unwrap().name()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
    w.assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
}

#[tokio::test]
async fn every_call_of_a_hook_rotation_survives_every_fault() {
    matrix(
        Subject::Aws,
        Driver::Hook,
        "rekey-hook (Secrets Manager retries the rotation)",
        12,
    )
    .await;
}

#[tokio::test]
async fn every_call_of_a_pipeline_rotation_survives_every_fault() {
    matrix(
        Subject::Aws,
        Driver::Pipeline,
        "rekey-create/test/finish (Step Functions retries the state)",
        12,
    )
    .await;
}

#[tokio::test]
async fn every_ram_call_of_an_alibaba_hook_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::Alibaba,
            signer: Signer::Admin,
        },
        Driver::Hook,
        "Alibaba RAM/STS, admin key, rekey-hook",
        5,
    )
    .await;
}

#[tokio::test]
async fn every_ram_call_of_an_alibaba_pipeline_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::Alibaba,
            signer: Signer::Admin,
        },
        Driver::Pipeline,
        "Alibaba RAM/STS, admin key, rekey-create/test/finish",
        5,
    )
    .await;
}

#[tokio::test]
async fn every_scloud_call_of_a_hook_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::SCloud,
            signer: Signer::Admin,
        },
        Driver::Hook,
        "SCloud, admin key, rekey-hook",
        5,
    )
    .await;
}

#[tokio::test]
async fn every_scloud_call_of_a_pipeline_self_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::SCloud,
            signer: Signer::Own,
        },
        Driver::Pipeline,
        "SCloud, the user's own key, rekey-create/test/finish",
        5,
    )
    .await;
}

#[tokio::test]
async fn every_ram_call_of_an_alibaba_self_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::Alibaba,
            signer: Signer::Own,
        },
        Driver::Hook,
        "Alibaba RAM/STS, the user's own key, rekey-hook",
        5,
    )
    .await;
}

#[tokio::test]
async fn every_ram_call_of_an_alibaba_admin_keys_own_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::Alibaba,
            signer: Signer::ManagedAdmin,
        },
        Driver::Pipeline,
        "Alibaba RAM/STS, a managed admin secret rotating itself, rekey-create/test/finish",
        5,
    )
    .await;
}

#[tokio::test]
async fn every_scloud_call_of_an_admin_keys_own_rotation_survives_every_fault() {
    matrix(
        Subject::Emulated {
            kind: Provider::SCloud,
            signer: Signer::ManagedAdmin,
        },
        Driver::Hook,
        "SCloud, a managed admin secret rotating itself, rekey-hook",
        5,
    )
    .await;
}

/// A user with one key and a managed secret holding it, a rotation started
/// by Secrets Manager, and the steps reaching moto through a new proxy.
async fn rotation_via_proxy(
    w: &World,
    config: rekey::Config,
) -> (Proxy, rekey_testkit::App, Rotation) {
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, config).await;
    let rotation = Rotation {
        user,
        secret,
        old: old.access_key_id,
        token,
    };
    (proxy, app, rotation)
}

#[tokio::test]
async fn a_rotation_completes_under_thirty_percent_throttling() {
    let w = World::new().await;
    let (proxy, app, r) = rotation_via_proxy(&w, test_config()).await;
    proxy.inject(Target::Percent(30), Fault::Throttle);

    let mut finished = false;
    for _ in 0..ATTEMPTS {
        if hook_rotation(&app, &r.secret, &r.token).await.is_ok() {
            finished = true;
            break;
        }
    }
    let calls = proxy.calls();
    let throttled = calls
        .iter()
        .filter(|c| c.fault == Some(Fault::Throttle))
        .count();
    assert!(
        throttled * 100 >= calls.len() * 20,
        "{throttled} of {} throttled",
        calls.len()
    );
    assert!(finished, "the rotation completes");
    assert_eq!(
        check(&w, Subject::Aws, &r, true, &calls).await,
        Ok("finished")
    );
    w.assert_invariants(&r.secret, &r.user).await;
}

#[tokio::test]
async fn the_hook_waits_for_a_key_that_is_unready_for_fifteen_seconds() {
    let w = World::new().await;
    let mut config = test_config();
    config.test_timeout = Duration::from_secs(45);
    let (proxy, app, r) = rotation_via_proxy(&w, config).await;
    proxy.new_keys_unready(rekey_testkit::proxy::Unready {
        for_: Duration::from_secs(15),
    });

    let started = std::time::Instant::now();
    hook_rotation(&app, &r.secret, &r.token).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(15), "it waited");
    let calls = proxy.calls();
    let rejected = calls
        .iter()
        .filter(|c| c.action == "GetCallerIdentity" && c.status == Some(403))
        .count();
    assert!(
        rejected >= 2,
        "the key was rejected first, and once after its first success"
    );
    assert_eq!(
        check(&w, Subject::Aws, &r, true, &calls).await,
        Ok("finished")
    );
    w.assert_invariants(&r.secret, &r.user).await;
}

#[tokio::test]
async fn rekey_test_reports_key_not_ready_until_the_key_is_ready() {
    let w = World::new().await;
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    proxy.new_keys_unready(rekey_testkit::proxy::Unready {
        for_: Duration::from_secs(15),
    });
    let app = w.app_via(&proxy, test_config()).await;
    let created = invoke(
        &app,
        Function::Create,
        serde_json::json!({ "SecretId": secret }),
    )
    .await
    .unwrap();

    // Step Functions: retry KeyNotReady after a pause, for a while.
    let mut not_ready = 0;
    let started = std::time::Instant::now();
    let tested = loop {
        match invoke(&app, Function::Test, created.clone()).await {
            Ok(out) => break out,
            Err(e) => {
                assert_eq!(e.error_type, "KeyNotReady", "{}", e.error_message);
                not_ready += 1;
                assert!(started.elapsed() < Duration::from_secs(60), "ready in time");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    assert!(
        not_ready >= 5,
        "KeyNotReady while the key was unready ({not_ready})"
    );
    invoke(&app, Function::Finish, tested).await.unwrap();
    let r = Rotation {
        token: created["ClientRequestToken"].as_str().unwrap().to_owned(),
        old: old.access_key_id,
        user,
        secret,
    };
    assert_eq!(
        check(&w, Subject::Aws, &r, true, &proxy.calls()).await,
        Ok("finished")
    );
    w.assert_invariants(&r.secret, &r.user).await;
}

#[tokio::test]
async fn a_key_that_never_authenticates_fails_cleanly_and_is_not_duplicated() {
    let w = World::new().await;
    let mut config = test_config();
    config.test_timeout = Duration::from_secs(2);
    let (proxy, app, r) = rotation_via_proxy(&w, config).await;
    proxy.new_keys_unready(rekey_testkit::proxy::Unready {
        for_: Duration::from_secs(3600),
    });

    for _ in 0..2 {
        let err = hook_rotation(&app, &r.secret, &r.token).await.unwrap_err();
        assert_eq!(err.error_type, "KeyNotReady", "{}", err.error_message);
    }
    let calls = proxy.calls();
    let created: Vec<_> = calls.iter().filter_map(|c| c.created_key.clone()).collect();
    assert_eq!(
        created.len(),
        1,
        "the second attempt reuses the pending key"
    );
    assert_eq!(
        check(&w, Subject::Aws, &r, false, &calls).await,
        Ok("failed cleanly")
    );
    w.assert_invariants(&r.secret, &r.user).await;
}

#[tokio::test]
async fn a_rotation_completes_with_latency_on_every_call() {
    let w = World::new().await;
    let (proxy, app, r) = rotation_via_proxy(&w, test_config()).await;
    proxy.inject(Target::Percent(100), Fault::Delay(150));

    let started = std::time::Instant::now();
    hook_rotation(&app, &r.secret, &r.token).await.unwrap();
    let calls = proxy.calls();
    assert!(started.elapsed() >= Duration::from_millis(150 * calls.len() as u64));
    assert_eq!(
        check(&w, Subject::Aws, &r, true, &calls).await,
        Ok("finished")
    );
    w.assert_invariants(&r.secret, &r.user).await;
}

#[tokio::test]
async fn the_proxy_counts_calls_per_action() {
    let w = World::new().await;
    let (proxy, app, r) = rotation_via_proxy(&w, test_config()).await;
    hook_rotation(&app, &r.secret, &r.token).await.unwrap();
    let counts = proxy.counts();
    assert_eq!(counts.get("CreateAccessKey"), Some(&1));
    assert_eq!(counts.get("PutSecretValue"), Some(&1));
    assert_eq!(
        counts.get("GetCallerIdentity"),
        Some(&4),
        "three probes in test, one in finish"
    );
    println!("API calls of one hook rotation: {counts:?}");
}

/// Invokes `function` with `event` as Lambda would with `left` before the
/// invocation's deadline: its answer, and how long it took.
async fn invoke_with_deadline(
    app: &rekey_testkit::App,
    function: Function,
    event: serde_json::Value,
    left: Duration,
) -> (
    Result<serde_json::Value, lambda_runtime::Diagnostic>,
    Duration,
) {
    let started = std::time::Instant::now();
    let deadline = std::time::SystemTime::now() + left;
    let mut context = lambda_runtime::Context::default();
    context.deadline = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let event = lambda_runtime::LambdaEvent::new(event, context);
    let out = rekey::lambda::handle(app, function, event).await;
    (out, started.elapsed())
}

/// A provider that never answers, and an AWS answer trickled a byte at a
/// time: the step is cut off 2 seconds before the invocation's deadline
/// with ServiceUnavailable (never by Lambda), and nothing changed.
#[tokio::test]
async fn a_hanging_or_trickling_endpoint_is_cut_off_before_the_deadline() {
    let w = World::new().await;
    let e = emulator(Provider::Alibaba);
    let admin = w.admin_secret(e).await;
    let proxy = Proxy::start(&e.endpoint).await;
    proxy.inject(Target::FirstN(None, usize::MAX), Fault::Delay(600_000));
    let app = w.app(e.config_at(&proxy.endpoint));
    let (user, _, secret) = w.provider_enrolled(e, Some(&admin)).await;
    let before = e.keys(&user).await;
    let left = Duration::from_secs(5);
    let (out, took) = invoke_with_deadline(
        &app,
        Function::Create,
        serde_json::json!({ "SecretId": secret }),
        left,
    )
    .await;
    let err = out.expect_err("the provider never answers");
    assert_eq!(
        err.error_type, "ServiceUnavailable",
        "{}",
        err.error_message
    );
    assert!(
        err.error_message.contains("DeadlineNear"),
        "{}",
        err.error_message
    );
    // Cut off at the budget (deadline less 2 s), with slack for a busy machine.
    assert!(took < left - Duration::from_secs(1), "took {took:?}");
    assert_eq!(e.keys(&user).await, before, "nothing changed");

    // An AWS answer trickled a byte every 100 ms (Secrets Manager's, the
    // step's first call): the SDK has no time limit of its own on it.
    let proxy = Proxy::start(&moto().endpoint).await;
    proxy.inject(Target::Ordinal(0), Fault::Trickle(100));
    let app = w.app_via(&proxy, test_config()).await;
    let (_, _, secret) = w.enrolled(MANAGED_PATH).await;
    let (out, took) = invoke_with_deadline(
        &app,
        Function::Create,
        serde_json::json!({ "SecretId": secret, "RotationPeriod": "0s" }),
        left,
    )
    .await;
    let err = out.expect_err("the answer never arrives in time");
    assert_eq!(
        err.error_type, "ServiceUnavailable",
        "{}",
        err.error_message
    );
    assert!(took < left - Duration::from_secs(1), "took {took:?}");
    proxy.assert_no_change("a step cut off while reading its first answer");
}

/// The key test's retries never outlast REKEY_TEST_TIMEOUT, whatever the
/// invocation has left: a provider that stops answering is KeyNotReady
/// at the test's deadline.
#[tokio::test]
async fn the_key_test_ends_at_its_timeout_when_the_provider_hangs() {
    let w = World::new().await;
    let e = emulator(Provider::Alibaba);
    let admin = w.admin_secret(e).await;
    let proxy = Proxy::start(&e.endpoint).await;
    let mut config = e.config_at(&proxy.endpoint);
    config.test_timeout = Duration::from_secs(3);
    let app = w.app(config);
    let (_, _, secret) = w.provider_enrolled(e, Some(&admin)).await;
    let token = w.start_rotation(&secret).await;
    hook(&app, "createSecret", &secret, &token).await.unwrap();
    proxy.inject(Target::FirstN(None, usize::MAX), Fault::Delay(600_000));
    let event =
        serde_json::json!({"SecretId": secret, "ClientRequestToken": token, "Step": "testSecret"});
    let (out, took) =
        invoke_with_deadline(&app, Function::Hook, event, Duration::from_secs(60)).await;
    let err = out.expect_err("no answer");
    assert_eq!(err.error_type, "KeyNotReady", "{}", err.error_message);
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// An answer longer than 1 MiB is not read: ServiceError naming the limit.
#[tokio::test]
async fn an_answer_over_a_mebibyte_is_not_read() {
    let w = World::new().await;
    for kind in [Provider::Alibaba, Provider::SCloud] {
        let e = emulator(kind);
        let admin = w.admin_secret(e).await;
        let proxy = Proxy::start(&e.endpoint).await;
        proxy.inject(Target::FirstN(None, usize::MAX), Fault::Oversize);
        let app = w.app(e.config_at(&proxy.endpoint));
        let (user, _, secret) = w.provider_enrolled(e, Some(&admin)).await;
        let before = e.keys(&user).await;
        let err = invoke(
            &app,
            Function::Create,
            serde_json::json!({ "SecretId": secret }),
        )
        .await
        .expect_err("refused");
        assert_eq!(
            err.error_type, "ServiceError",
            "{kind:?}: {}",
            err.error_message
        );
        assert!(
            err.error_message.contains("ResponseTooLarge") && err.error_message.contains("1048576"),
            "{kind:?}: {}",
            err.error_message
        );
        assert_eq!(e.keys(&user).await, before, "{kind:?}: nothing changed");
    }
}
