//! The sweep over a fleet, through rekey-cleanup and the test kit's proxy:
//! `SECRETS` more secrets enrolled (beside the few the runs before left),
//! then every secret checked in full (`{}` runs until none is left
//! unreached), then the state machine's triage over every page with
//! nothing due. Calls per secret, and how long each took. It runs before
//! the fleet: moto's cost per call grows with its users.

use std::time::Instant;

use rekey_testkit::moto;
use rekey_testkit::proxy::Proxy;
use serde::Serialize;
use serde_json::json;

use crate::{events, must, Setup};

/// What one sweep cost.
#[derive(Clone, Debug, Serialize)]
pub struct SweepCost {
    /// Managed secrets looked at.
    pub secrets: usize,
    /// Invocations of rekey-cleanup it took.
    pub invocations: usize,
    /// Secrets still sent on (a triage: rotations the runs before left in
    /// progress are always looked at again).
    pub due: usize,
    /// API calls in all, and to IAM.
    pub calls: usize,
    pub iam_calls: usize,
    pub wall_s: f64,
}

impl SweepCost {
    pub fn per_secret(&self) -> (f64, f64) {
        let n = self.secrets.max(1) as f64;
        (self.calls as f64 / n, self.iam_calls as f64 / n)
    }
}

/// The full check of every secret, then a sweep with nothing due.
#[derive(Clone, Debug, Serialize)]
pub struct Sweeps {
    pub full_check: SweepCost,
    pub nothing_due: SweepCost,
}

fn counted(proxy: &Proxy) -> (usize, usize) {
    let calls = proxy.calls();
    let iam = calls.iter().filter(|c| c.service == "iam").count();
    proxy.clear_log();
    (calls.len(), iam)
}

/// Secrets enrolled for the sweeps.
pub const SECRETS: usize = 500;

pub async fn run(setup: &Setup) -> Sweeps {
    crate::fleet::enroll(setup, SECRETS, 8).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let env = setup.env_via(&proxy.endpoint);
    let mut cleanup = setup.start("cleanup", &env).await;

    // Every secret has something due (never checked): `{}` cleans until
    // it reaches them all, as its bound intends.
    proxy.clear_log();
    let started = Instant::now();
    let (mut secrets, mut invocations) = (0, 0);
    loop {
        let report = must(&mut cleanup, "cleanup {}", json!({})).await;
        invocations += 1;
        secrets += report["Secrets"].as_array().map_or(0, Vec::len);
        if report["NotReached"].as_u64().unwrap_or(0) == 0 {
            break;
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let (calls, iam_calls) = counted(&proxy);
    let full_check = SweepCost {
        secrets,
        invocations,
        due: 0,
        calls,
        iam_calls,
        wall_s,
    };

    // Now nothing is due: the state machine's triage, page after page.
    let started = Instant::now();
    let (mut secrets, mut invocations, mut due) = (0, 0, 0);
    let mut event = events::triage();
    loop {
        let answer = must(&mut cleanup, "triage", event).await;
        invocations += 1;
        secrets += answer["Listed"].as_u64().unwrap_or(0) as usize;
        due += answer["Items"].as_array().map_or(0, Vec::len);
        match answer.get("Next") {
            Some(next) => event = next.clone(),
            None => break,
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let (calls, iam_calls) = counted(&proxy);
    cleanup.stop().await;
    Sweeps {
        full_check,
        nothing_due: SweepCost {
            secrets,
            invocations,
            due,
            calls,
            iam_calls,
            wall_s,
        },
    }
}
