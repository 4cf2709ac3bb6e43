//! `rekey audit`: every IAM user of the account (or of each member account
//! named, through its read-only operator role), enrolled or not, each key
//! with its status, age and last use, whether rekey manages it, and the
//! verdict of `rekey::audit` (CIS AWS Foundations' rules by default).
//! Paginated; throttling is retried with backoff by the SDK (more attempts
//! than the functions make, for accounts with thousands of users); a
//! progress line on a terminal (stderr), none otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use rekey::audit::{holding, verdict, AuditRules, Finding};
use rekey::model::{KeyStatus, LastUsed, Provider};
use rekey::plan::timestamp;
use rekey::ports::{KeyApi, Vault};
use rekey::providers::{AwsClients, AwsIam};
use rekey::records::{self, Enrolment};
use rekey::vault::SecretsManager;
use serde::Serialize;

use crate::deployment::Deployment;
use crate::output::{self, Format};
use crate::{Failure, EXIT_FINDINGS, EXIT_OK};

/// One access key, audited.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct AuditedKey {
    /// The member account, when the user is not in the caller's account.
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
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

/// The secrets tagged `rekey:managed` (ListSecrets) by name, each with
/// its enrolment, to tell which users rekey manages (`rekey::audit::holding`:
/// a user is managed when its owning secret is).
async fn managed_secret_names(
    sdk: &aws_config::SdkConfig,
) -> Result<BTreeMap<String, Enrolment>, Failure> {
    let vault = SecretsManager::new(sdk);
    let mut names = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let page = vault.list_page(next.as_deref()).await?;
        names.extend(page.secrets.into_iter().map(|s| {
            let enrolment = records::enrolment(&s);
            (s.name, enrolment)
        }));
        next = page.next_token;
        if next.is_none() {
            return Ok(names);
        }
    }
}

/// An account to audit: a member account (`None`: the caller's own) and
/// the configuration its IAM calls are made with.
pub struct Target {
    /// The member account, or `None` for the account of the credentials.
    pub account: Option<String>,
    /// The configuration for its IAM calls.
    pub iam: aws_config::SdkConfig,
}

/// `rekey audit` of each target account.
pub async fn audit(
    sdk: &aws_config::SdkConfig,
    targets: &[Target],
    d: &Deployment,
    rules: AuditRules,
    format: Format,
) -> Result<u8, Failure> {
    // More patience with throttling than a function has: a scan of
    // thousands of users is throttled, and nothing waits on it.
    let patient = |c: &aws_config::SdkConfig| {
        c.to_builder()
            .retry_config(rekey::sdk::retry_config().with_max_attempts(10))
            .build()
    };
    let managed = managed_secret_names(&patient(sdk)).await?;
    let progress = Progress(std::io::stderr().is_terminal());
    let now = SystemTime::now();
    let mut audited = Vec::new();
    let mut users = 0;
    for target in targets {
        let iam_config = patient(&target.iam);
        let clients = AwsClients::new(&iam_config);
        let keys_of = AwsIam::new(&clients, "/");
        let iam = aws_sdk_iam::Client::new(&iam_config);
        let account = target.account.as_deref();
        let mut pages = iam.list_users().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| rekey::sdk::service_error("IAM", "ListUsers", e))?;
            for user in page.users() {
                users += 1;
                let name = user.user_name();
                let owning = rekey::ownership::owning_name(
                    &d.config.secret_prefix,
                    Provider::Aws,
                    account,
                    name,
                );
                let (held, near_miss) = holding(managed.get(&owning).copied());
                let managed_by = held.then_some(owning);
                for key in keys_of.list_keys(name).await? {
                    let used = keys_of.last_used(name, &key.id).await?;
                    let mut findings = verdict(&key, &used, now, &rules);
                    findings.extend(near_miss);
                    let (last_used, last_used_service) = match used {
                        LastUsed::Unknown => ("unknown".to_owned(), None),
                        LastUsed::Never => ("never".to_owned(), None),
                        LastUsed::At { when, service } => (timestamp(when), service),
                    };
                    audited.push(AuditedKey {
                        account_id: target.account.clone(),
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
    }
    progress.done();
    print(&audited, format);
    let findings = audited.iter().any(|k| !k.findings.is_empty());
    Ok(if findings { EXIT_FINDINGS } else { EXIT_OK })
}

const COLUMNS: [&str; 10] = [
    "ACCOUNT",
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
            Finding::ManagedTagNearMiss => "managed-tag-near-miss",
        })
        .collect();
    vec![
        k.account_id.clone().unwrap_or_default(),
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
    // The account column only when a member account was audited.
    let skip = usize::from(audited.iter().all(|k| k.account_id.is_none()));
    let rows: Vec<Vec<String>> = audited.iter().map(|k| cells(k)[skip..].to_vec()).collect();
    match format {
        Format::Json => output::json(&audited),
        Format::Table => println!("{}", output::table(&COLUMNS[skip..], &rows)),
        Format::Csv => print!("{}", output::csv(&COLUMNS[skip..], &rows)),
    }
}

/// The read-only operator role `infra/member.yaml` creates in `account`
/// (`OperatorRole=true`), on the member role's path.
pub fn operator_role(d: &Deployment, account: &str) -> String {
    let path = match d.config.member.role.rsplit_once('/') {
        Some((path, _)) => format!("{path}/"),
        None => "/".to_owned(),
    };
    format!("arn:aws:iam::{account}:role{path}rekey-operator-readonly")
}
