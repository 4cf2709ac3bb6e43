//! `rekey`: the command for the people who run rekey. It reads arguments,
//! reaches AWS and prints; every decision is the `rekey` crate's, made by
//! the very steps the functions run (in a dry run for `status` and `plan`,
//! so they change nothing).
//!
//! Exit codes (stable, README "The rekey command"): 0 done, 1 an error,
//! 2 a usage error (or a change refused: without `--yes` off a terminal,
//! or on a dry-run deployment without `--live`), 3 findings (a secret
//! overdue or stuck, a near miss of `rekey:managed`).

mod audit;
mod change;
mod deployment;
mod enroll;
mod output;
mod show;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use output::Format;

/// Done.
pub const EXIT_OK: u8 = 0;
/// An error: the message says what to fix.
pub const EXIT_ERROR: u8 = 1;
/// A usage error, or a change refused.
pub const EXIT_USAGE: u8 = 2;
/// Findings: a secret is overdue or stuck.
pub const EXIT_FINDINGS: u8 = 3;

/// rekey: see what rekey does and will do to your keys, and steer it.
#[derive(Parser, Debug)]
#[command(name = "rekey", version)]
struct Cli {
    /// Read the deployment's settings from this CloudFormation stack (its
    /// parameters and outputs); without it, from the same REKEY_*
    /// environment the functions use.
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
    /// The AWS profile (default: the standard credential chain;
    /// AWS_ENDPOINT_URL is honoured).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
    /// table (the default on a terminal) or json (the default otherwise);
    /// csv for audit.
    #[arg(long, global = true, value_enum)]
    output: Option<Format>,
    /// Make the IAM calls (audit, enroll) as this role, assumed with your
    /// credentials: an operator's role in a member account.
    #[arg(long, global = true, value_name = "ARN")]
    role_arn: Option<String>,
    /// The external id the role's trust policy requires, if any.
    #[arg(long, global = true, value_name = "ID", requires = "role_arn")]
    external_id: Option<String>,
    /// Show what would change and change nothing (status and plan never
    /// change anything).
    #[arg(long, global = true)]
    dry_run: bool,
    /// Make the change on a deployment that is a dry run (DryRun=true, or
    /// REKEY_DRY_RUN=true): there, enroll, rotate, rollback, pause and
    /// resume refuse without it.
    #[arg(long, global = true, conflicts_with = "dry_run")]
    live: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every managed secret (or those named): its user and driver, the
    /// AWSCURRENT key and its age, the other keys with their retirement
    /// and last use, a rotation in progress, overdue, and the next thing
    /// rekey will do to it and when. Exits 3 when one is overdue or stuck.
    Status(Select),
    /// What the next rotation and the next cleanup of each managed secret
    /// (or those named) would do right now, decided by the functions'
    /// own steps in a dry run: no change is made.
    Plan(Select),
    /// Every IAM user of the account, enrolled or not: each key's status,
    /// age, last use and service, whether rekey manages it, and its
    /// findings (an active key older than --max-age, or unused for
    /// --max-unused). Exits 3 when a key has a finding.
    Audit(Audit),
    /// Enrol a user: create its owning secret (tagged rekey:managed), tag
    /// an IAM user rekey:owner with the secret's ARN, and choose its
    /// driver. Refuses a user that has an owner already, or a secret of
    /// the owning name that rekey does not manage; a second run finishes
    /// what the first left undone.
    Enroll(enroll::Enroll),
    /// Rotate a secret now, through its driver: RotateSecret for the hook,
    /// the state machine with this one secret for the pipeline.
    Rotate(Change),
    /// Roll a secret back to its previous key (AWSPREVIOUS): reactivate it
    /// if it was deactivated, make it AWSCURRENT, record the key rolled
    /// back from as superseded, and pause the secret. Refused during a
    /// rotation, or when a key would be left active that no version holds.
    Rollback(Change),
    /// Pause a secret (tag rekey:paused=true): nothing rotates or cleans
    /// it until it is resumed.
    Pause(Change),
    /// Resume a paused secret (remove its rekey:paused tag).
    Resume(Change),
}

impl Command {
    /// The change the command makes, in words; `None` for those that only
    /// read.
    fn change(&self) -> Option<String> {
        match self {
            Command::Status(_) | Command::Plan(_) | Command::Audit(_) => None,
            Command::Enroll(e) => Some(format!("enrol {}", e.user)),
            Command::Rotate(c) => Some(format!("rotate {}", c.secret)),
            Command::Rollback(c) => Some(format!("roll {} back", c.secret)),
            Command::Pause(c) => Some(format!("pause {}", c.secret)),
            Command::Resume(c) => Some(format!("resume {}", c.secret)),
        }
    }
}

#[derive(Args, Debug)]
struct Select {
    /// Secret names or ARNs (default: every managed secret).
    secrets: Vec<String>,
    /// The rotation period (default: the stack's RotationPeriod, else 30d).
    #[arg(long, value_name = "DURATION")]
    period: Option<String>,
}

#[derive(Args, Debug)]
struct Audit {
    /// An active key older than this is a finding (CIS: 90 days).
    #[arg(long, value_name = "DURATION", default_value = "90d")]
    max_age: String,
    /// An active key unused for this long (or never used, and made this
    /// long ago) is a finding (CIS: 45 days).
    #[arg(long, value_name = "DURATION", default_value = "45d")]
    max_unused: String,
    /// Audit this member account (repeatable) through its read-only
    /// operator role (infra/member.yaml, OperatorRole=true) instead of
    /// the account of your credentials.
    #[arg(long = "account", value_name = "ID")]
    accounts: Vec<String>,
}

#[derive(Args, Debug)]
struct Change {
    /// The secret's name or ARN.
    secret: String,
    /// Do it without asking.
    #[arg(long)]
    yes: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rekey: {e}");
            ExitCode::from(match e {
                Failure::Usage(_) => EXIT_USAGE,
                Failure::Error(_) => EXIT_ERROR,
            })
        }
    }
}

/// Why a command stopped.
#[derive(Debug)]
pub enum Failure {
    /// The command was used wrongly (exit 2).
    Usage(String),
    /// Something failed (exit 1): the message says what to fix.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Error(m) => f.write_str(m),
        }
    }
}

impl From<rekey::Error> for Failure {
    fn from(e: rekey::Error) -> Self {
        Failure::Error(format!("{e} ({})", e.kind()))
    }
}

/// Runs one command: the one place that maps each to its code.
async fn run(cli: Cli) -> Result<u8, Failure> {
    let format = Format::chosen(cli.output);
    if format == Format::Csv && !matches!(cli.command, Command::Audit(_)) {
        return Err(Failure::Usage("--output csv is for rekey audit".into()));
    }
    let mut loader = rekey::sdk::loader();
    if let Some(profile) = &cli.profile {
        loader = loader.profile_name(profile);
    }
    let sdk = loader.load().await;
    let deployment = deployment::load(&sdk, cli.stack.as_deref()).await?;
    // A dry-run deployment is changed only with --live, before any call.
    if let Some(change) = cli.command.change() {
        rekey::dry_run::command_may_change(&change, deployment.dry_run, cli.live, cli.dry_run)
            .map_err(Failure::Usage)?;
    }
    let iam = match &cli.role_arn {
        None => sdk.clone(),
        Some(role) => assumed_role(&sdk, role, cli.external_id.as_deref()).await?,
    };
    match cli.command {
        Command::Status(s) => {
            let d = deployment.with_period(s.period.as_deref())?;
            show::status(&sdk, &d, &s.secrets, format).await
        }
        Command::Plan(s) => {
            let d = deployment.with_period(s.period.as_deref())?;
            show::plan(&sdk, &d, &s.secrets, format).await
        }
        Command::Audit(a) => {
            let duration = |name, text: &str| {
                rekey::config::parse_duration(name, text).map_err(|e| Failure::Usage(e.to_string()))
            };
            let rules = rekey::audit::AuditRules {
                max_age: duration("--max-age", &a.max_age)?,
                max_unused: duration("--max-unused", &a.max_unused)?,
            };
            if cli.role_arn.is_some() && !a.accounts.is_empty() {
                return Err(Failure::Usage(
                    "give --role-arn (one account) or --account (each through its operator role), not both".into(),
                ));
            }
            let mut targets = Vec::new();
            let own = caller_account(&sdk).await?;
            for account in &a.accounts {
                let role = audit::operator_role(&deployment, account);
                let member = (Some(account) != own.as_ref()).then(|| account.clone());
                let iam = assumed_role(&sdk, &role, None).await?;
                targets.push(audit::Target {
                    account: member,
                    iam,
                });
            }
            if targets.is_empty() {
                let account = cli.role_arn.as_deref().and_then(|r| r.split(':').nth(4));
                targets.push(audit::Target {
                    account: account
                        .filter(|a| Some(*a) != own.as_deref())
                        .map(str::to_owned),
                    iam,
                });
            }
            audit::audit(&sdk, &targets, &deployment, rules, format).await
        }
        Command::Enroll(e) => {
            let d = deployment.with_period(None)?;
            enroll::enroll(&sdk, &iam, &d, &e, cli.dry_run, format).await
        }
        Command::Rotate(c) => {
            change::rotate(&sdk, &deployment, &c.secret, c.yes, cli.dry_run, format).await
        }
        Command::Rollback(c) => {
            change::roll_back(&sdk, &deployment, &c.secret, c.yes, cli.dry_run, format).await
        }
        Command::Pause(c) => change::pause(&sdk, &c.secret, true, c.yes, cli.dry_run, format).await,
        Command::Resume(c) => {
            change::pause(&sdk, &c.secret, false, c.yes, cli.dry_run, format).await
        }
    }
}

/// `sdk` acting as `role` (`--role-arn`).
async fn assumed_role(
    sdk: &aws_config::SdkConfig,
    role: &str,
    external_id: Option<&str>,
) -> Result<aws_config::SdkConfig, Failure> {
    let account = role.split(':').nth(4).unwrap_or_default();
    match rekey::providers::assumed(sdk, account, role, external_id).await {
        Ok((config, _)) => Ok(config),
        Err(rekey::Error::MemberAccountUnreachable { reason, .. }) => Err(Failure::Error(format!(
            "{role} could not be assumed with your credentials: {reason}. Check the role's trust policy (and --external-id)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The account of the command's own credentials (STS GetCallerIdentity).
async fn caller_account(sdk: &aws_config::SdkConfig) -> Result<Option<String>, Failure> {
    let me = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| rekey::sdk::service_error("STS", "GetCallerIdentity", e))?;
    Ok(me.account().map(str::to_owned))
}
