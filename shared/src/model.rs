//! The data rekey works with: access keys, the managed secret's JSON, the
//! Secrets Manager stages. rekey's tags are in `records`.
//!
//! Invariant no-secret-material: [`Sensitive`] has no `Display` and a
//! redacted `Debug`, and no error here ever holds a secret's value.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};

/// The stage of the version in use: the key pair applications read.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The stage of the version a rotation in progress creates: it holds the
/// new key until the key is tested and the version promoted to AWSCURRENT.
pub const AWSPENDING: &str = "AWSPENDING";
/// The stage of the version that was AWSCURRENT before the last finished
/// rotation: the superseded key, which cleanup deactivates, then deletes,
/// each after its grace period.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// A string that must never be shown: its `Debug` is redacted and it has no
/// `Display`, so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps `s`, a secret value, so that it cannot be shown.
    pub fn new(s: impl Into<String>) -> Self {
        Sensitive(s.into())
    }
    /// The secret value itself, for the one place that must send or store it.
    /// Never log what it returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sensitive(<redacted>)")
    }
}

/// An access key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The public half that names the key (AWS `AKIA...`, Alibaba `LTAI...`).
    pub access_key_id: String,
    /// The secret half (AWS `SecretAccessKey`, Alibaba and SCloud
    /// `AccessKeySecret`).
    pub secret: Sensitive,
}

/// Whether a provider accepts an access key for signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// The key can sign requests.
    Active,
    /// The key is disabled (rekey deactivates an old key before deleting it);
    /// it can be made active again.
    Inactive,
}

/// An access key as the provider lists it (never with its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    /// The access key id.
    pub id: String,
    /// Whether the key is active or deactivated.
    pub status: KeyStatus,
    /// When the provider created the key.
    pub created: SystemTime,
}

/// When a key was last used, as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastUsed {
    /// The provider has no way to tell (SCloud publishes no last-used API).
    Unknown,
    /// The key has never been used to sign a request.
    Never,
    /// The key was last used at `when`.
    At {
        /// When the key last signed a request.
        when: SystemTime,
        /// The service it was last used with, when the provider says.
        service: Option<String>,
    },
}

/// The providers rekey can rotate keys for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    /// AWS IAM users' access keys.
    Aws,
    /// Alibaba Cloud RAM users' AccessKeys.
    Alibaba,
    /// SCloud sub-accounts' API keys.
    SCloud,
}

/// How rekey signs a provider's key-management calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// With the function's own credentials (its IAM role).
    Ambient,
    /// With a key pair of that provider: the one in the secret's
    /// `AdminSecretId` secret, else the user's own current key.
    KeyPair,
}

impl Provider {
    /// Every provider, in the order they are listed in messages.
    pub const ALL: [Provider; 3] = [Provider::Aws, Provider::Alibaba, Provider::SCloud];

    /// The provider's name, as written in the secret's `Provider` field
    /// (`aws`, `alibaba`, `scloud`).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Alibaba => "alibaba",
            Provider::SCloud => "scloud",
        }
    }

    /// The provider a `Provider` field value names, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// `aws, alibaba, scloud`: for messages.
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
        names.join(", ")
    }

    /// The secret's JSON field that holds the key's secret half.
    pub fn secret_field(self) -> &'static str {
        match self {
            Provider::Aws => "SecretAccessKey",
            Provider::Alibaba | Provider::SCloud => "AccessKeySecret",
        }
    }

    /// How rekey signs this provider's key-management calls: AWS with the
    /// function's role, the others with a key pair.
    pub fn signing(self) -> Signing {
        match self {
            Provider::Aws => Signing::Ambient,
            Provider::Alibaba | Provider::SCloud => Signing::KeyPair,
        }
    }

    /// Whether its secrets may carry `ProjectId` (sent with every call).
    pub fn has_projects(self) -> bool {
        self == Provider::SCloud
    }

    /// The provider's rule for access key ids.
    pub fn validate_key_id(self, id: &str) -> Result<(), NameError> {
        let (min, extra) = match self {
            Provider::Aws | Provider::Alibaba => (16, ""),
            // UCloud-style public keys may look like `someone@example.com1296...`.
            Provider::SCloud => (8, "@._+=/-"),
        };
        if (min..=128).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        {
            Ok(())
        } else {
            Err(NameError::KeyIdForm { min, extra })
        }
    }

    /// The provider's rule for user names.
    pub fn validate_user_name(self, name: &str) -> Result<(), NameError> {
        match self {
            // 1..=128 characters of `[\w+=,.@-]`.
            Provider::Aws => check_name(name, 128, "_+=,.@-"),
            // RAM: 1..=64 characters of `[\w.-]` (an `@` marks a logon name).
            Provider::Alibaba => check_name(name, 64, "_.-"),
            // SCloud publishes no rule; UCloud-style names are short words
            // or e-mail addresses.
            Provider::SCloud => check_name(name, 64, "_.@-"),
        }
    }
}

/// Why a key id or user name breaks its provider's rule. Its `Display`
/// completes "field UserName ..." or "field AccessKeyId ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// A key id of the wrong length or characters: `min` to 128 letters,
    /// digits and `extra`.
    KeyIdForm {
        /// The shortest id the provider issues.
        min: usize,
        /// The characters other than letters and digits it may hold.
        extra: &'static str,
    },
    /// A name that is empty or longer than `max`.
    Length {
        /// The longest name the provider accepts.
        max: usize,
    },
    /// A name with a character other than letters, digits and `punctuation`.
    Characters {
        /// The other characters a name may hold.
        punctuation: &'static str,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::KeyIdForm { min, extra: "" } => {
                write!(f, "must be {min} to 128 letters and digits")
            }
            NameError::KeyIdForm { min, extra } => {
                write!(f, "must be {min} to 128 letters, digits and {extra}")
            }
            NameError::Length { max } => write!(f, "must be 1 to {max} characters long"),
            NameError::Characters { punctuation } => {
                write!(f, "may contain only letters, digits and {punctuation}")
            }
        }
    }
}

fn check_name(name: &str, max: usize, punctuation: &'static str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > max {
        return Err(NameError::Length { max });
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || punctuation.contains(c))
    {
        return Err(NameError::Characters { punctuation });
    }
    Ok(())
}

/// Why an admin secret's value is not a key pair. Its `Display` completes
/// "its AdminSecretId ... does not hold a key pair ...: ", and never holds
/// the value (invariant no-secret-material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyPairError {
    /// Not JSON; where the parser stopped.
    NotJson {
        /// The line of the error.
        line: usize,
        /// The column of the error.
        column: usize,
    },
    /// JSON, but not an object: what it is (see `json_type`).
    NotObject(&'static str),
    /// A field is wrong (the reason, without the value).
    BadField(String),
    /// No key: the secret field the provider needs beside `AccessKeyId`.
    Missing {
        /// The provider's secret field.
        secret_field: &'static str,
    },
}

impl fmt::Display for KeyPairError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPairError::NotJson { line, column } => {
                write!(f, "it is not valid JSON (line {line}, column {column})")
            }
            KeyPairError::NotObject(found) => {
                write!(f, "it must be a JSON object, found {found}")
            }
            KeyPairError::BadField(why) => f.write_str(why),
            KeyPairError::Missing { secret_field } => {
                write!(f, "it must hold fields AccessKeyId and {secret_field}")
            }
        }
    }
}

/// Why a SecretString could not be used. Never holds the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFormatError {
    /// The value is not a usable managed secret (bad JSON, a missing or
    /// malformed field); the reason, without the value.
    Invalid(String),
    /// The `Provider` field names a provider rekey does not know (the
    /// name, shortened).
    UnknownProvider(String),
}

/// The managed secret's JSON value:
/// `{"Provider":"aws","UserName":"alice","AccessKeyId":"AKIA...","SecretAccessKey":"..."}`,
/// or for Alibaba `{"Provider":"alibaba","UserName":..,"AccessKeyId":..,"AccessKeySecret":..,"AdminSecretId":..}`.
/// Fields rekey does not know are kept as they are.
#[derive(Clone, PartialEq)]
pub struct ManagedSecret {
    /// The provider that issues the key (`Provider`; `aws` when absent).
    pub provider: Provider,
    /// The provider's user whose keys the secret holds (`UserName`).
    pub user_name: String,
    /// The key pair held (`AccessKeyId` and the provider's secret field),
    /// or `None` for a secret that holds no key yet.
    pub credential: Option<Credential>,
    /// Another secret whose AWSCURRENT holds the key pair that signs the
    /// provider's calls (providers that sign with a key pair only).
    pub admin_secret_id: Option<String>,
    /// The project the provider's calls are made in (SCloud sub-accounts).
    pub project_id: Option<String>,
    /// The AWS account of the IAM user (`AccountId`), when it is not the
    /// account rekey runs in: rekey acts there through the member role.
    pub account_id: Option<String>,
    fields: Map<String, Value>,
}

impl fmt::Debug for ManagedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedSecret")
            .field("provider", &self.provider)
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.key_id())
            .field("admin_secret_id", &self.admin_secret_id)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

const F_PROVIDER: &str = "Provider";
const F_USER: &str = "UserName";
const F_KEY_ID: &str = "AccessKeyId";
const F_ADMIN: &str = "AdminSecretId";
const F_PROJECT: &str = "ProjectId";
const F_ACCOUNT: &str = "AccountId";
/// The longest SecretId Secrets Manager accepts (an ARN or a name).
pub const MAX_SECRET_ID: usize = 2048;

impl ManagedSecret {
    /// A secret for `user` with no key yet.
    pub fn new(provider: Provider, user_name: &str) -> Self {
        let mut fields = Map::new();
        fields.insert(F_PROVIDER.into(), provider.name().into());
        fields.insert(F_USER.into(), user_name.into());
        ManagedSecret {
            provider,
            user_name: user_name.to_owned(),
            credential: None,
            admin_secret_id: None,
            project_id: None,
            account_id: None,
            fields,
        }
    }

    /// Reads a SecretString and checks it against its provider's rules.
    /// Errors never hold the secret half.
    pub fn parse(text: &str) -> Result<Self, SecretFormatError> {
        use SecretFormatError::*;
        let value: Value = serde_json::from_str(text).map_err(|e| {
            // serde_json's syntax errors carry only a position; keep it that way.
            Invalid(format!(
                "SecretString is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(fields) = value else {
            return Err(Invalid(format!(
                "SecretString must be a JSON object, found {}",
                json_type(&value)
            )));
        };
        let provider = match fields.get(F_PROVIDER) {
            None | Some(Value::Null) => Provider::Aws,
            Some(Value::String(p)) => {
                Provider::parse(p).ok_or_else(|| UnknownProvider(truncate(p, 40)))?
            }
            Some(other) => {
                return Err(Invalid(format!(
                    "field Provider must be a string, found {}",
                    json_type(other)
                )))
            }
        };
        let user_name = string_field(&fields, F_USER)?
            .ok_or_else(|| Invalid("field UserName is missing".into()))?;
        if let Err(why) = provider.validate_user_name(&user_name) {
            return Err(Invalid(format!("field UserName {why}")));
        }
        let credential = credential_fields(&fields, provider)?;
        let admin_secret_id = string_field(&fields, F_ADMIN)?;
        if let Some(admin) = &admin_secret_id {
            if provider.signing() == Signing::Ambient {
                return Err(Invalid(format!(
                    "field AdminSecretId is not used by provider {}: rekey signs its calls with the function's own role; remove the field",
                    provider.name()
                )));
            }
            if admin.is_empty()
                || admin.len() > MAX_SECRET_ID
                || admin.chars().any(char::is_control)
            {
                return Err(Invalid(format!(
                    "field AdminSecretId must be a secret name or ARN of 1 to {MAX_SECRET_ID} printable characters"
                )));
            }
        }
        let project_id = match provider.has_projects() {
            true => string_field(&fields, F_PROJECT)?.filter(|p| !p.is_empty()),
            false => None,
        };
        if let Some(p) = &project_id {
            if p.len() > 64 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(Invalid(
                    "field ProjectId must be up to 64 letters, digits and -".into(),
                ));
            }
        }
        let account_id = string_field(&fields, F_ACCOUNT)?;
        if let Some(account) = &account_id {
            if provider != Provider::Aws {
                return Err(Invalid(format!(
                    "field AccountId is used by provider aws only, not {}: remove the field",
                    provider.name()
                )));
            }
            if !is_account_id(account) {
                return Err(Invalid(
                    "field AccountId must be an AWS account id: 12 digits".into(),
                ));
            }
        }
        Ok(ManagedSecret {
            provider,
            user_name,
            credential,
            admin_secret_id,
            project_id,
            account_id,
            fields,
        })
    }

    /// The key pair held by an admin secret (`AdminSecretId`): a JSON object
    /// with `AccessKeyId` and the provider's secret field. Other fields are
    /// ignored.
    pub fn parse_key_pair(text: &str, provider: Provider) -> Result<Credential, KeyPairError> {
        let invalid = |e: SecretFormatError| match e {
            SecretFormatError::Invalid(why) | SecretFormatError::UnknownProvider(why) => {
                KeyPairError::BadField(why)
            }
        };
        let value: Value = serde_json::from_str(text).map_err(|e| KeyPairError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Object(fields) = value else {
            return Err(KeyPairError::NotObject(json_type(&value)));
        };
        credential_fields(&fields, provider)
            .map_err(invalid)?
            .ok_or(KeyPairError::Missing {
                secret_field: provider.secret_field(),
            })
    }

    /// Whether `other` names the same user of the same provider, in the
    /// same account (the same name in two accounts is two users).
    pub fn same_user(&self, other: &ManagedSecret) -> bool {
        self.user_name == other.user_name
            && self.provider == other.provider
            && self.account_id == other.account_id
    }

    /// The id of the access key the secret holds, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.credential.as_ref().map(|c| c.access_key_id.as_str())
    }

    /// The same secret holding `credential` instead; other fields unchanged.
    pub fn with_credential(&self, credential: Credential) -> Self {
        let mut fields = self.fields.clone();
        fields.insert(F_KEY_ID.into(), credential.access_key_id.clone().into());
        fields.insert(
            self.provider.secret_field().into(),
            credential.secret.expose().into(),
        );
        ManagedSecret {
            credential: Some(credential),
            fields,
            ..self.clone()
        }
    }

    /// The SecretString to store. Sensitive: never log it.
    pub fn to_secret_string(&self) -> Sensitive {
        Sensitive(Value::Object(self.fields.clone()).to_string())
    }
}

/// `AccessKeyId` and the provider's secret field: both or neither.
fn credential_fields(
    fields: &Map<String, Value>,
    provider: Provider,
) -> Result<Option<Credential>, SecretFormatError> {
    let secret_field = provider.secret_field();
    let key_id = string_field(fields, F_KEY_ID)?;
    let secret = string_field(fields, secret_field)?;
    match (key_id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            if let Err(why) = provider.validate_key_id(&id) {
                return Err(SecretFormatError::Invalid(format!(
                    "field AccessKeyId {why}"
                )));
            }
            Ok(Some(Credential {
                access_key_id: id,
                secret: Sensitive(secret),
            }))
        }
        (None, None) => Ok(None),
        _ => Err(SecretFormatError::Invalid(format!(
            "fields AccessKeyId and {secret_field} must be given together, both non-empty"
        ))),
    }
}

fn string_field(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, SecretFormatError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(SecretFormatError::Invalid(format!(
            "field {name} must be a string, found {}",
            json_type(other)
        ))),
    }
}

/// What a JSON value is, for messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `s` is an AWS account id (12 digits).
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Shortens an untrusted, non-secret value for an error message.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_secret_and_keeps_unknown_fields() {
        let s = ManagedSecret::parse(
            r#"{"UserName":"alice","AccessKeyId":"TESTKEY0000000000001","SecretAccessKey":"s3cr3t","Team":"ops"}"#,
        )
        .unwrap();
        assert_eq!(s.provider, Provider::Aws);
        assert_eq!(s.user_name, "alice");
        assert_eq!(s.key_id(), Some("TESTKEY0000000000001"));
        let next = s.with_credential(Credential {
            access_key_id: "TESTKEY0000000000002".into(),
            secret: Sensitive::new("n3w"),
        });
        let v: Value = serde_json::from_str(next.to_secret_string().expose()).unwrap();
        assert_eq!(v["Team"], "ops");
        assert_eq!(v["AccessKeyId"], "TESTKEY0000000000002");
        assert_eq!(v["SecretAccessKey"], "n3w");
        assert_eq!(v["UserName"], "alice");
    }

    #[test]
    fn user_only_secret_has_no_credential() {
        let s = ManagedSecret::parse(r#"{"UserName":"alice"}"#).unwrap();
        assert!(s.credential.is_none());
    }

    #[test]
    fn rejects_malformed_secrets_without_echoing_values() {
        let cases = [
            ("[1,2]", "must be a JSON object"),
            ("42", "must be a JSON object"),
            ("{", "not valid JSON"),
            (
                r#"{"AccessKeyId":"TESTKEY0000000000001"}"#,
                "UserName is missing",
            ),
            (r#"{"UserName":7}"#, "UserName must be a string"),
            (r#"{"UserName":"a b"}"#, "UserName may contain only"),
            (r#"{"UserName":""}"#, "UserName must be 1 to 128"),
            (
                r#"{"UserName":"a","AccessKeyId":"TESTKEY0000000000001"}"#,
                "must be given together",
            ),
            (
                r#"{"UserName":"a","AccessKeyId":"TESTKEY0000000000001","SecretAccessKey":5}"#,
                "SecretAccessKey must be a string",
            ),
            (
                r#"{"UserName":"a","AccessKeyId":"x","SecretAccessKey":"topsecretvalue"}"#,
                "AccessKeyId must be 16",
            ),
            (
                r#"{"UserName":"a","Provider":3}"#,
                "Provider must be a string",
            ),
        ];
        for (text, want) in cases {
            match ManagedSecret::parse(text) {
                Err(SecretFormatError::Invalid(msg)) => {
                    assert!(msg.contains(want), "{text}: {msg}");
                    assert!(!msg.contains("topsecretvalue"));
                }
                other => panic!("{text}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_provider_is_named() {
        assert_eq!(
            ManagedSecret::parse(r#"{"UserName":"a","Provider":"gcp"}"#).unwrap_err(),
            SecretFormatError::UnknownProvider("gcp".into())
        );
    }

    #[test]
    fn parses_an_alibaba_secret_with_its_own_field_names() {
        let s = ManagedSecret::parse(
            r#"{"Provider":"alibaba","UserName":"ops-bot","AccessKeyId":"LTAI5tTESTKEY000001","AccessKeySecret":"s3cr3t","AdminSecretId":"rekey/admin/ram"}"#,
        )
        .unwrap();
        assert_eq!(s.provider, Provider::Alibaba);
        assert_eq!(s.key_id(), Some("LTAI5tTESTKEY000001"));
        assert_eq!(s.admin_secret_id.as_deref(), Some("rekey/admin/ram"));
        let next = s.with_credential(Credential {
            access_key_id: "LTAI5tTESTKEY000002".into(),
            secret: Sensitive::new("n3w"),
        });
        let v: Value = serde_json::from_str(next.to_secret_string().expose()).unwrap();
        assert_eq!(v["AccessKeySecret"], "n3w");
        assert_eq!(v["AdminSecretId"], "rekey/admin/ram");
        assert!(v.get("SecretAccessKey").is_none());
    }

    #[test]
    fn alibaba_secrets_are_checked_by_alibaba_rules() {
        let cases = [
            (
                r#"{"Provider":"alibaba","UserName":"ops-bot","AccessKeyId":"LTAI5tTESTKEY000001","SecretAccessKey":"topsecretvalue"}"#,
                "AccessKeyId and AccessKeySecret must be given together",
            ),
            (
                r#"{"Provider":"alibaba","UserName":"ops+bot@corp"}"#,
                "UserName may contain only letters, digits and _.-",
            ),
            (
                r#"{"Provider":"alibaba","UserName":"ops-bot","AdminSecretId":7}"#,
                "AdminSecretId must be a string",
            ),
            (
                r#"{"Provider":"alibaba","UserName":"ops-bot","AdminSecretId":""}"#,
                "AdminSecretId must be a secret name or ARN",
            ),
            (
                r#"{"UserName":"alice","AdminSecretId":"rekey/admin/x"}"#,
                "AdminSecretId is not used by provider aws",
            ),
        ];
        for (text, want) in cases {
            match ManagedSecret::parse(text) {
                Err(SecretFormatError::Invalid(msg)) => {
                    assert!(msg.contains(want), "{text}: {msg}");
                    assert!(!msg.contains("topsecretvalue"));
                }
                other => panic!("{text}: expected Invalid, got {other:?}"),
            }
        }
        let long = format!(
            r#"{{"Provider":"alibaba","UserName":"{}"}}"#,
            "a".repeat(65)
        );
        assert!(
            ManagedSecret::parse(&long).is_err(),
            "RAM names are at most 64"
        );
        let aws = format!(r#"{{"UserName":"{}"}}"#, "a".repeat(128));
        assert!(ManagedSecret::parse(&aws).is_ok(), "IAM names go to 128");
    }

    #[test]
    fn an_scloud_secret_carries_its_project_and_public_key() {
        let s = ManagedSecret::parse(
            r#"{"Provider":"scloud","UserName":"ops@corp","AccessKeyId":"someone@example.com1296235120854146120","AccessKeySecret":"s3cr3t","ProjectId":"org-abc12"}"#,
        )
        .unwrap();
        assert_eq!(s.provider, Provider::SCloud);
        assert_eq!(s.project_id.as_deref(), Some("org-abc12"));
        assert_eq!(s.key_id(), Some("someone@example.com1296235120854146120"));
        let aws = ManagedSecret::parse(r#"{"UserName":"alice","ProjectId":"org-abc12"}"#).unwrap();
        assert_eq!(aws.project_id, None, "only SCloud has projects");
        for (text, want) in [
            (
                r#"{"Provider":"scloud","UserName":"ops","ProjectId":"org abc"}"#,
                "ProjectId must be",
            ),
            (
                r#"{"Provider":"scloud","UserName":"ops","AccessKeyId":"a b c d e f","AccessKeySecret":"x"}"#,
                "AccessKeyId must be 8 to 128",
            ),
        ] {
            match ManagedSecret::parse(text) {
                Err(SecretFormatError::Invalid(msg)) => assert!(msg.contains(want), "{msg}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_admin_key_pair_needs_both_halves_and_never_echoes_them() {
        let pair = ManagedSecret::parse_key_pair(
            r#"{"AccessKeyId":"LTAI5tADMINKEY00001","AccessKeySecret":"adm1n","Note":"x"}"#,
            Provider::Alibaba,
        )
        .unwrap();
        assert_eq!(pair.access_key_id, "LTAI5tADMINKEY00001");
        assert_eq!(pair.secret.expose(), "adm1n");
        for (text, want) in [
            ("not json topsecretvalue", "not valid JSON"),
            (r#"["topsecretvalue"]"#, "must be a JSON object"),
            (
                r#"{"Note":"topsecretvalue"}"#,
                "must hold fields AccessKeyId and AccessKeySecret",
            ),
            (
                r#"{"AccessKeyId":"LTAI5tADMINKEY00001","SecretAccessKey":"topsecretvalue"}"#,
                "must be given together",
            ),
        ] {
            let msg = ManagedSecret::parse_key_pair(text, Provider::Alibaba)
                .unwrap_err()
                .to_string();
            assert!(msg.contains(want), "{text}: {msg}");
            assert!(!msg.contains("topsecretvalue"), "{msg}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = ManagedSecret::parse(
            r#"{"UserName":"alice","AccessKeyId":"TESTKEY0000000000001","SecretAccessKey":"hunter2hunter2"}"#,
        )
        .unwrap();
        let shown = format!("{s:?} {:?}", s.credential);
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
