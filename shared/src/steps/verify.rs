//! testSecret / rekey-test: the new key must authenticate as the managed
//! user several times in a row (IAM is eventually consistent: a new key may
//! pass once and fail the next call).

use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{Driver, Rekey, TokenState};
use crate::error::{Error, Result};
use crate::model::{Credential, ManagedSecret, AWSCURRENT, AWSPENDING};
use crate::ports::{Clock, Providers, Select, Vault};

/// How long a test may take.
#[derive(Clone, Copy, Debug)]
pub enum Probing {
    /// Retry with backoff until the key passes or this moment of the
    /// step's clock (the hook).
    Until(SystemTime),
    /// One run of consecutive probes; any failure is `KeyNotReady` at once
    /// (the pipeline: Step Functions waits and retries).
    Once,
}

/// The first pause after a failed probe; it doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The pipeline's spacing between consecutive probes is kept short.
const MAX_PIPELINE_SPACING: Duration = Duration::from_millis(500);

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
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
        let pending = match self
            .vault
            .read(secret_id, Select::Version(token, AWSPENDING))
            .await?
        {
            Some(v) => self.parse(secret_id, &format!("version {token} (AWSPENDING)"), &v)?,
            // Secrets Manager checking the configuration (RotateImmediately
            // = false): there is no new key, so test the current one.
            None if driver == Driver::Hook => {
                let (_, current) = self
                    .read_secret(secret_id, Select::Stage(AWSCURRENT))
                    .await?;
                if current.credential.is_none() {
                    info!("no pending value and no current key: nothing to test");
                    return Ok(());
                }
                current
            }
            None => {
                return Err(Error::invalid_secret(
                    secret_id,
                    &format!("version {token} (AWSPENDING)"),
                    "it holds no value: run rekey-create with this token first",
                ))
            }
        };
        self.check_owner(secret_id, &info, &pending)?;
        let Some(credential) = pending.credential.as_ref() else {
            return Err(Error::invalid_secret(
                secret_id,
                AWSPENDING,
                "it holds no access key",
            ));
        };
        self.probe(
            secret_id,
            &pending,
            credential,
            probing,
            self.config.test_consecutive,
        )
        .await
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
        let mut backoff = MIN_BACKOFF;
        let mut attempts = 0u32;
        let mut last_error: Option<String> = None;
        loop {
            attempts += 1;
            let outcome = self.providers.whoami(secret, credential).await;
            let failure = match outcome {
                Ok(name) if name == secret.user_name => {
                    passed += 1;
                    if passed >= needed {
                        info!(
                            key_id = credential.access_key_id,
                            attempts, "the new key authenticates"
                        );
                        return Ok(());
                    }
                    None
                }
                Ok(name) => {
                    return Err(Error::KeyIdentityMismatch {
                        secret_id: secret_id.to_owned(),
                        key_id: credential.access_key_id.clone(),
                        user: secret.user_name.clone(),
                        actual: name,
                    })
                }
                Err(e) => Some(e),
            };
            let pause = match failure {
                None => spacing,
                Some(e) => {
                    if let Probing::Once = probing {
                        return Err(not_ready(secret, credential, &e.to_string(), attempts));
                    }
                    warn!(key_id = credential.access_key_id, attempts, error = %e, "the new key does not authenticate yet");
                    passed = 0;
                    last_error = Some(e.to_string());
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
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
