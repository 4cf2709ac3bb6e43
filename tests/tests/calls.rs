//! The API calls of each step equal the tables of docs/performance.md
//! ("API calls per rotation"): a change that adds, drops or reorders a call
//! fails here until the tables (and the reasons in the benchmark's
//! `calls.rs`) say why. The calls are counted by the test kit's proxy
//! between rekey and moto, one rotation down each path, as the benchmark
//! counts them.

mod common;

use common::*;
use rekey_testkit::proxy::Proxy;
use rekey_testkit::{moto, test_config, World, MANAGED_PATH};
use serde_json::json;

/// One row of a table: `(step, service, action, calls)`.
type Row = (String, String, String, usize);

/// The tables of docs/performance.md's "API calls per rotation", by path:
/// `(heading, rows)` in the order they are written.
fn documented() -> Vec<(String, Vec<Row>)> {
    let path = rekey_testkit::workspace_root().join("docs/performance.md");
    let text = std::fs::read_to_string(&path).expect("docs/performance.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("API calls per rotation"))
        .expect("docs/performance.md has a section \"API calls per rotation\"");
    let mut tables: Vec<(String, Vec<Row>)> = Vec::new();
    for line in section.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            tables.push((heading.to_owned(), Vec::new()));
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | step | service | action | calls | why |
        if cells.len() < 6 {
            continue;
        }
        let Ok(calls) = cells[4].parse::<usize>() else {
            continue; // the header and separator rows
        };
        let table = tables.last_mut().expect("a table under a ### heading");
        table
            .1
            .push((cells[1].into(), cells[2].into(), cells[3].into(), calls));
    }
    tables
}

/// The calls `proxy` saw since it was last cleared, as rows of `step`, in
/// the order each action was first called.
fn rows(proxy: &Proxy, step: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for call in proxy.calls() {
        match rows
            .iter_mut()
            .find(|r| r.1 == call.service && r.2 == call.action)
        {
            Some(row) => row.3 += 1,
            None => rows.push((step.into(), call.service, call.action, 1)),
        }
    }
    proxy.clear_log();
    rows
}

/// `n calls, m of them IAM` from a heading, checked against its rows.
fn check_heading(heading: &str, rows: &[Row]) {
    let total: usize = rows.iter().map(|r| r.3).sum();
    let iam: usize = rows.iter().filter(|r| r.1 == "iam").map(|r| r.3).sum();
    assert!(
        heading.contains(&format!("{total} calls, {iam} of them IAM")),
        "docs/performance.md: the heading {heading:?} should say {total} calls, {iam} of them IAM"
    );
}

#[tokio::test]
async fn the_calls_of_every_step_are_the_documented_ones() {
    let w = World::new().await;
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, test_config()).await;

    // The hook path: Secrets Manager starts the rotation, then calls the
    // four steps with its token.
    let (_, _, secret) = w.enrolled(MANAGED_PATH).await;
    let token = w.start_rotation(&secret).await;
    proxy.clear_log();
    let mut hook_rows = Vec::new();
    for step in STEPS {
        hook(&app, step, &secret, &token).await.unwrap();
        hook_rows.extend(rows(&proxy, step));
    }

    // The pipeline path, each function handing its answer to the next;
    // then one cleanup of that secret, with nothing due.
    let (_, _, secret) = w.enrolled(MANAGED_PATH).await;
    proxy.clear_log();
    let mut pipeline_rows = Vec::new();
    let created = invoke(&app, Function::Create, json!({ "SecretId": secret }))
        .await
        .unwrap();
    pipeline_rows.extend(rows(&proxy, "rekey-create"));
    invoke(&app, Function::Test, created.clone()).await.unwrap();
    pipeline_rows.extend(rows(&proxy, "rekey-test"));
    invoke(&app, Function::Finish, created).await.unwrap();
    pipeline_rows.extend(rows(&proxy, "rekey-finish"));
    let report = cleanup(&app, &secret).await;
    // Empty lists are left out of the report.
    assert!(
        report["Deactivated"].is_null() && report["Deleted"].is_null(),
        "nothing is due yet: {report}"
    );
    let cleanup_rows = rows(&proxy, "rekey-cleanup");
    // Every secret checked once: the sweep then has nothing to do.
    invoke(&app, Function::Cleanup, json!({})).await.unwrap();
    proxy.clear_log();
    let answer = invoke(
        &app,
        Function::Cleanup,
        json!({"Triage": {"RotationPeriod": "90d"}}),
    )
    .await
    .unwrap();
    assert_eq!(answer["Items"], json!([]), "nothing is due: {answer}");
    assert!(answer["Listed"].as_u64().unwrap() >= 2, "{answer}");
    let sweep_rows = rows(&proxy, "triage");

    let tables = documented();
    let measured = [
        ("Hook path", hook_rows),
        ("Pipeline path", pipeline_rows),
        ("rekey-cleanup, one secret", cleanup_rows),
        ("Sweep", sweep_rows),
    ];
    assert_eq!(
        tables.len(),
        measured.len(),
        "docs/performance.md has one table per path: {:?}",
        tables.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for (name, rows) in measured {
        let (heading, documented) = tables
            .iter()
            .find(|(h, _)| h.starts_with(name))
            .unwrap_or_else(|| panic!("docs/performance.md has no table {name:?}"));
        assert_eq!(
            &rows, documented,
            "the calls of the {name} differ from docs/performance.md (left: made now; right: documented)"
        );
        check_heading(heading, &rows);
    }
}
