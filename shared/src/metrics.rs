//! Metrics in CloudWatch embedded metric format: one JSON line on stdout per
//! event, which CloudWatch Logs turns into metrics in the `rekey` namespace.
//! Only counts, ages, ids and reasons go in: never secret material.
//!
//! What each function records: [`count_created`], [`count_finished`],
//! [`count_skipped`], [`count_triage`], [`count_cleanup`] and, for any failure,
//! [`count_failure`].

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::lambda::Function;
use crate::ports::SecretInfo;
use crate::steps::{CleanupReport, Created, Finished};
use crate::triage::{Reason, Triage};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "rekey";

/// One EMF record: metrics that share the `Function` dimension (plus any
/// extra dimensions).
#[derive(Debug, Clone)]
pub struct Record {
    function: Function,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, Value, &'static str)>,
    properties: Vec<(&'static str, String)>,
}

impl Record {
    /// An empty record of `function`.
    pub fn new(function: Function) -> Self {
        Record {
            function,
            dimensions: Vec::new(),
            metrics: Vec::new(),
            properties: Vec::new(),
        }
    }

    /// An extra dimension (e.g. the `ErrorType` of a failure).
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// A count (CloudWatch unit `Count`); a zero count is left out.
    pub fn count(mut self, name: &'static str, n: usize) -> Self {
        if n > 0 {
            self.metrics.push((name, json!(n as f64), "Count"));
        }
        self
    }

    /// A plain number (CloudWatch unit `None`), e.g. an age in days.
    pub fn value(mut self, name: &'static str, value: f64) -> Self {
        self.metrics.push((name, json!(value), "None"));
        self
    }

    /// Several values of one plain number (EMF takes up to 100 in one
    /// record), e.g. the ages of one page of secrets; none is left out.
    pub fn values(mut self, name: &'static str, values: &[f64]) -> Self {
        if !values.is_empty() {
            self.metrics.push((name, json!(values), "None"));
        }
        self
    }

    /// A searchable field that is not a dimension (e.g. the SecretId).
    pub fn property(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// The EMF JSON line, or `None` when there is nothing to report.
    pub fn to_line(&self, now: SystemTime) -> Option<String> {
        if self.metrics.is_empty() {
            return None;
        }
        let millis = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        // Each metric by Function alone, and by Function and the extra
        // dimensions when there are any (alarms use the first).
        let mut dims = vec![vec!["Function"]];
        if !self.dimensions.is_empty() {
            let mut all = vec!["Function"];
            all.extend(self.dimensions.iter().map(|(k, _)| *k));
            dims.push(all);
        }
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": millis as u64,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dims,
                    "Metrics": self.metrics.iter()
                        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        root.insert("Function".into(), self.function.name().into());
        for (k, v) in self.dimensions.iter().chain(&self.properties) {
            root.insert((*k).into(), v.clone().into());
        }
        for (name, value, _) in &self.metrics {
            root.insert((*name).into(), value.clone());
        }
        Some(Value::Object(root).to_string())
    }

    /// Writes the record to stdout, where Lambda sends it to CloudWatch.
    pub fn emit(self) {
        if let Some(line) = self.to_line(SystemTime::now()) {
            println!("{line}");
        }
    }
}

/// The metric a failure of `function` counts. rekey-test's `KeyNotReady` is
/// Step Functions' cue to wait: counted apart; the run alerts when the
/// retries run out.
pub fn failure_metric(function: Function, error: &Error) -> &'static str {
    match (function, error) {
        (Function::Cleanup, _) => "CleanupFailed",
        (Function::Test, Error::KeyNotReady { .. }) => "KeyNotReady",
        // The scheduled run's create waits for the admin secret's rotation.
        (Function::Create, e) if e.waits_for_admin() => "AdminRotationWaits",
        // Not a failure: a dry run's createSecret stops where it would act.
        (_, Error::DryRun { .. }) => "DryRunStops",
        _ => "RotationsFailed",
    }
}

/// A failed invocation of `function` on `secret_id` (empty when the event
/// could not be read), by its error type.
pub fn count_failure(function: Function, secret_id: &str, error: &Error) {
    Record::new(function)
        .dimension("ErrorType", error.kind())
        .count(failure_metric(function, error), 1)
        .property("SecretId", secret_id)
        .emit();
}

/// What a create step did: a new key (and the keys deleted to make room),
/// or a secret skipped as not due.
pub fn count_created(function: Function, secret_id: &str, created: &Created) {
    match created {
        Created::New { removed, .. } => Record::new(function)
            .count("KeysCreated", 1)
            .count("KeysDeleted", removed.len())
            .property("SecretId", secret_id)
            .emit(),
        Created::NotDue { .. } => count_skipped(function, secret_id, "not-due"),
        Created::AlreadyPending { .. } | Created::AlreadyCurrent => {}
    }
}

/// A rotation promoted by a finish step (and whether it deactivated the
/// superseded key at once).
pub fn count_finished(function: Function, secret_id: &str, finished: &Finished) {
    if let Finished::Promoted { deactivated, .. } = finished {
        Record::new(function)
            .count("RotationsSucceeded", 1)
            .count("KeysDeactivated", usize::from(deactivated.is_some()))
            .property("SecretId", secret_id)
            .emit();
    }
}

/// Events for consumers that could not be put (events.rs): the keys
/// changed all the same.
pub fn count_events_not_put(function: Function, n: usize) {
    Record::new(function).count("EventsNotPut", n).emit();
}

/// A secret `function` passed over, and why (`paused`, `not-due`, or the
/// error type cleanup met).
pub fn count_skipped(function: Function, secret_id: &str, reason: &str) {
    Record::new(function)
        .dimension("Reason", reason)
        .count("SecretsSkipped", 1)
        .property("SecretId", secret_id)
        .emit();
}

/// Metrics of one page the sweep triaged at `now`: how many secrets it
/// listed and sent on, how many carry a near miss of `rekey:managed`
/// (`ManagedTagNearMiss`: `True`, ` true`, `yes`, ...; not managed, passed
/// over, each named in a log line by the sweep), and the age of each
/// managed secret's AWSCURRENT key the records know (`CurrentKeyAgeDays`,
/// behind the overdue alarm: from `rekey:current`, so an edit that keeps
/// the key does not make it look young; a secret whose records cannot say
/// is checked in full, and that cleanup reports its age). The oldest
/// secret is named. Paused secrets are counted too (`SecretsPaused`), and
/// those paused for longer than `REKEY_PAUSED_ALERT_AFTER` apart
/// (`SecretsPausedTooLong`, behind the `PausedTooLong` alarm; the longest
/// paused is named): invariant liveness, nothing goes silent.
pub fn count_triage(page: &[(SecretInfo, Triage)], now: SystemTime) {
    triage_record(page, now).emit();
}

/// The record [`count_triage`] emits.
fn triage_record(page: &[(SecretInfo, Triage)], now: SystemTime) -> Record {
    let ages: Vec<(&str, f64)> = page
        .iter()
        .filter_map(|(info, t)| {
            let age = now.duration_since(t.current_since?).ok()?;
            Some((info.arn.as_str(), age.as_secs_f64() / 86_400.0))
        })
        .collect();
    let oldest = ages
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(arn, _)| *arn);
    let values: Vec<f64> = ages.iter().map(|(_, age)| *age).collect();
    let paused: Vec<(&str, crate::triage::Pause)> = page
        .iter()
        .filter_map(|(info, t)| Some((info.arn.as_str(), t.pause?)))
        .collect();
    let longest_paused = paused
        .iter()
        .filter(|(_, p)| p.too_long)
        .min_by_key(|(_, p)| p.since)
        .map(|(arn, _)| *arn);
    let record = Record::new(Function::Cleanup)
        .count("SecretsListed", page.len())
        .count(
            "SecretsDue",
            page.iter().filter(|(_, t)| t.is_due()).count(),
        )
        .count(
            "ManagedTagNearMiss",
            page.iter()
                .filter(|(_, t)| t.reason == Reason::ManagedTagNearMiss)
                .count(),
        )
        .count("SecretsPaused", paused.len())
        .count(
            "SecretsPausedTooLong",
            paused.iter().filter(|(_, p)| p.too_long).count(),
        )
        .values("CurrentKeyAgeDays", &values);
    let record = match longest_paused {
        Some(arn) => record.property("LongestPausedSecretId", arn),
        None => record,
    };
    match oldest {
        Some(arn) => record.property("OldestSecretId", arn),
        None => record,
    }
}

/// Metrics for each secret of a cleanup report, made at `now`.
pub fn count_cleanup(report: &CleanupReport, now: SystemTime) {
    for s in &report.secrets {
        if let Some(error_type) = s.error_type {
            count_skipped(Function::Cleanup, &s.secret_id, error_type);
        }
        // In a dry run the keys were not touched: counted apart.
        let (deactivated, deleted) = match report.dry_run {
            false => ("KeysDeactivated", "KeysDeleted"),
            true => ("KeysWouldDeactivate", "KeysWouldDelete"),
        };
        let mut record = Record::new(Function::Cleanup)
            .count(deactivated, s.deactivated.len())
            .count(deleted, s.deleted.len())
            .count("KeysInUse", s.in_use.len())
            .property("SecretId", s.secret_id.as_str());
        if let Some(age) = s
            .current_since
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| now.duration_since(t).ok())
        {
            record = record.value("CurrentKeyAgeDays", age.as_secs_f64() / 86_400.0);
        }
        record.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn emf_line_declares_its_metrics_and_dimensions() {
        let line = Record::new(Function::Cleanup)
            .dimension("Reason", "paused")
            .count("SecretsSkipped", 2)
            .count("KeysDeleted", 0)
            .value("CurrentKeyAgeDays", 1.5)
            .property("SecretId", "arn:x")
            .to_line(UNIX_EPOCH + Duration::from_millis(1234))
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1234);
        assert_eq!(cw["Namespace"], "rekey");
        assert_eq!(
            cw["Dimensions"],
            json!([["Function"], ["Function", "Reason"]])
        );
        assert_eq!(
            cw["Metrics"],
            json!([{"Name": "SecretsSkipped", "Unit": "Count"}, {"Name": "CurrentKeyAgeDays", "Unit": "None"}])
        );
        assert_eq!(v["Function"], "cleanup");
        assert_eq!(v["Reason"], "paused");
        assert_eq!(v["SecretsSkipped"], 2.0);
        assert_eq!(v["SecretId"], "arn:x");
        assert!(v.get("KeysDeleted").is_none(), "zero counts are left out");
    }

    #[test]
    fn a_page_of_ages_is_one_line() {
        let line = Record::new(Function::Cleanup)
            .count("SecretsListed", 3)
            .values("CurrentKeyAgeDays", &[1.0, 2.5, 90.0])
            .values("Nothing", &[])
            .to_line(UNIX_EPOCH)
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["CurrentKeyAgeDays"], json!([1.0, 2.5, 90.0]));
        assert_eq!(v["SecretsListed"], 3.0);
        assert!(v.get("Nothing").is_none(), "no values, no metric");
    }

    #[test]
    fn every_managed_secret_gets_its_age_from_the_sweep_or_its_full_check() {
        use crate::model::AWSCURRENT;
        use crate::records::{CurrentRecord, CURRENT, TAG_MANAGED, TAG_PAUSED};
        use crate::triage::triage;
        let day = Duration::from_secs(86_400);
        let now = UNIX_EPOCH + day * 1_000;
        let secret = |n: u64, recorded: bool, paused: bool| {
            let mut info = SecretInfo {
                arn: format!("arn:s{n}"),
                ..Default::default()
            };
            info.versions.insert("v".into(), vec![AWSCURRENT.into()]);
            info.tags.insert(TAG_MANAGED.into(), "true".into());
            if paused {
                info.tags.insert(TAG_PAUSED.into(), "true".into());
            }
            if recorded {
                let record = CurrentRecord {
                    version: "v".into(),
                    key_id: "K".into(),
                    since: now - day * n as u32,
                };
                info.tags.insert(CURRENT.into(), record.value());
            }
            info
        };
        let mut near_miss = secret(50, true, false);
        near_miss.tags.insert(TAG_MANAGED.into(), "True".into());
        let page = [
            secret(1, true, false),
            secret(40, true, false),
            secret(2, false, false),
            secret(3, true, true),
            near_miss,
        ];
        let periods = default_periods(day);
        let verdicts: Vec<_> = page
            .iter()
            .map(|i| (i.clone(), triage(i, now, &periods)))
            .collect();
        let line = triage_record(&verdicts, now).to_line(now).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        // The two recorded ones by their records; the unrecorded one is
        // sent to its full check, whose report carries its age; the paused
        // one is left alone, as every function leaves it.
        assert_eq!(v["CurrentKeyAgeDays"], json!([1.0, 40.0]));
        assert_eq!(v["OldestSecretId"], "arn:s40");
        assert_eq!(v["SecretsListed"], 5.0);
        // The near miss is counted, and has no age: rekey does not manage it.
        assert_eq!(v["ManagedTagNearMiss"], 1.0);
        assert!(verdicts[2].1.clean && verdicts[2].1.current_since.is_none());
        assert_eq!(verdicts[3].1.current_since, None);
        // The paused one is counted all the same; not yet for too long.
        assert_eq!(v["SecretsPaused"], 1.0);
        assert!(v.get("SecretsPausedTooLong").is_none());
    }

    /// The default periods, in units of `day`.
    fn default_periods(day: Duration) -> crate::triage::Periods {
        crate::triage::Periods {
            rotation: day * 90,
            deactivate_after: day,
            delete_after: day * 7,
            full_check_every: day * 7,
            paused_alert_after: day * 7,
        }
    }

    #[test]
    fn secrets_paused_for_too_long_are_counted_and_the_longest_named() {
        use crate::records::{TAG_MANAGED, TAG_PAUSED, TAG_PAUSED_SINCE};
        use crate::triage::triage;
        let day = Duration::from_secs(86_400);
        let now = UNIX_EPOCH + day * 1_000;
        let paused = |n: u32, since: Option<u32>| {
            let mut info = SecretInfo {
                arn: format!("arn:p{n}"),
                ..Default::default()
            };
            info.tags.insert(TAG_MANAGED.into(), "true".into());
            info.tags.insert(TAG_PAUSED.into(), "true".into());
            if let Some(days) = since {
                let t = crate::plan::timestamp(now - day * days);
                info.tags.insert(TAG_PAUSED_SINCE.into(), t);
            }
            info
        };
        let periods = default_periods(day);
        let page: Vec<_> = [
            paused(1, None),
            paused(2, Some(3)),
            paused(3, Some(8)),
            paused(4, Some(30)),
        ]
        .into_iter()
        .map(|i| {
            let t = triage(&i, now, &periods);
            (i, t)
        })
        .collect();
        let line = triage_record(&page, now).to_line(now).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["SecretsPaused"], 4.0);
        assert_eq!(v["SecretsPausedTooLong"], 2.0);
        assert_eq!(v["LongestPausedSecretId"], "arn:p4");
        assert_eq!(v["SecretsListed"], 4.0);
    }

    #[test]
    fn failures_count_by_function_and_error() {
        let not_ready = Error::KeyNotReady {
            user: "u".into(),
            key_id: "k".into(),
            reason: "r".into(),
        };
        let invalid = Error::InvalidEvent("x".into());
        let admin_rotating = Error::RotationInProgress {
            secret_id: "s".into(),
            other_token: "t".into(),
            admin: Some("rekey/admin/scloud/ops-1".into()),
        };
        for (function, error, metric) in [
            (Function::Test, &not_ready, "KeyNotReady"),
            (Function::Finish, &not_ready, "RotationsFailed"),
            (Function::Hook, &not_ready, "RotationsFailed"),
            (Function::Test, &invalid, "RotationsFailed"),
            (Function::Create, &admin_rotating, "AdminRotationWaits"),
            (Function::Hook, &admin_rotating, "RotationsFailed"),
            (Function::Create, &invalid, "RotationsFailed"),
            (Function::Cleanup, &not_ready, "CleanupFailed"),
            (Function::Cleanup, &invalid, "CleanupFailed"),
        ] {
            assert_eq!(failure_metric(function, error), metric, "{error}");
        }
    }

    #[test]
    fn nothing_to_report_is_no_line() {
        assert!(Record::new(Function::Create)
            .count("KeysCreated", 0)
            .to_line(SystemTime::now())
            .is_none());
    }
}
