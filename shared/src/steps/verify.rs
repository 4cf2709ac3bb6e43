//! testSecret / rekey-test: the new key must authenticate as the managed
//! user several times in a row (IAM is eventually consistent: a new key may
//! pass once and fail the next call).

use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{label, pending_version, Driver, Rekey, TokenState};
use crate::error::{Error, Result};
use crate::model::{Credential, ManagedSecret, AWSCURRENT};
use crate::ports::{within, Clock, Providers, Select, Vault};

/// How long a test may take.
#[derive(Clone, Copy, Debug)]
pub enum Probing {
    /// Retry with backoff until the key passes or this moment of the
    /// step's clock (the hook).
    Until(SystemTime),
    /// One run of consecutive probes; any failure is `KeyNotReady` at once
    /// (the pipeline: Step Functions waits and retries). A throttled probe
    /// is asked again, [`MAX_UNANSWERED_ONCE`] times at most.
    Once,
}

/// The first pause after a failed probe; it doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause after a failed probe.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The pipeline's spacing between consecutive probes is kept short.
const MAX_PIPELINE_SPACING: Duration = Duration::from_millis(500);
/// A single test (the pipeline's, finish's last one) asks again this many
/// times when a probe is throttled before it reports `ServiceUnavailable`.
const MAX_UNANSWERED_ONCE: u32 = 3;

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// testSecret: the key of the token's version must authenticate as its
    /// user `test_consecutive` times in a row (invariant current-key-works:
    /// only a key that passes is promoted).
    pub async fn verify(
        &self,
        secret_id: &str,
        token: &str,
        driver: Driver,
        probing: Probing,
    ) -> Result<()> {
        let (info, state) = self.guard(secret_id, token, driver).await?;
        match state {
            TokenState::Current => return Ok(()),
            TokenState::Absent => {
                return Err(Error::TokenNotFound {
                    secret_id: secret_id.to_owned(),
                    token: token.to_owned(),
                })
            }
            TokenState::Pending => {}
        }
        let Some(pending) = self.secret_to_test(secret_id, token, driver).await? else {
            info!("no pending value and no current key: nothing to test");
            return Ok(());
        };
        let credential = self.pending_credential(secret_id, &info, &pending)?;
        self.probe(
            secret_id,
            &pending,
            credential,
            probing,
            self.config.test_consecutive,
        )
        .await
    }

    /// The secret whose key the test probes: the token's AWSPENDING value.
    /// When it holds none, the hook is Secrets Manager checking the
    /// configuration (RotateImmediately = false): there is no new key, so
    /// the current one is tested (`None` if there is none either).
    async fn secret_to_test(
        &self,
        secret_id: &str,
        token: &str,
        driver: Driver,
    ) -> Result<Option<ManagedSecret>> {
        if let Some((pending, _)) = self.read_pending(secret_id, token).await? {
            return Ok(Some(pending));
        }
        if driver != Driver::Hook {
            return Err(Error::invalid_secret(
                secret_id,
                &label(pending_version(token)),
                "it holds no value: run rekey-create with this token first",
            ));
        }
        let (_, current) = self
            .read_secret(secret_id, Select::Stage(AWSCURRENT))
            .await?;
        Ok(current.credential.is_some().then_some(current))
    }

    /// Probes until `needed` consecutive successes (see [`Probing`]).
    pub(super) async fn probe(
        &self,
        secret_id: &str,
        secret: &ManagedSecret,
        credential: &Credential,
        probing: Probing,
        needed: u32,
    ) -> Result<()> {
        let spacing = match probing {
            Probing::Once => self.config.test_spacing.min(MAX_PIPELINE_SPACING),
            Probing::Until(_) => self.config.test_spacing,
        };
        let mut passed = 0;
        let mut backoff = Backoff::new();
        let mut attempts = 0u32;
        let mut unanswered = 0u32;
        let mut last_error: Option<String> = None;
        loop {
            attempts += 1;
            // A probe never outlasts the test's deadline (the retries inside
            // a provider's call included): no answer by then is no answer.
            let answer = match probing {
                Probing::Until(deadline) => {
                    let left = deadline
                        .duration_since(self.clock.now())
                        .unwrap_or_default();
                    within(&self.clock, left, self.providers.whoami(secret, credential)).await
                }
                Probing::Once => Some(self.providers.whoami(secret, credential).await),
            };
            let Some(answer) = answer else {
                let reason = last_error.unwrap_or_else(|| {
                    "no answer from the provider before the test's deadline".into()
                });
                return Err(not_ready(secret, credential, &reason, attempts));
            };
            let pause = match answer {
                Ok(name) if name == secret.user_name => {
                    passed += 1;
                    if passed >= needed {
                        info!(
                            key_id = credential.access_key_id,
                            attempts, "the new key authenticates"
                        );
                        return Ok(());
                    }
                    spacing
                }
                Ok(name) => return Err(identity_mismatch(secret_id, secret, credential, name)),
                // Throttled or unavailable: the probe was not answered, which
                // says nothing of the key; the successes so far stand.
                Err(
                    e @ Error::Service {
                        retryable: true, ..
                    },
                ) => {
                    unanswered += 1;
                    if matches!(probing, Probing::Once) && unanswered > MAX_UNANSWERED_ONCE {
                        return Err(e);
                    }
                    warn!(key_id = credential.access_key_id, attempts, error = %e, "the probe was not answered; trying again");
                    last_error = Some(e.to_string());
                    backoff.next_pause()
                }
                Err(e) => {
                    if let Probing::Once = probing {
                        return Err(not_ready(secret, credential, &e.to_string(), attempts));
                    }
                    warn!(key_id = credential.access_key_id, attempts, error = %e, "the new key does not authenticate yet");
                    passed = 0;
                    last_error = Some(e.to_string());
                    backoff.next_pause()
                }
            };
            if let Probing::Until(deadline) = probing {
                if self.clock.now() + pause >= deadline {
                    let reason = last_error.unwrap_or_else(|| "time ran out".into());
                    return Err(not_ready(secret, credential, &reason, attempts));
                }
            }
            self.clock.sleep(pause).await;
        }
    }
}

/// The pauses after failed probes: from `MIN_BACKOFF`, doubling up to
/// `MAX_BACKOFF`.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: MIN_BACKOFF }
    }

    /// The pause after this failure; the next one is twice as long.
    fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        pause
    }
}

/// The key authenticated, as someone other than the secret's user.
fn identity_mismatch(
    secret_id: &str,
    secret: &ManagedSecret,
    credential: &Credential,
    actual: String,
) -> Error {
    Error::KeyIdentityMismatch {
        secret_id: secret_id.to_owned(),
        key_id: credential.access_key_id.clone(),
        user: secret.user_name.clone(),
        actual,
    }
}

fn not_ready(
    secret: &ManagedSecret,
    credential: &Credential,
    reason: &str,
    attempts: u32,
) -> Error {
    Error::KeyNotReady {
        user: secret.user_name.clone(),
        key_id: credential.access_key_id.clone(),
        reason: format!(
            "{reason} (after {attempts} probes); the key stays AWSPENDING and AWSCURRENT is unchanged, so the rotation can be retried"
        ),
    }
}
