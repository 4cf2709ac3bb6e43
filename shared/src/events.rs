//! Events for the applications and teams that hold the keys: after a
//! promotion and after each retirement the functions put an EventBridge
//! event (source `rekey`), and one when a rotation fails, so that a rule
//! can notify the key's owner or redeploy its application. Built here from
//! what the steps report (pure); put by the Lambda edge through an
//! [`EventSink`] (the EventBridge adapter is [`EventBridge`]).
//!
//! Invariant no-secret-out: an event carries identifiers, times and
//! reasons only. Its fields are built from key ids, names and error
//! messages (which never carry secret material, error.rs), never from a
//! secret's value.

use std::time::SystemTime;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lambda::Function;
use crate::model::ManagedSecret;
use crate::plan::timestamp;
use crate::ports::SecretInfo;
use crate::steps::{Driver, SecretCleanup};

/// The events' `source`.
pub const SOURCE: &str = "rekey";
/// A new key became AWSCURRENT.
pub const KEY_ROTATED: &str = "Key Rotated";
/// A superseded key was deactivated.
pub const KEY_DEACTIVATED: &str = "Key Deactivated";
/// An inactive key was deleted.
pub const KEY_DELETED: &str = "Key Deleted";
/// A rotation step failed (not a transient failure the pipeline retries).
pub const ROTATION_FAILED: &str = "Rotation Failed";
/// An operator put the AWSPREVIOUS key back to AWSCURRENT (`rekey
/// rollback`).
pub const KEY_ROLLED_BACK: &str = "Key Rolled Back";
/// Every detail type rekey puts.
pub const DETAIL_TYPES: [&str; 5] = [
    KEY_ROTATED,
    KEY_DEACTIVATED,
    KEY_DELETED,
    ROTATION_FAILED,
    KEY_ROLLED_BACK,
];
/// The secret's tag naming the team or person who owns the application
/// that uses the key (on a secret; on an IAM user, `rekey:owner` names the
/// owning secret instead). Copied into every event: rules cannot read tags.
pub const OWNER_TAG: &str = "rekey:owner";

/// Whose key an event is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyHolder {
    /// The managed secret's ARN.
    pub secret_arn: String,
    /// The provider (`aws`, `alibaba`, `scloud`); unknown when a step
    /// failed before reading the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'static str>,
    /// The AWS account of an IAM user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The provider's user; unknown when a step failed before reading the
    /// secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The secret's `rekey:owner` tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl KeyHolder {
    /// The holder of `secret`'s keys, described by `info`. An IAM user's
    /// account is the one the secret names, else the secret's own.
    pub fn of(info: &SecretInfo, secret: &ManagedSecret) -> Self {
        let account_id = match secret.provider {
            crate::model::Provider::Aws => secret
                .account_id
                .clone()
                .or_else(|| info.arn.split(':').nth(4).map(str::to_owned))
                .filter(|a| !a.is_empty()),
            _ => None,
        };
        KeyHolder {
            secret_arn: info.arn.clone(),
            provider: Some(secret.provider.name()),
            account_id,
            user_name: Some(secret.user_name.clone()),
            owner: info.tags.get(OWNER_TAG).cloned(),
        }
    }

    /// What a failure's event can say of the secret: its ARN and owner
    /// when it could be described, else the SecretId the step was given.
    pub fn described(secret_id: &str, info: Option<&SecretInfo>) -> Self {
        KeyHolder {
            secret_arn: info.map_or(secret_id, |i| i.arn.as_str()).to_owned(),
            owner: info.and_then(|i| i.tags.get(OWNER_TAG).cloned()),
            ..KeyHolder::default()
        }
    }
}

/// One event: its detail type and its detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyEvent {
    /// One of [`DETAIL_TYPES`].
    #[serde(skip)]
    pub detail_type: &'static str,
    /// The event's `detail`.
    #[serde(flatten)]
    pub detail: Detail,
}

/// The `detail` of every rekey event (README "Events" gives its schema).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Detail {
    /// Whose key; for a failure, what is known before the step failed
    /// (the secret's ARN or the SecretId it was given, and its owner).
    #[serde(flatten)]
    pub holder: KeyHolder,
    /// `hook` or `pipeline`, for rotation events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<&'static str>,
    /// The key deactivated or deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key that became AWSCURRENT (for a rollback: the one put back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_key_id: Option<String>,
    /// The key it superseded (active until its grace period ends; for a
    /// rollback: the key rolled back from).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_key_id: Option<String>,
    /// When it happened (RFC 3339).
    pub time: String,
    /// A failure's error type (README "Errors").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    /// A failure's message: what failed and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A dry run: what rekey would have done; nothing was changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A promotion, as finish reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// Whose key was rotated.
    pub holder: KeyHolder,
    /// The key now AWSCURRENT.
    pub new_key: String,
    /// The key it superseded.
    pub old_key: Option<String>,
}

fn driver_name(driver: Driver) -> &'static str {
    match driver {
        Driver::Hook => "hook",
        Driver::Pipeline => "pipeline",
    }
}

/// `Key Rotated`, and `Key Deactivated` when finish deactivated the
/// superseded key at once.
pub fn rotated(
    p: &Promotion,
    driver: Driver,
    deactivated: Option<&str>,
    now: SystemTime,
) -> Vec<KeyEvent> {
    let base = Detail {
        holder: p.holder.clone(),
        driver: Some(driver_name(driver)),
        time: timestamp(now),
        ..Detail::default()
    };
    let mut events = vec![KeyEvent {
        detail_type: KEY_ROTATED,
        detail: Detail {
            new_key_id: Some(p.new_key.clone()),
            old_key_id: p.old_key.clone(),
            ..base.clone()
        },
    }];
    if let Some(key) = deactivated {
        events.push(KeyEvent {
            detail_type: KEY_DEACTIVATED,
            detail: Detail {
                key_id: Some(key.to_owned()),
                ..base
            },
        });
    }
    events
}

/// `Key Rolled Back`: `holder`'s AWSCURRENT went back from key `from` to
/// key `to`.
pub fn rolled_back(holder: KeyHolder, from: &str, to: &str, now: SystemTime) -> KeyEvent {
    KeyEvent {
        detail_type: KEY_ROLLED_BACK,
        detail: Detail {
            holder,
            new_key_id: Some(to.to_owned()),
            old_key_id: Some(from.to_owned()),
            time: timestamp(now),
            ..Detail::default()
        },
    }
}

/// `Key Deactivated` and `Key Deleted` for each key a cleanup retired (in
/// a dry run, would have).
pub fn retired(cleanup: &SecretCleanup, dry_run: bool, now: SystemTime) -> Vec<KeyEvent> {
    let Some(holder) = &cleanup.holder else {
        return Vec::new();
    };
    let event = |detail_type, key: &String| KeyEvent {
        detail_type,
        detail: Detail {
            holder: holder.clone(),
            key_id: Some(key.clone()),
            time: timestamp(now),
            dry_run,
            ..Detail::default()
        },
    };
    let deactivated = cleanup
        .deactivated
        .iter()
        .map(|k| event(KEY_DEACTIVATED, k));
    let deleted = cleanup.deleted.iter().map(|k| event(KEY_DELETED, k));
    deactivated.chain(deleted).collect()
}

/// Whether a failure of `function` is a `Rotation Failed` event, and of
/// which driver: a rotation step's failure, unless it is one the pipeline
/// retries (`KeyNotReady`, `ServiceUnavailable`, a wait for the admin
/// secret's rotation) or a dry run's stop.
pub fn failure_driver(function: Function, error: &Error) -> Option<Driver> {
    let driver = match function {
        Function::Hook => Driver::Hook,
        Function::Create | Function::Test | Function::Finish => Driver::Pipeline,
        Function::Cleanup => return None,
    };
    // (`is_retryable` covers KeyNotReady and ServiceUnavailable.)
    let retried = driver == Driver::Pipeline && (error.is_retryable() || error.waits_for_admin());
    (!retried && !matches!(error, Error::DryRun { .. })).then_some(driver)
}

/// `Rotation Failed`: `holder` is what is known of the secret (its ARN, or
/// the SecretId given, and its owner).
pub fn failed(driver: Driver, holder: KeyHolder, error: &Error, now: SystemTime) -> KeyEvent {
    KeyEvent {
        detail_type: ROTATION_FAILED,
        detail: Detail {
            holder,
            driver: Some(driver_name(driver)),
            time: timestamp(now),
            error_type: Some(error.kind()),
            message: Some(error.to_string()),
            ..Detail::default()
        },
    }
}

/// Where the events go (EventBridge, or a test's recorder).
pub trait EventSink: Send + Sync {
    /// Puts `events` (at most [`PUT_BATCH`]): an error when any was not
    /// put.
    fn put<'a>(&'a self, events: &'a [KeyEvent]) -> BoxFuture<'a, Result<()>>;
}

/// PutEvents takes at most 10 entries.
pub const PUT_BATCH: usize = 10;

/// EventBridge, on one event bus.
#[derive(Clone, Debug)]
pub struct EventBridge {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridge {
    /// Puts onto `bus` (a name; `default` is the account's default bus).
    pub fn new(sdk: &aws_config::SdkConfig, bus: &str) -> Self {
        EventBridge {
            client: aws_sdk_eventbridge::Client::new(sdk),
            bus: bus.to_owned(),
        }
    }
}

impl EventSink for EventBridge {
    fn put<'a>(&'a self, events: &'a [KeyEvent]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let entries = events.iter().map(|e| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(e.detail_type)
                    .detail(serde_json::to_string(e).unwrap_or_default())
                    .event_bus_name(&self.bus)
                    .resources(&e.detail.holder.secret_arn)
                    .build()
            });
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| crate::sdk::service_error("EventBridge", "PutEvents", e))?;
            match out.failed_entry_count() {
                0 => Ok(()),
                n => Err(Error::Service {
                    service: "EventBridge",
                    operation: "PutEvents",
                    code: "FailedEntries".into(),
                    message: format!("{n} of {} events were not put", events.len()),
                    retryable: true,
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn holder() -> KeyHolder {
        KeyHolder {
            secret_arn:
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:rekey/aws/alice-Ab12Cd".into(),
            provider: Some("aws"),
            account_id: Some("123456789012".into()),
            user_name: Some("alice".into()),
            owner: Some("team-payments".into()),
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    #[test]
    fn the_detail_keeps_its_field_names() {
        let p = Promotion {
            holder: holder(),
            new_key: "AKIANEW".into(),
            old_key: Some("AKIAOLD".into()),
        };
        let events = rotated(&p, Driver::Pipeline, Some("AKIAOLD"), at());
        let types: Vec<_> = events.iter().map(|e| e.detail_type).collect();
        assert_eq!(types, [KEY_ROTATED, KEY_DEACTIVATED]);
        assert_eq!(
            serde_json::to_value(&events[0]).unwrap(),
            serde_json::json!({
                "SecretArn": holder().secret_arn,
                "Provider": "aws",
                "AccountId": "123456789012",
                "UserName": "alice",
                "Owner": "team-payments",
                "Driver": "pipeline",
                "NewKeyId": "AKIANEW",
                "OldKeyId": "AKIAOLD",
                "Time": "2026-09-21T14:13:20Z",
            })
        );
        assert_eq!(events[1].detail.key_id.as_deref(), Some("AKIAOLD"));
    }

    #[test]
    fn a_rollback_names_the_key_put_back_and_the_one_rolled_back_from() {
        let e = rolled_back(holder(), "AKIANEW", "AKIAOLD", at());
        assert_eq!(e.detail_type, KEY_ROLLED_BACK);
        // The fields of `Key Rotated` (above), no driver: an operator's.
        let detail = Detail {
            holder: holder(),
            new_key_id: Some("AKIAOLD".into()),
            old_key_id: Some("AKIANEW".into()),
            time: "2026-09-21T14:13:20Z".into(),
            ..Detail::default()
        };
        assert_eq!(e.detail, detail);
    }

    #[test]
    fn every_detail_type_is_in_the_readme() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        for t in DETAIL_TYPES {
            assert!(readme.contains(&format!("| `{t}` |")), "README lists {t}");
        }
    }

    #[test]
    fn retirements_are_one_event_a_key_and_say_dry_run() {
        let cleanup = SecretCleanup {
            deactivated: vec!["A".into()],
            deleted: vec!["B".into(), "C".into()],
            holder: Some(holder()),
            ..SecretCleanup::default()
        };
        let events = retired(&cleanup, true, at());
        let got: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.detail_type,
                    e.detail.key_id.as_deref().unwrap(),
                    e.detail.dry_run,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (KEY_DEACTIVATED, "A", true),
                (KEY_DELETED, "B", true),
                (KEY_DELETED, "C", true)
            ]
        );
        let text = serde_json::to_string(&events[0]).unwrap();
        assert!(text.contains(r#""DryRun":true"#), "{text}");
        // A secret cleanup skipped (no holder read) has no events.
        let skipped = SecretCleanup {
            deleted: vec!["B".into()],
            ..SecretCleanup::default()
        };
        assert!(retired(&skipped, false, at()).is_empty());
    }

    #[test]
    fn only_failures_no_one_retries_are_rotation_failed() {
        let not_ready = Error::KeyNotReady {
            user: "alice".into(),
            key_id: "AKIANEW".into(),
            reason: "InvalidClientTokenId".into(),
        };
        let unavailable = Error::Service {
            service: "IAM",
            operation: "CreateAccessKey",
            code: "Throttling".into(),
            message: "slow down".into(),
            retryable: true,
        };
        let paused = Error::SecretPaused {
            secret_id: "s".into(),
        };
        let dry = Error::DryRun { would: "x".into() };
        let admin_rotating = Error::RotationInProgress {
            secret_id: "s".into(),
            other_token: "t".into(),
            admin: Some("rekey/admin/scloud/ops-1".into()),
        };
        let own_rotating = Error::RotationInProgress {
            secret_id: "s".into(),
            other_token: "t".into(),
            admin: None,
        };
        let (pipeline, hook) = (Some(Driver::Pipeline), Some(Driver::Hook));
        for (function, error, driver) in [
            // The pipeline retries these: its run reports what is left
            // (create waits for the admin secret's rotation, not its own).
            (Function::Test, &not_ready, None),
            (Function::Create, &unavailable, None),
            (Function::Create, &admin_rotating, None),
            (Function::Create, &own_rotating, pipeline),
            (Function::Finish, &paused, pipeline),
            // Secrets Manager's call of the hook is the whole attempt.
            (Function::Hook, &admin_rotating, hook),
            (Function::Hook, &not_ready, hook),
            (Function::Hook, &unavailable, hook),
            // A dry run's stop and cleanup's failures are not rotations
            // failing.
            (Function::Hook, &dry, None),
            (Function::Cleanup, &paused, None),
        ] {
            assert_eq!(failure_driver(function, error), driver, "{error}");
        }

        let e = failed(
            Driver::Hook,
            KeyHolder::described("rekey/aws/alice", None),
            &paused,
            at(),
        );
        assert_eq!(e.detail_type, ROTATION_FAILED);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["SecretArn"], "rekey/aws/alice");
        assert_eq!(v["ErrorType"], "SecretPaused");
        assert!(
            v.get("UserName").is_none() && v.get("Owner").is_none(),
            "{v}"
        );
    }

    #[test]
    fn an_iam_users_account_is_the_member_account_or_the_secrets() {
        let info = SecretInfo {
            arn: holder().secret_arn,
            tags: [(OWNER_TAG.to_owned(), "t".to_owned())].into(),
            ..SecretInfo::default()
        };
        let own = ManagedSecret::parse(r#"{"UserName":"alice"}"#).unwrap();
        assert_eq!(
            KeyHolder::of(&info, &own).account_id.as_deref(),
            Some("123456789012")
        );
        let member =
            ManagedSecret::parse(r#"{"UserName":"alice","AccountId":"111111111111"}"#).unwrap();
        assert_eq!(
            KeyHolder::of(&info, &member).account_id.as_deref(),
            Some("111111111111")
        );
        let ram = ManagedSecret::parse(r#"{"UserName":"alice","Provider":"alibaba"}"#).unwrap();
        let h = KeyHolder::of(&info, &ram);
        assert_eq!(
            (h.provider, h.account_id, h.owner.as_deref()),
            (Some("alibaba"), None, Some("t"))
        );
    }
}
