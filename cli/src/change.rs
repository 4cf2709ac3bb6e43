//! `rekey pause`, `rekey resume`, `rekey rotate` and `rekey rollback`: the changes the
//! command makes, each printed first and asked for (`--yes` skips the
//! question; off a terminal without `--yes` the command refuses), or only
//! printed with `--dry-run`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;

use rekey::events::{self, EventSink};
use rekey::ports::{SecretInfo, Vault};
use rekey::records::{self, Enrolment};
use rekey::steps::{RollBack, RollBackOutcome};
use rekey::vault::SecretsManager;
use serde::Serialize;

use crate::deployment::Deployment;
use crate::output::{self, Format};
use crate::{Failure, EXIT_OK};

/// What a change command did.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Outcome {
    secret_id: String,
    /// The change, in words.
    change: String,
    /// Whether it was made (not when it was already so, or a dry run).
    changed: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
    /// A rollback's keys and versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    roll_back: Option<RollBack>,
}

/// Asks before `change`; `Ok(false)` when the answer is no.
fn confirm(change: &str, yes: bool) -> Result<bool, Failure> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(format!(
            "refusing to {change} without --yes: not on a terminal, so nobody can be asked"
        )));
    }
    eprint!("rekey will {change}. Go ahead? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Error(format!("could not read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `secret`, described, and how it is enrolled; refused unless rekey
/// manages it.
async fn managed(vault: &SecretsManager, secret: &str) -> Result<(SecretInfo, Enrolment), Failure> {
    let info = vault.describe(secret).await?;
    match records::enrolment(&info) {
        e @ (Enrolment::NotManaged | Enrolment::NearMiss) => {
            Err(records::not_managed(secret, e).into())
        }
        enrolment @ (Enrolment::Managed | Enrolment::Paused) => Ok((info, enrolment)),
    }
}

/// Whether to make `change` now: in a dry run it is only printed; else
/// once confirmed.
pub(crate) fn go_ahead(change: &str, yes: bool, dry_run: bool) -> Result<bool, Failure> {
    if dry_run {
        eprintln!("dry run: rekey would {change}; nothing was changed");
        return Ok(false);
    }
    confirm(change, yes)
}

impl Outcome {
    fn new(info: &SecretInfo, change: &str, dry_run: bool) -> Self {
        Outcome {
            secret_id: info.arn.clone(),
            change: change.to_owned(),
            changed: false,
            dry_run,
            roll_back: None,
        }
    }

    /// Not made: not confirmed (a dry run says so itself).
    fn declined(&mut self) {
        if !self.dry_run {
            self.change = format!("nothing: not confirmed ({})", self.change);
        }
    }

    fn print(&self, format: Format) -> u8 {
        match format {
            Format::Json | Format::Csv => output::json(self),
            Format::Table if self.dry_run => println!("dry run, not made: {}", self.change),
            Format::Table => println!("{}", self.change),
        }
        EXIT_OK
    }
}

/// Pauses (`pause`) or resumes a managed secret through its tag.
pub async fn pause(
    sdk: &aws_config::SdkConfig,
    secret: &str,
    pause: bool,
    yes: bool,
    dry_run: bool,
    format: Format,
) -> Result<u8, Failure> {
    let vault = SecretsManager::new(sdk);
    let (info, now) = managed(&vault, secret).await?;
    let (paused, since) = (records::TAG_PAUSED, records::TAG_PAUSED_SINCE);
    let change = match pause {
        true => format!("pause {} (tag {paused}=true, and {since})", info.name),
        false => format!(
            "resume {} (remove its tags {paused} and {since})",
            info.name
        ),
    };
    let mut outcome = Outcome::new(&info, &change, dry_run);
    if (now == Enrolment::Paused) == pause {
        let state = if pause { "paused" } else { "not paused" };
        outcome.change = format!("nothing: {} is {state} already", info.name);
    } else if go_ahead(&change, yes, dry_run)? {
        if pause {
            // Since when: the sweep counts the pause and, past
            // REKEY_PAUSED_ALERT_AFTER, alarms on it.
            let now = rekey::plan::timestamp(SystemTime::now());
            let tags = [
                (paused.to_owned(), "true".to_owned()),
                (since.to_owned(), now),
            ];
            vault.tag(&info.arn, &tags).await?;
        } else {
            vault
                .untag(&info.arn, &[paused.to_owned(), since.to_owned()])
                .await?;
        }
        outcome.changed = true;
    } else {
        outcome.declined();
    }
    Ok(outcome.print(format))
}

/// Starts a rotation of `secret` now, through its driver: Secrets
/// Manager's RotateSecret for the hook; for the pipeline, the state
/// machine with this one secret and a rotation period of 0s (README
/// "Deploying": the machine's explicit input).
pub async fn rotate(
    sdk: &aws_config::SdkConfig,
    d: &Deployment,
    secret: &str,
    yes: bool,
    dry_run: bool,
    format: Format,
) -> Result<u8, Failure> {
    let (info, enrolment) = managed(&SecretsManager::new(sdk), secret).await?;
    if enrolment == Enrolment::Paused {
        return Err(rekey::Error::SecretPaused {
            secret_id: secret.to_owned(),
        }
        .into());
    }
    let machine = match (info.rotation_enabled, &d.state_machine) {
        (true, _) => None,
        (false, Some(arn)) => Some(arn.clone()),
        (false, None) => {
            return Err(Failure::Usage(format!(
                "{} is rotated by the pipeline: name its stack (--stack) or set {} to the state machine's ARN",
                info.name,
                crate::deployment::STATE_MACHINE_VARIABLE
            )))
        }
    };
    let change = match &machine {
        None => format!(
            "rotate {} now (Secrets Manager RotateSecret: the hook runs)",
            info.name
        ),
        Some(arn) => format!(
            "rotate {} now (start the pipeline {arn} for it alone)",
            info.name
        ),
    };
    let mut outcome = Outcome::new(&info, &change, dry_run);
    if !go_ahead(&change, yes, dry_run)? {
        outcome.declined();
        return Ok(outcome.print(format));
    }
    match machine {
        None => {
            aws_sdk_secretsmanager::Client::new(sdk)
                .rotate_secret()
                .secret_id(&info.arn)
                .send()
                .await
                .map_err(|e| rekey::sdk::service_error("Secrets Manager", "RotateSecret", e))?;
        }
        Some(arn) => {
            let execution = start_pipeline(sdk, &arn, &info.arn).await?;
            outcome.change = format!("{change}: execution {execution}");
        }
    }
    outcome.changed = true;
    Ok(outcome.print(format))
}

/// Starts the pipeline `machine` for `secret` alone, due now (README
/// "Deploying": the machine's explicit input); its execution's ARN.
pub async fn start_pipeline(
    sdk: &aws_config::SdkConfig,
    machine: &str,
    secret: &str,
) -> Result<String, Failure> {
    let input = serde_json::json!({"SecretIds": [secret], "RotationPeriod": "0s"});
    let out = aws_sdk_sfn::Client::new(sdk)
        .start_execution()
        .state_machine_arn(machine)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| rekey::sdk::service_error("Step Functions", "StartExecution", e))?;
    Ok(out.execution_arn().to_owned())
}

/// Rolls `secret` back to its AWSPREVIOUS key (README "Rolling a promotion
/// back"), by the step `Rekey::roll_back`: decided dry and shown first,
/// then made once confirmed (refused if the secret changed meanwhile). The
/// secret is left paused.
pub async fn roll_back(
    sdk: &aws_config::SdkConfig,
    d: &Deployment,
    secret: &str,
    yes: bool,
    dry_run: bool,
    format: Format,
) -> Result<u8, Failure> {
    let refused = |why: String| Failure::Error(format!("rekey will not roll {secret} back: {why}"));
    let plan = match d.steps(sdk, false).roll_back(secret, None).await? {
        RollBackOutcome::Ready(plan) => plan,
        RollBackOutcome::Refused(why) => return Err(refused(why)),
    };
    let name = crate::show::short_name(&plan.secret_id).to_owned();
    let mut change = format!(
        "roll {name} back: AWSCURRENT from key {} to key {} (version {})",
        plan.from_key, plan.to_key, plan.to_version
    );
    if plan.reactivate {
        change += &format!(", reactivating key {}", plan.to_key);
    }
    change += &format!(
        "; key {} is recorded superseded (cleanup retires it after its grace period)",
        plan.from_key
    );
    if plan.pause {
        change += &format!(", and {name} is paused");
    }
    let mut outcome = Outcome {
        secret_id: plan.secret_id.clone(),
        change: change.clone(),
        changed: false,
        dry_run,
        roll_back: Some(plan.clone()),
    };
    if !go_ahead(&change, yes, dry_run)? {
        outcome.declined();
        return Ok(outcome.print(format));
    }
    let done = match d.steps(sdk, true).roll_back(secret, Some(&plan)).await? {
        RollBackOutcome::Ready(done) => done,
        RollBackOutcome::Refused(why) => return Err(refused(why)),
    };
    // For the applications that use the key (README "Events"); the
    // rollback stands whether or not the event could be put.
    let event = events::rolled_back(
        *done.holder,
        &done.from_key,
        &done.to_key,
        SystemTime::now(),
    );
    if let Err(e) = d.events(sdk).put(&[event]).await {
        eprintln!(
            "rekey: rolled back, but the {} event could not be put: {e}",
            events::KEY_ROLLED_BACK
        );
    }
    outcome.changed = true;
    outcome.change = format!(
        "{change}.\n{name} is paused: nothing rotates or cleans it until `rekey resume {name}`"
    );
    Ok(outcome.print(format))
}
