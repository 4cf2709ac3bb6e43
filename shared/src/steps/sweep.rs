//! The sweep over every managed secret: ListSecrets a page at a time,
//! decide from the page alone what is due (`triage`), and hand on only
//! those secrets: to the state machine's Distributed Map (`triage_page`),
//! or, for a local or manual `rekey-cleanup {}`, to cleanup in this very
//! invocation (`cleanup_all`, bounded by the invocation's deadline).

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn, Instrument};

use super::{CleanupReport, Rekey, SecretCleanup};
use crate::error::Result;
use crate::metrics;
use crate::plan::timestamp;
use crate::ports::{Clock, Providers, SecretInfo, Vault};
use crate::records::TAG_PAUSED_SINCE;
use crate::triage::{triage, PauseRecord, Periods, Reason, Triage};

/// Secrets cleaned at once by `rekey-cleanup {}`.
const SWEEP_CONCURRENCY: usize = 4;

/// ListSecrets pages one triage call reads at most (100 secrets each).
pub const PAGES_PER_TRIAGE: usize = 5;

/// A triage call reads no further page once its answer is this large, so
/// that it stays far below Step Functions' 256 KB payload limit even when
/// every secret is due and their names are long (an ARN may be 600 bytes).
pub const ANSWER_BUDGET: usize = 96 * 1024;

/// What the state machine asks of one triage call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriageRequest {
    /// The rotation period, as given (`90d`), passed on to rekey-create.
    pub rotation_period: String,
    /// The same, parsed.
    pub period: Duration,
    /// Only these secrets, each due now (no listing); empty for all.
    pub secret_ids: Vec<String>,
    /// Where the listing goes on (the previous answer's `Next`).
    pub next_token: Option<String>,
}

/// One triage call's answer: the secrets with something due, and the event
/// of the next call while pages remain.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TriageAnswer {
    /// What is due, secret by secret.
    pub items: Vec<Item>,
    /// How many managed secrets were looked at.
    pub listed: usize,
    /// The next call's event, while pages remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<NextTriage>,
}

/// One secret with something due: the input of its child execution.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    /// The secret's ARN.
    pub secret_id: String,
    /// Run rekey-create (then test and finish).
    pub rotate: bool,
    /// Run rekey-cleanup on it.
    pub clean: bool,
    /// rekey-create's `RotationPeriod`.
    pub rotation_period: String,
}

impl Item {
    /// About how many bytes the item takes in the answer's JSON.
    fn size(&self) -> usize {
        self.secret_id.len() + self.rotation_period.len() + 80
    }
}

/// `{"Triage": {...}}`: the event of the next triage call.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NextTriage {
    /// The request.
    pub triage: NextPage,
}

/// The request part of [`NextTriage`].
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NextPage {
    /// As the call was given it.
    pub rotation_period: String,
    /// Where ListSecrets goes on.
    pub next_token: String,
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// The periods the sweep decides with: the settings, and `rotation`.
    fn periods(&self, rotation: Duration) -> Periods {
        Periods {
            rotation,
            deactivate_after: self.config.deactivate_after,
            delete_after: self.config.delete_after,
            full_check_every: self.config.full_check_every,
            paused_alert_after: self.config.paused_alert_after,
        }
    }

    /// One triage call: up to [`PAGES_PER_TRIAGE`] pages of ListSecrets
    /// (fewer once the answer reaches [`ANSWER_BUDGET`]), and no other call; or, with `secret_ids`, those secrets, each
    /// described and due now (an explicit request to rotate and check).
    pub async fn triage_page(&self, req: &TriageRequest) -> Result<TriageAnswer> {
        if !req.secret_ids.is_empty() {
            return self.triage_named(req).await;
        }
        let periods = self.periods(req.period);
        let mut answer = TriageAnswer {
            items: Vec::new(),
            listed: 0,
            next: None,
        };
        let mut token = req.next_token.clone();
        for _ in 0..PAGES_PER_TRIAGE {
            let (verdicts, next) = self.triage_next(token.as_deref(), &periods).await?;
            answer.listed += verdicts.len();
            answer.items.extend(
                verdicts
                    .iter()
                    .filter(|(_, t)| t.is_due())
                    .map(|(info, t)| Item {
                        secret_id: info.arn.clone(),
                        rotate: t.rotate,
                        clean: t.clean,
                        rotation_period: req.rotation_period.clone(),
                    }),
            );
            token = next;
            let size: usize = answer.items.iter().map(Item::size).sum();
            if token.is_none() || size > ANSWER_BUDGET {
                break;
            }
        }
        answer.next = token.map(|next_token| NextTriage {
            triage: NextPage {
                rotation_period: req.rotation_period.clone(),
                next_token,
            },
        });
        info!(
            listed = answer.listed,
            due = answer.items.len(),
            more = answer.next.is_some(),
            "triaged"
        );
        Ok(answer)
    }

    /// One ListSecrets page from `token`, each secret with what is due
    /// (its metrics recorded), and where the next page starts.
    async fn triage_next(
        &self,
        token: Option<&str>,
        periods: &Periods,
    ) -> Result<(Vec<(SecretInfo, Triage)>, Option<String>)> {
        let page = self.vault.list_page(token).await?;
        let now = self.clock.now();
        let verdicts: Vec<(SecretInfo, Triage)> = page
            .secrets
            .into_iter()
            .map(|info| {
                // An admin secret's superseded key has a longer grace.
                let periods = Periods {
                    deactivate_after: self.grace_of(&info.name),
                    ..*periods
                };
                let verdict = triage(&info, now, &periods);
                (info, verdict)
            })
            .collect();
        // Passed over, never silently: a near miss of `rekey:managed` is
        // named here and counted (`ManagedTagNearMiss`).
        for (info, _) in verdicts
            .iter()
            .filter(|(_, t)| t.reason == Reason::ManagedTagNearMiss)
        {
            warn!(
                secret_id = %info.arn,
                "passed over: its tag rekey:managed is not exactly `true`, so rekey does not manage it; set rekey:managed=true to manage it, or remove the tag"
            );
        }
        self.report_paused(&verdicts).await;
        metrics::count_triage(&verdicts, now);
        Ok((verdicts, page.next_token))
    }

    /// Passed over, never silently (invariant liveness): each paused
    /// secret is named in a log line with since when it is paused, louder
    /// once past `REKEY_PAUSED_ALERT_AFTER` (the page's
    /// `SecretsPausedTooLong` counts those); a pause seen for the first
    /// time gets its `rekey:paused-since` record, and a pause that is over
    /// loses it. A record that cannot be written is tried again by the
    /// next sweep: the secret is reported all the same.
    async fn report_paused(&self, verdicts: &[(SecretInfo, Triage)]) {
        let bound = humantime::format_duration(self.config.paused_alert_after);
        for (info, t) in verdicts {
            if let Some(p) = t.pause {
                let since = timestamp(p.since);
                if p.too_long {
                    warn!(
                        secret_id = %info.arn,
                        paused_since = %since,
                        "passed over: paused (rekey:paused) since {since}, longer than REKEY_PAUSED_ALERT_AFTER ({bound}); nothing rotates or retires its keys: resume it (rekey resume) once the cause is understood"
                    );
                } else {
                    info!(
                        secret_id = %info.arn,
                        paused_since = %since,
                        "passed over: paused (rekey:paused) since {since}"
                    );
                }
            }
            let written = match t.pause_record {
                None => continue,
                Some(PauseRecord::Write(since)) => {
                    let tag = (TAG_PAUSED_SINCE.to_owned(), timestamp(since));
                    self.vault.tag(&info.arn, &[tag]).await
                }
                Some(PauseRecord::Remove) => {
                    let tag = TAG_PAUSED_SINCE.to_owned();
                    self.vault.untag(&info.arn, &[tag]).await
                }
            };
            if let Err(e) = written {
                warn!(
                    secret_id = %info.arn,
                    error_type = e.kind(),
                    error = %e,
                    "the record {TAG_PAUSED_SINCE} could not be changed; the next sweep tries again"
                );
            }
        }
    }

    /// The named secrets, each rotated (where the pipeline drives it) and
    /// checked; the functions' own guards refuse a paused or unmanaged one,
    /// and say so. A name that is no secret fails the call; a secret named
    /// twice is one item.
    async fn triage_named(&self, req: &TriageRequest) -> Result<TriageAnswer> {
        let mut items: Vec<Item> = Vec::with_capacity(req.secret_ids.len());
        for id in &req.secret_ids {
            let info = self.vault.describe(id).await?;
            // Named twice (by name and by ARN): one child, not two at once.
            if items.iter().any(|i| i.secret_id == info.arn) {
                continue;
            }
            items.push(Item {
                secret_id: info.arn,
                rotate: !info.rotation_enabled,
                clean: true,
                rotation_period: req.rotation_period.clone(),
            });
        }
        Ok(TriageAnswer {
            listed: items.len(),
            items,
            next: None,
        })
    }

    /// `rekey-cleanup {}`: the sweep for local and manual runs. Every page
    /// is triaged, and each secret with a retirement or check due is
    /// cleaned here (rotations are the state machine's). It starts no
    /// secret after `stop_at` (the invocation's deadline less a margin):
    /// the report counts those in `NotReached`, and the next run takes
    /// them. A secret that cannot be cleaned is skipped and reported; the
    /// sweep fails only if the secrets cannot be listed.
    pub async fn cleanup_all(&self, stop_at: Option<SystemTime>) -> Result<CleanupReport> {
        let periods = self.periods(Duration::MAX);
        let mut due = Vec::new();
        let mut token = None;
        loop {
            let (verdicts, next) = self.triage_next(token.as_deref(), &periods).await?;
            due.extend(
                verdicts
                    .iter()
                    .filter(|(_, t)| t.clean)
                    .map(|(info, _)| info.arn.clone()),
            );
            token = next;
            if token.is_none() {
                break;
            }
        }
        let out_of_time = |clock: &C| stop_at.is_some_and(|t| clock.now() >= t);
        let secrets: Vec<Option<SecretCleanup>> = futures::stream::iter(due)
            .map(|id| {
                let span = tracing::info_span!("secret", secret_id = %id);
                async move {
                    if out_of_time(&self.clock) {
                        return None;
                    }
                    Some(self.cleanup_or_skip(id).await)
                }
                .instrument(span)
            })
            .buffered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        let not_reached = secrets.iter().filter(|s| s.is_none()).count();
        if not_reached > 0 {
            warn!(
                not_reached,
                "out of time: the next run cleans the secrets not reached"
            );
        }
        Ok(CleanupReport {
            secrets: secrets.into_iter().flatten().collect(),
            not_reached,
            dry_run: self.config.dry_run,
        })
    }

    /// Cleans one secret; a failure is its report's `skipped` entry.
    async fn cleanup_or_skip(&self, id: String) -> SecretCleanup {
        match self.cleanup(&id).await {
            Ok(done) => done,
            Err(e) => {
                warn!(error_type = e.kind(), error = %e, "skipped secret");
                SecretCleanup {
                    secret_id: id,
                    status: "skipped",
                    reason: Some(e.to_string()),
                    error_type: Some(e.kind()),
                    ..Default::default()
                }
            }
        }
    }
}
