//! `rekey-bench`: measures the release function binaries against
//! moto_server (signatures checked) through the local Lambda Runtime API,
//! and writes `docs/performance.md` and `docs/performance.json`.
//!
//! Run it through `scripts/bench`, which builds what it measures. It is not
//! part of the test run: it asserts nothing about speed, but it stops if a
//! rotation of the cold-start or call-count runs fails, if a key invariant
//! breaks, if a secret reaches one of those runs' logs, if a function calls
//! out before its first event, or if an API call has no stated reason. The
//! fleet runs count their failures in the table instead.

mod calls;
mod cold;
mod compare;
mod fleet;
mod report;
mod sweep;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rekey::config::{self, Config};
use rekey_testkit::runtime::{Function, Outcome};
use rekey_testkit::{World, MANAGED_PATH};
use serde_json::Value;

/// What the benchmark measures against, and where it writes.
pub struct Args {
    /// Cold-start samples per function.
    pub runs: usize,
    /// Secrets per fleet run (0: no fleet runs).
    pub fleet: usize,
    /// The numbers of rotations run at once in the fleet runs,
    /// one run per level.
    pub concurrency: Vec<usize>,
    /// Host release binaries (`rekey-hook`, ...), run for the timings.
    pub bins: PathBuf,
    /// `cargo lambda build --release` output (`<name>/bootstrap[.zip]`).
    pub lambda: PathBuf,
    /// The report's path without extension.
    pub out: PathBuf,
    /// `tests/statemachine/fleet.py`'s figures, included when present.
    pub map_fleet: PathBuf,
    /// Another build's function binaries to measure beside these, and its
    /// label.
    pub baseline: Option<(PathBuf, String)>,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            runs: 30,
            fleet: 1000,
            concurrency: vec![1, 8, 32],
            bins: PathBuf::from("target/release"),
            lambda: PathBuf::from("target/lambda"),
            out: PathBuf::from("docs/performance"),
            map_fleet: PathBuf::from("target/bench-map-fleet.json"),
            baseline: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            let number = |v: &str| -> usize {
                v.parse()
                    .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
            };
            match flag.as_str() {
                "--runs" => args.runs = number(&value),
                "--fleet" => args.fleet = number(&value),
                "--concurrency" => args.concurrency = value.split(',').map(number).collect(),
                "--bins" => args.bins = value.into(),
                "--lambda" => args.lambda = value.into(),
                "--out" => args.out = value.into(),
                "--map-fleet" => args.map_fleet = value.into(),
                "--baseline" => {
                    let (path, label) = value.split_once('=').unwrap_or_else(|| {
                        usage("--baseline takes DIR=LABEL (another build's release binaries, and what it is)")
                    });
                    args.baseline = Some((path.into(), label.to_owned()));
                }
                _ => usage(&format!("unknown flag {flag}")),
            }
        }
        args
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "rekey-bench: {problem}\nusage: rekey-bench [--runs N] [--fleet N] [--concurrency 1,8,32] \
         [--bins DIR] [--lambda DIR] [--out PATH] [--map-fleet JSON] [--baseline DIR=LABEL]"
    );
    std::process::exit(2)
}

/// The functions, by the name their binary carries after `rekey-`.
pub const FUNCTIONS: [&str; 5] = ["hook", "create", "test", "finish", "cleanup"];
/// The hook's steps, in the order Secrets Manager calls them.
pub const HOOK_STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];
/// With `--baseline`, how many turns each build takes at the cold starts.
const TURNS: usize = 5;
/// Each invocation's deadline (the template's function timeout).
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How long the bench waits for one answer before giving up.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The settings every measured function runs with: the defaults, the
/// managed path, and no pause between key tests (`REKEY_TEST_SPACING`
/// defaults to 1 s: a deliberate wait for IAM, not work, and moto's keys
/// are consistent at once).
pub fn bench_config() -> Config {
    Config::from_lookup(|name| match name {
        config::MANAGED_USER_PATH => Some(MANAGED_PATH.into()),
        config::TEST_SPACING => Some("0s".into()),
        _ => None,
    })
    .expect("the bench settings are valid")
}

/// The functions to run, and the environment they run with.
#[derive(Clone)]
pub struct Setup {
    /// moto_server and the clients to set up secrets and users.
    pub world: Arc<World>,
    /// The directory of the host release binaries.
    pub bins: PathBuf,
    /// The environment the functions run with (settings and
    /// `AWS_ENDPOINT_URL` pointing at moto).
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// The path of the release binary of `function`
    /// (`hook`, `create`, ...).
    pub fn binary(&self, function: &str) -> PathBuf {
        self.bins.join(format!("rekey-{function}"))
    }

    /// The environment with AWS calls sent to `endpoint` instead.
    pub fn env_via(&self, endpoint: &str) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (k, v) in &mut env {
            if k == "AWS_ENDPOINT_URL" {
                *v = endpoint.to_owned();
            }
        }
        env
    }

    /// The environment for secrets of `kind` (Alibaba, SCloud): the bench
    /// settings with the provider's emulator, and AWS calls sent to
    /// `aws_endpoint` if given.
    pub fn provider_env(
        &self,
        kind: rekey::model::Provider,
        aws_endpoint: Option<&str>,
    ) -> Vec<(String, String)> {
        let emulated = rekey_testkit::emulator::emulator(kind).config();
        let mut config = bench_config();
        config.alibaba = emulated.alibaba;
        config.scloud = emulated.scloud;
        let env = Setup {
            env: self.world.function_env(&config),
            ..self.clone()
        };
        match aws_endpoint {
            Some(endpoint) => env.env_via(endpoint),
            None => env.env,
        }
    }

    /// Starts `function`'s binary behind a local Lambda
    /// Runtime API, with environment `env`.
    pub async fn start(&self, function: &str, env: &[(String, String)]) -> Function {
        Function::start(&self.binary(function), env, DEADLINE).await
    }
}

/// Invokes `f` with `event`; an error or no answer is `Err` with what the
/// function said (error type and message: never secret material).
pub async fn call(f: &mut Function, event: Value) -> Result<Value, String> {
    match f.invoke(event, LIMIT).await {
        Some(Outcome::Ok(v)) => Ok(v),
        Some(Outcome::Err(e)) => Err(format!("{}: {}", e["errorType"], e["errorMessage"])),
        None => Err("no answer (the function exited or timed out)".into()),
    }
}

/// As [`call`], for steps that must succeed: stops the bench otherwise.
pub async fn must(f: &mut Function, what: &str, event: Value) -> Value {
    call(f, event)
        .await
        .unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

/// The pipeline's events, as the state machine builds them.
pub mod events {
    use serde_json::{json, Value};

    /// rekey-create's event: a new token, starting a rotation
    /// of `secret` now.
    pub fn create(secret: &str) -> Value {
        json!({
            "SecretId": secret,
            "ClientRequestToken": uuid::Uuid::new_v4().to_string(),
            "RotationPeriod": "0s",
            "Resume": true,
        })
    }

    /// rekey-test's and rekey-finish's event: rekey-create's answer.
    pub fn next(created: &Value) -> Value {
        json!({
            "SecretId": created["SecretId"],
            "ClientRequestToken": created["ClientRequestToken"],
        })
    }

    /// A Secrets Manager rotation event for rekey-hook: step
    /// `step` (`createSecret`, ...) of the rotation `token`.
    pub fn hook(secret: &str, token: &str, step: &str) -> Value {
        json!({"SecretId": secret, "ClientRequestToken": token, "Step": step})
    }

    /// rekey-cleanup's event for `secret`.
    pub fn cleanup(secret: &str) -> Value {
        json!({ "SecretId": secret })
    }

    /// The state machine's first triage call.
    pub fn triage() -> Value {
        json!({ "Triage": { "RotationPeriod": "90d" } })
    }
}

fn main() {
    let args = Args::parse();
    // Measured first, before this process has loaded anything itself.
    let tls = report::tls_setup();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(run(args, tls));
}

async fn run(args: Args, tls: report::TlsSetup) {
    let world = Arc::new(World::new().await);
    let setup = Setup {
        env: world.function_env(&bench_config()),
        world,
        bins: args.bins.clone(),
    };
    for f in FUNCTIONS {
        if !setup.binary(f).exists() {
            usage(&format!(
                "{} is missing: build it with cargo build --release",
                setup.binary(f).display()
            ));
        }
    }

    eprintln!("rekey-bench: artifacts");
    let artifacts = report::artifacts(&args.lambda, &setup);
    // The calls first, while moto holds fewer than 100 managed secrets:
    // the triage's table is of one ListSecrets page, as tests/tests/calls.rs
    // checks it.
    eprintln!("rekey-bench: API calls per rotation");
    let calls = calls::count(&setup).await;
    // The other build: its setup, label, calls and (below) cold starts.
    let mut base = match &args.baseline {
        Some((bins, label)) => {
            let setup = Setup {
                bins: bins.clone(),
                ..setup.clone()
            };
            let calls = calls::count(&setup).await;
            // After the AWS calls, whose sweep counts only secrets with
            // nothing due.
            let mut cold = cold::Cold::default();
            cold.set_provider_calls(cold::count_provider_calls(&setup).await);
            Some((setup, label.clone(), calls, cold))
        }
        None => None,
    };
    eprintln!("rekey-bench: cold starts, {} runs", args.runs);
    // With a baseline, the two builds take turns, a few runs at a time, so
    // that the machine's drift over the run weighs on both alike.
    let mut cold = cold::Cold::default();
    cold.set_provider_calls(cold::count_provider_calls(&setup).await);
    let turns = if base.is_some() { TURNS } else { 1 };
    for turn in 0..turns {
        let runs = args.runs / turns + usize::from(turn < args.runs % turns);
        cold.extend(cold::measure(&setup, runs).await);
        if let Some((setup, _, _, base_cold)) = &mut base {
            base_cold.extend(cold::measure(setup, runs).await);
        }
    }
    eprintln!("rekey-bench: sweeps over every secret (a full check, then nothing due)");
    let sweeps = sweep::run(&setup).await;
    let fleet = if args.fleet == 0 {
        None
    } else {
        eprintln!(
            "rekey-bench: fleet of {} at concurrency {:?}",
            args.fleet, args.concurrency
        );
        Some(fleet::run(&setup, args.fleet, &args.concurrency).await)
    };

    let report = report::Report {
        machine: report::machine(),
        config: report::settings(&setup.env),
        tls,
        artifacts,
        cold,
        calls,
        fleet,
        sweeps,
        map_fleet: report::map_fleet(&args.map_fleet),
        baseline: base.map(|(_, label, calls, cold)| {
            let value = serde_json::json!({ "cold": cold, "calls": calls });
            (label, value)
        }),
    };
    report.write(&args.out);
    eprintln!("rekey-bench: wrote {0}.md and {0}.json", args.out.display());
}
