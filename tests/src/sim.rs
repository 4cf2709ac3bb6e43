//! In-memory ports for the deterministic simulation: a vault that behaves
//! as AWS Secrets Manager does (not as moto does), key providers with
//! per-user limits, and a clock whose `sleep` moves time at once. One
//! shared [`Sim`] implements `Vault`, `Providers` and `Clock`, so the real
//! steps and handlers run against it: `Rekey<Sim, Sim, Sim>`.
//!
//! Everything rekey does to a key goes through here, so the state records
//! it with who did it, and notes a safety violation the moment it happens
//! (rekey hitting a key limit, or touching a key some secret's AWSCURRENT
//! holds). One-shot fault hooks break the next call of an operation.

use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use rekey::model::{
    AccessKey, Credential, KeyStatus, LastUsed, ManagedSecret, Provider, Sensitive, AWSCURRENT,
    AWSPENDING, AWSPREVIOUS,
};
use rekey::ports::Vault;
use rekey::ports::{
    Clock, KeyApi, Providers, SecretInfo, SecretPage, SecretVersion, Select, Signer,
};
use rekey::records::TAG_MANAGED;
use rekey::{Error, Result};

/// The calls a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// DescribeSecret.
    Describe,
    /// GetSecretValue.
    Read,
    /// PutSecretValue (staging AWSPENDING).
    PutPending,
    /// UpdateSecretVersionStage.
    MoveStage,
    /// TagResource.
    Tag,
    /// UntagResource.
    Untag,
    /// ListSecrets of the secrets tagged `rekey:managed`.
    ListManaged,
    /// A provider's ListAccessKeys.
    ListKeys,
    /// A provider's CreateAccessKey.
    CreateKey,
    /// A provider's deactivation of a key (UpdateAccessKey to Inactive).
    Deactivate,
    /// A provider's DeleteAccessKey.
    Delete,
    /// A provider's GetAccessKeyLastUsed.
    LastUsed,
    /// The probe of a new key (STS GetCallerIdentity).
    Whoami,
}

impl Op {
    /// Every operation, for tests that try a fault on each.
    pub const ALL: [Op; 13] = [
        Op::Describe,
        Op::Read,
        Op::PutPending,
        Op::MoveStage,
        Op::Tag,
        Op::Untag,
        Op::ListManaged,
        Op::ListKeys,
        Op::CreateKey,
        Op::Deactivate,
        Op::Delete,
        Op::LastUsed,
        Op::Whoami,
    ];
}

/// What a fault does to the call it hits (the names of `proxy::Fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call takes effect, then its answer is lost.
    DropResponse,
    /// A 5xx before the call takes effect.
    ServerError,
    /// Throttled before the call takes effect.
    Throttle,
}

impl Fault {
    /// Every fault, for tests that try each.
    pub const ALL: [Fault; 3] = [Fault::DropResponse, Fault::ServerError, Fault::Throttle];

    fn error(self, op: Op) -> Error {
        let (code, message) = match self {
            Fault::DropResponse => ("DispatchFailure", "the connection closed before the answer"),
            Fault::ServerError => ("InternalFailure", "simulated 500"),
            Fault::Throttle => ("ThrottlingException", "Rate exceeded"),
        };
        Error::Service {
            service: "sim",
            operation: op_name(op),
            code: code.into(),
            message: message.into(),
            retryable: true,
        }
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Describe => "DescribeSecret",
        Op::Read => "GetSecretValue",
        Op::PutPending => "PutSecretValue",
        Op::MoveStage => "UpdateSecretVersionStage",
        Op::Tag => "TagResource",
        Op::Untag => "UntagResource",
        Op::ListManaged => "ListSecrets",
        Op::ListKeys => "ListAccessKeys",
        Op::CreateKey => "CreateAccessKey",
        Op::Deactivate => "UpdateAccessKey",
        Op::Delete => "DeleteAccessKey",
        Op::LastUsed => "GetAccessKeyLastUsed",
        Op::Whoami => "GetCallerIdentity",
    }
}

/// Who changed a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// rekey, through the ports.
    Rekey,
    /// A person or tool outside rekey (a test's set-up or interference).
    Operator,
}

/// A change to a key, for the trace and the checks.
#[derive(Clone, Debug)]
pub struct Effect {
    /// Who made the change.
    pub actor: Actor,
    /// What was done: `create`, `deactivate`, `delete`, ...
    pub what: &'static str,
    /// The user whose key it is.
    pub user: String,
    /// The key changed.
    pub key_id: String,
    /// When, on the simulated clock.
    pub at: SystemTime,
}

/// One version of a simulated secret.
#[derive(Clone, Debug)]
pub struct Version {
    /// The version id (a rotation's token).
    pub id: String,
    /// When it was created, on the simulated clock.
    pub created: SystemTime,
    /// `None`: the empty version Secrets Manager makes when it starts a
    /// rotation, until PutSecretValue fills it.
    pub value: Option<String>,
    /// Its staging labels (AWSCURRENT, AWSPENDING, AWSPREVIOUS).
    pub stages: Vec<String>,
}

/// A simulated Secrets Manager secret.
#[derive(Clone, Debug)]
pub struct Secret {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Whether Secrets Manager rotation is enabled (the hook drives it).
    pub rotation_enabled: bool,
    /// Its tags, rekey's records among them.
    pub tags: BTreeMap<String, String>,
    /// Its versions, oldest first.
    pub versions: Vec<Version>,
}

impl Secret {
    /// The version carrying `stage`, if any.
    pub fn with_stage(&self, stage: &str) -> Option<&Version> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
    }

    /// The key id the version carrying `stage` holds.
    pub fn key_with(&self, stage: &str) -> Option<String> {
        let value = self.with_stage(stage)?.value.as_deref()?;
        ManagedSecret::parse(value)
            .ok()?
            .key_id()
            .map(str::to_owned)
    }
}

/// A simulated provider access key.
#[derive(Clone, Debug)]
pub struct Key {
    /// Its access key id.
    pub id: String,
    /// Its secret half.
    pub secret: String,
    /// Whether it is active.
    pub status: KeyStatus,
    /// When it was created, on the simulated clock.
    pub created: SystemTime,
    /// When it last signed a request; `None` if never.
    pub last_used: Option<SystemTime>,
    /// It does not authenticate before this (IAM's eventual consistency).
    pub ready_at: SystemTime,
    /// Who created it.
    pub made_by: Actor,
}

/// Everything the simulated services hold.
pub struct State {
    /// The simulated clock's time.
    pub now: SystemTime,
    /// Every secret in the vault.
    pub secrets: Vec<Secret>,
    /// (provider, user) -> keys, oldest first.
    pub users: BTreeMap<(Provider, String), Vec<Key>>,
    /// Each provider's per-user key limit.
    pub limits: BTreeMap<Provider, usize>,
    /// The IAM user's `rekey:owner` tag: its owning secret's ARN.
    pub owner_tags: BTreeMap<(Provider, String), String>,
    /// One-shot faults: the next call of `Op` fails so.
    pub armed: Vec<(Op, Fault)>,
    /// How long the next key rekey creates takes to authenticate.
    pub next_key_delay: Duration,
    /// Every change to a key, in order.
    pub effects: Vec<Effect>,
    /// Safety violations seen as they happened.
    pub violations: Vec<String>,
    /// Every key the providers issued: its id and secret half.
    pub issued: Vec<(String, String)>,
    /// Keys rekey made whose creation answer was lost: it never learned
    /// their ids.
    pub never_told: std::collections::BTreeSet<String>,
    serial: u64,
}

/// The simulated world, shared by the ports and the simulator.
#[derive(Clone)]
pub struct Sim(Rc<RefCell<State>>);

/// When every simulation starts: 2030-01-01T00:00:00Z.
pub const EPOCH: Duration = Duration::from_secs(1_893_456_000);
const ACCOUNT_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:";

impl Default for Sim {
    fn default() -> Self {
        Sim(Rc::new(RefCell::new(State {
            now: SystemTime::UNIX_EPOCH + EPOCH,
            secrets: Vec::new(),
            users: BTreeMap::new(),
            limits: [
                (Provider::Aws, 2),
                (Provider::Alibaba, 2),
                (Provider::SCloud, 3),
            ]
            .into(),
            owner_tags: BTreeMap::new(),
            armed: Vec::new(),
            next_key_delay: Duration::ZERO,
            effects: Vec::new(),
            violations: Vec::new(),
            issued: Vec::new(),
            never_told: Default::default(),
            serial: 0,
        })))
    }
}

impl Sim {
    /// The world's state, to read or change (do not hold it across a call
    /// into the ports).
    pub fn state(&self) -> RefMut<'_, State> {
        self.0.borrow_mut()
    }

    /// The simulated clock's time.
    pub fn now(&self) -> SystemTime {
        self.0.borrow().now
    }

    /// Moves the simulated clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.state().now += by;
    }

    /// Makes the next call of `op` fail with `fault` (once).
    pub fn arm(&self, op: Op, fault: Fault) {
        self.state().armed.push((op, fault));
    }

    /// Fails with the fault armed for `op`, if any, before the call.
    /// `DropResponse` is returned for the caller to apply after the change.
    fn fault(&self, op: Op) -> Result<Option<Error>> {
        let mut s = self.state();
        let Some(i) = s.armed.iter().position(|(o, _)| *o == op) else {
            return Ok(None);
        };
        let (_, fault) = s.armed.remove(i);
        match fault {
            Fault::DropResponse => Ok(Some(fault.error(op))),
            _ => Err(fault.error(op)),
        }
    }

    /// `result`, unless a lost answer was armed for this call.
    fn answer<T>(lost: Option<Error>, result: Result<T>) -> Result<T> {
        match (lost, result) {
            (Some(e), Ok(_)) => Err(e),
            (_, r) => r,
        }
    }
}

impl State {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// The secret whose ARN or name is `id`.
    pub fn secret(&self, id: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.arn == id || s.name == id)
    }

    fn secret_mut(&mut self, id: &str) -> Result<&mut Secret> {
        self.secrets
            .iter_mut()
            .find(|s| s.arn == id || s.name == id)
            .ok_or_else(|| Error::SecretNotFound {
                secret_id: id.to_owned(),
            })
    }

    /// CreateSecret: one version, AWSCURRENT. Returns the ARN.
    pub fn create_secret(&mut self, name: &str, value: &str, tags: &[(&str, &str)]) -> String {
        let serial = self.next_serial();
        let arn = format!("{ACCOUNT_ARN}{name}-{serial:06}");
        let version = format!("{:08x}-0000-4000-8000-{serial:012x}", serial);
        self.secrets.push(Secret {
            arn: arn.clone(),
            name: name.to_owned(),
            rotation_enabled: false,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            versions: vec![Version {
                id: version,
                created: self.now,
                value: Some(value.to_owned()),
                stages: vec![AWSCURRENT.into()],
            }],
        });
        arn
    }

    /// RotateSecret as AWS does it: a rotation in progress (AWSPENDING on a
    /// version that is not AWSCURRENT) is retried with its own token;
    /// otherwise an empty version for `token` is staged AWSPENDING.
    /// Returns the token the rotation runs with.
    pub fn start_rotation(&mut self, id: &str, token: &str) -> String {
        let now = self.now;
        let secret = self.secret_mut(id).expect("a simulated secret");
        secret.rotation_enabled = true;
        if let Some(v) = secret.with_stage(AWSPENDING) {
            if !v.stages.iter().any(|s| s == AWSCURRENT) {
                return v.id.clone();
            }
        }
        take_stage(secret, AWSPENDING);
        secret.versions.push(Version {
            id: token.to_owned(),
            created: now,
            value: None,
            stages: vec![AWSPENDING.into()],
        });
        token.to_owned()
    }

    /// A new key for `user`, refused at the provider's limit.
    fn issue_key(&mut self, kind: Provider, user: &str, by: Actor) -> Result<Credential> {
        let limit = self.limits[&kind];
        let serial = self.next_serial();
        let delay = match by {
            Actor::Rekey => std::mem::take(&mut self.next_key_delay),
            Actor::Operator => Duration::ZERO,
        };
        let now = self.now;
        let keys = self
            .users
            .get_mut(&(kind, user.to_owned()))
            .ok_or_else(|| Error::UserNotFound {
                user: user.to_owned(),
            })?;
        if keys.len() >= limit {
            return Err(Error::KeyLimitReached(format!(
                "LimitExceeded: user {user} already has {limit} access keys"
            )));
        }
        let prefix = match kind {
            Provider::Aws => "SIMAWS",
            Provider::Alibaba => "SIMRAM",
            Provider::SCloud => "SIMSCK",
        };
        let id = format!("{prefix}{serial:016X}");
        // Recognisable, unique and not derivable from the id.
        let secret = format!("sEcReT{:016x}", serial.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        keys.push(Key {
            id: id.clone(),
            secret: secret.clone(),
            status: KeyStatus::Active,
            created: now,
            last_used: None,
            ready_at: now + delay,
            made_by: by,
        });
        self.issued.push((id.clone(), secret.clone()));
        self.effects.push(Effect {
            actor: by,
            what: "create",
            user: user.to_owned(),
            key_id: id.clone(),
            at: now,
        });
        Ok(Credential {
            access_key_id: id,
            secret: Sensitive::new(secret),
        })
    }

    /// A user with one key, and a managed secret (named after the user)
    /// holding it. Returns the secret's ARN.
    pub fn enrol(&mut self, kind: Provider, user: &str, extra: &[(&str, &str)]) -> String {
        // The owning secret's name is derived from provider and user; on
        // AWS the user's tag names its ARN, as an operator enrols it.
        let name = rekey::ownership::owning_name("rekey/", kind, None, user);
        let arn = self.new_user_in_secret(kind, user, &name, extra);
        self.owner_tags.insert((kind, user.to_owned()), arn.clone());
        arn
    }

    /// A new user with one key, made by an operator, in a new managed
    /// secret `name` (with the `extra` fields). Returns the secret's ARN.
    fn new_user_in_secret(
        &mut self,
        kind: Provider,
        user: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> String {
        self.users.insert((kind, user.to_owned()), Vec::new());
        let key = self
            .issue_key(kind, user, Actor::Operator)
            .expect("room for the first key");
        let mut value = serde_json::json!({
            "Provider": kind.name(),
            "UserName": user,
            "AccessKeyId": key.access_key_id,
        });
        value[kind.secret_field()] = key.secret.expose().into();
        for (k, v) in extra {
            value[*k] = (*v).into();
        }
        self.create_secret(name, &value.to_string(), &[(TAG_MANAGED, "true")])
    }

    /// An admin user whose key pair, in an unmanaged secret, signs a
    /// provider's calls. Returns the secret's name.
    pub fn admin_secret(&mut self, kind: Provider) -> String {
        let user = format!("admin-{}", kind.name());
        self.users.insert((kind, user.clone()), Vec::new());
        let key = self
            .issue_key(kind, &user, Actor::Operator)
            .expect("room for the admin key");
        let mut value = serde_json::json!({ "AccessKeyId": key.access_key_id });
        value[kind.secret_field()] = key.secret.expose().into();
        let name = format!("rekey/admin/{}", kind.name());
        self.create_secret(&name, &value.to_string(), &[]);
        name
    }

    /// An admin user of provider `kind` whose key pair signs for others,
    /// in the managed admin secret that owns it
    /// (`rekey/admin/<provider>/<user>`, signed by its own key): rekey
    /// rotates it. Returns the user, the secret's name and its ARN.
    pub fn managed_admin(&mut self, kind: Provider) -> (String, String, String) {
        let user = format!("admin-{}", kind.name());
        let name = rekey::ownership::admin_owning_name("rekey/admin/", kind, &user);
        let arn = self.new_user_in_secret(kind, &user, &name, &[]);
        (user, name, arn)
    }

    /// What a person does when a self-signed secret's own key no longer
    /// signs (revoked out of band): a new key made by hand (after deleting
    /// an inactive one at the limit) and put in a new AWSCURRENT version,
    /// as `version_id`; then every other active key of the user that no
    /// version holds is deactivated (a stray of a failed rotation would be
    /// older than the new version, and so never reclaimed). Returns the new
    /// key, if there was room.
    pub fn replace_own_key(&mut self, id: &str, version_id: &str) -> Option<String> {
        let (kind, user, mut value) = {
            let secret = self.secret(id).expect("a simulated secret");
            let current = secret.with_stage(AWSCURRENT)?.value.clone()?;
            let parsed = ManagedSecret::parse(&current).ok()?;
            let value: serde_json::Value = serde_json::from_str(&current).ok()?;
            (parsed.provider, parsed.user_name, value)
        };
        let limit = self.limits[&kind];
        let held: Vec<String> = self
            .secret(id)
            .map(|x| x.versions.iter().filter_map(|v| v.value.clone()).collect())
            .unwrap_or_default();
        // Room: an inactive key goes first, else an active one no version
        // holds (a stray: nothing was given it).
        let spare = {
            let keys = self.keys(kind, &user);
            let stray = |k: &&Key| !held.iter().any(|v| v.contains(&k.id));
            keys.iter()
                .find(|k| k.status == KeyStatus::Inactive)
                .or_else(|| keys.iter().find(stray))
                .map(|k| k.id.clone())
        };
        if self.keys(kind, &user).len() >= limit {
            self.change_key(kind, &user, &spare?, true, Actor::Operator);
        }
        let key = self.issue_key(kind, &user, Actor::Operator).ok()?;
        value["AccessKeyId"] = key.access_key_id.clone().into();
        value[kind.secret_field()] = key.secret.expose().into();
        self.put_current(id, version_id, value.to_string());
        let strays: Vec<String> = self
            .keys(kind, &user)
            .iter()
            .filter(|k| {
                k.status == KeyStatus::Active
                    && k.id != key.access_key_id
                    && !held.iter().any(|v| v.contains(&k.id))
            })
            .map(|k| k.id.clone())
            .collect();
        for stray in strays {
            self.change_key(kind, &user, &stray, false, Actor::Operator);
        }
        Some(key.access_key_id)
    }

    /// Whether rekey made the key `key_id` (deleted keys included).
    pub fn key_made_by_rekey(&self, key_id: &str) -> bool {
        self.effects
            .iter()
            .any(|e| e.key_id == key_id && e.what == "create" && e.actor == Actor::Rekey)
    }

    /// `user`'s keys at provider `kind`, oldest first.
    pub fn keys(&self, kind: Provider, user: &str) -> &[Key] {
        self.users
            .get(&(kind, user.to_owned()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn find_key(&self, kind: Provider, key_id: &str) -> Option<(&str, &Key)> {
        self.users
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .find_map(|((_, user), keys)| {
                keys.iter()
                    .find(|k| k.id == key_id)
                    .map(|k| (user.as_str(), k))
            })
    }

    /// Whether `credential` authenticates now, and as whom.
    fn authenticates(&self, kind: Provider, credential: &Credential) -> Option<String> {
        let (user, key) = self.find_key(kind, &credential.access_key_id)?;
        (key.secret == credential.secret.expose()
            && key.status == KeyStatus::Active
            && self.now >= key.ready_at)
            .then(|| user.to_owned())
    }

    /// Deactivates or deletes a key. A change by rekey to a key that some
    /// secret's AWSCURRENT holds is a violation (invariant current-key-kept).
    pub fn change_key(
        &mut self,
        kind: Provider,
        user: &str,
        key_id: &str,
        delete: bool,
        by: Actor,
    ) {
        let what = if delete { "delete" } else { "deactivate" };
        if by == Actor::Rekey {
            // Invariant current-key-kept: the key of the user's *owning* secret's
            // AWSCURRENT. A copy kept in another secret is not rekey's to
            // protect (every function refuses such a secret).
            let owning = rekey::ownership::owning_name("rekey/", kind, None, user);
            if let Some(s) = self
                .secrets
                .iter()
                .filter(|s| s.name == owning)
                .find(|s| s.key_with(AWSCURRENT).as_deref() == Some(key_id))
            {
                self.violations.push(format!(
                    "rekey {what}d {key_id}, the AWSCURRENT key of {}",
                    s.name
                ));
            }
        }
        let Some(keys) = self.users.get_mut(&(kind, user.to_owned())) else {
            return;
        };
        let Some(i) = keys.iter().position(|k| k.id == key_id) else {
            return;
        };
        if delete {
            keys.remove(i);
        } else {
            keys[i].status = KeyStatus::Inactive;
        }
        self.effects.push(Effect {
            actor: by,
            what,
            user: user.to_owned(),
            key_id: key_id.to_owned(),
            at: self.now,
        });
    }

    /// An operator turning a key back on (a rollback does).
    pub fn reactivate(&mut self, kind: Provider, user: &str, key_id: &str) {
        if let Some(k) = self
            .users
            .get_mut(&(kind, user.to_owned()))
            .and_then(|keys| keys.iter_mut().find(|k| k.id == key_id))
        {
            k.status = KeyStatus::Active;
        }
    }

    /// A console edit: a new version of the AWSCURRENT value with one more
    /// field becomes AWSCURRENT (AWSPREVIOUS follows, onto the version that
    /// holds the same key).
    pub fn edit(&mut self, id: &str, version_id: &str) {
        let secret = self.secret_mut(id).expect("a simulated secret");
        let old = secret.with_stage(AWSCURRENT).expect("AWSCURRENT").clone();
        let mut value: serde_json::Value =
            serde_json::from_str(old.value.as_deref().expect("a value")).expect("JSON");
        value["Note"] = version_id.into();
        self.put_current(id, version_id, value.to_string());
    }

    /// A new version `version_id` holding `value`, made AWSCURRENT.
    fn put_current(&mut self, id: &str, version_id: &str, value: String) {
        let now = self.now;
        let secret = self.secret_mut(id).expect("a simulated secret");
        secret.versions.push(Version {
            id: version_id.to_owned(),
            created: now,
            value: Some(value),
            stages: Vec::new(),
        });
        self.move_current(id, version_id);
    }

    /// Moves AWSCURRENT onto `version_id`, as UpdateSecretVersionStage
    /// does (AWSPREVIOUS onto the version that loses it).
    pub fn move_current(&mut self, id: &str, version_id: &str) {
        let secret = self.secret_mut(id).expect("a simulated secret");
        let old = secret.with_stage(AWSCURRENT).map(|v| v.id.clone());
        if old.as_deref() == Some(version_id) {
            return;
        }
        take_stage(secret, AWSCURRENT);
        take_stage(secret, AWSPREVIOUS);
        for v in &mut secret.versions {
            if v.id == version_id {
                v.stages.push(AWSCURRENT.into());
            }
            if Some(&v.id) == old.as_ref() {
                v.stages.push(AWSPREVIOUS.into());
            }
        }
    }

    /// An operator creating a key by hand (nothing happens at the limit).
    pub fn create_key_by_hand(&mut self, kind: Provider, user: &str) -> Option<String> {
        self.issue_key(kind, user, Actor::Operator)
            .ok()
            .map(|c| c.access_key_id)
    }

    /// UpdateSecretVersionStage, for the operator (panics on misuse).
    pub fn remove_stage(&mut self, id: &str, stage: &str) {
        take_stage(self.secret_mut(id).expect("a simulated secret"), stage);
    }

    /// Sets tag `key` on secret `id` to `value`, or removes it for `None`, as
    /// the operator (panics on an unknown secret).
    pub fn set_tag(&mut self, id: &str, key: &str, value: Option<&str>) {
        let secret = self.secret_mut(id).expect("a simulated secret");
        match value {
            Some(v) => secret.tags.insert(key.into(), v.into()),
            None => secret.tags.remove(key),
        };
    }
}

fn take_stage(secret: &mut Secret, stage: &str) {
    for v in &mut secret.versions {
        v.stages.retain(|s| s != stage);
    }
}

fn sm_error(op: Op, code: &str, message: String) -> Error {
    Error::Service {
        service: "secretsmanager",
        operation: op_name(op),
        code: code.into(),
        message,
        retryable: false,
    }
}

impl Clock for Sim {
    fn now(&self) -> SystemTime {
        Sim::now(self)
    }

    async fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

/// Secrets per ListSecrets page in the simulation (small, so sweeps of a
/// few secrets still turn pages).
pub const LIST_PAGE: usize = 2;

impl Secret {
    /// The secret as DescribeSecret and ListSecrets describe it: only the
    /// versions that carry a stage.
    fn info(&self) -> SecretInfo {
        SecretInfo {
            arn: self.arn.clone(),
            name: self.name.clone(),
            rotation_enabled: self.rotation_enabled,
            tags: self.tags.clone(),
            versions: self
                .versions
                .iter()
                .filter(|v| !v.stages.is_empty())
                .map(|v| (v.id.clone(), v.stages.clone()))
                .collect(),
        }
    }
}

impl Vault for Sim {
    async fn describe(&self, secret_id: &str) -> Result<SecretInfo> {
        self.fault(Op::Describe)?;
        let s = self.0.borrow();
        let secret = s.secret(secret_id).ok_or_else(|| Error::SecretNotFound {
            secret_id: secret_id.to_owned(),
        })?;
        Ok(secret.info())
    }

    async fn read(&self, secret_id: &str, which: Select<'_>) -> Result<Option<SecretVersion>> {
        self.fault(Op::Read)?;
        let s = self.0.borrow();
        let secret = s.secret(secret_id).ok_or_else(|| Error::SecretNotFound {
            secret_id: secret_id.to_owned(),
        })?;
        let (id, stage) = match which {
            Select::Stage(stage) => (None, stage),
            Select::Version { id, stage } => (Some(id), stage),
        };
        let version = secret
            .versions
            .iter()
            .find(|v| id.is_none_or(|id| v.id == id) && v.stages.iter().any(|s| s == stage));
        Ok(version.and_then(|v| {
            Some(SecretVersion {
                version_id: v.id.clone(),
                created: v.created,
                value: Sensitive::new(v.value.clone()?),
            })
        }))
    }

    /// PutSecretValue(token, AWSPENDING). Versions are immutable: the same
    /// data again is a no-op, different data is refused, and only the empty
    /// version a rotation start made may be filled.
    async fn put_pending(&self, secret_id: &str, token: &str, value: &Sensitive) -> Result<()> {
        let lost = self.fault(Op::PutPending)?;
        let mut s = self.state();
        let now = s.now;
        let secret = s.secret_mut(secret_id)?;
        let result = match secret.versions.iter().position(|v| v.id == token) {
            Some(i) => match &secret.versions[i].value {
                Some(old) if old == value.expose() => Ok(()),
                Some(_) => Err(sm_error(
                    Op::PutPending,
                    "ResourceExistsException",
                    format!("a version with VersionId {token} already exists with different data"),
                )),
                None => {
                    take_stage(secret, AWSPENDING);
                    let v = &mut secret.versions[i];
                    v.value = Some(value.expose().to_owned());
                    v.stages.push(AWSPENDING.into());
                    Ok(())
                }
            },
            None => {
                take_stage(secret, AWSPENDING);
                secret.versions.push(Version {
                    id: token.to_owned(),
                    created: now,
                    value: Some(value.expose().to_owned()),
                    stages: vec![AWSPENDING.into()],
                });
                Ok(())
            }
        };
        Sim::answer(lost, result)
    }

    /// UpdateSecretVersionStage as AWS does it: a stage on another version
    /// moves only with RemoveFromVersionId naming it; AWSCURRENT cannot be
    /// removed without moving it; the version losing AWSCURRENT gets
    /// AWSPREVIOUS.
    async fn move_stage(
        &self,
        secret_id: &str,
        stage: &str,
        move_to: Option<&str>,
        remove_from: Option<&str>,
    ) -> Result<()> {
        let lost = self.fault(Op::MoveStage)?;
        let mut s = self.state();
        let secret = s.secret_mut(secret_id)?;
        let invalid = |m: String| Err(sm_error(Op::MoveStage, "InvalidParameterException", m));
        let holder = secret.with_stage(stage).map(|v| v.id.clone());
        let exists = |id: &str| secret.versions.iter().any(|v| v.id == id);
        let result = if move_to.is_some_and(|t| !exists(t)) {
            Err(sm_error(
                Op::MoveStage,
                "ResourceNotFoundException",
                "no such version".into(),
            ))
        } else if remove_from.is_some() && remove_from != holder.as_deref() {
            invalid(format!(
                "the staging label {stage} is not attached to version {remove_from:?}"
            ))
        } else if move_to.is_some()
            && holder.is_some()
            && holder.as_deref() != move_to
            && remove_from.is_none()
        {
            invalid(format!(
                "the staging label {stage} is attached to another version: you must specify RemoveFromVersionId"
            ))
        } else if move_to.is_none() && stage == AWSCURRENT {
            invalid("AWSCURRENT cannot be removed, only moved".into())
        } else {
            if holder.as_deref() != move_to {
                take_stage(secret, stage);
                if let Some(to) = move_to {
                    let v = secret.versions.iter_mut().find(|v| v.id == to).unwrap();
                    v.stages.push(stage.into());
                }
                if stage == AWSCURRENT {
                    if let Some(old) = holder {
                        take_stage(secret, AWSPREVIOUS);
                        let v = secret.versions.iter_mut().find(|v| v.id == old).unwrap();
                        v.stages.push(AWSPREVIOUS.into());
                    }
                }
            }
            Ok(())
        };
        Sim::answer(lost, result)
    }

    async fn tag(&self, secret_id: &str, tags: &[(String, String)]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let lost = self.fault(Op::Tag)?;
        let mut s = self.state();
        let secret = s.secret_mut(secret_id)?;
        for (k, v) in tags {
            secret.tags.insert(k.clone(), v.clone());
        }
        Sim::answer(lost, Ok(()))
    }

    async fn untag(&self, secret_id: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let lost = self.fault(Op::Untag)?;
        let mut s = self.state();
        let secret = s.secret_mut(secret_id)?;
        for k in keys {
            secret.tags.remove(k);
        }
        Sim::answer(lost, Ok(()))
    }

    async fn list_page(&self, next_token: Option<&str>) -> Result<SecretPage> {
        self.fault(Op::ListManaged)?;
        let s = self.0.borrow();
        // Pages of LIST_PAGE secrets, as Secrets Manager pages them.
        let start: usize = next_token.map_or(Ok(0), |t| {
            t.parse()
                .map_err(|_| Error::InvalidEvent(format!("bad NextToken {t:?}")))
        })?;
        let managed: Vec<&Secret> = s
            .secrets
            .iter()
            .filter(|s| s.tags.contains_key(TAG_MANAGED))
            .collect();
        let end = (start + LIST_PAGE).min(managed.len());
        Ok(SecretPage {
            secrets: managed[start.min(end)..end]
                .iter()
                .map(|m| m.info())
                .collect(),
            next_token: (end < managed.len()).then(|| end.to_string()),
        })
    }
}

/// One provider's key management, as opened for a secret.
pub struct SimKeyApi {
    sim: Sim,
    kind: Provider,
}

impl Providers for Sim {
    type KeyApi = SimKeyApi;

    /// A key-pair provider refuses a signer that does not authenticate.
    async fn open(&self, secret: &ManagedSecret, signer: Option<Signer>) -> Result<SimKeyApi> {
        let kind = secret.provider;
        if kind.signing() == rekey::model::Signing::KeyPair {
            let signer = signer.expect("the steps give key-pair providers a signer");
            if self
                .0
                .borrow()
                .authenticates(kind, &signer.credential)
                .is_none()
            {
                return Err(Error::SignerRejected {
                    service: "sim",
                    operation: "open",
                    signer: format!("{} ({})", signer.credential.access_key_id, signer.origin),
                    reason: "InvalidAccessKeyId".into(),
                });
            }
        }
        Ok(SimKeyApi {
            sim: self.clone(),
            kind,
        })
    }

    /// Succeeds for an active key with the right secret once it has
    /// propagated, and records the use.
    async fn whoami(&self, secret: &ManagedSecret, credential: &Credential) -> Result<String> {
        self.fault(Op::Whoami)?;
        let mut s = self.state();
        let kind = secret.provider;
        let Some(user) = s.authenticates(kind, credential) else {
            return Err(Error::Service {
                service: "sts",
                operation: op_name(Op::Whoami),
                code: "InvalidClientTokenId".into(),
                message: "The security token included in the request is invalid".into(),
                retryable: false,
            });
        };
        let now = s.now;
        if let Some(keys) = s.users.get_mut(&(kind, user.clone())) {
            if let Some(k) = keys.iter_mut().find(|k| k.id == credential.access_key_id) {
                k.last_used = Some(now);
            }
        }
        Ok(user)
    }
}

impl KeyApi for SimKeyApi {
    fn key_limit(&self) -> usize {
        self.sim.0.borrow().limits[&self.kind]
    }

    /// On AWS the user's `rekey:owner` tag must name `owner`, the owning
    /// secret's ARN (the other providers bind by the secret's name only).
    async fn ensure_managed(&self, user: &str, owner: &str) -> Result<()> {
        let s = self.sim.0.borrow();
        if !s.users.contains_key(&(self.kind, user.to_owned())) {
            return Err(Error::UserNotFound { user: user.into() });
        }
        let tag = s.owner_tags.get(&(self.kind, user.to_owned()));
        if self.kind == Provider::Aws && tag.map(String::as_str) != Some(owner) {
            return Err(Error::SecretNotOwner {
                secret_id: owner.to_owned(),
                reason: format!("user {user}'s rekey:owner tag is {tag:?}"),
            });
        }
        Ok(())
    }
    async fn list_keys(&self, user: &str) -> Result<Vec<AccessKey>> {
        self.sim.fault(Op::ListKeys)?;
        let s = self.sim.0.borrow();
        if !s.users.contains_key(&(self.kind, user.to_owned())) {
            return Err(Error::UserNotFound { user: user.into() });
        }
        Ok(s.keys(self.kind, user)
            .iter()
            .map(|k| AccessKey {
                id: k.id.clone(),
                status: k.status,
                created: k.created,
            })
            .collect())
    }

    /// Hitting the limit is a violation: rekey makes room first.
    async fn create_key(&self, user: &str) -> Result<Credential> {
        let lost = self.sim.fault(Op::CreateKey)?;
        let mut s = self.sim.state();
        let created = s.issue_key(self.kind, user, Actor::Rekey);
        if let (Some(_), Ok(key)) = (&lost, &created) {
            s.never_told.insert(key.access_key_id.clone());
        }
        if let Err(Error::KeyLimitReached(_)) = &created {
            s.violations
                .push(format!("rekey hit the key limit of user {user}"));
        }
        Sim::answer(lost, created)
    }

    async fn deactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        let lost = self.sim.fault(Op::Deactivate)?;
        self.sim
            .state()
            .change_key(self.kind, user, key_id, false, Actor::Rekey);
        Sim::answer(lost, Ok(()))
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<()> {
        let lost = self.sim.fault(Op::Delete)?;
        self.sim
            .state()
            .change_key(self.kind, user, key_id, true, Actor::Rekey);
        Sim::answer(lost, Ok(()))
    }

    /// Only an operator's rollback turns a key back on.
    async fn reactivate_key(&self, user: &str, key_id: &str) -> Result<()> {
        let mut s = self.sim.state();
        if !s.keys(self.kind, user).iter().any(|k| k.id == key_id) {
            return Err(sm_error(
                Op::Deactivate,
                "NoSuchEntity",
                format!("no key {key_id}"),
            ));
        }
        s.reactivate(self.kind, user, key_id);
        Ok(())
    }

    /// IAM and RAM say when a key was last used; SCloud cannot tell.
    async fn last_used(&self, user: &str, key_id: &str) -> Result<LastUsed> {
        self.sim.fault(Op::LastUsed)?;
        if self.kind == Provider::SCloud {
            return Ok(LastUsed::Unknown);
        }
        let s = self.sim.0.borrow();
        let key = s
            .keys(self.kind, user)
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| sm_error(Op::LastUsed, "NoSuchEntity", format!("no key {key_id}")))?;
        Ok(match key.last_used {
            None => LastUsed::Never,
            Some(when) => LastUsed::At {
                when,
                service: (self.kind == Provider::Aws).then(|| "sts".to_owned()),
            },
        })
    }
}
