//! One error type for every step. Each variant has a bare, stable name
//! ([`Error::kind`]) that becomes the Lambda `errorType`, so Step Functions
//! `Retry`/`Catch` can match on it. Messages say what failed and what the
//! operator should do; they never carry secret material (callers only ever
//! pass identifiers and reasons in).

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event given to a function is malformed.
    #[error("invalid event: {0}")]
    InvalidEvent(String),

    /// A setting in the environment is missing or invalid.
    #[error("invalid setting {name}: {reason}")]
    Config { name: &'static str, reason: String },

    #[error(
        "secret {secret_id} was not found: check the SecretId and that the function may read it"
    )]
    SecretNotFound { secret_id: String },

    #[error("secret {secret_id} is not managed by rekey: tag it rekey:managed=true to manage it")]
    SecretNotManaged { secret_id: String },

    #[error(
        "secret {secret_id} is paused (tag rekey:paused=true): remove the tag to resume rotation"
    )]
    SecretPaused { secret_id: String },

    #[error("secret {secret_id} holds an invalid value in {version}: {reason}")]
    InvalidSecret {
        secret_id: String,
        version: String,
        reason: String,
    },

    #[error("secret {secret_id} names provider {provider:?}, which rekey does not support (supported: {})", crate::model::Provider::names())]
    UnknownProvider { secret_id: String, provider: String },

    #[error("secret {secret_id} does not own the keys it names: {reason}")]
    SecretNotOwner { secret_id: String, reason: String },

    #[error("secret {secret_id}: rotation is not enabled; the rotation hook only serves secrets with Secrets Manager rotation turned on")]
    RotationNotEnabled { secret_id: String },

    #[error("secret {secret_id} has Secrets Manager rotation enabled, so it belongs to the rotation hook; turn rotation off to rotate it with the pipeline")]
    RotationOwnedByHook { secret_id: String },

    #[error("secret {secret_id}: another rotation (token {other_token}) is in progress; let it finish, or remove its AWSPENDING label to abandon it")]
    RotationInProgress {
        secret_id: String,
        other_token: String,
    },

    #[error("secret {secret_id}: the rotation of token {token} can never finish ({reason}), so AWSPENDING was taken off its version; nothing else changed. The next rotation starts with a new token: the pipeline's next run, or Secrets Manager's next rotation of the hook")]
    RotationAbandoned {
        secret_id: String,
        token: String,
        reason: String,
    },

    #[error("secret {secret_id} has no version for token {token}: start the rotation (createSecret / rekey-create) with this token first")]
    TokenNotFound { secret_id: String, token: String },

    #[error("secret {secret_id}: version {token} is not AWSPENDING, so it is not part of a rotation in progress")]
    TokenNotPending { secret_id: String, token: String },

    #[error("user {user} is not managed by rekey: {reason}")]
    UserNotManaged { user: String, reason: String },

    #[error("user {user} does not exist in the provider: fix UserName in the secret")]
    UserNotFound { user: String },

    #[error("{0}")]
    KeyLimitReached(String),

    #[error("the new key {key_id} of user {user} does not authenticate yet: {reason}")]
    KeyNotReady {
        user: String,
        key_id: String,
        reason: String,
    },

    #[error("the key {key_id} in secret {secret_id} authenticates as {actual}, not as user {user}: fix the secret")]
    KeyIdentityMismatch {
        secret_id: String,
        key_id: String,
        user: String,
        actual: String,
    },

    /// The provider refused the key pair that signs rekey's calls.
    #[error("{service} {operation}: the key {signer} that signs rekey's calls was refused: {reason}. Fix that key, or grant it the policy the README gives for this provider")]
    SignerRejected {
        service: &'static str,
        operation: &'static str,
        /// The key id and where it came from.
        signer: String,
        /// The provider's code and message.
        reason: String,
    },

    #[error("{service} {operation} failed: {code}: {message}")]
    Service {
        service: &'static str,
        operation: &'static str,
        code: String,
        message: String,
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
            Error::Service { retryable, .. } => {
                if *retryable {
                    "ServiceUnavailable"
                } else {
                    "ServiceError"
                }
            }
        }
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

    pub fn invalid_secret(secret_id: &str, version: &str, reason: impl fmt::Display) -> Self {
        Error::InvalidSecret {
            secret_id: secret_id.to_owned(),
            version: version.to_owned(),
            reason: reason.to_string(),
        }
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
