//! Settings from the environment, validated once at start.

use std::time::Duration;

use crate::error::{Error, Result};

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
    pub alibaba: AlibabaSettings,
    pub scloud: SCloudSettings,
}

/// SCloud settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SCloudSettings {
    /// SCloud users rekey may touch. Required only when an SCloud secret is
    /// handled.
    pub user_pattern: Option<UserPattern>,
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
    pub ram_endpoint: Endpoint,
    pub sts_endpoint: Endpoint,
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
}

pub const MANAGED_USER_PATH: &str = "REKEY_MANAGED_USER_PATH";
pub const DEACTIVATE_AFTER: &str = "REKEY_DEACTIVATE_AFTER";
pub const DELETE_AFTER: &str = "REKEY_DELETE_AFTER";
pub const IDLE_BEFORE_DEACTIVATE: &str = "REKEY_IDLE_BEFORE_DEACTIVATE";
pub const TEST_CONSECUTIVE: &str = "REKEY_TEST_CONSECUTIVE";
pub const TEST_TIMEOUT: &str = "REKEY_TEST_TIMEOUT";
pub const TEST_SPACING: &str = "REKEY_TEST_SPACING";
pub const ALIBABA_USER_PATTERN: &str = "REKEY_ALIBABA_USER_PATTERN";
pub const ALIBABA_RAM_ENDPOINT: &str = "REKEY_ALIBABA_RAM_ENDPOINT";
pub const ALIBABA_STS_ENDPOINT: &str = "REKEY_ALIBABA_STS_ENDPOINT";
pub const SCLOUD_USER_PATTERN: &str = "REKEY_SCLOUD_USER_PATTERN";
pub const SCLOUD_ENDPOINT: &str = "REKEY_SCLOUD_ENDPOINT";
pub const SCLOUD_KEY_LIMIT: &str = "REKEY_SCLOUD_KEY_LIMIT";
pub const SECRET_PREFIX: &str = "REKEY_SECRET_PREFIX";
pub const ADMIN_SECRET_PREFIX: &str = "REKEY_ADMIN_SECRET_PREFIX";

/// Every setting with its default (`None`: no default; a provider's
/// setting without default is required when a secret of that provider is
/// handled).
pub const SETTINGS: [(&str, Option<&str>); 15] = [
    (MANAGED_USER_PATH, None),
    (DEACTIVATE_AFTER, Some("24h")),
    (DELETE_AFTER, Some("7d")),
    (IDLE_BEFORE_DEACTIVATE, Some("4h")),
    (TEST_CONSECUTIVE, Some("3")),
    (TEST_TIMEOUT, Some("60s")),
    (TEST_SPACING, Some("1s")),
    (ALIBABA_USER_PATTERN, None),
    (ALIBABA_RAM_ENDPOINT, Some("https://ram.aliyuncs.com")),
    (ALIBABA_STS_ENDPOINT, Some("https://sts.aliyuncs.com")),
    (SCLOUD_USER_PATTERN, None),
    (SCLOUD_ENDPOINT, Some("https://api.scloudsg.com")),
    (SCLOUD_KEY_LIMIT, Some("2")),
    (SECRET_PREFIX, Some("rekey/")),
    (ADMIN_SECRET_PREFIX, Some("rekey/admin/")),
];

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
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        // The value, else the default; `None` if neither.
        let value = |name: &'static str| -> Option<String> {
            let default = SETTINGS
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, d)| *d);
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                Some(v) => Some(v.trim().to_owned()),
                None => default.map(str::to_owned),
            }
        };
        let get = |name: &'static str| -> Result<String> {
            value(name).ok_or(Error::Config {
                name,
                reason: "is required".into(),
            })
        };
        let optional = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let duration =
            |name: &'static str| -> Result<Duration> { parse_duration(name, &get(name)?) };

        let managed_user_path = optional(MANAGED_USER_PATH).map(|p| p.trim().to_owned());
        if let Some(path) = managed_user_path.as_deref().filter(|p| !valid_iam_path(p)) {
            return Err(Error::Config {
                name: MANAGED_USER_PATH,
                reason: format!(
                    "{path:?} is not an IAM path: it must start and end with '/' (use '/' to allow every user)"
                ),
            });
        }
        let number = |name: &'static str, max: u32| -> Result<u32> {
            get(name)?
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(Error::Config {
                    name,
                    reason: format!("must be a whole number from 1 to {max}"),
                })
        };
        let pattern = |name: &'static str| {
            optional(name)
                .map(|p| UserPattern::new(name, p.trim()))
                .transpose()
        };
        let endpoint = |name: &'static str| Endpoint::new(name, &get(name)?);
        let test_consecutive = number(TEST_CONSECUTIVE, 20)?;
        let secret_prefix = valid_secret_prefix(SECRET_PREFIX, &get(SECRET_PREFIX)?)?;
        let admin_secret_prefix = secret_prefix_of_admins(
            &secret_prefix,
            &valid_secret_prefix(ADMIN_SECRET_PREFIX, &get(ADMIN_SECRET_PREFIX)?)?,
        )?;
        Ok(Config {
            secret_prefix,
            admin_secret_prefix,
            managed_user_path,
            deactivate_after: duration(DEACTIVATE_AFTER)?,
            delete_after: duration(DELETE_AFTER)?,
            idle_before_deactivate: duration(IDLE_BEFORE_DEACTIVATE)?,
            test_consecutive,
            test_timeout: duration(TEST_TIMEOUT)?,
            test_spacing: duration(TEST_SPACING)?,
            alibaba: AlibabaSettings {
                user_pattern: pattern(ALIBABA_USER_PATTERN)?,
                ram_endpoint: endpoint(ALIBABA_RAM_ENDPOINT)?,
                sts_endpoint: endpoint(ALIBABA_STS_ENDPOINT)?,
            },
            scloud: SCloudSettings {
                user_pattern: pattern(SCLOUD_USER_PATTERN)?,
                endpoint: endpoint(SCLOUD_ENDPOINT)?,
                key_limit: number(SCLOUD_KEY_LIMIT, 100)? as usize,
            },
        })
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
fn secret_prefix_of_admins(owners: &str, admins: &str) -> Result<String> {
    let clash = crate::model::Provider::ALL
        .iter()
        .map(|p| format!("{owners}{}/", p.name()))
        .find(|owning| admins.starts_with(owning.as_str()) || owning.starts_with(admins));
    match clash {
        Some(owning) => Err(Error::Config {
            name: ADMIN_SECRET_PREFIX,
            reason: format!(
                "{admins:?} overlaps the owning secrets' names {owning}...: an admin secret must never be an owning secret; choose another prefix"
            ),
        }),
        None => Ok(admins.to_owned()),
    }
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
}
