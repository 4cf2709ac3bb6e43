//! API calls per rotation, by action, counted by the test kit's proxy
//! between the functions and moto, with the reason for every one.

use std::time::Duration;

use rekey_testkit::proxy::Proxy;
use rekey_testkit::runtime::Function;
use rekey_testkit::{moto, MANAGED_PATH};
use serde::Serialize;

use crate::{events, must, Setup, HOOK_STEPS};

/// The calls one step made.
#[derive(Clone, Debug, Serialize)]
pub struct StepCalls {
    pub path: &'static str,
    pub step: &'static str,
    /// `(service, action, count, why)`, in the order first made.
    pub calls: Vec<(String, String, usize, &'static str)>,
}

/// Why a step makes a call. Every call the bench sees must be here: a call
/// that no one can explain is a call to remove.
fn why(step: &str, service: &str, action: &str) -> Option<&'static str> {
    let create = matches!(step, "createSecret" | "rekey-create");
    let test = matches!(step, "testSecret" | "rekey-test");
    let finish = matches!(step, "finishSecret" | "rekey-finish");
    let cleanup = step == "rekey-cleanup";
    Some(match (service, action) {
        ("secretsmanager", "DescribeSecret") if cleanup => {
            "the secret's tags (managed, not paused; when each old key was superseded or deactivated) and which versions are AWSCURRENT, AWSPENDING, AWSPREVIOUS"
        }
        ("secretsmanager", "DescribeSecret") if step == "setSecret" => {
            "the guard: there is nothing to push for an access key, but a paused secret or a cancelled rotation stops here"
        }
        ("secretsmanager", "DescribeSecret") => {
            "the guard before every step: the secret is managed and not paused, this driver owns it (rotation on or off), and where the token stands (new, pending, current)"
        }
        ("secretsmanager", "GetSecretValue") if step == "createSecret" => {
            "AWSCURRENT (the user, provider and key in use), and the token's version, which Secrets Manager made before calling: if it already holds a new key, a retried createSecret makes no second one"
        }
        ("secretsmanager", "GetSecretValue") if create => {
            "AWSCURRENT: the user, provider and key in use (the token is new: there is nothing else to read)"
        }
        ("secretsmanager", "GetSecretValue") if test => "the token's AWSPENDING version: the key to test",
        ("secretsmanager", "GetSecretValue") if finish => {
            "the token's AWSPENDING version (the key to promote) and AWSCURRENT (the key it supersedes, recorded for rekey-cleanup)"
        }
        ("secretsmanager", "GetSecretValue") if cleanup => {
            "AWSCURRENT (the key in use, never touched) and AWSPREVIOUS (the superseded key to retire)"
        }
        ("iam", "GetUser") if create || cleanup => {
            "the user's path and tags: rekey changes only users under REKEY_MANAGED_USER_PATH whose rekey:owner tag names this secret, and says so when a secret names another (the role's policy is the second line of defence)"
        }
        ("iam", "ListAccessKeys") if create => {
            "the user's keys, their status and age: room under the limit of 2, which inactive key to delete first, orphans of an interrupted run"
        }
        ("iam", "ListAccessKeys") if cleanup => {
            "the user's keys and their status: which are superseded, inactive or orphaned"
        }
        ("iam", "CreateAccessKey") if create => "the new key",
        ("secretsmanager", "PutSecretValue") if create => {
            "stores the new key as the token's AWSPENDING version: its secret is returned once, and this is the only place it is kept"
        }
        ("secretsmanager", "TagResource") if create => {
            "records that rekey made the new key for this secret (`rekey:created:<key id>`), before storing it: if it is never stored, the rotation is abandoned, or a rollback or an edit takes the labels away, rekey-cleanup still knows the key is rekey's to retire"
        }
        ("sts", "GetCallerIdentity") if test => {
            "the key test, signed with the new key: REKEY_TEST_CONSECUTIVE (3) successes in a row, because a new IAM key can pass once and fail the next call while it propagates"
        }
        ("sts", "GetCallerIdentity") if finish => {
            "one last test just before promotion: a step may run alone or long after the test, and a key deleted or disabled since must never become AWSCURRENT"
        }
        ("secretsmanager", "UpdateSecretVersionStage") if finish => {
            "two moves: AWSCURRENT onto the new version (AWSPREVIOUS follows by itself), then AWSPENDING off it so that the next rotation can start"
        }
        ("secretsmanager", "TagResource") if finish => {
            "records when the old key was superseded (`rekey:superseded:<key id>`): rekey-cleanup deactivates it after REKEY_DEACTIVATE_AFTER; kept in the secret so that it survives a crash; and, in the same call, the version and key about to become current (`rekey:current`), from which the sweep decides when the next rotation is due"
        }
        ("secretsmanager", "TagResource") if cleanup => {
            "records the full check (`rekey:checked`) and, when it is missing or stale, which version and key are current since when (`rekey:current`): the sweep decides from these records alone until the next full check"
        }
        ("events", "PutEvents") if finish => {
            "the Key Rotated event for the applications and teams that use the key (README \"Events\"): the secret, its user, the new and the superseded key ids and its owner, never a secret"
        }
        ("events", "PutEvents") if cleanup => {
            "the Key Deactivated and Key Deleted events of the keys retired, ten to a call"
        }
        ("secretsmanager", "ListSecrets") if step == "triage" => {
            "one page of up to 100 managed secrets with their tags (rekey's records) and version stages: what is due is decided from these alone, with no further call"
        }
        _ => return None,
    })
}

fn calls_of(proxy: &Proxy, path: &'static str, step: &'static str) -> StepCalls {
    let mut calls: Vec<(String, String, usize, &'static str)> = Vec::new();
    for c in proxy.calls() {
        match calls
            .iter_mut()
            .find(|(s, a, ..)| *s == c.service && *a == c.action)
        {
            Some(entry) => entry.2 += 1,
            None => {
                let reason = why(step, &c.service, &c.action).unwrap_or_else(|| {
                    panic!(
                        "{path} {step} calls {} {} and no reason is written for it in calls.rs",
                        c.service, c.action
                    )
                });
                calls.push((c.service, c.action, 1, reason));
            }
        }
    }
    proxy.clear_log();
    StepCalls { path, step, calls }
}

/// Starts `function` with AWS calls sent through `proxy` and waits for its
/// first `GET /next`: it must have made no call before it.
async fn start(setup: &Setup, function: &str, env: &[(String, String)], proxy: &Proxy) -> Function {
    proxy.clear_log();
    let f = setup.start(function, env).await;
    for _ in 0..1000 {
        if f.init().is_some() {
            let early = proxy.calls();
            assert!(
                early.is_empty(),
                "rekey-{function} made {} calls before its first event",
                early.len()
            );
            return f;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("rekey-{function} did not ask for an event within 5 s");
}

/// One rotation down each path, through the proxy.
pub async fn count(setup: &Setup) -> Vec<StepCalls> {
    let w = &setup.world;
    let proxy = Proxy::start(&moto().endpoint).await;
    let env = setup.env_via(&proxy.endpoint);
    let mut out = Vec::new();

    let (_, _, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    let mut hook = start(setup, "hook", &env, &proxy).await;
    for step in HOOK_STEPS {
        must(&mut hook, step, events::hook(&secret, &token, step)).await;
        out.push(calls_of(&proxy, "hook", step));
    }
    hook.stop().await;

    let (_, _, secret) = w.enrolled(MANAGED_PATH).await;
    let mut event = events::create(&secret);
    for (function, step) in [
        ("create", "rekey-create"),
        ("test", "rekey-test"),
        ("finish", "rekey-finish"),
    ] {
        let mut f = start(setup, function, &env, &proxy).await;
        let answer = must(&mut f, function, event.clone()).await;
        out.push(calls_of(&proxy, "pipeline", step));
        if function == "create" {
            event = events::next(&answer);
        }
        f.stop().await;
    }
    let mut cleanup = start(setup, "cleanup", &env, &proxy).await;
    must(&mut cleanup, "cleanup", events::cleanup(&secret)).await;
    out.push(calls_of(&proxy, "cleanup", "rekey-cleanup"));
    // Every secret checked once; then a sweep with nothing due.
    must(&mut cleanup, "cleanup", serde_json::json!({})).await;
    proxy.clear_log();
    let answer = must(&mut cleanup, "cleanup", events::triage()).await;
    assert_eq!(
        answer["Items"],
        serde_json::json!([]),
        "nothing is due: {answer}"
    );
    out.push(calls_of(&proxy, "sweep", "triage"));
    cleanup.stop().await;
    out
}
