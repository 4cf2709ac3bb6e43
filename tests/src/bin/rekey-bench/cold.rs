//! Cold starts, peak memory and CPU time: every run starts each function
//! afresh, as Lambda does after hours without an invocation, and has it
//! carry out a real rotation step against moto.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rekey::model::AWSCURRENT;
use rekey_testkit::runtime::Function;
use rekey_testkit::MANAGED_PATH;
use serde::Serialize;

use crate::{events, must, Setup, HOOK_STEPS};

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

/// Stops `f` and turns what it measured into a sample; the process's logs
/// must hold no secret value the bench has seen.
async fn sample(f: Function) -> (Sample, String) {
    let init = f.init().expect("the function asked for an event");
    let first = f.first_answer().expect("the function answered");
    let (logs, usage) = f.stop().await;
    let s = Sample {
        init_us: us(init),
        first_answer_us: us(first),
        cpu_us: us(usage.user + usage.sys),
        user_us: us(usage.user),
        sys_us: us(usage.sys),
        peak_rss_kib: usage.peak_rss_kib.expect("the function was running"),
    };
    (s, logs)
}

pub async fn measure(setup: &Setup, runs: usize) -> Cold {
    let w = &setup.world;
    let mut cold = Cold::default();
    for run in 0..runs {
        let mut logs = Vec::new();

        // The hook: one process, one whole rotation.
        let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
        let token = w.start_rotation(&secret).await;
        let mut hook = setup.start("hook", &setup.env).await;
        for step in HOOK_STEPS {
            must(&mut hook, step, events::hook(&secret, &token, step)).await;
        }
        let (s, l) = sample(hook).await;
        cold.samples.entry("hook").or_default().push(s);
        logs.push(l);
        assert_eq!(w.stages(&secret).await[&token], vec![AWSCURRENT]);
        w.assert_invariants(&secret, &user).await;

        // The pipeline: each function cold, one step each, then cleanup.
        let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
        let mut event = events::create(&secret);
        for function in ["create", "test", "finish"] {
            let mut f = setup.start(function, &setup.env).await;
            let out = must(&mut f, function, event.clone()).await;
            if function == "create" {
                event = events::next(&out);
            }
            let (s, l) = sample(f).await;
            cold.samples.entry(function).or_default().push(s);
            logs.push(l);
        }
        let token = event["ClientRequestToken"].as_str().unwrap();
        assert_eq!(w.stages(&secret).await[token], vec![AWSCURRENT]);
        w.assert_invariants(&secret, &user).await;
        let mut cleanup = setup.start("cleanup", &setup.env).await;
        must(&mut cleanup, "cleanup", events::cleanup(&secret)).await;
        let (s, l) = sample(cleanup).await;
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
