//! The `rekey` command against moto (signatures checked), run as an
//! operator runs it: its JSON and table output, its exit codes, and
//! through the test kit's proxy that `status`, `plan` and `--dry-run`
//! make no mutating call.

use std::process::{Command, Output, Stdio};

use tokio::process::Command as AsyncCommand;

use rekey_testkit::inbox::Inbox;
use rekey_testkit::proxy::{Proxy, MUTATING};
use rekey_testkit::{moto, test_config, World, MANAGED_PATH};
use serde_json::Value;

/// Runs `rekey args…` with the tests' settings, reaching AWS at `endpoint`,
/// with no terminal on stdin (awaited: the proxy serves on this runtime).
async fn rekey(w: &World, endpoint: &str, args: &[&str]) -> Output {
    rekey_with(w, endpoint, args, &[]).await
}

/// `rekey` with more variables in its environment.
async fn rekey_with(w: &World, endpoint: &str, args: &[&str], more: &[(&str, &str)]) -> Output {
    let mut env = w.function_env(&test_config());
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    AsyncCommand::new(env!("CARGO_BIN_EXE_rekey"))
        .args(args)
        .envs(env)
        .envs(more.iter().copied())
        .env("AWS_ENDPOINT_URL", endpoint)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the rekey binary runs")
}

/// Fails unless `rekey` exited 0, showing what it said.
fn succeeded(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A user rotated once by the hook: (user, secret, old key, new key).
async fn rotated_once(w: &World) -> (String, String, String, String) {
    let app = w.app(test_config());
    let (user, old, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let event =
            serde_json::json!({"SecretId": secret, "ClientRequestToken": token, "Step": step});
        rekey::lambda::handle(
            &app,
            rekey::lambda::Function::Hook,
            lambda_runtime::LambdaEvent::new(event, Default::default()),
        )
        .await
        .unwrap();
    }
    let new = w.current_credential(&secret).await.unwrap().access_key_id;
    (user, secret, old.access_key_id, new)
}

/// A state machine standing in for the pipeline (moto does not run it):
/// its ARN.
async fn state_machine(w: &World) -> String {
    aws_sdk_sfn::Client::new(&w.sdk)
        .create_state_machine()
        .name(format!(
            "rekey-rotation-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))
        .definition(r#"{"StartAt":"Done","States":{"Done":{"Type":"Succeed"}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/rekey-test-machine")
        .send()
        .await
        .expect("CreateStateMachine")
        .state_machine_arn
}

/// The first error line of a `rekey` run.
fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn status_shows_each_key_and_what_comes_next_and_changes_nothing() {
    let w = World::new().await;
    let (user, secret, old, new) = rotated_once(&w).await;
    let proxy = Proxy::start(&moto().endpoint).await;

    let out = rekey(
        &w,
        &proxy.endpoint,
        &["status", &secret, "--output", "json"],
    )
    .await;
    succeeded(&out);
    let s = &json(&out)[0];
    assert_eq!(s["SecretId"], secret.as_str());
    assert_eq!(s["Provider"], "aws");
    assert_eq!(s["UserName"], user.as_str());
    assert_eq!(s["Driver"], "hook");
    assert_eq!(s["Paused"], false);
    assert_eq!(s["CurrentKey"], new.as_str());
    assert_eq!(s["CurrentAgeDays"], 0.0);
    assert_eq!(s["Overdue"], false);
    let other = &s["OtherKeys"][0];
    assert_eq!(other["AccessKeyId"], old.as_str());
    assert_eq!(other["Status"], "Active");
    assert_eq!(other["NextStep"], "deactivation");
    // The superseded key's grace period (24h) is the next thing to happen.
    assert_eq!(s["Next"]["Action"], format!("deactivate {old}"));
    assert!(s.get("Problem").is_none(), "{s}");
    proxy.assert_no_change("rekey status");

    let out = rekey(
        &w,
        &proxy.endpoint,
        &["status", &secret, "--output", "table"],
    )
    .await;
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("SECRET"), "{table}");
    let row = lines.next().unwrap();
    for cell in [
        user.as_str(),
        "hook",
        new.as_str(),
        &format!("{old} active"),
    ] {
        assert!(row.contains(cell), "{cell:?} in {row:?}");
    }
    proxy.assert_no_change("rekey status --output table");
    w.assert_no_secret_in(&table, "the status table");
}

#[tokio::test]
async fn plan_says_what_the_next_rotation_and_cleanup_would_do() {
    let w = World::new().await;
    let (user, secret, old, _) = rotated_once(&w).await;
    let proxy = Proxy::start(&moto().endpoint).await;

    // Not due with the default 30 days; the old key waits out its grace.
    let out = rekey(&w, &proxy.endpoint, &["plan", &secret, "--output", "json"]).await;
    succeeded(&out);
    let p = &json(&out)[0];
    assert_eq!(p["Rotation"]["Outlook"], "not-due", "{p}");
    assert!(p["Rotation"]["Detail"]
        .as_str()
        .unwrap()
        .starts_with("nothing: not due until"));
    assert_eq!(p["Cleanup"]["Waiting"][0]["AccessKeyId"], old.as_str());
    assert!(p["Cleanup"].get("Deactivated").is_none(), "{p}");

    // Due now: at the limit (2 keys), the old key is active and still in
    // its grace period: the rotation would be refused, and says why.
    let out = rekey(
        &w,
        &proxy.endpoint,
        &["plan", &secret, "--period", "0s", "--output", "json"],
    )
    .await;
    let p = &json(&out)[0];
    assert_eq!(p["Rotation"]["Outlook"], "blocked", "{p}");
    let detail = p["Rotation"]["Detail"].as_str().unwrap();
    assert!(
        detail.starts_with("fails: ") && detail.contains(&old),
        "{p}"
    );
    proxy.assert_no_change("rekey plan");

    // A fresh secret, due now: the plan is the key it would create.
    let (fresh_user, _, fresh) = w.enrolled(MANAGED_PATH).await;
    let out = rekey(
        &w,
        &proxy.endpoint,
        &["plan", &fresh, "--period", "0s", "--output", "table"],
    )
    .await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains(&format!(
            "would create a new access key for user {fresh_user}"
        )),
        "{table}"
    );
    proxy.assert_no_change("rekey plan --period 0s");
    assert_eq!(w.keys(&fresh_user).await.len(), 1);
    assert_eq!(w.keys(&user).await.len(), 2);
}

#[tokio::test]
async fn a_stuck_secret_is_a_finding() {
    let w = World::new().await;
    // A managed secret naming a user outside the managed path.
    let (_, _, secret) = w.enrolled("/elsewhere/").await;
    let out = rekey(
        &w,
        &moto().endpoint,
        &["status", &secret, "--output", "json"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)[0]["Problem"]["ErrorType"], "UserNotManaged");
    // A secret that does not exist is a finding too, not a crash.
    let out = rekey(
        &w,
        &moto().endpoint,
        &["status", "rekey/aws/nobody-here", "--output", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json(&out)[0]["Problem"]["ErrorType"], "SecretNotFound");
}

#[tokio::test]
async fn pause_and_resume_ask_first_and_dry_run_changes_nothing() {
    let w = World::new().await;
    let (user, _, secret) = w.enrolled(MANAGED_PATH).await;
    let proxy = Proxy::start(&moto().endpoint).await;

    // No terminal to ask and no --yes: refused (usage), nothing changed.
    let out = rekey(&w, &proxy.endpoint, &["pause", &secret]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = rekey(
        &w,
        &proxy.endpoint,
        &["pause", &secret, "--dry-run", "--output", "json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["Changed"], false);
    assert_eq!(json(&out)["DryRun"], true);
    proxy.assert_no_change("rekey pause --dry-run");
    assert!(!w.tags(&secret).await.contains_key("rekey:paused"));

    let out = rekey(
        &w,
        &proxy.endpoint,
        &["pause", &secret, "--yes", "--output", "json"],
    )
    .await;
    succeeded(&out);
    assert_eq!(json(&out)["Changed"], true);
    assert_eq!(
        w.tags(&secret)
            .await
            .get("rekey:paused")
            .map(String::as_str),
        Some("true")
    );
    let out = rekey(
        &w,
        &proxy.endpoint,
        &["status", &secret, "--output", "json"],
    )
    .await;
    let s = &json(&out)[0];
    assert_eq!(
        (s["Paused"].clone(), s["Next"]["Action"].clone()),
        (true.into(), "nothing: paused".into())
    );
    // Issue 27, case 5: pausing records since when, and status shows it.
    let since = w.tags(&secret).await["rekey:paused-since"].clone();
    let at = humantime::parse_rfc3339(&since).expect("an RFC 3339 time");
    let age = std::time::SystemTime::now().duration_since(at).unwrap();
    assert!(age < std::time::Duration::from_secs(120), "{since}");
    assert_eq!(s["PausedSince"], since.as_str());
    assert_eq!(s["PausedTooLong"], false);
    assert_eq!(out.status.code(), Some(0), "a fresh pause is no finding");
    let table = ["status", &secret, "--output", "table"];
    let table = rekey(&w, &proxy.endpoint, &table).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains(&format!("paused since {since}")), "{table}");
    // Paused for longer than REKEY_PAUSED_ALERT_AFTER: a finding (exit 3).
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let bound = [("REKEY_PAUSED_ALERT_AFTER", "2s")];
    let args = ["status", &secret, "--output", "json"];
    let out = rekey_with(&w, &proxy.endpoint, &args, &bound).await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    assert_eq!(json(&out)[0]["PausedTooLong"], true);
    let table = ["status", &secret, "--output", "table"];
    let table = rekey_with(&w, &proxy.endpoint, &table, &bound).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("REKEY_PAUSED_ALERT_AFTER"), "{table}");

    let out = rekey(
        &w,
        &proxy.endpoint,
        &["resume", &secret, "--yes", "--output", "json"],
    )
    .await;
    assert_eq!(json(&out)["Changed"], true);
    let tags = w.tags(&secret).await;
    assert!(!tags.contains_key("rekey:paused"));
    assert!(!tags.contains_key("rekey:paused-since"), "{tags:?}");
    let out = rekey(
        &w,
        &proxy.endpoint,
        &["resume", &secret, "--yes", "--output", "json"],
    )
    .await;
    assert_eq!(json(&out)["Changed"], false, "resumed already");
    w.assert_invariants(&secret, &user).await;
}

#[test]
fn every_subcommand_has_help_and_misuse_exits_2() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rekey"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for sub in [
        "status", "plan", "audit", "enroll", "rotate", "rollback", "pause", "resume",
    ] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: rekey"),
            "{sub}"
        );
    }
    assert_eq!(run(&["nonsense"]).status.code(), Some(2));
    assert_eq!(
        run(&["pause"]).status.code(),
        Some(2),
        "pause needs a secret"
    );
    assert_eq!(run(&["status", "--output", "yaml"]).status.code(), Some(2));
}

#[tokio::test]
async fn audit_lists_every_users_keys_with_their_findings() {
    let w = World::new().await;
    // A few hundred users of their own path, one key each, and one enrolled.
    let path = format!(
        "/audit-{}/",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut made = Vec::new();
    for _ in 0..10 {
        let batch = (0..30).map(|_| async {
            let user = w.user(&path).await;
            let key = w.create_key(&user).await;
            (user, key.access_key_id)
        });
        made.extend(futures::future::join_all(batch).await);
    }
    let (enrolled, _, _) = w.enrolled(MANAGED_PATH).await;

    let out = rekey(&w, &moto().endpoint, &["audit", "--output", "json"]).await;
    succeeded(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rekey audit:"),
        "no progress line off a terminal"
    );
    let keys = json(&out);
    let ours: Vec<&Value> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["UserPath"] == path.as_str())
        .collect();
    assert_eq!(ours.len(), 300);
    for (user, key) in &made {
        let k = ours
            .iter()
            .find(|k| k["UserName"] == user.as_str())
            .unwrap();
        assert_eq!(k["AccessKeyId"], key.as_str());
        assert_eq!(k["Status"], "Active");
        assert_eq!(k["LastUsed"], "never");
        assert_eq!(k["Findings"], serde_json::json!([]));
        assert!(k.get("ManagedBy").is_none());
    }
    let managed = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["UserName"] == enrolled.as_str())
        .unwrap();
    assert_eq!(managed["ManagedBy"], format!("rekey/aws/{enrolled}"));

    // Held to a maximum age of nothing, every active key is a finding.
    let out = rekey(
        &w,
        &moto().endpoint,
        &["audit", "--max-age", "0s", "--output", "csv"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "USER,PATH,KEY,STATUS,AGE,LAST USED,SERVICE,MANAGED BY,FINDINGS"
    );
    let (user, key) = &made[0];
    let row = lines.find(|l| l.starts_with(&format!("{user},"))).unwrap();
    assert_eq!(
        row,
        format!("{user},{path},{key},Active,0d,never,,,too-old")
    );
    w.assert_no_secret_in(&csv, "the audit");
}

#[tokio::test]
async fn rotate_starts_the_secrets_own_driver() {
    let w = World::new().await;
    let proxy = Proxy::start(&moto().endpoint).await;

    // The hook's secret: Secrets Manager's RotateSecret, and nothing else
    // changed by the command (moto cannot run the Rust hook).
    let (_, hooked, _, _) = rotated_once(&w).await;
    proxy.clear_log();
    let out = rekey(
        &w,
        &proxy.endpoint,
        &["rotate", &hooked, "--yes", "--output", "json"],
    )
    .await;
    succeeded(&out);
    assert_eq!(json(&out)["Changed"], true);
    let counts = proxy.counts();
    assert_eq!(counts.get("RotateSecret"), Some(&1), "{counts:?}");
    for action in MUTATING {
        assert_eq!(counts.get(action), None, "rekey rotate made {action}");
    }
    proxy.clear_log();

    // The pipeline's secret: the state machine, for it alone, due now.
    let (_, _, piped) = w.enrolled(MANAGED_PATH).await;
    let out = rekey(&w, &proxy.endpoint, &["rotate", &piped, "--yes"]).await;
    assert_eq!(out.status.code(), Some(2), "no state machine named");
    assert!(String::from_utf8_lossy(&out.stderr).contains("REKEY_STATE_MACHINE_ARN"));
    let sfn = aws_sdk_sfn::Client::new(&w.sdk);
    let machine = state_machine(&w).await;
    proxy.clear_log();
    let more = [("REKEY_STATE_MACHINE_ARN", machine.as_str())];
    let out = rekey_with(
        &w,
        &proxy.endpoint,
        &["rotate", &piped, "--dry-run", "--output", "json"],
        &more,
    )
    .await;
    assert_eq!(json(&out)["Changed"], false);
    assert_eq!(proxy.counts().get("StartExecution"), None);
    let out = rekey_with(
        &w,
        &proxy.endpoint,
        &["rotate", &piped, "--yes", "--output", "json"],
        &more,
    )
    .await;
    succeeded(&out);
    assert_eq!(proxy.counts().get("StartExecution"), Some(&1));
    let executions = sfn
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    let execution = executions.executions()[0].execution_arn();
    let input = sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
        .unwrap()
        .input
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        serde_json::json!({"SecretIds": [piped], "RotationPeriod": "0s"})
    );
}

#[tokio::test]
async fn rollback_puts_the_previous_key_back_keeps_the_invariants_and_pauses() {
    let w = World::new().await;
    let (user, secret, old, new) = rotated_once(&w).await;
    // Past its grace period: cleanup deactivated the superseded key.
    w.deactivate(&user, &old).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let rollback = |extra: &'static [&'static str]| {
        let mut args = vec!["rollback", secret.as_str(), "--output", "json"];
        args.extend_from_slice(extra);
        args
    };

    // A rotation in progress would promote over the rollback: refused.
    let token = w.start_rotation(&secret).await;
    proxy.clear_log();
    let out = rekey(&w, &proxy.endpoint, &rollback(&["--yes"])).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("rotation is in progress"), "{said}");
    proxy.assert_no_change("a refused rollback");
    w.move_stage(&secret, "AWSPENDING", None, Some(&token))
        .await;

    // Off a terminal without --yes: refused; --dry-run: shown only.
    proxy.clear_log();
    let out = rekey(&w, &proxy.endpoint, &rollback(&[])).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rekey(&w, &proxy.endpoint, &rollback(&["--dry-run"])).await;
    succeeded(&out);
    let shown = json(&out);
    assert_eq!(
        (
            &shown["Changed"],
            &shown["RollBack"]["FromKey"],
            &shown["RollBack"]["ToKey"],
            &shown["RollBack"]["Reactivate"],
            &shown["RollBack"]["Pause"],
        ),
        (
            &Value::from(false),
            &Value::from(new.as_str()),
            &Value::from(old.as_str()),
            &Value::from(true),
            &Value::from(true)
        )
    );
    proxy.assert_no_change("rekey rollback --dry-run");

    let inbox = Inbox::for_secret(&w, &secret).await;
    let out = rekey(&w, &proxy.endpoint, &rollback(&["--yes"])).await;
    succeeded(&out);
    let done = json(&out);
    // The applications hear of it: the key put back, and the one rolled
    // back from.
    let events = inbox.take(1).await;
    assert_eq!(events[0]["detail-type"], "Key Rolled Back");
    let detail = &events[0]["detail"];
    assert_eq!(
        (
            &detail["NewKeyId"],
            &detail["OldKeyId"],
            &detail["UserName"]
        ),
        (
            &Value::from(old.as_str()),
            &Value::from(new.as_str()),
            &Value::from(user.as_str())
        )
    );
    w.assert_no_secret_in(&events[0].to_string(), "the event");
    assert_eq!(done["Changed"], true);
    assert!(done["Change"].as_str().unwrap().contains("rekey resume"));
    assert_eq!(
        w.current_credential(&secret).await.unwrap().access_key_id,
        old
    );
    let stages = w.stages(&secret).await;
    assert_eq!(
        (
            rekey_testkit::version_with(&stages, "AWSCURRENT"),
            rekey_testkit::version_with(&stages, "AWSPREVIOUS"),
        ),
        (
            done["RollBack"]["ToVersion"].as_str().map(str::to_owned),
            done["RollBack"]["FromVersion"].as_str().map(str::to_owned),
        )
    );
    let tags = w.tags(&secret).await;
    assert_eq!(tags.get("rekey:paused").map(String::as_str), Some("true"));
    // Since when it is paused, in the same call (issue 27, case 5).
    let since = humantime::parse_rfc3339(&tags["rekey:paused-since"]).expect("a time");
    assert!(
        std::time::SystemTime::now()
            .duration_since(since)
            .unwrap()
            .as_secs()
            < 120
    );
    assert!(tags.contains_key(&format!("rekey:superseded:{new}")));
    assert!(
        !tags.contains_key(&format!("rekey:superseded:{old}"))
            && !tags.contains_key(&format!("rekey:inactive:{old}")),
        "the restored key keeps no timer: {tags:?}"
    );
    w.assert_invariants(&secret, &user).await;
    let mutating: Vec<String> = proxy
        .counts()
        .into_iter()
        .filter(|(action, _)| MUTATING.contains(&action.as_str()))
        .map(|(action, n)| format!("{action}={n}"))
        .collect();
    assert_eq!(
        mutating,
        [
            "TagResource=1",
            "UntagResource=1",
            "UpdateAccessKey=1",
            "UpdateSecretVersionStage=1"
        ],
        "one call each"
    );
}

#[tokio::test]
async fn enroll_makes_a_user_rekeys_in_one_step_and_refuses_a_second_owner() {
    let w = World::new().await;
    let user = w.user(MANAGED_PATH).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let enroll = |extra: &[&'static str]| {
        let mut args = vec![
            "enroll".to_owned(),
            user.clone(),
            "--output".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let run = |args: Vec<String>, more: Vec<(&'static str, String)>| {
        let (w, endpoint) = (&w, proxy.endpoint.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let more: Vec<(&str, &str)> = more.iter().map(|(k, v)| (*k, v.as_str())).collect();
            rekey_with(w, &endpoint, &args, &more).await
        }
    };

    // Asked first; shown only in a dry run.
    let out = run(enroll(&[]), vec![]).await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    let out = run(enroll(&["--dry-run"]), vec![]).await;
    succeeded(&out);
    let shown = json(&out);
    assert_eq!(shown["Changed"], false);
    assert_eq!(shown["Changes"].as_array().unwrap().len(), 2, "{shown}");
    proxy.assert_no_change("rekey enroll --dry-run");

    // Enrolled: the owning secret, managed, and the user's tag naming it;
    // with --rotate-now, the pipeline started for it.
    let machine = state_machine(&w).await;
    let more = vec![("REKEY_STATE_MACHINE_ARN", machine.clone())];
    let out = run(enroll(&["--yes", "--rotate-now"]), more.clone()).await;
    succeeded(&out);
    let done = json(&out);
    assert_eq!(
        (&done["Changed"], &done["Driver"]),
        (&true.into(), &"pipeline".into())
    );
    assert!(done["Execution"].is_string(), "{done}");
    let secret = done["SecretId"].as_str().unwrap().to_owned();
    assert_eq!(done["SecretName"], format!("rekey/aws/{user}"));
    assert_eq!(
        w.tags(&secret)
            .await
            .get("rekey:managed")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        w.value(&secret, "AWSCURRENT").await,
        Some(serde_json::json!({"UserName": user}))
    );
    let owner = w
        .iam
        .list_user_tags()
        .user_name(&user)
        .send()
        .await
        .unwrap();
    assert!(owner
        .tags()
        .iter()
        .any(|t| t.key() == "rekey:owner" && t.value() == secret));
    let counts = proxy.counts();
    assert_eq!(
        ["CreateSecret", "TagUser", "StartExecution"].map(|a| counts.get(a).copied()),
        [Some(1); 3],
        "{counts:?}"
    );
    proxy.clear_log();

    // The functions take it: the pipeline's first rotation makes its key.
    let app = w.app(test_config());
    let mut token = serde_json::json!({"SecretId": secret, "RotationPeriod": "0s"});
    for function in [
        rekey::lambda::Function::Create,
        rekey::lambda::Function::Test,
        rekey::lambda::Function::Finish,
    ] {
        token = rekey::lambda::handle(
            &app,
            function,
            lambda_runtime::LambdaEvent::new(token.clone(), Default::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("{function:?}: {e:?}"));
    }
    assert!(w.current_credential(&secret).await.is_some());
    w.assert_invariants(&secret, &user).await;

    // Again: enrolled already, nothing to do.
    let out = run(enroll(&["--yes"]), vec![]).await;
    succeeded(&out);
    assert_eq!(json(&out)["Changes"], serde_json::json!([]));
    proxy.assert_no_change("a second rekey enroll");

    // A user enrolled to another secret that exists has an owner: refused,
    // nothing changed.
    let other = w.user(MANAGED_PATH).await;
    let team = w
        .secret_named(
            &format!("team/{other}"),
            &serde_json::json!({"UserName": other}),
            &[("rekey:managed", "true")],
        )
        .await;
    w.enrol(&other, &team).await;
    let args = |u: &str| vec!["enroll".to_owned(), u.to_owned(), "--yes".into()];
    let out = run(args(&other), vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        said(&out).contains("has one owner") && said(&out).contains(&team),
        "{}",
        said(&out)
    );
    proxy.assert_no_change("a refused second owner");
    // Once that secret is gone, its tag is stale and is replaced.
    w.delete_secret(&team).await;
    let out = run(args(&other), vec![]).await;
    succeeded(&out);
    let tags = w
        .iam
        .list_user_tags()
        .user_name(&other)
        .send()
        .await
        .unwrap();
    let owner = tags
        .tags()
        .iter()
        .find(|t| t.key() == "rekey:owner")
        .unwrap();
    assert!(owner
        .value()
        .contains(&format!(":secret:rekey/aws/{other}-")));

    // A secret of the owning name that rekey does not manage is not taken
    // over; a user outside the managed path is not touched.
    let third = w.user(MANAGED_PATH).await;
    w.secret_named(
        &format!("rekey/aws/{third}"),
        &serde_json::json!({"UserName": third}),
        &[],
    )
    .await;
    let out = run(args(&third), vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        said(&out).contains("not tagged rekey:managed"),
        "{}",
        said(&out)
    );
    let outside = w.user("/elsewhere/").await;
    let out = run(args(&outside), vec![]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        said(&out).contains("outside the managed path"),
        "{}",
        said(&out)
    );
    proxy.assert_no_change("refused enrolments");

    // Unknown provider, or a RAM user without an admin secret: usage.
    let out = run(
        vec![
            "enroll".into(),
            "bob".into(),
            "--provider".into(),
            "gcp".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(said(&out).contains("unknown provider"), "{}", said(&out));
    let out = run(
        vec![
            "enroll".into(),
            "bob".into(),
            "--provider".into(),
            "alibaba".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(said(&out).contains("--admin-secret"), "{}", said(&out));
}

#[tokio::test]
async fn enroll_with_the_hook_turns_rotation_on() {
    let w = World::new().await;
    let user = w.user(MANAGED_PATH).await;
    let args = [
        "enroll",
        user.as_str(),
        "--hook",
        "--yes",
        "--output",
        "json",
    ];
    let out = rekey(&w, &moto().endpoint, &args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        said(&out).contains("REKEY_HOOK_FUNCTION_ARN"),
        "{}",
        said(&out)
    );
    // moto calls the function named on RotateSecret, so it must exist
    // there (it cannot run it: Secrets Manager would run the hook now).
    let hook = register_function(&format!("rekey-hook-{}", &user[2..10]));
    let more = [("REKEY_HOOK_FUNCTION_ARN", hook.as_str())];
    let out = rekey_with(&w, &moto().endpoint, &args, &more).await;
    succeeded(&out);
    let done = json(&out);
    assert_eq!(done["Driver"], "hook");
    let described =
        w.sm.describe_secret()
            .secret_id(done["SecretId"].as_str().unwrap())
            .send()
            .await
            .unwrap();
    assert_eq!(described.rotation_enabled(), Some(true));
    assert_eq!(described.rotation_lambda_arn(), Some(hook.as_str()));
    assert_eq!(
        described
            .rotation_rules()
            .and_then(|r| r.automatically_after_days()),
        Some(30),
        "the rotation period's days"
    );
}

/// A Lambda function in moto (boto3 from the tests' venv: the workspace
/// has no Lambda client), for RotateSecret to name: its ARN.
fn register_function(name: &str) -> String {
    let script = r#"
import boto3, io, os, sys, zipfile
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
          aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
          aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])
role = boto3.client("iam", **kw).create_role(
    RoleName=sys.argv[1], AssumeRolePolicyDocument="{}")["Role"]["Arn"]
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as z:
    z.writestr("bootstrap", "")
arn = boto3.client("lambda", **kw).create_function(
    FunctionName=sys.argv[1], Runtime="provided.al2023", Role=role,
    Handler="bootstrap", Code={"ZipFile": code.getvalue()})["FunctionArn"]
print(arn)
"#;
    let moto = moto();
    let out = Command::new(rekey_testkit::python())
        .args(["-c", script, name])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", &moto.admin.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", moto.admin.secret.expose())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn audit_reaches_member_accounts_through_their_operator_role() {
    let w = World::new().await;
    let account = rekey_testkit::MEMBER_ACCOUNTS[0];
    let member = w.in_account(account).await;
    let path = format!(
        "/audit-{}/",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let user = member.user(&path).await;
    let key = member.create_key(&user).await.access_key_id;
    let role = format!("arn:aws:iam::{account}:role/rekey/rekey-operator-readonly");
    for args in [
        vec!["audit", "--account", account, "--output", "json"],
        vec!["audit", "--role-arn", role.as_str(), "--output", "json"],
    ] {
        let out = rekey(&w, &moto().endpoint, &args).await;
        succeeded(&out);
        let rows = json(&out);
        let rows = rows.as_array().unwrap();
        assert!(rows.iter().all(|r| r["AccountId"] == account), "{args:?}");
        let row = rows
            .iter()
            .find(|r| r["UserName"] == user.as_str())
            .unwrap();
        assert_eq!(
            (&row["AccessKeyId"], &row["UserPath"]),
            (&key.as_str().into(), &path.as_str().into())
        );
    }
    let out = rekey(
        &w,
        &moto().endpoint,
        &["audit", "--account", account, "--role-arn", &role],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "one or the other");
}

/// Issue 27, case 4: an enrolled user whose owning secret's
/// `rekey:managed` is `True` is not managed, and `status` (named, and
/// every secret) and `audit` say so as a problem (exit 3). Its secret is
/// under a prefix of its own (`REKEY_SECRET_PREFIX`), so that the other
/// tests' audits of this moto do not count it as theirs.
#[tokio::test]
async fn a_near_miss_of_the_managed_tag_is_a_problem_for_status_and_audit() {
    let w = World::new().await;
    let prefix = format!(
        "nearmiss-{}/",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let user = w.user(MANAGED_PATH).await;
    let key = w.create_key(&user).await;
    let value = serde_json::json!({"UserName": user});
    let secret = w
        .secret_named(
            &format!("{prefix}aws/{user}"),
            &value,
            &[("rekey:managed", "True")],
        )
        .await;
    w.enrol(&user, &secret).await;
    // Plainly not managed: not shown, no problem.
    let off = w
        .secret_named(
            &format!("{prefix}aws/{}", w.user(MANAGED_PATH).await),
            &value,
            &[("rekey:managed", "false")],
        )
        .await;
    let more = [("REKEY_SECRET_PREFIX", prefix.as_str())];

    let out = rekey_with(
        &w,
        &moto().endpoint,
        &["status", &secret, "--output", "json"],
        &more,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let problem = &json(&out)[0]["Problem"];
    assert_eq!(problem["ErrorType"], "SecretNotManaged", "{problem}");
    let message = problem["Message"].as_str().unwrap();
    assert!(
        message.contains("exactly `true`") && message.contains("rekey:managed=true"),
        "{message}"
    );
    // Every secret: the near miss is listed (ListSecrets by the tag's key
    // alone) and a problem; the plain `false` is not shown.
    let out = rekey_with(&w, &moto().endpoint, &["status", "--output", "json"], &more).await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let all = json(&out);
    let all = all.as_array().unwrap();
    let listed = all
        .iter()
        .find(|s| s["SecretId"] == secret.as_str())
        .unwrap_or_else(|| panic!("{secret} not shown"));
    assert_eq!(listed["Problem"]["ErrorType"], "SecretNotManaged");
    assert!(!all.iter().any(|s| s["SecretId"] == off.as_str()));

    let out = rekey_with(&w, &moto().endpoint, &["audit", "--output", "json"], &more).await;
    assert_eq!(out.status.code(), Some(3), "{}", said(&out));
    let keys = json(&out);
    let audited = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["UserName"] == user.as_str())
        .unwrap();
    assert_eq!(audited["AccessKeyId"], key.access_key_id.as_str());
    assert_eq!(
        audited["Findings"],
        serde_json::json!(["managed-tag-near-miss"])
    );
    assert!(audited.get("ManagedBy").is_none(), "{audited}");
    w.assert_no_secret_in(&String::from_utf8_lossy(&out.stdout), "the audit");
}

/// Issue 27, case 9: on a deployment that is a dry run (`DryRun=true`,
/// here `REKEY_DRY_RUN=true`), every changing command refuses without
/// `--live`, before any call, saying why; `--dry-run` still shows, and
/// `--live` makes the change.
#[tokio::test]
async fn a_dry_run_deployment_is_changed_only_with_live() {
    let w = World::new().await;
    let (user, secret, _, _) = rotated_once(&w).await;
    let newcomer = w.user(MANAGED_PATH).await;
    let machine = state_machine(&w).await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let dry = [
        ("REKEY_DRY_RUN", "true"),
        ("REKEY_STATE_MACHINE_ARN", machine.as_str()),
    ];
    let before = (
        w.tags(&secret).await,
        w.stages(&secret).await,
        w.keys(&user).await,
    );
    for args in [
        ["pause", &secret, "--yes"],
        ["resume", &secret, "--yes"],
        ["rollback", &secret, "--yes"],
        ["rotate", &secret, "--yes"],
        ["enroll", &newcomer, "--yes"],
    ] {
        proxy.clear_log();
        let out = rekey_with(&w, &proxy.endpoint, &args, &dry).await;
        let told = said(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {told}");
        for needed in [
            args[1],
            "dry run",
            "--live",
            "for real",
            "Nothing was changed",
        ] {
            assert!(told.contains(needed), "{args:?}: {needed:?} not in {told}");
        }
        let calls: Vec<String> = proxy.calls().into_iter().map(|c| c.action).collect();
        assert!(calls.is_empty(), "{args:?}: refused after {calls:?}");
    }
    let after = (
        w.tags(&secret).await,
        w.stages(&secret).await,
        w.keys(&user).await,
    );
    assert_eq!(before, after);
    let owning =
        rekey::ownership::owning_name("rekey/", rekey::model::Provider::Aws, None, &newcomer);
    let sm = aws_sdk_secretsmanager::Client::new(&w.sdk);
    assert!(sm
        .describe_secret()
        .secret_id(&owning)
        .send()
        .await
        .is_err());
    let sfn = aws_sdk_sfn::Client::new(&w.sdk);
    let runs = sfn
        .list_executions()
        .state_machine_arn(&machine)
        .send()
        .await
        .unwrap();
    assert!(runs.executions().is_empty(), "no pipeline started");

    // Shown only: allowed, and changes nothing.
    proxy.clear_log();
    let show = ["pause", &secret, "--dry-run", "--output", "json"];
    let out = rekey_with(&w, &proxy.endpoint, &show, &dry).await;
    succeeded(&out);
    assert_eq!(json(&out)["Changed"], false);
    proxy.assert_no_change("rekey pause --dry-run on a dry-run deployment");
    // --live and --dry-run say opposite things.
    let both = ["pause", &secret, "--dry-run", "--live"];
    let out = rekey_with(&w, &proxy.endpoint, &both, &dry).await;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));

    // Told to, it is made.
    let live = ["pause", &secret, "--yes", "--live", "--output", "json"];
    let out = rekey_with(&w, &proxy.endpoint, &live, &dry).await;
    succeeded(&out);
    assert_eq!(json(&out)["Changed"], true);
    assert_eq!(
        w.tags(&secret)
            .await
            .get("rekey:paused")
            .map(String::as_str),
        Some("true")
    );
    let live = ["resume", &secret, "--yes", "--live", "--output", "json"];
    let out = rekey_with(&w, &proxy.endpoint, &live, &dry).await;
    succeeded(&out);
    assert!(!w.tags(&secret).await.contains_key("rekey:paused"));
    w.assert_invariants(&secret, &user).await;
}
