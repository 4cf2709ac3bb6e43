//! `rekey status` and `rekey plan`: each managed secret inspected by the
//! functions' own steps, run dry (`Rekey::inspect`), and shown.

use std::time::{Duration, SystemTime};

use rekey::model::{KeyStatus, LastUsed};
use rekey::plan::{timestamp, RetirementStep};
use rekey::ports::Vault;
use rekey::records;
use rekey::steps::{Created, Inspection, RotationOutlook};
use rekey::{Driver, Error};
use serde::Serialize;

use crate::deployment::{Deployment, Steps};
use crate::output::{self, Format};
use crate::{Failure, EXIT_FINDINGS, EXIT_OK};

/// The secrets named, or every secret an operator is shown (ListSecrets,
/// page by page): the managed ones, paused or not, and the near misses of
/// `rekey:managed`, which `inspect` refuses and so show as problems.
async fn secret_ids(app: &Steps, named: &[String]) -> Result<Vec<String>, Failure> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = app.vault.list_page(next.as_deref()).await?;
        ids.extend(
            page.secrets
                .into_iter()
                .filter(|s| records::enrolment(s).is_shown())
                .map(|s| s.arn),
        );
        next = page.next_token;
        if next.is_none() {
            return Ok(ids);
        }
    }
}

/// Each secret named (or every managed secret) with its inspection, or
/// the error that stopped it.
async fn inspected(
    sdk: &aws_config::SdkConfig,
    d: &Deployment,
    named: &[String],
) -> Result<Vec<(String, Result<Inspection, Error>)>, Failure> {
    let app = d.steps(sdk, false);
    let ids = secret_ids(&app, named).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let found = app.inspect(&id, Some(d.period)).await;
        out.push((id, found));
    }
    Ok(out)
}

/// An error as the command shows it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Problem {
    error_type: &'static str,
    message: String,
}

impl From<&Error> for Problem {
    fn from(e: &Error) -> Self {
        Problem {
            error_type: e.kind(),
            message: e.to_string(),
        }
    }
}

/// A key other than AWSCURRENT's.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct OtherKey {
    access_key_id: String,
    status: &'static str,
    created: String,
    /// `never`, `unknown` or a time.
    last_used: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_service: Option<String>,
    /// Its next retirement step and when, where cleanup has scheduled one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_step: Option<RetirementStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<String>,
}

/// What rekey does next to a secret, and when.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Next {
    action: String,
    /// `null`: at the next run (now, for the hook's own schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    when: Option<String>,
}

/// One line of `rekey status`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Status {
    secret_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    driver: Option<&'static str>,
    paused: bool,
    /// Since when it is paused (its `rekey:paused-since` record); `null`
    /// for a paused secret the sweep has not recorded yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_since: Option<String>,
    /// Paused for longer than `REKEY_PAUSED_ALERT_AFTER`: a finding.
    paused_too_long: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_age_days: Option<f64>,
    other_keys: Vec<OtherKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_in_progress: Option<String>,
    overdue: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Next>,
    /// Why rekey is stuck on it (its next rotation or cleanup would fail,
    /// or it could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

impl Status {
    fn is_finding(&self) -> bool {
        self.overdue || self.paused_too_long || self.problem.is_some()
    }
}

fn days(d: Duration) -> f64 {
    (d.as_secs_f64() / 86_400.0 * 10.0).round() / 10.0
}

fn driver_name(d: Driver) -> &'static str {
    match d {
        Driver::Hook => "hook",
        Driver::Pipeline => "pipeline",
    }
}

fn last_used(used: &LastUsed) -> (String, Option<String>) {
    match used {
        LastUsed::Unknown => ("unknown".into(), None),
        LastUsed::Never => ("never".into(), None),
        LastUsed::At { when, service } => (timestamp(*when), service.clone()),
    }
}

/// The next thing rekey will do, from the dry runs of both steps: what is
/// due now first, else the earliest scheduled step.
fn next(i: &Inspection, period: Duration, now: SystemTime) -> Option<Next> {
    if i.paused {
        return Some(Next {
            action: "nothing: paused".into(),
            when: None,
        });
    }
    let at_next_run = |action: String| Next { action, when: None };
    if let Ok(c) = &i.cleanup {
        if let Some(k) = c.deactivated.first() {
            return Some(at_next_run(format!("deactivate {k}")));
        }
        if let Some(k) = c.deleted.first() {
            return Some(at_next_run(format!("delete {k}")));
        }
        if let Some(t) = &c.abandoned {
            return Some(at_next_run(format!("abandon the rotation {t}")));
        }
    }
    if i.rotation_outlook() == RotationOutlook::Rotate {
        return Some(at_next_run("rotate".into()));
    }
    let mut scheduled: Vec<(SystemTime, String)> = Vec::new();
    if let Ok(Created::NotDue { .. }) = &i.rotation {
        scheduled.push((i.rotation_due(period), "rotate".into()));
    }
    if let Ok(c) = &i.cleanup {
        for w in &c.waiting {
            let step = match w.next {
                RetirementStep::Deactivation => "deactivate",
                RetirementStep::Deletion => "delete",
            };
            scheduled.push((w.due, format!("{step} {}", w.key_id)));
        }
    }
    scheduled
        .into_iter()
        .min_by_key(|(t, _)| *t)
        .map(|(t, action)| Next {
            action,
            when: Some(if t <= now { "now".into() } else { timestamp(t) }),
        })
}

fn status_of(
    id: String,
    found: Result<Inspection, Error>,
    d: &Deployment,
    now: SystemTime,
) -> Status {
    let i = match found {
        Ok(i) => i,
        Err(e) => {
            return Status {
                secret_id: id,
                provider: None,
                account_id: None,
                user_name: None,
                owner: None,
                driver: None,
                paused: matches!(e, Error::SecretPaused { .. }),
                paused_since: None,
                paused_too_long: false,
                current_key: None,
                current_since: None,
                current_age_days: None,
                other_keys: Vec::new(),
                rotation_in_progress: None,
                overdue: false,
                next: None,
                problem: Some(Problem::from(&e)),
            }
        }
    };
    let waiting = |key: &str| {
        i.cleanup
            .as_ref()
            .ok()
            .and_then(|c| c.waiting.iter().find(|w| w.key_id == key))
    };
    let other_keys = i
        .keys
        .iter()
        .filter(|(k, _)| Some(&k.id) != i.current_key.as_ref())
        .map(|(k, used)| {
            let (last, service) = last_used(used);
            OtherKey {
                access_key_id: k.id.clone(),
                status: match k.status {
                    KeyStatus::Active => "Active",
                    KeyStatus::Inactive => "Inactive",
                },
                created: timestamp(k.created),
                last_used: last,
                last_used_service: service,
                next_step: waiting(&k.id).map(|w| w.next),
                due: waiting(&k.id).map(|w| timestamp(w.due)),
            }
        })
        .collect();
    let age = now.duration_since(i.current_since).unwrap_or_default();
    // Stuck: the next rotation or cleanup would fail (a dry run's stop,
    // not due, in progress and paused are no problem).
    let problem = match (&i.rotation, &i.cleanup) {
        (Err(e), _) if i.rotation_outlook() == RotationOutlook::Blocked => Some(Problem::from(e)),
        (_, Err(e)) if !i.paused => Some(Problem::from(e)),
        _ => None,
    };
    Status {
        secret_id: i.info.arn.clone(),
        provider: i.holder.provider,
        account_id: i.holder.account_id.clone(),
        user_name: i.holder.user_name.clone(),
        owner: i.holder.owner.clone(),
        driver: Some(driver_name(i.driver)),
        paused: i.paused,
        paused_since: i
            .pause
            .filter(|p| !p.unrecorded)
            .map(|p| timestamp(p.since)),
        paused_too_long: i.pause.is_some_and(|p| p.too_long),
        current_key: i.current_key.clone(),
        current_since: Some(timestamp(i.current_since)),
        current_age_days: Some(days(age)),
        other_keys,
        rotation_in_progress: i.rotating.clone(),
        overdue: age > d.overdue_after,
        next: next(&i, d.period, now),
        problem,
    }
}

/// The name of a secret's ARN (its last part, without Secrets Manager's
/// six-character suffix), for tables.
pub(crate) fn short_name(arn: &str) -> &str {
    let name = arn.split(":secret:").nth(1).unwrap_or(arn);
    match name.rsplit_once('-') {
        Some((base, suffix)) if suffix.len() == 6 && arn.contains(":secret:") => base,
        _ => name,
    }
}

/// `rekey status`.
pub async fn status(
    sdk: &aws_config::SdkConfig,
    d: &Deployment,
    named: &[String],
    format: Format,
) -> Result<u8, Failure> {
    let now = SystemTime::now();
    let statuses: Vec<Status> = inspected(sdk, d, named)
        .await?
        .into_iter()
        .map(|(id, found)| status_of(id, found, d, now))
        .collect();
    match format {
        Format::Json | Format::Csv => output::json(&statuses),
        Format::Table => {
            let rows: Vec<Vec<String>> = statuses.iter().map(status_row).collect();
            let headers = [
                "SECRET",
                "USER",
                "DRIVER",
                "CURRENT KEY",
                "AGE",
                "OTHER KEYS",
                "NEXT",
                "NOTES",
            ];
            println!("{}", output::table(&headers, &rows));
        }
    }
    let findings = statuses.iter().any(Status::is_finding);
    Ok(if findings { EXIT_FINDINGS } else { EXIT_OK })
}

fn status_row(s: &Status) -> Vec<String> {
    let others: Vec<String> = s
        .other_keys
        .iter()
        .map(|k| {
            let step = match (&k.next_step, &k.due) {
                (Some(RetirementStep::Deactivation), Some(due)) => {
                    format!(", deactivation due {due}")
                }
                (Some(RetirementStep::Deletion), Some(due)) => format!(", deletion due {due}"),
                _ => String::new(),
            };
            format!(
                "{} {} (used {}{step})",
                k.access_key_id,
                k.status.to_lowercase(),
                k.last_used
            )
        })
        .collect();
    let mut notes = Vec::new();
    match (&s.paused_since, s.paused_too_long) {
        (Some(since), true) => notes.push(format!(
            "PAUSED since {since}, longer than REKEY_PAUSED_ALERT_AFTER: resume it once the cause is understood"
        )),
        (Some(since), false) => notes.push(format!("paused since {since}")),
        (None, _) if s.paused => {
            notes.push("paused (since when is not recorded yet: the next sweep records it)".to_owned())
        }
        (None, _) => {}
    }
    if s.overdue {
        notes.push("OVERDUE".to_owned());
    }
    if let Some(t) = &s.rotation_in_progress {
        notes.push(format!("rotating ({t})"));
    }
    if let Some(p) = &s.problem {
        notes.push(format!("{}: {}", p.error_type, p.message));
    }
    let next = s.next.as_ref().map(|n| match &n.when {
        Some(when) => format!("{} at {when}", n.action),
        None => format!("{} at the next run", n.action),
    });
    vec![
        short_name(&s.secret_id).to_owned(),
        s.user_name.clone().unwrap_or_default(),
        s.driver.unwrap_or_default().to_owned(),
        s.current_key.clone().unwrap_or_default(),
        s.current_age_days
            .map(|d| format!("{d}d"))
            .unwrap_or_default(),
        others.join("; "),
        next.unwrap_or_default(),
        notes.join("; "),
    ]
}

/// One line of `rekey plan`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Plan {
    secret_id: String,
    rotation: RotationPlan,
    /// The cleanup report of a dry run (README "rekey-cleanup"), or why
    /// cleanup would fail.
    cleanup: serde_json::Value,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct RotationPlan {
    outlook: Option<RotationOutlook>,
    detail: String,
}

fn plan_of(id: String, found: Result<Inspection, Error>, period: Duration) -> Plan {
    let i = match found {
        Ok(i) => i,
        Err(e) => {
            let problem = serde_json::to_value(Problem::from(&e)).unwrap_or_default();
            return Plan {
                secret_id: id,
                rotation: RotationPlan {
                    outlook: None,
                    detail: e.to_string(),
                },
                cleanup: serde_json::json!({ "Problem": problem }),
            };
        }
    };
    let outlook = i.rotation_outlook();
    let detail = match (&i.rotation, outlook) {
        (Err(Error::DryRun { would }), _) => format!("would {would}"),
        (_, RotationOutlook::NotDue) => {
            format!(
                "nothing: not due until {}",
                timestamp(i.rotation_due(period))
            )
        }
        (_, RotationOutlook::InProgress) => format!(
            "nothing: the rotation {} is in progress; its driver resumes it",
            i.rotating.as_deref().unwrap_or("")
        ),
        (_, RotationOutlook::Paused) => "nothing: paused".into(),
        (Err(e), _) => format!("fails: {e}"),
        (Ok(_), _) => "nothing".into(),
    };
    let cleanup = match &i.cleanup {
        Ok(c) => serde_json::to_value(c).unwrap_or_default(),
        Err(e) => serde_json::json!({ "Problem": Problem::from(e) }),
    };
    Plan {
        secret_id: i.info.arn.clone(),
        rotation: RotationPlan {
            outlook: Some(outlook),
            detail,
        },
        cleanup,
    }
}

/// What a cleanup report says it would do, in a line.
fn cleanup_line(c: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    let list = |field: &str| -> Vec<String> {
        c[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (field, verb) in [("Deactivated", "deactivate"), ("Deleted", "delete")] {
        for k in list(field) {
            parts.push(format!("would {verb} {k}"));
        }
    }
    if let Some(t) = c["Abandoned"].as_str() {
        parts.push(format!("would abandon the rotation {t}"));
    }
    for w in c["Waiting"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} of {} due {}",
            w["Next"].as_str().unwrap_or(""),
            w["AccessKeyId"].as_str().unwrap_or(""),
            w["Due"].as_str().unwrap_or("")
        ));
    }
    for u in c["InUse"].as_array().into_iter().flatten() {
        parts.push(format!(
            "{} still in use ({}): stays active",
            u["AccessKeyId"].as_str().unwrap_or(""),
            u["LastUsed"].as_str().unwrap_or("")
        ));
    }
    if let Some(p) = c["Problem"]["Message"].as_str() {
        parts.push(format!("fails: {p}"));
    }
    if parts.is_empty() {
        "nothing to retire".into()
    } else {
        parts.join("; ")
    }
}

/// `rekey plan`.
pub async fn plan(
    sdk: &aws_config::SdkConfig,
    d: &Deployment,
    named: &[String],
    format: Format,
) -> Result<u8, Failure> {
    let plans: Vec<Plan> = inspected(sdk, d, named)
        .await?
        .into_iter()
        .map(|(id, found)| plan_of(id, found, d.period))
        .collect();
    match format {
        Format::Json | Format::Csv => output::json(&plans),
        Format::Table => {
            let rows: Vec<Vec<String>> = plans
                .iter()
                .map(|p| {
                    vec![
                        short_name(&p.secret_id).to_owned(),
                        p.rotation.detail.clone(),
                        cleanup_line(&p.cleanup),
                    ]
                })
                .collect();
            println!(
                "{}",
                output::table(&["SECRET", "ROTATION", "CLEANUP"], &rows)
            );
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_name_is_its_arn_without_the_suffix() {
        assert_eq!(
            short_name(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/aws/alice-AbCdEf"
            ),
            "rekey/aws/alice"
        );
        assert_eq!(short_name("rekey/aws/alice"), "rekey/aws/alice");
        assert_eq!(short_name("rekey/aws/bob-smith"), "rekey/aws/bob-smith");
    }
}
