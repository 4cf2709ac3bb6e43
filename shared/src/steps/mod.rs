//! The rotation protocol: create, set, test, finish, cleanup. Each step
//! gathers facts through the ports, asks `plan` what to do, and does it.
//! Every step may run again with the same token any number of times.

mod cleanup;
mod create;
mod finish;
mod inspect;
mod rollback;
mod sweep;
mod verify;

pub use cleanup::{CleanupReport, SecretCleanup};
pub use create::Created;
pub use finish::Finished;
pub use inspect::{Inspection, RotationOutlook};
pub use rollback::{RollBack, RollBackOutcome};
pub use sweep::{Item, NextPage, NextTriage, TriageAnswer, TriageRequest, PAGES_PER_TRIAGE};
pub use verify::Probing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::warn;

use crate::config::Config;
use crate::dry_run::Gated;
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::model::{
    Credential, ManagedSecret, SecretFormatError, Signing, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};
use crate::ownership;
use crate::plan::PendingFacts;
use crate::ports::{
    Clock, Providers, SecretInfo, SecretVersion, Select, Signer, SystemClock, Vault,
};
use crate::records::{self, Enrolment};

/// The least grace period of a key an admin secret's rotation supersedes:
/// a function reads an admin key once per invocation and an invocation
/// runs at most 15 minutes (Lambda's limit), so a dependent that read the
/// old key just before the promotion still signs with an active key.
pub const ADMIN_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A provider's key management, behind its dry-run gate.
type Keys<P> = Gated<<P as Providers>::KeyApi>;

/// Who drives the rotation of a secret. A secret has one driver: the hook
/// when Secrets Manager rotation is enabled, the pipeline otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// The Secrets Manager rotation hook (rotation enabled on the secret).
    Hook,
    /// rekey's own pipeline (create, test, finish as separate functions).
    Pipeline,
}

/// The steps, bound to a vault, the providers, the settings and a clock
/// (the system's, unless a test gives its own with [`Rekey::with_clock`]).
/// The vault and the providers are reached through their gates, which hold
/// back every change in a dry run (`dry_run.rs`).
pub struct Rekey<V, P, C = SystemClock> {
    /// Where the managed secrets are (Secrets Manager).
    pub vault: Gated<V>,
    /// The providers that issue the keys.
    pub providers: Gated<P>,
    /// rekey's settings, from the function's environment.
    pub config: Config,
    /// The time source for grace periods, deadlines and pauses.
    pub clock: C,
    /// Where the Lambda edge puts the events for consumers (events.rs);
    /// none: no events.
    pub events: Option<Arc<dyn EventSink>>,
    /// The admin keys read in this invocation.
    admin_keys: AdminKeys,
}

/// The admin keys read in this invocation, by the `AdminSecretId` that
/// names them: each admin secret is read once per invocation however many
/// secrets it signs for (a sweep), and again in the next one
/// ([`Rekey::new_invocation`]), so an admin key rotated since is picked up.
#[derive(Debug, Default)]
struct AdminKeys(std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<AdminKey>>>>);

/// An admin secret as read: its AWSCURRENT key pair, and the token of its
/// own rotation when one is in progress (rekey rotates managed admin
/// secrets too).
#[derive(Clone, Debug)]
struct AdminKey {
    credential: Credential,
    rotating: Option<String>,
}

impl AdminKeys {
    /// The slot of `admin`'s key, filled by the first reader.
    fn slot(&self, admin: &str) -> Arc<tokio::sync::OnceCell<AdminKey>> {
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(admin.to_owned()).or_default().clone()
    }

    fn forget(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The AWSPENDING version of a rotation in progress, as read from the vault.
#[derive(Clone, Debug)]
pub(crate) struct InProgress {
    pub version: String,
    pub created: SystemTime,
    /// Its new key, when it holds one other than the current key.
    pub key: Option<String>,
    /// Not a valid secret of the current user and provider.
    pub foreign: bool,
    /// It was promoted already (it carries AWSPREVIOUS): a finish stopped
    /// before taking AWSPENDING off, and the version was superseded since.
    pub promoted: bool,
}

impl InProgress {
    /// What `plan::dead_pending` needs to know of it.
    pub fn facts(&self) -> PendingFacts<'_> {
        match (&self.key, self.foreign) {
            _ if self.promoted => PendingFacts::Promoted,
            (_, true) => PendingFacts::Foreign,
            (Some(id), false) => PendingFacts::Key {
                id,
                created: self.created,
            },
            (None, false) => PendingFacts::Empty,
        }
    }
}

/// Where the token's version stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenState {
    /// Already promoted: the rotation is finished.
    Current,
    /// Staged AWSPENDING.
    Pending,
    /// No version yet (pipeline create only).
    Absent,
}

impl<V, P> Rekey<V, P> {
    /// The steps on the system's clock; in a dry run (`config.dry_run`)
    /// they change nothing.
    pub fn new(vault: V, providers: P, config: Config) -> Self {
        Rekey {
            vault: Gated::new(vault, config.dry_run),
            providers: Gated::new(providers, config.dry_run),
            config,
            clock: SystemClock,
            events: None,
            admin_keys: AdminKeys::default(),
        }
    }
}

impl<V, P, C> Rekey<V, P, C> {
    /// The same steps, reading the time from `clock`.
    pub fn with_clock<C2: Clock>(self, clock: C2) -> Rekey<V, P, C2> {
        Rekey {
            vault: self.vault,
            providers: self.providers,
            config: self.config,
            clock,
            events: self.events,
            admin_keys: self.admin_keys,
        }
    }

    /// Starts an invocation: the admin keys read in the last one are
    /// forgotten.
    pub fn new_invocation(&self) {
        self.admin_keys.forget();
    }

    /// The same steps, with events put to `sink` by the Lambda edge.
    pub fn with_events(mut self, sink: impl EventSink + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }
}

impl<V: Vault, P: Providers, C: Clock> Rekey<V, P, C> {
    /// The provider of `secret`, signing with what the secret names: the
    /// function's own role, the key pair in its `AdminSecretId` secret, or
    /// else the user's own key in `secret`.
    async fn provider_for(&self, secret_id: &str, secret: &ManagedSecret) -> Result<Keys<P>> {
        let kind = secret.provider;
        let signer = match (kind.signing(), &secret.admin_secret_id, &secret.credential) {
            (Signing::Ambient, _, _) => None,
            (Signing::KeyPair, Some(admin), _) => Some(Signer {
                credential: self.admin_key(secret_id, admin, secret).await?.credential,
                origin: format!("the admin key in secret {admin}"),
                project_id: secret.project_id.clone(),
            }),
            (Signing::KeyPair, None, Some(own)) => Some(Signer {
                credential: own.clone(),
                origin: format!("the user's own key in secret {secret_id}"),
                project_id: secret.project_id.clone(),
            }),
            (Signing::KeyPair, None, None) => {
                return Err(Error::invalid_secret(
                    secret_id,
                    AWSCURRENT,
                    format!(
                        "it holds no key to sign {} calls with: add AdminSecretId naming a secret that holds an admin key pair, or put the user's current AccessKeyId and {} in it",
                        kind.name(),
                        kind.secret_field()
                    ),
                ))
            }
        };
        if let Some(reason) = ownership::account_not_allowed(&self.config.member, secret) {
            return Err(Error::UserNotManaged {
                user: secret.user_name.clone(),
                reason,
            });
        }
        self.providers.open(secret, signer).await
    }

    /// Refuses a secret that does not own the user its value names
    /// (invariant one-owner; ownership.rs), before any change.
    pub(crate) fn check_owner(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        secret: &ManagedSecret,
    ) -> Result<()> {
        let (prefix, admins) = (&self.config.secret_prefix, &self.config.admin_secret_prefix);
        match ownership::not_owner(prefix, admins, &info.name, secret) {
            None => Ok(()),
            Some(reason) => Err(Error::SecretNotOwner {
                secret_id: secret_id.to_owned(),
                reason,
            }),
        }
    }

    /// Refuses a key-pair secret whose user a managed admin secret owns
    /// (ownership.rs: the admin secret takes precedence).
    pub(crate) async fn check_admin_claim(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        secret: &ManagedSecret,
    ) -> Result<()> {
        let admins = &self.config.admin_secret_prefix;
        let Some(admin) = ownership::admin_claim(admins, &info.name, secret) else {
            return Ok(());
        };
        match self.vault.describe(&admin).await {
            Ok(found) if records::is_managed(&found) => Err(Error::SecretNotOwner {
                secret_id: secret_id.to_owned(),
                reason: ownership::claimed_by_admin(&info.name, &found.name, secret),
            }),
            Ok(_) | Err(Error::SecretNotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Refuses to start a rotation signed by an admin secret whose own
    /// rotation is in progress (its key is about to be replaced).
    pub(crate) async fn check_admin_settled(
        &self,
        secret_id: &str,
        secret: &ManagedSecret,
    ) -> Result<()> {
        let Some(admin) = secret.admin_secret_id.as_deref() else {
            return Ok(());
        };
        if secret.provider.signing() != Signing::KeyPair {
            return Ok(());
        }
        match self.admin_key(secret_id, admin, secret).await?.rotating {
            None => Ok(()),
            Some(token) => Err(Error::RotationInProgress {
                secret_id: secret_id.to_owned(),
                other_token: token,
                admin: Some(admin.to_owned()),
            }),
        }
    }

    /// How long the key a rotation of the secret named `name` supersedes
    /// stays active: `REKEY_DEACTIVATE_AFTER`, and for an admin secret at
    /// least [`ADMIN_GRACE`].
    pub(crate) fn grace_of(&self, name: &str) -> std::time::Duration {
        let grace = self.config.deactivate_after;
        match ownership::is_admin_secret(&self.config.admin_secret_prefix, name) {
            true => grace.max(ADMIN_GRACE),
            false => grace,
        }
    }

    /// The key pair in the AWSCURRENT version of an admin secret, read once
    /// per invocation.
    async fn admin_key(
        &self,
        secret_id: &str,
        admin: &str,
        secret: &ManagedSecret,
    ) -> Result<AdminKey> {
        if let Some(reason) = ownership::bad_admin_secret(&self.config.admin_secret_prefix, admin) {
            return Err(Error::SecretNotOwner {
                secret_id: secret_id.to_owned(),
                reason,
            });
        }
        let slot = self.admin_keys.slot(admin);
        let key = slot
            .get_or_try_init(|| self.read_admin_key(secret_id, admin, secret))
            .await?;
        Ok(key.clone())
    }

    /// Reads and parses the key pair of admin secret `admin`, and whether
    /// its own rotation is in progress.
    async fn read_admin_key(
        &self,
        secret_id: &str,
        admin: &str,
        secret: &ManagedSecret,
    ) -> Result<AdminKey> {
        let unusable = |why: String| {
            Error::invalid_secret(
                secret_id,
                AWSCURRENT,
                format!("its AdminSecretId {admin} {why}"),
            )
        };
        let missing = || {
            unusable(
                "was not found or has no AWSCURRENT value: check the name and that the function may read it".into(),
            )
        };
        let info = match self.vault.describe(admin).await {
            Ok(info) => info,
            Err(Error::SecretNotFound { .. }) => return Err(missing()),
            Err(e) => return Err(e),
        };
        // Read after the describe: a rotation that finishes in between
        // leaves a newer key than the one it was judged by, never an older.
        let version = match self.vault.read(admin, Select::Stage(AWSCURRENT)).await {
            Ok(Some(v)) => v,
            Ok(None) | Err(Error::SecretNotFound { .. }) => return Err(missing()),
            Err(e) => return Err(e),
        };
        let credential = ManagedSecret::parse_key_pair(version.value.expose(), secret.provider)
            .map_err(|why| {
                unusable(format!(
                    "does not hold a key pair of provider {}: {why}",
                    secret.provider.name()
                ))
            })?;
        let rotating = info
            .version_with(AWSPENDING)
            .filter(|v| !info.has_stage(v, AWSCURRENT))
            .map(str::to_owned);
        Ok(AdminKey {
            credential,
            rotating,
        })
    }

    /// setSecret: the key already exists after createSecret, so there is
    /// nothing to push; the guard still checks the request.
    pub async fn set(&self, secret_id: &str, token: &str, driver: Driver) -> Result<()> {
        self.guard(secret_id, token, driver).await?;
        Ok(())
    }

    /// The checks before every step: the secret is managed and not paused,
    /// belongs to this driver, and the token is a rotation in progress.
    async fn guard(
        &self,
        secret_id: &str,
        token: &str,
        driver: Driver,
    ) -> Result<(SecretInfo, TokenState)> {
        let info = self.vault.describe(secret_id).await?;
        check_managed(secret_id, &info)?;
        check_driver(secret_id, &info, driver)?;
        let state = token_state(secret_id, &info, token, driver)?;
        Ok((info, state))
    }

    /// The rotation in progress in `version` (staged AWSPENDING), judged
    /// against the AWSCURRENT secret `current`.
    pub(crate) async fn in_progress(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        version: &str,
        current: &ManagedSecret,
    ) -> Result<InProgress> {
        let read = self.vault.read(secret_id, pending_version(version)).await?;
        let mut found = InProgress {
            version: version.to_owned(),
            created: SystemTime::UNIX_EPOCH,
            key: None,
            foreign: false,
            promoted: info.has_stage(version, AWSPREVIOUS),
        };
        let Some(read) = read else {
            return Ok(found);
        };
        found.created = read.created;
        match ManagedSecret::parse(read.value.expose()) {
            Ok(p) if p.same_user(current) => found.key = other_key(&p, current),
            _ => found.foreign = true,
        }
        Ok(found)
    }

    /// Takes AWSPENDING off a rotation that can never finish, so that the
    /// next rotation comes with a new token (versions are immutable).
    pub(crate) async fn abandon(
        &self,
        secret_id: &str,
        pending: &InProgress,
        reason: &str,
    ) -> Result<()> {
        warn!(
            token = pending.version,
            reason, "the rotation in progress can never finish: taking AWSPENDING off its version"
        );
        self.vault
            .move_stage(secret_id, AWSPENDING, None, Some(&pending.version))
            .await
    }

    /// The key the AWSPREVIOUS version holds, when it is another version
    /// than AWSCURRENT and holds another key of the same user and
    /// provider: the one reader of AWSPREVIOUS, for create and cleanup
    /// (`plan::is_superseded` then adds rekey's records).
    pub(crate) async fn previous_key(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        current: &ManagedSecret,
    ) -> Result<Option<String>> {
        match info.version_with(AWSPREVIOUS) {
            Some(v) if Some(v) != info.version_with(AWSCURRENT) => {}
            _ => return Ok(None),
        }
        let Some(read) = self
            .vault
            .read(secret_id, Select::Stage(AWSPREVIOUS))
            .await?
        else {
            return Ok(None);
        };
        Ok(match ManagedSecret::parse(read.value.expose()) {
            Ok(p) if p.same_user(current) => other_key(&p, current),
            Ok(_) => None,
            Err(_) => {
                warn!("the AWSPREVIOUS version is not a valid secret; its key is retired only by rekey's records");
                None
            }
        })
    }

    /// The token's AWSPENDING version, parsed, and when it was created: the
    /// key test and finish read the key to test or promote here. `None`
    /// when it holds no value.
    async fn read_pending(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<Option<(ManagedSecret, SystemTime)>> {
        let which = pending_version(token);
        match self.vault.read(secret_id, which).await? {
            Some(version) => Ok(Some((
                self.parse(secret_id, &label(which), &version)?,
                version.created,
            ))),
            None => {
                // The guard saw the token AWSPENDING; another run may have
                // moved the label since (a race of two rotations).
                let info = self.vault.describe(secret_id).await?;
                if !info.has_stage(token, AWSPENDING) {
                    return Err(Error::TokenNotPending {
                        secret_id: secret_id.to_owned(),
                        token: token.to_owned(),
                    });
                }
                Ok(None)
            }
        }
    }

    /// The key of `pending`, the secret a step tests or promotes: it must
    /// own its user (invariant one-owner) and hold a key.
    fn pending_credential<'s>(
        &self,
        secret_id: &str,
        info: &SecretInfo,
        pending: &'s ManagedSecret,
    ) -> Result<&'s Credential> {
        self.check_owner(secret_id, info, pending)?;
        pending
            .credential
            .as_ref()
            .ok_or_else(|| Error::invalid_secret(secret_id, AWSPENDING, "it holds no access key"))
    }

    /// Reads and parses a version that must exist.
    async fn read_secret(
        &self,
        secret_id: &str,
        which: Select<'_>,
    ) -> Result<(SecretVersion, ManagedSecret)> {
        let label = label(which);
        let version = self
            .vault
            .read(secret_id, which)
            .await?
            .ok_or_else(|| Error::invalid_secret(secret_id, &label, "it holds no value"))?;
        let secret = self.parse(secret_id, &label, &version)?;
        Ok((version, secret))
    }

    fn parse(
        &self,
        secret_id: &str,
        label: &str,
        version: &SecretVersion,
    ) -> Result<ManagedSecret> {
        ManagedSecret::parse(version.value.expose()).map_err(|e| match e {
            SecretFormatError::Invalid(reason) => Error::invalid_secret(secret_id, label, reason),
            SecretFormatError::UnknownProvider(provider) => Error::UnknownProvider {
                secret_id: secret_id.to_owned(),
                provider,
            },
        })
    }
}

/// Refuses a secret that is not tagged `rekey:managed` = `true` (a near
/// miss is told what to set), or is paused (invariant
/// managed-users-only): the check before every step.
fn check_managed(secret_id: &str, info: &SecretInfo) -> Result<()> {
    match records::enrolment(info) {
        Enrolment::Managed => Ok(()),
        e @ (Enrolment::NotManaged | Enrolment::NearMiss) => {
            Err(records::not_managed(secret_id, e))
        }
        Enrolment::Paused => Err(Error::SecretPaused {
            secret_id: secret_id.to_owned(),
        }),
    }
}

/// Refuses a driver that does not own the secret's rotation: the hook
/// when rotation is on, the pipeline when it is off.
fn check_driver(secret_id: &str, info: &SecretInfo, driver: Driver) -> Result<()> {
    let secret_id = secret_id.to_owned();
    match (driver, info.rotation_enabled) {
        (Driver::Hook, false) => Err(Error::RotationNotEnabled { secret_id }),
        (Driver::Pipeline, true) => Err(Error::RotationOwnedByHook { secret_id }),
        _ => Ok(()),
    }
}

/// Where the token's version stands; only the pipeline's create may start
/// a new one, and not while another rotation is in progress.
fn token_state(
    secret_id: &str,
    info: &SecretInfo,
    token: &str,
    driver: Driver,
) -> Result<TokenState> {
    let id = || secret_id.to_owned();
    if !info.versions.contains_key(token) {
        if driver == Driver::Hook {
            return Err(Error::TokenNotFound {
                secret_id: id(),
                token: token.to_owned(),
            });
        }
        // A new pipeline rotation must not overtake one in progress.
        if let Some(other) = info.version_with(AWSPENDING) {
            if !info.has_stage(other, AWSCURRENT) {
                return Err(Error::RotationInProgress {
                    secret_id: id(),
                    other_token: other.to_owned(),
                    admin: None,
                });
            }
        }
        Ok(TokenState::Absent)
    } else if info.has_stage(token, AWSCURRENT) {
        Ok(TokenState::Current)
    } else if info.has_stage(token, AWSPENDING) {
        Ok(TokenState::Pending)
    } else {
        Err(Error::TokenNotPending {
            secret_id: id(),
            token: token.to_owned(),
        })
    }
}

/// The key `secret` holds, when it is not the key `other` holds: the one
/// rule by which in_progress, previous_key and finish tell a version's key
/// from the current one. The caller has checked that both name the same
/// user.
fn other_key(secret: &ManagedSecret, other: &ManagedSecret) -> Option<String> {
    secret
        .key_id()
        .filter(|id| Some(*id) != other.key_id())
        .map(str::to_owned)
}

/// The token's version, which must carry AWSPENDING.
fn pending_version(token: &str) -> Select<'_> {
    Select::Version {
        id: token,
        stage: AWSPENDING,
    }
}

/// How a version is named in messages: its stage, or `version <id> (<stage>)`.
fn label(which: Select<'_>) -> String {
    match which {
        Select::Stage(stage) => stage.to_owned(),
        Select::Version { id, stage } => format!("version {id} ({stage})"),
    }
}
