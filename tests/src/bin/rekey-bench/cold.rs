//! Cold starts, peak memory and CPU time: every run starts each function
//! afresh, as Lambda does after hours without an invocation, and has it
//! carry out a real rotation step against moto.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rekey::model::{Provider, AWSCURRENT};
use rekey_testkit::emulator::emulator;
use rekey_testkit::proxy::Proxy;
use rekey_testkit::runtime::{self, Outcome};
use rekey_testkit::{moto, MANAGED_PATH};
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
    /// rekey-hook rotating an Alibaba or SCloud secret signed by an admin
    /// key, against the provider's emulator, by provider name.
    pub providers: BTreeMap<&'static str, ProviderRuns>,
}

impl Cold {
    /// Adds `more`'s samples to these.
    pub fn extend(&mut self, more: Cold) {
        for (f, s) in more.samples {
            self.samples.entry(f).or_default().extend(s);
        }
        for (step, w) in more.warm_hook_us {
            self.warm_hook_us.entry(step).or_default().extend(w);
        }
        for (name, p) in more.providers {
            let mine = self.providers.entry(name).or_default();
            mine.samples.extend(p.samples);
            for (step, w) in p.warm_us {
                mine.warm_us.entry(step).or_default().extend(w);
            }
        }
    }

    /// Sets each provider's calls of one rotation.
    pub fn set_provider_calls(&mut self, calls: BTreeMap<&'static str, BTreeMap<String, usize>>) {
        for (name, calls) in calls {
            self.providers.entry(name).or_default().calls = calls;
        }
    }
}

/// rekey-hook's rotations of one provider's secrets.
#[derive(Debug, Default, Serialize)]
pub struct ProviderRuns {
    /// One cold process per sample, carrying out a whole rotation.
    pub samples: Vec<Sample>,
    /// The steps in a warm process (its rotations after the first),
    /// microseconds.
    pub warm_us: BTreeMap<&'static str, Vec<u64>>,
    /// The calls of one rotation, by `service:action`: Secrets Manager's
    /// (counted by the proxy) and the provider's (the emulator's log).
    pub calls: BTreeMap<String, usize>,
}

/// The providers measured besides AWS.
const PROVIDERS: [Provider; 2] = [Provider::Alibaba, Provider::SCloud];

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
    run_cold_with(setup, &setup.env, function, events).await
}

/// As [`run_cold`], with the environment `env`.
async fn run_cold_with(
    setup: &Setup,
    env: &[(String, String)],
    function: &str,
    events: Vec<Value>,
) -> (Vec<Value>, Sample, String) {
    let count = events.len();
    let run = runtime::invoke(&setup.binary(function), env, events, DEADLINE, LIMIT).await;
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

/// An Alibaba or SCloud secret, signed by `admin`, with one key; a
/// rotation of it started by Secrets Manager; the hook's events for it.
async fn provider_rotation(
    setup: &Setup,
    kind: Provider,
    admin: &str,
) -> (String, String, Vec<Value>) {
    let w = &setup.world;
    let (user, _, secret) = w.provider_enrolled(emulator(kind), Some(admin)).await;
    let token = w.start_rotation(&secret).await;
    let steps = HOOK_STEPS.map(|step| events::hook(&secret, &token, step));
    (user, secret, steps.to_vec())
}

/// The calls of one provider rotation: Secrets Manager's through a proxy,
/// the provider's from its emulator's log.
async fn provider_calls(setup: &Setup, kind: Provider, admin: &str) -> BTreeMap<String, usize> {
    let e = emulator(kind);
    let (user, secret, steps) = provider_rotation(setup, kind, admin).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let env = setup.provider_env(kind, Some(&proxy.endpoint));
    let since = e.log().await.len();
    let (_, _, logs) = run_cold_with(setup, &env, "hook", steps).await;
    setup.world.assert_no_secret_in(&logs, "a function's logs");
    let mut calls = BTreeMap::new();
    for c in proxy.calls() {
        *calls
            .entry(format!("{}:{}", c.service, c.action))
            .or_default() += 1;
    }
    let service = |action: &str| match (kind, action) {
        (Provider::Alibaba, "GetCallerIdentity") => "sts",
        (Provider::Alibaba, _) => "ram",
        _ => "scloud",
    };
    for r in e.log().await.into_iter().skip(since) {
        *calls
            .entry(format!("{}:{}", service(&r.action), r.action))
            .or_default() += 1;
    }
    setup
        .world
        .assert_provider_invariants(e, &secret, &user)
        .await;
    calls
}

/// The calls of one rotation of each provider's secret (counted once per
/// build, apart from the timed runs).
pub async fn count_provider_calls(
    setup: &Setup,
) -> BTreeMap<&'static str, BTreeMap<String, usize>> {
    let mut calls = BTreeMap::new();
    for kind in PROVIDERS {
        let admin = setup.world.admin_secret(emulator(kind)).await;
        calls.insert(kind.name(), provider_calls(setup, kind, &admin).await);
    }
    calls
}

/// rekey-hook rotating Alibaba and SCloud secrets: cold processes, a warm
/// one, and the calls of one rotation.
async fn measure_providers(setup: &Setup, runs: usize, cold: &mut Cold) {
    let w = &setup.world;
    for kind in PROVIDERS {
        let e = emulator(kind);
        let admin = w.admin_secret(e).await;
        let env = setup.provider_env(kind, None);
        let mut measured = ProviderRuns::default();
        for _ in 0..runs {
            let (user, secret, steps) = provider_rotation(setup, kind, &admin).await;
            let (_, sample, logs) = run_cold_with(setup, &env, "hook", steps).await;
            w.assert_no_secret_in(&logs, "a function's logs");
            w.assert_provider_invariants(e, &secret, &user).await;
            measured.samples.push(sample);
        }
        // Warm: one process, a first rotation to warm it, then `runs` more.
        let mut hook = setup.start("hook", &env).await;
        for round in 0..=runs {
            let (user, secret, steps) = provider_rotation(setup, kind, &admin).await;
            for (step, event) in HOOK_STEPS.into_iter().zip(steps) {
                let started = Instant::now();
                must(&mut hook, step, event).await;
                if round > 0 {
                    measured
                        .warm_us
                        .entry(step)
                        .or_default()
                        .push(us(started.elapsed()));
                }
            }
            w.assert_provider_invariants(e, &secret, &user).await;
        }
        let (logs, _) = hook.stop().await;
        w.assert_no_secret_in(&logs, "a function's logs");
        cold.providers.insert(kind.name(), measured);
    }
}

pub async fn measure(setup: &Setup, runs: usize) -> Cold {
    let w = &setup.world;
    let mut cold = Cold::default();
    eprintln!("  Alibaba and SCloud, {runs} runs each");
    measure_providers(setup, runs, &mut cold).await;
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
