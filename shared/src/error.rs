//! One error type for every step. Each variant has a bare, stable name
//! ([`Error::kind`]) that becomes the Lambda `errorType`, so Step Functions
//! `Retry`/`Catch` can match on it. Messages say what failed and what the
//! operator should do; they never carry secret material (callers only ever
//! pass identifiers and reasons in).

use std::fmt;

/// rekey's result: an [`Error`] unless told otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error type a function can report: each name [`Error::kind`] can
/// return. The README's Errors table lists exactly these, and the state
/// machine matches on no other (tested below).
pub const ERROR_TYPES: &[&str] = &[
    "InvalidEvent",
    "InvalidConfig",
    "SecretNotFound",
    "SecretNotManaged",
    "SecretPaused",
    "InvalidSecret",
    "UnknownProvider",
    "SecretNotOwner",
    "RotationNotEnabled",
    "RotationOwnedByHook",
    "RotationInProgress",
    "RotationAbandoned",
    "TokenNotFound",
    "TokenNotPending",
    "UserNotManaged",
    "UserNotFound",
    "KeyLimitReached",
    "KeyNotReady",
    "KeyIdentityMismatch",
    "SignerRejected",
    "MemberAccountUnreachable",
    "DryRun",
    "InternalError",
    "ServiceUnavailable",
    "ServiceError",
];

/// Every failure of every step; [`Error::kind`] is its Lambda error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event given to a function is malformed.
    #[error("invalid event: {0}")]
    InvalidEvent(String),

    /// A setting in the environment is missing or invalid.
    #[error("invalid setting {name}: {reason}")]
    Config {
        /// The setting's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The secret does not exist (or the function may not read it).
    #[error(
        "secret {secret_id} was not found: check the SecretId and that the function may read it"
    )]
    SecretNotFound {
        /// The secret's name or ARN.
        secret_id: String,
    },

    /// The secret is not tagged `rekey:managed` = `true`.
    #[error("secret {secret_id} is not managed by rekey: {}", not_managed_fix(*near_miss))]
    SecretNotManaged {
        /// The secret's name or ARN.
        secret_id: String,
        /// Tagged `rekey:managed` with another value than `true` or
        /// `false` (`records::ManagedTag::NearMiss`).
        near_miss: bool,
    },

    /// The secret is tagged `rekey:paused`.
    #[error(
        "secret {secret_id} is paused (tag rekey:paused=true): remove the tag to resume rotation"
    )]
    SecretPaused {
        /// The secret's name or ARN.
        secret_id: String,
    },

    /// A version of the secret holds no valid managed secret.
    #[error("secret {secret_id} holds an invalid value in {version}: {reason}")]
    InvalidSecret {
        /// The secret's name or ARN.
        secret_id: String,
        /// The version (its stage or id).
        version: String,
        /// What is wrong with the value.
        reason: String,
    },

    /// The secret names a provider rekey does not support.
    #[error("secret {secret_id} names provider {provider:?}, which rekey does not support (supported: {})", crate::model::Provider::names())]
    UnknownProvider {
        /// The secret's name or ARN.
        secret_id: String,
        /// The provider it names.
        provider: String,
    },

    /// The secret is not its user's owning secret.
    #[error("secret {secret_id} does not own the keys it names: {reason}")]
    SecretNotOwner {
        /// The secret's name or ARN.
        secret_id: String,
        /// Which ownership rule it breaks, and the fix.
        reason: String,
    },

    /// The hook was called for a secret without Secrets Manager rotation.
    #[error("secret {secret_id}: rotation is not enabled; the rotation hook only serves secrets with Secrets Manager rotation turned on")]
    RotationNotEnabled {
        /// The secret's name or ARN.
        secret_id: String,
    },

    /// The pipeline was called for a secret the hook rotates.
    #[error("secret {secret_id} has Secrets Manager rotation enabled, so it belongs to the rotation hook; turn rotation off to rotate it with the pipeline")]
    RotationOwnedByHook {
        /// The secret's name or ARN.
        secret_id: String,
    },

    /// Another token's rotation is in progress: of this secret, or of
    /// the admin secret that signs for it.
    #[error("secret {secret_id}: {}", in_progress(other_token, admin.as_deref()))]
    RotationInProgress {
        /// The secret's name or ARN.
        secret_id: String,
        /// The token of the rotation in progress.
        other_token: String,
        /// The admin secret (`AdminSecretId`) whose rotation it is, when
        /// not this secret's own.
        admin: Option<String>,
    },

    /// A rotation that can never finish lost AWSPENDING.
    #[error("secret {secret_id}: the rotation of token {token} can never finish ({reason}), so AWSPENDING was taken off its version; nothing else changed. The next rotation starts with a new token: the pipeline's next run, or Secrets Manager's next rotation of the hook")]
    RotationAbandoned {
        /// The secret's name or ARN.
        secret_id: String,
        /// The abandoned rotation's token.
        token: String,
        /// Why it can never finish.
        reason: String,
    },

    /// The token has no version of the secret.
    #[error("secret {secret_id} has no version for token {token}: start the rotation (createSecret / rekey-create) with this token first")]
    TokenNotFound {
        /// The secret's name or ARN.
        secret_id: String,
        /// The rotation's token.
        token: String,
    },

    /// The token's version is not AWSPENDING.
    #[error("secret {secret_id}: version {token} is not AWSPENDING, so it is not part of a rotation in progress")]
    TokenNotPending {
        /// The secret's name or ARN.
        secret_id: String,
        /// The rotation's token.
        token: String,
    },

    /// The user is outside what rekey may manage.
    #[error("user {user} is not managed by rekey: {reason}")]
    UserNotManaged {
        /// The user's name in the provider.
        user: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// The user does not exist.
    #[error("user {user} does not exist in the provider: fix UserName in the secret")]
    UserNotFound {
        /// The user's name in the provider.
        user: String,
    },

    /// The user has its limit of keys and none may be removed; the
    /// message names each key and why it stays.
    #[error("{0}")]
    KeyLimitReached(String),

    /// The new key does not authenticate yet.
    #[error("the new key {key_id} of user {user} does not authenticate yet: {reason}")]
    KeyNotReady {
        /// The user's name in the provider.
        user: String,
        /// The new key's id.
        key_id: String,
        /// What the provider answered.
        reason: String,
    },

    /// A key authenticates as someone other than the secret's user.
    #[error("the key {key_id} in secret {secret_id} authenticates as {actual}, not as user {user}: fix the secret")]
    KeyIdentityMismatch {
        /// The secret's name or ARN.
        secret_id: String,
        /// The key's id.
        key_id: String,
        /// The user's name in the provider.
        user: String,
        /// Whom it authenticates as.
        actual: String,
    },

    /// The provider refused the key pair that signs rekey's calls.
    #[error("{service} {operation}: the key {signer} that signs rekey's calls was refused: {reason}. Fix that key, or grant it the policy the README gives for this provider")]
    SignerRejected {
        /// The provider's service.
        service: &'static str,
        /// The refused call.
        operation: &'static str,
        /// The key id and where it came from.
        signer: String,
        /// The provider's code and message.
        reason: String,
    },

    /// The member role of the account a secret names could not be assumed.
    #[error("account {account}: rekey could not assume its member role {role_arn}: {reason}. Deploy infra/member.yaml to that account (its role trusts rekey's functions and requires REKEY_MEMBER_EXTERNAL_ID), or take the account out of REKEY_MEMBER_ACCOUNTS. Nothing was changed")]
    MemberAccountUnreachable {
        /// The member account.
        account: String,
        /// The role rekey tried to assume there.
        role_arn: String,
        /// STS's code and message.
        reason: String,
    },

    /// A dry-run deployment (`REKEY_DRY_RUN`) reached a change it may not
    /// make: what the step would have done, and nothing was changed.
    #[error("dry run (REKEY_DRY_RUN is true): nothing was changed; rekey would {would}. Set REKEY_DRY_RUN (template parameter DryRun) to false to let rekey act")]
    DryRun {
        /// What the step would have done, in order.
        would: String,
    },

    /// A fault inside rekey or its runtime, not of the event, the secret or
    /// a service: trying again does not help.
    #[error("internal error in rekey ({operation}): {reason}. This is not a fault of the secret, the event or the provider, and retrying will not help: report it to rekey's maintainers with this message")]
    Internal {
        /// What rekey was doing.
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },

    /// Any other failure of a service call.
    #[error("{service} {operation} failed: {code}: {message}")]
    Service {
        /// The service.
        service: &'static str,
        /// The failed call.
        operation: &'static str,
        /// The service's error code.
        code: String,
        /// The service's message (withheld when the call carries secret
        /// material).
        message: String,
        /// Whether trying again later may succeed (`ServiceUnavailable`).
        retryable: bool,
    },
}

impl Error {
    /// For calls whose request or response carries secret material: keep
    /// the error's code, drop the service's message in case it quotes either.
    pub fn withhold_message(mut self) -> Self {
        if let Error::Service { message, .. } = &mut self {
            *message = "(message withheld: the call carries secret material)".into();
        }
        self
    }

    /// The stable, bare name used as the Lambda error type.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidEvent(_) => "InvalidEvent",
            Error::Config { .. } => "InvalidConfig",
            Error::SecretNotFound { .. } => "SecretNotFound",
            Error::SecretNotManaged { .. } => "SecretNotManaged",
            Error::SecretPaused { .. } => "SecretPaused",
            Error::InvalidSecret { .. } => "InvalidSecret",
            Error::UnknownProvider { .. } => "UnknownProvider",
            Error::SecretNotOwner { .. } => "SecretNotOwner",
            Error::RotationNotEnabled { .. } => "RotationNotEnabled",
            Error::RotationOwnedByHook { .. } => "RotationOwnedByHook",
            Error::RotationInProgress { .. } => "RotationInProgress",
            Error::RotationAbandoned { .. } => "RotationAbandoned",
            Error::TokenNotFound { .. } => "TokenNotFound",
            Error::TokenNotPending { .. } => "TokenNotPending",
            Error::UserNotManaged { .. } => "UserNotManaged",
            Error::UserNotFound { .. } => "UserNotFound",
            Error::KeyLimitReached(_) => "KeyLimitReached",
            Error::KeyNotReady { .. } => "KeyNotReady",
            Error::KeyIdentityMismatch { .. } => "KeyIdentityMismatch",
            Error::SignerRejected { .. } => "SignerRejected",
            Error::MemberAccountUnreachable { .. } => "MemberAccountUnreachable",
            Error::DryRun { .. } => "DryRun",
            Error::Internal { .. } => "InternalError",
            Error::Service { retryable, .. } => {
                if *retryable {
                    "ServiceUnavailable"
                } else {
                    "ServiceError"
                }
            }
        }
    }

    /// Whether this is a dependent's create refused while the admin secret
    /// that signs for it rotates: the scheduled run's create waits for it
    /// (infra/statemachine/rotation.asl.json retries it).
    pub fn waits_for_admin(&self) -> bool {
        matches!(self, Error::RotationInProgress { admin: Some(_), .. })
    }

    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::KeyNotReady { .. }
                | Error::Service {
                    retryable: true,
                    ..
                }
        )
    }

    /// An [`Error::InvalidSecret`]: `version` of `secret_id` holds no valid
    /// managed secret, for `reason`.
    pub fn invalid_secret(secret_id: &str, version: &str, reason: impl fmt::Display) -> Self {
        Error::InvalidSecret {
            secret_id: secret_id.to_owned(),
            version: version.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// What a `SecretNotManaged` says to do. The tag's value is not repeated
/// (only that it is not exactly `true`).
fn not_managed_fix(near_miss: bool) -> &'static str {
    match near_miss {
        false => "tag it rekey:managed=true to manage it",
        true => "its tag rekey:managed is set, but not to exactly `true` (lower case, no spaces), the only value rekey, its IAM policies and its sweep read as managed; set rekey:managed=true to manage it, or remove the tag",
    }
}

/// What a `RotationInProgress` says: whose rotation is in progress and the
/// way forward.
fn in_progress(token: &str, admin: Option<&str>) -> String {
    match admin {
        None => format!("another rotation (token {token}) is in progress; let it finish, or remove its AWSPENDING label to abandon it"),
        Some(admin) => format!("its admin secret {admin} is being rotated (token {token}), and no key is made with an admin key about to be replaced. Nothing was changed. This rotation starts once that one finishes: the pipeline's next run, or Secrets Manager's next attempt"),
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.kind().to_owned(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// One error of every variant (both kinds of `Service`).
    fn one_of_each() -> Vec<Error> {
        let s = || "x".to_owned();
        vec![
            Error::InvalidEvent(s()),
            Error::Config {
                name: "REKEY_X",
                reason: s(),
            },
            Error::SecretNotFound { secret_id: s() },
            Error::SecretNotManaged {
                secret_id: s(),
                near_miss: true,
            },
            Error::SecretPaused { secret_id: s() },
            Error::invalid_secret("s", "v", "r"),
            Error::UnknownProvider {
                secret_id: s(),
                provider: s(),
            },
            Error::SecretNotOwner {
                secret_id: s(),
                reason: s(),
            },
            Error::RotationNotEnabled { secret_id: s() },
            Error::RotationOwnedByHook { secret_id: s() },
            Error::RotationInProgress {
                secret_id: s(),
                other_token: s(),
                admin: None,
            },
            Error::RotationInProgress {
                secret_id: s(),
                other_token: s(),
                admin: Some(s()),
            },
            Error::RotationAbandoned {
                secret_id: s(),
                token: s(),
                reason: s(),
            },
            Error::TokenNotFound {
                secret_id: s(),
                token: s(),
            },
            Error::TokenNotPending {
                secret_id: s(),
                token: s(),
            },
            Error::UserNotManaged {
                user: s(),
                reason: s(),
            },
            Error::UserNotFound { user: s() },
            Error::KeyLimitReached(s()),
            Error::KeyNotReady {
                user: s(),
                key_id: s(),
                reason: s(),
            },
            Error::KeyIdentityMismatch {
                secret_id: s(),
                key_id: s(),
                user: s(),
                actual: s(),
            },
            Error::SignerRejected {
                service: "IAM",
                operation: "ListAccessKeys",
                signer: s(),
                reason: s(),
            },
            Error::MemberAccountUnreachable {
                account: s(),
                role_arn: s(),
                reason: s(),
            },
            Error::DryRun { would: s() },
            Error::Internal {
                operation: "open provider",
                reason: s(),
            },
            Error::Service {
                service: "IAM",
                operation: "ListAccessKeys",
                code: s(),
                message: s(),
                retryable: true,
            },
            Error::Service {
                service: "IAM",
                operation: "ListAccessKeys",
                code: s(),
                message: s(),
                retryable: false,
            },
        ]
    }

    #[test]
    fn error_types_lists_every_kind() {
        // With `error_types_are_the_names_in_kind` (every name `kind`
        // returns is listed), this makes every name have an example.
        let examples = one_of_each();
        let kinds: BTreeSet<_> = examples.iter().map(Error::kind).collect();
        let listed: BTreeSet<_> = ERROR_TYPES.iter().copied().collect();
        assert_eq!(
            listed.len(),
            ERROR_TYPES.len(),
            "ERROR_TYPES has no repeats"
        );
        assert_eq!(kinds, listed);
    }

    /// Every name `kind` can return is a literal in its body: those are
    /// `ERROR_TYPES`, whether or not `one_of_each` has an example of it.
    #[test]
    fn error_types_are_the_names_in_kind() {
        let source = include_str!("error.rs");
        let start = source.find("pub fn kind(&self)").unwrap();
        let end = start + source[start..].find("pub fn is_retryable").unwrap();
        let names: BTreeSet<_> = source[start..end].split('"').skip(1).step_by(2).collect();
        let listed: BTreeSet<_> = ERROR_TYPES.iter().copied().collect();
        assert_eq!(names, listed);
    }

    #[test]
    fn internal_errors_are_not_retried_and_say_what_to_do() {
        let e = Error::Internal {
            operation: "open provider",
            reason: "no key pair".into(),
        };
        assert_eq!(e.kind(), "InternalError");
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("report it to rekey's maintainers"));
    }

    fn workspace_file(path: &str) -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The error types in the first column of the README's Errors table.
    fn readme_error_types() -> BTreeSet<String> {
        let readme = workspace_file("README.md");
        let section = readme
            .split("\n## Errors\n")
            .nth(1)
            .expect("the README has an Errors section");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .flat_map(|l| {
                let first = l.split('|').nth(1).unwrap_or_default();
                first
                    .split(',')
                    .map(|n| n.trim().trim_matches('`').to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_error_type() {
        let mut listed = readme_error_types();
        // The runtime's own error for input that is not JSON, listed for
        // the operator: rekey never sees the event.
        assert!(listed.remove("lambda_runtime::deserializer::DeserializeError"));
        let want: BTreeSet<String> = ERROR_TYPES.iter().map(|&n| n.to_owned()).collect();
        assert_eq!(listed, want, "README.md's Errors table");
    }

    fn error_equals(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "ErrorEquals" {
                        let names = v.as_array().expect("ErrorEquals is a list");
                        out.extend(names.iter().map(|n| n.as_str().unwrap().to_owned()));
                    } else {
                        error_equals(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| error_equals(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_state_machine_matches_only_known_error_types() {
        // The template substitutes `${...}`; unquoted ones are numbers.
        let text = workspace_file("infra/statemachine/rotation.asl.json");
        let text = regex_lite::Regex::new(r":\s*\$\{\w+\}")
            .unwrap()
            .replace_all(&text, ": 0");
        let asl: serde_json::Value =
            serde_json::from_str(&text).expect("the state machine is JSON");
        let mut names = Vec::new();
        error_equals(&asl, &mut names);
        assert!(names.iter().any(|n| n == "KeyNotReady"), "{names:?}");
        for name in names {
            // States.*, Lambda.*, SecretsManager.*: errors of Step
            // Functions and of its service integrations, not rekey's.
            if name.contains('.') {
                continue;
            }
            assert!(
                ERROR_TYPES.contains(&name.as_str()),
                "the state machine matches {name}, which no function reports"
            );
        }
    }
}
