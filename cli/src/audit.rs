//! `rekey audit`: every IAM user of the account, enrolled or not, each key
//! with its status, age and last use, whether rekey manages it, and the
//! verdict of `rekey::audit` (CIS AWS Foundations' rules by default).
//! Paginated; throttling is retried with backoff by the SDK (more attempts
//! than the functions make, for accounts with thousands of users); a
//! progress line on a terminal (stderr), none otherwise.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use rekey::audit::{verdict, AuditRules, Finding};
use rekey::model::{KeyStatus, LastUsed, Provider};
use rekey::plan::timestamp;
use rekey::ports::{KeyApi, Vault};
use rekey::providers::{AwsClients, AwsIam};
use rekey::vault::SecretsManager;
use serde::Serialize;

use crate::deployment::Deployment;
use crate::output::{self, Format};
use crate::{Failure, EXIT_FINDINGS, EXIT_OK};

/// One access key, audited.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct AuditedKey {
    user_name: String,
    user_path: String,
    access_key_id: String,
    status: &'static str,
    created: String,
    age_days: u64,
    /// `never`, `unknown` or a time.
    last_used: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_service: Option<String>,
    /// The owning secret, when rekey manages the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_by: Option<String>,
    findings: Vec<Finding>,
}

/// A progress line on stderr when it is a terminal.
struct Progress(bool);

impl Progress {
    fn show(&self, users: usize, keys: usize) {
        if self.0 {
            eprint!("\rrekey audit: {users} users, {keys} keys");
        }
    }

    fn done(&self) {
        if self.0 {
            eprintln!();
        }
    }
}

/// The names of the managed secrets (ListSecrets), to tell which users
/// rekey manages: a user is managed when its owning secret exists.
async fn managed_secret_names(sdk: &aws_config::SdkConfig) -> Result<BTreeSet<String>, Failure> {
    let vault = SecretsManager::new(sdk);
    let mut names = BTreeSet::new();
    let mut next: Option<String> = None;
    loop {
        let page = vault.list_page(next.as_deref()).await?;
        names.extend(page.secrets.into_iter().map(|s| s.name));
        next = page.next_token;
        if next.is_none() {
            return Ok(names);
        }
    }
}

/// `rekey audit`.
pub async fn audit(
    sdk: &aws_config::SdkConfig,
    d: &Deployment,
    rules: AuditRules,
    format: Format,
) -> Result<u8, Failure> {
    // More patience with throttling than a function has: a scan of
    // thousands of users is throttled, and nothing waits on it.
    let sdk = sdk
        .to_builder()
        .retry_config(rekey::sdk::retry_config().with_max_attempts(10))
        .build();
    let managed = managed_secret_names(&sdk).await?;
    let clients = AwsClients::new(&sdk);
    let keys_of = AwsIam::new(&clients, "/");
    let iam = aws_sdk_iam::Client::new(&sdk);
    let progress = Progress(std::io::stderr().is_terminal());
    let now = SystemTime::now();
    let mut audited = Vec::new();
    let mut users = 0;
    let mut pages = iam.list_users().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| rekey::sdk::service_error("IAM", "ListUsers", e))?;
        for user in page.users() {
            users += 1;
            let name = user.user_name();
            let owning =
                rekey::ownership::owning_name(&d.config.secret_prefix, Provider::Aws, None, name);
            let managed_by = managed.contains(&owning).then_some(owning);
            for key in keys_of.list_keys(name).await? {
                let used = keys_of.last_used(name, &key.id).await?;
                let findings = verdict(&key, &used, now, &rules);
                let (last_used, last_used_service) = match used {
                    LastUsed::Unknown => ("unknown".to_owned(), None),
                    LastUsed::Never => ("never".to_owned(), None),
                    LastUsed::At { when, service } => (timestamp(when), service),
                };
                audited.push(AuditedKey {
                    user_name: name.to_owned(),
                    user_path: user.path().to_owned(),
                    access_key_id: key.id.clone(),
                    status: match key.status {
                        KeyStatus::Active => "Active",
                        KeyStatus::Inactive => "Inactive",
                    },
                    created: timestamp(key.created),
                    age_days: now
                        .duration_since(key.created)
                        .unwrap_or(Duration::ZERO)
                        .as_secs()
                        / 86_400,
                    last_used,
                    last_used_service,
                    managed_by: managed_by.clone(),
                    findings,
                });
            }
            progress.show(users, audited.len());
        }
    }
    progress.done();
    print(&audited, format);
    let findings = audited.iter().any(|k| !k.findings.is_empty());
    Ok(if findings { EXIT_FINDINGS } else { EXIT_OK })
}

const COLUMNS: [&str; 9] = [
    "USER",
    "PATH",
    "KEY",
    "STATUS",
    "AGE",
    "LAST USED",
    "SERVICE",
    "MANAGED BY",
    "FINDINGS",
];

fn cells(k: &AuditedKey) -> Vec<String> {
    let findings: Vec<&str> = k
        .findings
        .iter()
        .map(|f| match f {
            Finding::TooOld => "too-old",
            Finding::Unused => "unused",
        })
        .collect();
    vec![
        k.user_name.clone(),
        k.user_path.clone(),
        k.access_key_id.clone(),
        k.status.to_owned(),
        format!("{}d", k.age_days),
        k.last_used.clone(),
        k.last_used_service.clone().unwrap_or_default(),
        k.managed_by.clone().unwrap_or_default(),
        findings.join(" "),
    ]
}

fn print(audited: &[AuditedKey], format: Format) {
    match format {
        Format::Json => output::json(&audited),
        Format::Table => {
            let rows: Vec<Vec<String>> = audited.iter().map(cells).collect();
            println!("{}", output::table(&COLUMNS, &rows));
        }
        Format::Csv => {
            let rows: Vec<Vec<String>> = audited.iter().map(cells).collect();
            print!("{}", output::csv(&COLUMNS, &rows));
        }
    }
}
