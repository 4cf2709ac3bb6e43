//! Cold starts, peak memory and CPU time: every run starts each function
//! afresh, as Lambda does after hours without an invocation, and has it
//! carry out a real rotation step against moto.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rekey::model::AWSCURRENT;
use rekey_testkit::runtime::{self, Outcome};
use rekey_testkit::MANAGED_PATH;
use serde::Serialize;
use serde_json::Value;

use crate::{events, must, Setup, DEADLINE, HOOK_STEPS, LIMIT};

/// One cold process.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Spawn to the first `GET /runtime/invocation/next`.
    pub init_us: u64,
    /// Spawn to the answer of the first (cold) invocation.
    pub first_answer_us: u64,
    /// User + system CPU time of the process, start to stop.
    pub cpu_us: u64,
    pub user_us: u64,
    pub sys_us: u64,
    pub peak_rss_kib: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Cold {
    /// Per function. The hook's process carries out a whole rotation (its
    /// four steps); each pipeline function its one step; rekey-cleanup
    /// checks the rotated secret.
    pub samples: BTreeMap<&'static str, Vec<Sample>>,
    /// The hook's steps when its process is warm (its second rotation), in
    /// microseconds, per step.
    pub warm_hook_us: BTreeMap<&'static str, Vec<u64>>,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Runs `function` cold over `events` (each must succeed) and returns its
/// answers, the sample, and its logs.
async fn run_cold(
    setup: &Setup,
    function: &str,
    events: Vec<Value>,
) -> (Vec<Value>, Sample, String) {
    let count = events.len();
    let run = runtime::invoke(&setup.binary(function), &setup.env, events, DEADLINE, LIMIT).await;
    assert_eq!(run.outcomes.len(), count, "rekey-{function}:\n{}", run.logs);
    let answers = run
        .outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Ok(v) => v,
            Outcome::Err(e) => panic!("rekey-{function} failed: {e}"),
        })
        .collect();
    let sample = Sample {
        init_us: us(run.init.expect("the function asked for an event")),
        first_answer_us: us(run.first_answer.expect("the function answered")),
        cpu_us: us(run.usage.user + run.usage.sys),
        user_us: us(run.usage.user),
        sys_us: us(run.usage.sys),
        peak_rss_kib: run.usage.peak_rss_kib.expect("the function was running"),
    };
    (answers, sample, run.logs)
}

pub async fn measure(setup: &Setup, runs: usize) -> Cold {
    let w = &setup.world;
    let mut cold = Cold::default();
    for run in 0..runs {
        let mut logs = Vec::new();

        // The hook: one process, one whole rotation.
        let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
        let token = w.start_rotation(&secret).await;
        let steps = HOOK_STEPS.map(|step| events::hook(&secret, &token, step));
        let (_, s, l) = run_cold(setup, "hook", steps.to_vec()).await;
        cold.samples.entry("hook").or_default().push(s);
        logs.push(l);
        assert_eq!(w.stages(&secret).await[&token], vec![AWSCURRENT]);
        w.assert_invariants(&secret, &user).await;

        // The pipeline: each function cold, one step each, then cleanup.
        let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
        let mut event = events::create(&secret);
        for function in ["create", "test", "finish"] {
            let (out, s, l) = run_cold(setup, function, vec![event.clone()]).await;
            if function == "create" {
                event = events::next(&out[0]);
            }
            cold.samples.entry(function).or_default().push(s);
            logs.push(l);
        }
        let token = event["ClientRequestToken"].as_str().unwrap();
        assert_eq!(w.stages(&secret).await[token], vec![AWSCURRENT]);
        w.assert_invariants(&secret, &user).await;
        let (_, s, l) = run_cold(setup, "cleanup", vec![events::cleanup(&secret)]).await;
        cold.samples.entry("cleanup").or_default().push(s);
        logs.push(l);

        // The hook warm: a second rotation in the same process.
        let mut hook = setup.start("hook", &setup.env).await;
        for round in 0..2 {
            let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
            let token = w.start_rotation(&secret).await;
            for step in HOOK_STEPS {
                let started = Instant::now();
                must(&mut hook, step, events::hook(&secret, &token, step)).await;
                if round == 1 {
                    let took = us(started.elapsed());
                    cold.warm_hook_us.entry(step).or_default().push(took);
                }
            }
            w.assert_invariants(&secret, &user).await;
        }
        logs.push(hook.stop().await.0);

        // The new keys' secrets were read by the invariant checks: now none
        // of them, nor any earlier one, may appear in the functions' logs.
        for l in &logs {
            w.assert_no_secret_in(l, "a function's logs");
        }
        if run == 0 || (run + 1) % 10 == 0 {
            eprintln!("  run {}/{runs}", run + 1);
        }
    }
    cold
}
