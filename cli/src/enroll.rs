//! `rekey enroll`: the whole enrolment of the ownership model in one step
//! (README "Enrolling a secret"): the owning secret, created under its
//! derived name and tagged `rekey:managed`; on AWS the IAM user's
//! `rekey:owner` tag naming it; the driver (the hook: Secrets Manager
//! rotation turned on, which rotates at once; the pipeline: nothing, or a
//! rotation started now with `--rotate-now`). What is already there is
//! checked first and kept (a second run finishes what a crash cut short);
//! what would break invariant one-owner is refused with nothing changed
//! (`rekey::ownership::enrolling` decides).

use aws_sdk_secretsmanager::types::{RotationRulesType, Tag};
use rekey::model::{ManagedSecret, Provider, SecretFormatError, Signing};
use rekey::ownership::{self, EnrolFacts, Enrolling, OWNER_TAG};
use rekey::ports::{SecretInfo, Vault};
use rekey::records::{self, TAG_MANAGED};
use rekey::sdk::service_error;
use rekey::vault::SecretsManager;
use serde::Serialize;

use crate::change::{go_ahead, start_pipeline};
use crate::deployment::Deployment;
use crate::output::{self, Format};
use crate::{Failure, EXIT_OK};

/// What to enrol.
#[derive(clap::Args, Debug)]
pub struct Enroll {
    /// The provider's user name.
    pub user: String,
    /// aws, alibaba or scloud.
    #[arg(long, default_value = "aws")]
    pub provider: String,
    /// The member account of an IAM user outside this account (one of the
    /// deployment's member accounts; give --role-arn of a role there that
    /// may read and tag the user).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Alibaba and SCloud: the secret (under the admin prefix) that holds
    /// the admin key pair rekey signs with.
    #[arg(long, value_name = "SECRET")]
    pub admin_secret: Option<String>,
    /// SCloud: the project the user's calls name.
    #[arg(long, value_name = "ID")]
    pub project: Option<String>,
    /// Rotate it with the hook: turn Secrets Manager rotation on (Secrets
    /// Manager then rotates it at once, and on the schedule of the
    /// rotation period).
    #[arg(long, conflicts_with = "pipeline")]
    pub hook: bool,
    /// Rotate it with the scheduled pipeline (the default for a new
    /// secret): it rotates once its AWSCURRENT is a rotation period old.
    #[arg(long)]
    pub pipeline: bool,
    /// Pipeline: start its first rotation now (the secret holds no key
    /// until then).
    #[arg(long)]
    pub rotate_now: bool,
    /// Do it without asking.
    #[arg(long)]
    pub yes: bool,
}

/// What `rekey enroll` did.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Enrolled {
    user_name: String,
    provider: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    /// The owning secret's name, and its ARN once it exists.
    secret_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_id: Option<String>,
    driver: &'static str,
    /// Each change, in words (none: enrolled already).
    changes: Vec<String>,
    /// Whether they were made (not in a dry run, or when not confirmed).
    changed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    /// What the operator should know (a user at its key limit).
    warnings: Vec<String>,
    /// The pipeline execution started with --rotate-now.
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<String>,
}

/// The IAM facts of the user: its `rekey:owner` tag, and how many active
/// keys it has of how many.
struct IamUser {
    owner_tag: Option<String>,
    keys: usize,
    active: usize,
}

/// `rekey enroll`; `iam` is the configuration for IAM calls (`--role-arn`).
pub async fn enroll(
    sdk: &aws_config::SdkConfig,
    iam: &aws_config::SdkConfig,
    d: &Deployment,
    a: &Enroll,
    dry_run: bool,
    format: Format,
) -> Result<u8, Failure> {
    let user = a.user.as_str();
    let value = secret_value(a)?;
    let parsed = ManagedSecret::parse(&value.to_string()).map_err(|e| {
        Failure::Usage(match e {
            SecretFormatError::Invalid(why) => format!("rekey cannot enrol {user}: {why}"),
            SecretFormatError::UnknownProvider(p) => format!("unknown provider {p}"),
        })
    })?;
    if let Some(reason) = ownership::account_not_allowed(&d.config.member, &parsed) {
        return Err(Failure::Usage(reason));
    }
    let provider = parsed.provider;
    if let Some(admin) = &parsed.admin_secret_id {
        if let Some(reason) = ownership::bad_admin_secret(&d.config.admin_secret_prefix, admin) {
            return Err(Failure::Usage(reason));
        }
    }
    if provider.signing() == Signing::KeyPair && parsed.admin_secret_id.is_none() {
        return Err(Failure::Usage(format!(
            "a {} user is enrolled with --admin-secret: the secret (under {}) whose key pair rekey signs with",
            provider.name(),
            d.config.admin_secret_prefix
        )));
    }
    let vault = SecretsManager::new(sdk);
    let name = ownership::owning_name(
        &d.config.secret_prefix,
        provider,
        parsed.account_id.as_deref(),
        user,
    );
    let owning = existing(&vault, &name).await?;
    let mut warnings = Vec::new();
    let iam_user = match provider {
        Provider::Aws => Some(iam_user(iam, d, user).await?),
        _ => None,
    };
    let owner_tag = match iam_user.as_ref().and_then(|u| u.owner_tag.clone()) {
        Some(tag) => {
            let exists = existing(&vault, &tag).await?.is_some();
            Some((tag, exists))
        }
        None => None,
    };
    if let Some(u) = &iam_user {
        if u.active >= 2 {
            warnings.push(format!(
                "{user} has {} keys, both active: the first rotation fails with KeyLimitReached until one is deactivated (or retired by rekey, once recorded)",
                u.keys
            ));
        }
    }
    let steps = ownership::enrolling(EnrolFacts {
        owning_name: &name,
        secret: owning
            .as_ref()
            .map(|i| (i.arn.as_str(), records::is_managed(i))),
        owner_tag: owner_tag.as_ref().map(|(t, e)| (t.as_str(), *e)),
        iam_user: iam_user.is_some(),
    })
    .map_err(|why| Failure::Error(format!("rekey will not enrol {user}: {why}")))?;
    let hook_on = owning.as_ref().is_some_and(|i| i.rotation_enabled);
    if a.pipeline && hook_on {
        return Err(Failure::Error(format!(
            "{name} is rotated by the hook (Secrets Manager rotation is on); rekey enroll does not turn it off: `aws secretsmanager cancel-rotation --secret-id {name}`, then enrol again"
        )));
    }
    let turn_on_hook = a.hook && !hook_on;
    let hook = match (turn_on_hook, &d.hook_function) {
        (false, _) => None,
        (true, Some(arn)) => Some(arn.clone()),
        (true, None) => {
            return Err(Failure::Usage(format!(
                "--hook turns rotation on with the hook: name the stack (--stack) or set {} to the hook's ARN",
                crate::deployment::HOOK_VARIABLE
            )))
        }
    };
    let machine = match (a.rotate_now && !a.hook && !hook_on, &d.state_machine) {
        (false, _) => None,
        (true, Some(arn)) => Some(arn.clone()),
        (true, None) => {
            return Err(Failure::Usage(format!(
                "--rotate-now starts the pipeline: name the stack (--stack) or set {} to the state machine's ARN",
                crate::deployment::STATE_MACHINE_VARIABLE
            )))
        }
    };
    let days = (d.period.as_secs() / 86_400).clamp(1, 1000) as i64;
    let mut changes = Vec::new();
    let (create, tag) = match steps {
        Enrolling::Done => (false, false),
        Enrolling::Steps { create, tag } => (create, tag),
    };
    if create {
        changes.push(format!(
            "create secret {name} holding {value}, tagged {TAG_MANAGED}=true"
        ));
    }
    if tag {
        let stale = match &owner_tag {
            Some((t, false)) => format!(
                " (replacing its stale tag, which names {t}, a secret that no longer exists)"
            ),
            _ => String::new(),
        };
        changes.push(format!(
            "tag IAM user {user} {OWNER_TAG}=<the ARN of {name}>{stale}"
        ));
    }
    if let Some(arn) = &hook {
        changes.push(format!(
            "turn Secrets Manager rotation on with the hook {arn}, every {days} days (Secrets Manager rotates it at once)"
        ));
    }
    if let Some(arn) = &machine {
        changes.push(format!(
            "start the pipeline {arn} for it alone (its first rotation)"
        ));
    }
    let driver = if a.hook || hook_on {
        "hook"
    } else {
        "pipeline"
    };
    let mut out = Enrolled {
        user_name: user.to_owned(),
        provider: provider.name(),
        account_id: parsed.account_id.clone(),
        secret_name: name.clone(),
        secret_id: owning.as_ref().map(|i| i.arn.clone()),
        driver,
        changes: changes.clone(),
        changed: false,
        dry_run,
        warnings,
        execution: None,
    };
    if changes.is_empty() {
        return Ok(out.print(format));
    }
    if !go_ahead(
        &format!("enrol {user}: {}", changes.join("; ")),
        a.yes,
        dry_run,
    )? {
        return Ok(out.print(format));
    }
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let arn = match owning {
        Some(info) => info.arn,
        None => {
            let made = sm
                .create_secret()
                .name(&name)
                .secret_string(value.to_string())
                .tags(Tag::builder().key(TAG_MANAGED).value("true").build())
                .send()
                .await
                .map_err(|e| service_error("Secrets Manager", "CreateSecret", e))?;
            made.arn().unwrap_or_default().to_owned()
        }
    };
    out.secret_id = Some(arn.clone());
    if tag {
        aws_sdk_iam::Client::new(iam)
            .tag_user()
            .user_name(user)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(OWNER_TAG)
                    .value(&arn)
                    .build()
                    .map_err(|e| Failure::Error(format!("the tag could not be built: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| service_error("IAM", "TagUser", e))?;
    }
    if let Some(hook) = &hook {
        sm.rotate_secret()
            .secret_id(&arn)
            .rotation_lambda_arn(hook)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(days)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| service_error("Secrets Manager", "RotateSecret", e))?;
    }
    if let Some(machine) = &machine {
        out.execution = Some(start_pipeline(sdk, machine, &arn).await?);
    }
    out.changed = true;
    Ok(out.print(format))
}

/// The owning secret's first value: the user, and what the secret names
/// besides (provider, account, admin secret, project); no key (the first
/// rotation creates one).
fn secret_value(a: &Enroll) -> Result<serde_json::Value, Failure> {
    let provider = Provider::parse(&a.provider).ok_or_else(|| {
        Failure::Usage(format!(
            "unknown provider {:?}: one of {}",
            a.provider,
            Provider::names()
        ))
    })?;
    let mut value = serde_json::json!({ "UserName": a.user });
    if provider != Provider::Aws {
        value["Provider"] = provider.name().into();
    }
    for (field, given) in [
        ("AccountId", &a.account),
        ("AdminSecretId", &a.admin_secret),
        ("ProjectId", &a.project),
    ] {
        if let Some(v) = given {
            value[field] = v.as_str().into();
        }
    }
    Ok(value)
}

/// The secret `id` (a name or an ARN), if it exists.
async fn existing(vault: &SecretsManager, id: &str) -> Result<Option<SecretInfo>, Failure> {
    match vault.describe(id).await {
        Ok(info) => Ok(Some(info)),
        Err(rekey::Error::SecretNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The IAM user's path, owner tag and keys; refused unless it exists under
/// the managed path.
async fn iam_user(
    iam: &aws_config::SdkConfig,
    d: &Deployment,
    user: &str,
) -> Result<IamUser, Failure> {
    let client = aws_sdk_iam::Client::new(iam);
    let got = client
        .get_user()
        .user_name(user)
        .send()
        .await
        .map_err(|e| match rekey::sdk::code(&e) {
            Some("NoSuchEntity") => Failure::Error(format!(
                "no IAM user {user} (in the account of your credentials, or of --role-arn): check the name"
            )),
            _ => service_error("IAM", "GetUser", e).into(),
        })?;
    let found = got.user();
    let path = found.map(|u| u.path()).unwrap_or("/");
    let managed = d.config.managed_user_path.as_deref().ok_or_else(|| {
        Failure::Usage(
            "REKEY_MANAGED_USER_PATH is not set: name the stack (--stack) or set it".into(),
        )
    })?;
    if !path.starts_with(managed) {
        return Err(Failure::Error(format!(
            "IAM user {user} is at path {path}, outside the managed path {managed}: rekey may not touch it. Move it: `aws iam update-user --user-name {user} --new-path {managed}`"
        )));
    }
    let owner_tag = found
        .and_then(|u| u.tags().iter().find(|t| t.key() == OWNER_TAG))
        .map(|t| t.value().to_owned());
    let keys = client
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .map_err(|e| service_error("IAM", "ListAccessKeys", e))?;
    let metadata = keys.access_key_metadata();
    Ok(IamUser {
        owner_tag,
        keys: metadata.len(),
        active: metadata
            .iter()
            .filter(|k| k.status().map(|s| s.as_str()) == Some("Active"))
            .count(),
    })
}

impl Enrolled {
    fn print(&self, format: Format) -> u8 {
        match format {
            Format::Json | Format::Csv => output::json(self),
            Format::Table => {
                let state = match (self.changes.is_empty(), self.changed, self.dry_run) {
                    (true, _, _) => "enrolled already: nothing to do",
                    (false, true, _) => "enrolled",
                    (false, false, true) => "dry run: nothing was changed",
                    (false, false, false) => "not enrolled: not confirmed",
                };
                println!(
                    "{} ({} user {}, {}): {state}",
                    self.secret_name, self.provider, self.user_name, self.driver
                );
                for change in &self.changes {
                    println!("  - {change}");
                }
                if let Some(execution) = &self.execution {
                    println!("  first rotation: execution {execution}");
                }
                for warning in &self.warnings {
                    println!("  warning: {warning}");
                }
            }
        }
        EXIT_OK
    }
}
