//! Settings from the environment, validated once at start.

use std::time::Duration;

use crate::error::{Error, Result};

/// Every setting of the functions, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Only IAM users whose path starts with this may be rotated. Required
    /// only when an AWS secret is handled.
    pub managed_user_path: Option<String>,
    /// How long a superseded (AWSPREVIOUS) key stays active.
    pub deactivate_after: Duration,
    /// How long an inactive key is kept before cleanup deletes it.
    pub delete_after: Duration,
    /// A superseded key used more recently than this is left active.
    pub idle_before_deactivate: Duration,
    /// The sweep checks each secret in full (its keys at the provider) at
    /// least this often, however quiet its records are.
    pub full_check_every: Duration,
    /// A secret paused (`rekey:paused`) for longer than this is counted
    /// by the sweep (`SecretsPausedTooLong`, behind an alarm) and shown as
    /// a problem by `rekey status` (invariant liveness: nothing goes
    /// silent). Above zero.
    pub paused_alert_after: Duration,
    /// Consecutive successful probes a new key needs.
    pub test_consecutive: u32,
    /// How long the hook's testSecret waits for a new key at most.
    pub test_timeout: Duration,
    /// Pause between probes of a new key.
    pub test_spacing: Duration,
    /// Owning secrets are named `<prefix><provider>/<user>` (ownership.rs).
    pub secret_prefix: String,
    /// Admin secrets (`AdminSecretId`) must be named under this prefix.
    pub admin_secret_prefix: String,
    /// Alibaba Cloud RAM settings.
    pub alibaba: AlibabaSettings,
    /// SCloud settings.
    pub scloud: SCloudSettings,
    /// How rekey reaches IAM users of member accounts.
    pub member: MemberSettings,
    /// A dry run: every step decides and reports what it would do, and
    /// makes no change (`dry_run::Gated` holds back every mutating call).
    pub dry_run: bool,
    /// The EventBridge bus the events for consumers go to (events.rs).
    pub event_bus: String,
}

/// Member accounts: a secret naming an `AccountId` has its user's keys
/// managed in that account, through a role rekey assumes there.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemberSettings {
    /// The accounts rekey may act in (besides its own); a secret naming
    /// another is refused before any call.
    pub accounts: Vec<String>,
    /// The member role's path and name (`/rekey/rekey-member`), the same in
    /// every member account.
    pub role: String,
    /// The external id the member role's trust policy requires. Required
    /// only when a member account's secret is handled.
    pub external_id: Option<String>,
}

impl MemberSettings {
    /// The member role's ARN in `account`, in `partition` (`aws`).
    pub fn role_arn(&self, partition: &str, account: &str) -> String {
        format!("arn:{partition}:iam::{account}:role{}", self.role)
    }
}

/// SCloud settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SCloudSettings {
    /// SCloud users rekey may touch. Required only when an SCloud secret is
    /// handled.
    pub user_pattern: Option<UserPattern>,
    /// The SCloud API.
    pub endpoint: Endpoint,
    /// Keys per user (SCloud publishes no limit).
    pub key_limit: usize,
}

/// Alibaba Cloud RAM settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlibabaSettings {
    /// RAM users rekey may touch. Required only when an Alibaba secret is
    /// handled.
    pub user_pattern: Option<UserPattern>,
    /// The RAM API (key management).
    pub ram_endpoint: Endpoint,
    /// The STS API (the key test).
    pub sts_endpoint: Endpoint,
    /// How RAM and STS calls are signed.
    pub signature: AlibabaSignature,
}

/// The request signature of Alibaba Cloud calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlibabaSignature {
    /// V3, `ACS3-HMAC-SHA256` in the `Authorization` header: Alibaba
    /// Cloud's current scheme, the default of its SDKs.
    V3,
    /// Signature version 1.0 (HMAC-SHA1 over the form), still accepted.
    V1,
}

impl AlibabaSignature {
    /// The setting's value: `v3` or `v1`.
    pub fn name(self) -> &'static str {
        match self {
            AlibabaSignature::V3 => "v3",
            AlibabaSignature::V1 => "v1",
        }
    }
}

/// A regular expression that must match a whole user name, and the
/// setting it came from.
#[derive(Clone, Debug)]
pub struct UserPattern {
    setting: &'static str,
    source: String,
    regex: regex_lite::Regex,
}

impl UserPattern {
    /// The pattern `source` of setting `name`, anchored at both ends.
    pub fn new(name: &'static str, source: &str) -> Result<Self> {
        let regex =
            regex_lite::Regex::new(&format!("^(?:{source})$")).map_err(|e| Error::Config {
                name,
                reason: format!("{source:?} is not a regular expression: {e}"),
            })?;
        Ok(UserPattern {
            setting: name,
            source: source.to_owned(),
            regex,
        })
    }

    /// Whether the pattern matches the whole of `user`.
    pub fn matches(&self, user: &str) -> bool {
        self.regex.is_match(user)
    }

    /// `UserNotManaged` unless the pattern matches `user`.
    pub fn ensure(&self, user: &str) -> Result<()> {
        if self.matches(user) {
            return Ok(());
        }
        Err(Error::UserNotManaged {
            user: user.to_owned(),
            reason: format!(
                "the user name does not match {} {:?}; change the setting or the secret's UserName",
                self.setting, self.source
            ),
        })
    }

    /// The pattern as it was set.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for UserPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for UserPattern {}

/// A provider endpoint: `https://host[:port]`, or `http://` to a loopback
/// address only (an emulator), since responses carry new secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    /// Checks `url`, the value of setting `name`.
    pub fn new(name: &'static str, url: &str) -> Result<Self> {
        let url = url.trim_end_matches('/');
        let invalid = |why: &str| Error::Config {
            name,
            reason: format!("{url:?} {why}"),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("is not a URL: write https://host"))?;
        let host = rest.split([':', '/']).next().unwrap_or("");
        if host.is_empty() || rest.contains(['?', '#', ' ', '@']) {
            return Err(invalid("is not a URL: write https://host"));
        }
        match scheme {
            "https" => {}
            "http" if matches!(host, "127.0.0.1" | "localhost") => {}
            "http" => {
                return Err(invalid(
                    "must use https (http is accepted only for 127.0.0.1 or localhost): the answers carry new secrets",
                ))
            }
            _ => return Err(invalid("must start with https://")),
        }
        Ok(Endpoint(url.to_owned()))
    }

    /// The URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.0
    }

    /// The host, and the port if the URL names one: the `host` header.
    pub fn authority(&self) -> &str {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// The URL's path, `/` when it has none.
    pub fn path(&self) -> String {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        match rest.split_once('/') {
            Some((_, path)) => format!("/{path}/"),
            None => "/".to_owned(),
        }
    }
}

/// `REKEY_MANAGED_USER_PATH`: [`Config::managed_user_path`].
pub const MANAGED_USER_PATH: &str = "REKEY_MANAGED_USER_PATH";
/// `REKEY_DEACTIVATE_AFTER`: [`Config::deactivate_after`].
pub const DEACTIVATE_AFTER: &str = "REKEY_DEACTIVATE_AFTER";
/// `REKEY_DELETE_AFTER`: [`Config::delete_after`].
pub const DELETE_AFTER: &str = "REKEY_DELETE_AFTER";
/// `REKEY_IDLE_BEFORE_DEACTIVATE`: [`Config::idle_before_deactivate`].
pub const IDLE_BEFORE_DEACTIVATE: &str = "REKEY_IDLE_BEFORE_DEACTIVATE";
/// `REKEY_FULL_CHECK_EVERY`: [`Config::full_check_every`].
pub const FULL_CHECK_EVERY: &str = "REKEY_FULL_CHECK_EVERY";
/// `REKEY_PAUSED_ALERT_AFTER`: [`Config::paused_alert_after`].
pub const PAUSED_ALERT_AFTER: &str = "REKEY_PAUSED_ALERT_AFTER";
/// `REKEY_TEST_CONSECUTIVE`: [`Config::test_consecutive`].
pub const TEST_CONSECUTIVE: &str = "REKEY_TEST_CONSECUTIVE";
/// `REKEY_TEST_TIMEOUT`: [`Config::test_timeout`].
pub const TEST_TIMEOUT: &str = "REKEY_TEST_TIMEOUT";
/// `REKEY_TEST_SPACING`: [`Config::test_spacing`].
pub const TEST_SPACING: &str = "REKEY_TEST_SPACING";
/// `REKEY_ALIBABA_USER_PATTERN`: [`AlibabaSettings::user_pattern`].
pub const ALIBABA_USER_PATTERN: &str = "REKEY_ALIBABA_USER_PATTERN";
/// `REKEY_ALIBABA_RAM_ENDPOINT`: [`AlibabaSettings::ram_endpoint`].
pub const ALIBABA_RAM_ENDPOINT: &str = "REKEY_ALIBABA_RAM_ENDPOINT";
/// `REKEY_ALIBABA_STS_ENDPOINT`: [`AlibabaSettings::sts_endpoint`].
pub const ALIBABA_STS_ENDPOINT: &str = "REKEY_ALIBABA_STS_ENDPOINT";
/// `REKEY_ALIBABA_SIGNATURE_VERSION`: [`AlibabaSettings::signature`].
pub const ALIBABA_SIGNATURE_VERSION: &str = "REKEY_ALIBABA_SIGNATURE_VERSION";
/// `REKEY_SCLOUD_USER_PATTERN`: [`SCloudSettings::user_pattern`].
pub const SCLOUD_USER_PATTERN: &str = "REKEY_SCLOUD_USER_PATTERN";
/// `REKEY_SCLOUD_ENDPOINT`: [`SCloudSettings::endpoint`].
pub const SCLOUD_ENDPOINT: &str = "REKEY_SCLOUD_ENDPOINT";
/// `REKEY_SCLOUD_KEY_LIMIT`: [`SCloudSettings::key_limit`].
pub const SCLOUD_KEY_LIMIT: &str = "REKEY_SCLOUD_KEY_LIMIT";
/// `REKEY_SECRET_PREFIX`: [`Config::secret_prefix`].
pub const SECRET_PREFIX: &str = "REKEY_SECRET_PREFIX";
/// `REKEY_ADMIN_SECRET_PREFIX`: [`Config::admin_secret_prefix`].
pub const ADMIN_SECRET_PREFIX: &str = "REKEY_ADMIN_SECRET_PREFIX";
/// `REKEY_MEMBER_ACCOUNTS`: [`MemberSettings::accounts`].
pub const MEMBER_ACCOUNTS: &str = "REKEY_MEMBER_ACCOUNTS";
/// `REKEY_MEMBER_ROLE`: [`MemberSettings::role`].
pub const MEMBER_ROLE: &str = "REKEY_MEMBER_ROLE";
/// `REKEY_MEMBER_EXTERNAL_ID`: [`MemberSettings::external_id`].
pub const MEMBER_EXTERNAL_ID: &str = "REKEY_MEMBER_EXTERNAL_ID";
/// `REKEY_DRY_RUN`: [`Config::dry_run`].
pub const DRY_RUN: &str = "REKEY_DRY_RUN";
/// `REKEY_EVENT_BUS`: [`Config::event_bus`].
pub const EVENT_BUS: &str = "REKEY_EVENT_BUS";

/// Every setting, declared once: its variable, its default, the template
/// parameter that sets it on the functions, and the part of [`Config`] it
/// fills and how its text is read. [`Config::from_lookup`] reads them in
/// this order (the first invalid one is reported), [`Config::to_env`]
/// writes them back, and a test holds `infra/template.yaml` to the table.
pub const SETTINGS: [Setting; 23] = [
    Setting {
        name: MANAGED_USER_PATH,
        default: None,
        template: Some(TemplateValue::Ref("ManagedUserPath")),
        field: Field::IamPath(
            |c| c.managed_user_path.clone(),
            |c, v| c.managed_user_path = v,
        ),
    },
    Setting {
        name: TEST_CONSECUTIVE,
        default: Some("3"),
        template: Some(TemplateValue::Ref("TestConsecutive")),
        field: Field::Number {
            max: 20,
            get: |c| c.test_consecutive as usize,
            set: |c, v| c.test_consecutive = v as u32,
        },
    },
    Setting {
        name: SECRET_PREFIX,
        default: Some("rekey/"),
        template: Some(TemplateValue::Ref("SecretPrefix")),
        field: Field::SecretPrefix(|c| c.secret_prefix.clone(), |c, v| c.secret_prefix = v),
    },
    Setting {
        name: ADMIN_SECRET_PREFIX,
        default: Some("rekey/admin/"),
        template: Some(TemplateValue::Ref("AdminSecretPrefix")),
        field: Field::AdminSecretPrefix(
            |c| c.admin_secret_prefix.clone(),
            |c, v| c.admin_secret_prefix = v,
        ),
    },
    Setting {
        name: DEACTIVATE_AFTER,
        default: Some("24h"),
        template: Some(TemplateValue::Ref("DeactivateAfter")),
        field: Field::Duration(|c| c.deactivate_after, |c, v| c.deactivate_after = v),
    },
    Setting {
        name: DELETE_AFTER,
        default: Some("7d"),
        template: Some(TemplateValue::Ref("DeleteAfter")),
        field: Field::Duration(|c| c.delete_after, |c, v| c.delete_after = v),
    },
    Setting {
        name: IDLE_BEFORE_DEACTIVATE,
        default: Some("4h"),
        template: Some(TemplateValue::Ref("IdleBeforeDeactivate")),
        field: Field::Duration(
            |c| c.idle_before_deactivate,
            |c, v| c.idle_before_deactivate = v,
        ),
    },
    Setting {
        name: FULL_CHECK_EVERY,
        default: Some("7d"),
        template: Some(TemplateValue::Ref("FullCheckEvery")),
        field: Field::Duration(|c| c.full_check_every, |c, v| c.full_check_every = v),
    },
    Setting {
        name: PAUSED_ALERT_AFTER,
        default: Some("7d"),
        template: Some(TemplateValue::Ref("PausedAlertAfter")),
        field: Field::Bound(|c| c.paused_alert_after, |c, v| c.paused_alert_after = v),
    },
    Setting {
        name: TEST_TIMEOUT,
        default: Some("60s"),
        template: Some(TemplateValue::Seconds("TestTimeout")),
        field: Field::Duration(|c| c.test_timeout, |c, v| c.test_timeout = v),
    },
    Setting {
        name: TEST_SPACING,
        default: Some("1s"),
        template: None,
        field: Field::Duration(|c| c.test_spacing, |c, v| c.test_spacing = v),
    },
    Setting {
        name: ALIBABA_USER_PATTERN,
        default: None,
        template: Some(TemplateValue::Ref("AlibabaUserPattern")),
        field: Field::Pattern(
            |c| c.alibaba.user_pattern.clone(),
            |c, v| c.alibaba.user_pattern = v,
        ),
    },
    Setting {
        name: ALIBABA_RAM_ENDPOINT,
        default: Some("https://ram.aliyuncs.com"),
        template: Some(TemplateValue::Ref("AlibabaRamEndpoint")),
        field: Field::Endpoint(
            |c| c.alibaba.ram_endpoint.clone(),
            |c, v| c.alibaba.ram_endpoint = v,
        ),
    },
    Setting {
        name: ALIBABA_STS_ENDPOINT,
        default: Some("https://sts.aliyuncs.com"),
        template: Some(TemplateValue::Ref("AlibabaStsEndpoint")),
        field: Field::Endpoint(
            |c| c.alibaba.sts_endpoint.clone(),
            |c, v| c.alibaba.sts_endpoint = v,
        ),
    },
    Setting {
        name: ALIBABA_SIGNATURE_VERSION,
        default: Some("v3"),
        template: Some(TemplateValue::Ref("AlibabaSignatureVersion")),
        field: Field::AlibabaSignature(|c| c.alibaba.signature, |c, v| c.alibaba.signature = v),
    },
    Setting {
        name: SCLOUD_USER_PATTERN,
        default: None,
        template: Some(TemplateValue::Ref("SCloudUserPattern")),
        field: Field::Pattern(
            |c| c.scloud.user_pattern.clone(),
            |c, v| c.scloud.user_pattern = v,
        ),
    },
    Setting {
        name: SCLOUD_ENDPOINT,
        default: Some("https://api.scloudsg.com"),
        template: Some(TemplateValue::Ref("SCloudEndpoint")),
        field: Field::Endpoint(|c| c.scloud.endpoint.clone(), |c, v| c.scloud.endpoint = v),
    },
    Setting {
        name: SCLOUD_KEY_LIMIT,
        default: Some("2"),
        template: Some(TemplateValue::Ref("SCloudKeyLimit")),
        field: Field::Number {
            max: 100,
            get: |c| c.scloud.key_limit,
            set: |c, v| c.scloud.key_limit = v,
        },
    },
    Setting {
        name: MEMBER_ACCOUNTS,
        default: None,
        template: Some(TemplateValue::Ref("MemberAccounts")),
        field: Field::Accounts(|c| c.member.accounts.clone(), |c, v| c.member.accounts = v),
    },
    Setting {
        name: MEMBER_ROLE,
        default: Some("/rekey/rekey-member"),
        template: Some(TemplateValue::Ref("MemberRole")),
        field: Field::Role(|c| c.member.role.clone(), |c, v| c.member.role = v),
    },
    Setting {
        name: MEMBER_EXTERNAL_ID,
        default: None,
        template: Some(TemplateValue::Ref("MemberExternalId")),
        field: Field::ExternalId(
            |c| c.member.external_id.clone(),
            |c, v| c.member.external_id = v,
        ),
    },
    Setting {
        name: DRY_RUN,
        default: Some("false"),
        template: Some(TemplateValue::Ref("DryRun")),
        field: Field::Flag(|c| c.dry_run, |c, v| c.dry_run = v),
    },
    Setting {
        name: EVENT_BUS,
        default: Some("default"),
        template: Some(TemplateValue::Ref("EventBus")),
        field: Field::EventBus(|c| c.event_bus.clone(), |c, v| c.event_bus = v),
    },
];

/// One setting of the functions (an entry of [`SETTINGS`]).
pub struct Setting {
    /// The environment variable, `REKEY_...`.
    pub name: &'static str,
    /// The value when the variable is unset or blank. `None`: no default (a
    /// provider's setting without default is required when a secret of
    /// that provider is handled).
    pub default: Option<&'static str>,
    /// How `infra/template.yaml` sets it on every function; `None`: the
    /// template leaves it unset (its default applies).
    pub template: Option<TemplateValue>,
    field: Field,
}

/// How the template sets a setting from one of its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateValue {
    /// `!Ref <parameter>`: the parameter as it is.
    Ref(&'static str),
    /// `!Sub "${<parameter>}s"`: a parameter in seconds, as a duration.
    Seconds(&'static str),
}

impl TemplateValue {
    /// The template parameter.
    pub fn parameter(&self) -> &'static str {
        match self {
            TemplateValue::Ref(p) | TemplateValue::Seconds(p) => p,
        }
    }

    /// The value as the template writes it (`!Ref ManagedUserPath`).
    pub fn yaml(&self) -> String {
        match self {
            TemplateValue::Ref(p) => format!("!Ref {p}"),
            TemplateValue::Seconds(p) => format!("!Sub \"${{{p}}}s\""),
        }
    }
}

/// Where a setting's value lives in [`Config`] (read and written through
/// the two functions), and how its text is read.
enum Field {
    /// An IAM path, optional.
    IamPath(
        fn(&Config) -> Option<String>,
        fn(&mut Config, Option<String>),
    ),
    /// A whole number from 1 to `max`.
    Number {
        max: u32,
        get: fn(&Config) -> usize,
        set: fn(&mut Config, usize),
    },
    /// A prefix of secret names.
    SecretPrefix(fn(&Config) -> String, fn(&mut Config, String)),
    /// A prefix of secret names that may not hold an owning secret (read
    /// after [`SECRET_PREFIX`]).
    AdminSecretPrefix(fn(&Config) -> String, fn(&mut Config, String)),
    /// A number and a unit ([`parse_duration`]).
    Duration(fn(&Config) -> Duration, fn(&mut Config, Duration)),
    /// A duration above zero: a bound past which something is reported.
    Bound(fn(&Config) -> Duration, fn(&mut Config, Duration)),
    /// A user-name pattern, optional.
    Pattern(
        fn(&Config) -> Option<UserPattern>,
        fn(&mut Config, Option<UserPattern>),
    ),
    /// A provider endpoint.
    Endpoint(fn(&Config) -> Endpoint, fn(&mut Config, Endpoint)),
    /// AWS account ids, separated by commas; none when unset.
    Accounts(fn(&Config) -> Vec<String>, fn(&mut Config, Vec<String>)),
    /// An IAM role's path and name (`/path/name`).
    Role(fn(&Config) -> String, fn(&mut Config, String)),
    /// An STS external id, optional.
    ExternalId(
        fn(&Config) -> Option<String>,
        fn(&mut Config, Option<String>),
    ),
    /// `true` or `false`.
    Flag(fn(&Config) -> bool, fn(&mut Config, bool)),
    /// The name of an EventBridge bus of the function's account.
    EventBus(fn(&Config) -> String, fn(&mut Config, String)),
    /// `v3` or `v1`.
    AlibabaSignature(
        fn(&Config) -> AlibabaSignature,
        fn(&mut Config, AlibabaSignature),
    ),
}

impl Setting {
    /// Reads `value` (trimmed, not blank; else the default) into `config`.
    fn read(&self, value: Option<String>, config: &mut Config) -> Result<()> {
        let name = self.name;
        let value = value.or(self.default.map(str::to_owned));
        let required = || {
            value.clone().ok_or(Error::Config {
                name,
                reason: "is required".into(),
            })
        };
        match &self.field {
            Field::IamPath(_, set) => {
                if let Some(path) = value.as_deref().filter(|p| !valid_iam_path(p)) {
                    return Err(Error::Config {
                        name,
                        reason: format!(
                            "{path:?} is not an IAM path: it must start and end with '/' (use '/' to allow every user)"
                        ),
                    });
                }
                set(config, value);
            }
            Field::Number { max, set, .. } => {
                let n = required()?
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=*max).contains(n))
                    .ok_or(Error::Config {
                        name,
                        reason: format!("must be a whole number from 1 to {max}"),
                    })?;
                set(config, n as usize);
            }
            Field::SecretPrefix(_, set) => set(config, valid_secret_prefix(name, &required()?)?),
            Field::AdminSecretPrefix(_, set) => {
                let admins = valid_secret_prefix(name, &required()?)?;
                let admins = secret_prefix_of_admins(name, &config.secret_prefix, &admins)?;
                set(config, admins);
            }
            Field::Duration(_, set) => set(config, parse_duration(name, &required()?)?),
            Field::Bound(_, set) => {
                let bound = parse_duration(name, &required()?)?;
                if bound.is_zero() {
                    return Err(Error::Config {
                        name,
                        reason: "must be above zero: write a number and a unit, e.g. 7d".into(),
                    });
                }
                set(config, bound);
            }
            Field::Pattern(_, set) => {
                let pattern = value.map(|p| UserPattern::new(name, &p)).transpose()?;
                set(config, pattern);
            }
            Field::Endpoint(_, set) => set(config, Endpoint::new(name, &required()?)?),
            Field::Accounts(_, set) => {
                let mut accounts = Vec::new();
                for account in value.iter().flat_map(|v| v.split(',')).map(str::trim) {
                    if account.is_empty() {
                        continue;
                    }
                    if !crate::model::is_account_id(account) {
                        return Err(Error::Config {
                            name,
                            reason: format!(
                                "{:?} is not an AWS account id (12 digits); write the ids separated by commas",
                                crate::model::truncate(account, 40)
                            ),
                        });
                    }
                    accounts.push(account.to_owned());
                }
                set(config, accounts);
            }
            Field::Role(_, set) => {
                let role = required()?;
                if !valid_role(&role) {
                    return Err(Error::Config {
                        name,
                        reason: format!(
                            "{role:?} is not an IAM role's path and name: write /path/name, e.g. /rekey/rekey-member"
                        ),
                    });
                }
                set(config, role);
            }
            Field::ExternalId(_, set) => {
                if let Some(id) = value.as_deref().filter(|id| !valid_external_id(id)) {
                    return Err(Error::Config {
                        name,
                        reason: format!(
                            "must be 2 to 1224 letters, digits or +=,.@:/- ({} characters given)",
                            id.chars().count()
                        ),
                    });
                }
                set(config, value);
            }
            Field::Flag(_, set) => match required()?.to_ascii_lowercase().as_str() {
                "true" => set(config, true),
                "false" => set(config, false),
                other => {
                    return Err(Error::Config {
                        name,
                        reason: format!(
                            "{:?} is neither true nor false",
                            crate::model::truncate(other, 40)
                        ),
                    })
                }
            },
            Field::EventBus(_, set) => {
                let bus = required()?;
                let valid = (1..=256).contains(&bus.len())
                    && bus
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                if !valid {
                    return Err(Error::Config {
                        name,
                        reason: format!(
                            "{:?} is not the name of an event bus of this account: 1 to 256 letters, digits and ._- (default: default)",
                            crate::model::truncate(&bus, 40)
                        ),
                    });
                }
                set(config, bus);
            }
            Field::AlibabaSignature(_, set) => {
                let version = match required()?.to_ascii_lowercase().as_str() {
                    "v3" => AlibabaSignature::V3,
                    "v1" => AlibabaSignature::V1,
                    other => {
                        return Err(Error::Config {
                            name,
                            reason: format!(
                                "{:?} is not a signature version: v3 (ACS3-HMAC-SHA256, the default) or v1 (HMAC-SHA1)",
                                crate::model::truncate(other, 20)
                            ),
                        })
                    }
                };
                set(config, version);
            }
        }
        Ok(())
    }

    /// The text that reads back as this setting's value in `config`;
    /// `None` if it is unset.
    fn write(&self, config: &Config) -> Option<String> {
        match &self.field {
            Field::IamPath(get, _) => get(config),
            Field::Number { get, .. } => Some(get(config).to_string()),
            Field::SecretPrefix(get, _) | Field::AdminSecretPrefix(get, _) => Some(get(config)),
            Field::Duration(get, _) | Field::Bound(get, _) => {
                let d = get(config);
                Some(if d.subsec_nanos() % 1_000_000 == 0 {
                    format!("{}ms", d.as_millis())
                } else {
                    format!("{}ns", d.as_nanos())
                })
            }
            Field::Pattern(get, _) => get(config).map(|p| p.as_str().to_owned()),
            Field::Endpoint(get, _) => Some(get(config).url().to_owned()),
            Field::Accounts(get, _) => Some(get(config).join(",")).filter(|a| !a.is_empty()),
            Field::Role(get, _) => Some(get(config)),
            Field::ExternalId(get, _) => get(config),
            Field::Flag(get, _) => Some(get(config).to_string()),
            Field::EventBus(get, _) => Some(get(config)),
            Field::AlibabaSignature(get, _) => Some(get(config).name().to_owned()),
        }
    }
}

/// The error for a provider setting that is needed now but was not set.
pub fn required(name: &'static str, provider: &str) -> Error {
    Error::Config {
        name,
        reason: format!(
            "is required to rotate keys of provider {provider}: set it on the function"
        ),
    }
}

impl Config {
    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests):
    /// each of [`SETTINGS`], in order.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = Config::unread();
        for setting in &SETTINGS {
            let value = lookup(setting.name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            setting.read(value, &mut config)?;
        }
        Ok(config)
    }

    /// The variables that give this configuration back through
    /// [`Config::from_lookup`]: every setting that is set, in the order of
    /// [`SETTINGS`] (durations in milliseconds).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        SETTINGS
            .iter()
            .filter_map(|s| Some((s.name, s.write(self)?)))
            .collect()
    }

    /// A configuration before any setting is read: every field is filled
    /// from [`SETTINGS`] before it is used.
    fn unread() -> Self {
        Config {
            managed_user_path: None,
            deactivate_after: Duration::ZERO,
            delete_after: Duration::ZERO,
            idle_before_deactivate: Duration::ZERO,
            full_check_every: Duration::ZERO,
            paused_alert_after: Duration::ZERO,
            test_consecutive: 0,
            test_timeout: Duration::ZERO,
            test_spacing: Duration::ZERO,
            secret_prefix: String::new(),
            admin_secret_prefix: String::new(),
            alibaba: AlibabaSettings {
                user_pattern: None,
                ram_endpoint: Endpoint(String::new()),
                sts_endpoint: Endpoint(String::new()),
                signature: AlibabaSignature::V3,
            },
            scloud: SCloudSettings {
                user_pattern: None,
                endpoint: Endpoint(String::new()),
                key_limit: 0,
            },
            member: MemberSettings::default(),
            dry_run: false,
            event_bus: String::new(),
        }
    }
}

/// `0s`, `500ms`, `90m`, `24h`, `7d`: a number and a unit.
pub fn parse_duration(name: &'static str, text: &str) -> Result<Duration> {
    let invalid = || Error::Config {
        name,
        reason: format!(
            "{text:?} is not a duration: write a number and a unit, e.g. 0s, 90m, 24h, 7d"
        ),
    };
    // humantime accepts bare numbers nowhere and units everywhere; require a
    // leading digit so values like "h" or "-1h" are rejected clearly.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid());
    }
    humantime::parse_duration(text).map_err(|_| invalid())
}

/// A prefix of secret names: the characters Secrets Manager allows in a
/// name, ending with '/'.
fn valid_secret_prefix(name: &'static str, p: &str) -> Result<String> {
    let ok = p.ends_with('/')
        && p.len() <= 256
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if !ok {
        return Err(Error::Config {
            name,
            reason: format!(
                "{p:?} is not a prefix of secret names: letters, digits and /_+=.@- only, ending with '/'"
            ),
        });
    }
    Ok(p.to_owned())
}

/// The admin prefix must never hold an owning secret.
fn secret_prefix_of_admins(name: &'static str, owners: &str, admins: &str) -> Result<String> {
    let clash = crate::model::Provider::ALL
        .iter()
        .map(|p| format!("{owners}{}/", p.name()))
        .find(|owning| admins.starts_with(owning.as_str()) || owning.starts_with(admins));
    match clash {
        Some(owning) => Err(Error::Config {
            name,
            reason: format!(
                "{admins:?} overlaps the owning secrets' names {owning}...: an admin secret must never be an owning secret; choose another prefix"
            ),
        }),
        None => Ok(admins.to_owned()),
    }
}

/// `/path/name` of an IAM role: the path starts and ends with `/`, the
/// name is 1 to 64 of IAM's name characters.
fn valid_role(r: &str) -> bool {
    let Some((path, name)) = r.rsplit_once('/') else {
        return false;
    };
    valid_iam_path(&format!("{path}/"))
        && (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// An STS external id: 2 to 1224 of `[\w+=,.@:/-]`.
fn valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

fn valid_iam_path(p: &str) -> bool {
    p.starts_with('/')
        && p.ends_with('/')
        && p.len() <= 512
        && p.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[(MANAGED_USER_PATH, "/rekey/")]).unwrap();
        assert_eq!(c.deactivate_after, Duration::from_secs(24 * 3600));
        assert_eq!(c.delete_after, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.idle_before_deactivate, Duration::from_secs(4 * 3600));
        assert_eq!(c.paused_alert_after, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.test_consecutive, 3);
        assert_eq!(c.test_timeout, Duration::from_secs(60));
        assert_eq!(c.alibaba.user_pattern, None);
        assert_eq!(c.alibaba.ram_endpoint.url(), "https://ram.aliyuncs.com");
        assert_eq!(c.alibaba.sts_endpoint.url(), "https://sts.aliyuncs.com");
        assert_eq!(c.scloud.user_pattern, None);
        assert_eq!(c.scloud.endpoint.url(), "https://api.scloudsg.com");
        assert_eq!(c.scloud.key_limit, 2);
        assert_eq!(c.secret_prefix, "rekey/");
        assert_eq!(c.admin_secret_prefix, "rekey/admin/");
    }

    #[test]
    fn secret_prefixes_are_names_and_admins_never_own() {
        let path = (MANAGED_USER_PATH, "/rekey/");
        assert!(config(&[path, (SECRET_PREFIX, "keys/")]).is_ok());
        for (name, bad) in [
            (SECRET_PREFIX, "rekey"),
            (SECRET_PREFIX, "re key/"),
            (ADMIN_SECRET_PREFIX, "rekey/aws/admins/"),
            (ADMIN_SECRET_PREFIX, "rekey/"),
        ] {
            match config(&[path, (name, bad)]) {
                Err(Error::Config { name: n, reason }) => {
                    assert_eq!(n, name, "{reason}");
                }
                other => panic!("{name}={bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn provider_settings_are_optional_until_used() {
        let c = config(&[]).unwrap();
        assert_eq!(c.managed_user_path, None);
        assert_eq!(c.alibaba.user_pattern, None);
    }

    #[test]
    fn a_user_pattern_matches_whole_names() {
        let c = config(&[(ALIBABA_USER_PATTERN, "ops-.*|ci")]).unwrap();
        let p = c.alibaba.user_pattern.unwrap();
        assert!(p.matches("ops-bot"));
        assert!(p.matches("ci"));
        assert!(!p.matches("ci-admin"), "anchored at the end");
        assert!(!p.matches("my-ops-bot"), "anchored at the start");
        assert_eq!(p.as_str(), "ops-.*|ci");
        let refused = p.ensure("root").unwrap_err();
        assert_eq!(refused.kind(), "UserNotManaged");
        assert!(
            refused.to_string().contains(ALIBABA_USER_PATTERN),
            "{refused}"
        );
    }

    #[test]
    fn endpoints_need_https_except_on_loopback() {
        let c = config(&[
            (ALIBABA_RAM_ENDPOINT, "http://127.0.0.1:4100/"),
            (
                ALIBABA_STS_ENDPOINT,
                "https://sts.eu-central-1.aliyuncs.com",
            ),
        ])
        .unwrap();
        assert_eq!(c.alibaba.ram_endpoint.url(), "http://127.0.0.1:4100");
        assert_eq!(
            c.alibaba.sts_endpoint.url(),
            "https://sts.eu-central-1.aliyuncs.com"
        );
        for bad in [
            "http://ram.aliyuncs.com",
            "ram.aliyuncs.com",
            "ftp://ram.aliyuncs.com",
            "https://",
            "https://user@host",
        ] {
            let err = config(&[(ALIBABA_RAM_ENDPOINT, bad)]).unwrap_err();
            assert!(
                err.to_string().contains(ALIBABA_RAM_ENDPOINT),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn durations_with_units() {
        let c = config(&[
            (MANAGED_USER_PATH, "/"),
            (DEACTIVATE_AFTER, "0s"),
            (DELETE_AFTER, "90m"),
            (TEST_SPACING, "250ms"),
        ])
        .unwrap();
        assert_eq!(c.deactivate_after, Duration::ZERO);
        assert_eq!(c.delete_after, Duration::from_secs(90 * 60));
        assert_eq!(c.test_spacing, Duration::from_millis(250));
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(MANAGED_USER_PATH, "rekey")], MANAGED_USER_PATH),
            (&[(ALIBABA_USER_PATTERN, "ops-(")], ALIBABA_USER_PATTERN),
            (&[(SCLOUD_USER_PATTERN, "[")], SCLOUD_USER_PATTERN),
            (
                &[(SCLOUD_ENDPOINT, "http://api.scloudsg.com")],
                SCLOUD_ENDPOINT,
            ),
            (&[(SCLOUD_KEY_LIMIT, "0")], SCLOUD_KEY_LIMIT),
            (&[(SCLOUD_KEY_LIMIT, "two")], SCLOUD_KEY_LIMIT),
            (
                &[(MANAGED_USER_PATH, "/"), (DELETE_AFTER, "7")],
                DELETE_AFTER,
            ),
            (
                &[(MANAGED_USER_PATH, "/"), (DEACTIVATE_AFTER, "-1h")],
                DEACTIVATE_AFTER,
            ),
            (
                &[(MANAGED_USER_PATH, "/"), (TEST_TIMEOUT, "soon")],
                TEST_TIMEOUT,
            ),
            (
                &[(MANAGED_USER_PATH, "/"), (TEST_CONSECUTIVE, "0")],
                TEST_CONSECUTIVE,
            ),
            (&[(PAUSED_ALERT_AFTER, "0s")], PAUSED_ALERT_AFTER),
            (&[(PAUSED_ALERT_AFTER, "0d")], PAUSED_ALERT_AFTER),
            (&[(PAUSED_ALERT_AFTER, "a week")], PAUSED_ALERT_AFTER),
            (&[(PAUSED_ALERT_AFTER, "7")], PAUSED_ALERT_AFTER),
        ];
        for (pairs, setting) in cases {
            let err = config(pairs).unwrap_err();
            assert!(
                err.to_string().contains(setting),
                "{pairs:?}: {err} should name {setting}"
            );
            assert_eq!(err.kind(), "InvalidConfig");
        }
    }

    #[test]
    fn member_account_settings_are_checked() {
        let c = config(&[(MEMBER_ACCOUNTS, " 111111111111 ,222222222222,")]).unwrap();
        assert_eq!(c.member.accounts, ["111111111111", "222222222222"]);
        assert_eq!(c.member.role, "/rekey/rekey-member");
        assert_eq!(
            c.member.role_arn("aws", "111111111111"),
            "arn:aws:iam::111111111111:role/rekey/rekey-member"
        );
        assert_eq!(config(&[]).unwrap().member.accounts, Vec::<String>::new());
        for (name, value) in [
            (MEMBER_ACCOUNTS, "11111111111"),
            (MEMBER_ACCOUNTS, "111111111111;222222222222"),
            (MEMBER_ROLE, "rekey-member"),
            (MEMBER_ROLE, "/rekey/"),
            (MEMBER_EXTERNAL_ID, "x"),
            (MEMBER_EXTERNAL_ID, "has space"),
        ] {
            match config(&[(name, value)]) {
                Err(Error::Config { name: n, .. }) => assert_eq!(n, name, "{value}"),
                other => panic!("{name}={value:?} should be refused: {other:?}"),
            }
        }
    }

    #[test]
    fn to_env_reads_back_as_the_same_config() {
        let defaults = config(&[]).unwrap();
        let back = |c: &Config| {
            let env: HashMap<&str, String> = c.to_env().into_iter().collect();
            Config::from_lookup(|k| env.get(k).cloned()).unwrap()
        };
        assert_eq!(back(&defaults), defaults);
        // Every field away from its default, so a field the table missed
        // would come back different.
        let every = config(&[
            (MANAGED_USER_PATH, "/ops/"),
            (DEACTIVATE_AFTER, "0s"),
            (DELETE_AFTER, "90m"),
            (IDLE_BEFORE_DEACTIVATE, "1500us"),
            (PAUSED_ALERT_AFTER, "36h"),
            (TEST_CONSECUTIVE, "7"),
            (TEST_TIMEOUT, "3s"),
            (TEST_SPACING, "250ms"),
            (ALIBABA_USER_PATTERN, "ops-.*"),
            (ALIBABA_RAM_ENDPOINT, "http://127.0.0.1:4100"),
            (ALIBABA_STS_ENDPOINT, "http://localhost:4101"),
            (SCLOUD_USER_PATTERN, "ci|bot"),
            (SCLOUD_ENDPOINT, "https://api.example.com"),
            (SCLOUD_KEY_LIMIT, "5"),
            (SECRET_PREFIX, "keys/"),
            (ADMIN_SECRET_PREFIX, "admins/"),
            (MEMBER_ACCOUNTS, "111111111111, 222222222222"),
            (MEMBER_ROLE, "/ops/rotator"),
            (MEMBER_EXTERNAL_ID, "rekey-ext-1"),
        ])
        .unwrap();
        assert_eq!(back(&every), every);
        let names: Vec<&str> = every.to_env().into_iter().map(|(k, _)| k).collect();
        let all: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        assert_eq!(names, all, "every setting is written when set");
        assert!(every.to_env().contains(&(DELETE_AFTER, "5400000ms".into())));
        // Unset optional settings are left out.
        let optional: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.default.is_none())
            .map(|s| s.name)
            .collect();
        assert!(defaults.to_env().iter().all(|(k, _)| !optional.contains(k)));
    }

    #[test]
    fn each_setting_is_declared_once() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SETTINGS.len());
        assert!(names.iter().all(|n| n.starts_with("REKEY_")));
    }

    /// The lines of the block under the first line of `lines` that reads
    /// `key:` (those indented deeper), as YAML nests them.
    fn yaml_block<'a>(lines: &[&'a str], key: &str) -> Vec<&'a str> {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let Some(start) = lines.iter().position(|l| l.trim() == format!("{key}:")) else {
            return vec![];
        };
        let depth = indent(lines[start]);
        lines[start + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > depth)
            .copied()
            .collect()
    }

    #[test]
    fn the_template_sets_each_setting_from_its_parameter_with_its_default() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
        let text = std::fs::read_to_string(path).expect("infra/template.yaml");
        let lines: Vec<&str> = text.lines().collect();
        let parameter_block = yaml_block(&lines, "Parameters");
        let parameters: Vec<&str> = parameter_block
            .iter()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.trim().strip_suffix(':'))
            .collect();
        let globals = yaml_block(&lines, "Globals");
        let variables: HashMap<&str, &str> = yaml_block(&globals, "Variables")
            .into_iter()
            .filter_map(|l| l.trim().split_once(": "))
            .collect();
        assert!(!parameters.is_empty() && !variables.is_empty());
        for s in &SETTINGS {
            match s.template {
                Some(t) => {
                    assert_eq!(
                        variables.get(s.name).copied(),
                        Some(t.yaml().as_str()),
                        "the functions' {} in the template",
                        s.name
                    );
                    assert!(
                        parameters.contains(&t.parameter()),
                        "parameter {} of {}",
                        t.parameter(),
                        s.name
                    );
                    // The parameter's default is the setting's, where the
                    // setting has one.
                    let default = yaml_block(&parameter_block, t.parameter())
                        .iter()
                        .find_map(|l| l.trim().strip_prefix("Default: "))
                        .map(|d| d.trim_matches('"'));
                    let as_setting = match t {
                        TemplateValue::Ref(_) => default.map(str::to_owned),
                        TemplateValue::Seconds(_) => default.map(|d| format!("{d}s")),
                    };
                    if let Some(d) = s.default {
                        assert_eq!(as_setting.as_deref(), Some(d), "the default of {}", s.name);
                    }
                }
                None => assert!(!variables.contains_key(s.name), "{}", s.name),
            }
        }
        for name in variables.keys().filter(|k| k.starts_with("REKEY_")) {
            assert!(
                SETTINGS.iter().any(|s| s.name == *name),
                "the template sets {name}, which is no setting"
            );
        }
    }

    #[test]
    fn alibaba_signs_with_v3_unless_told_v1() {
        assert_eq!(config(&[]).unwrap().alibaba.signature, AlibabaSignature::V3);
        let v1 = config(&[(ALIBABA_SIGNATURE_VERSION, "V1")]).unwrap();
        assert_eq!(v1.alibaba.signature, AlibabaSignature::V1);
        let bad = config(&[(ALIBABA_SIGNATURE_VERSION, "v2")]).unwrap_err();
        assert!(bad.to_string().contains(ALIBABA_SIGNATURE_VERSION), "{bad}");
        assert!(bad.to_string().contains("v3"), "{bad}");
    }
}
