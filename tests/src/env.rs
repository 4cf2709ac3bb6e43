//! The functions' settings in tests ([`test_config`]) and the environment
//! a function binary runs with: moto's endpoint and admin key, and the
//! settings written by [`Config::to_env`].

use std::time::Duration;

use rekey::Config;
use serde_json::Value;

use crate::{moto, runtime, World, DENYING_ACCOUNT, MEMBER_ACCOUNTS, MEMBER_EXTERNAL_ID, REGION};

/// The IAM path of users the tests let rekey manage.
pub const MANAGED_PATH: &str = "/rekey/";
/// The default `REKEY_SECRET_PREFIX`: owning secrets are `rekey/<provider>/<user>`.
pub const OWNING_PREFIX: &str = "rekey/";
/// The default `REKEY_ADMIN_SECRET_PREFIX`.
pub const ADMIN_PREFIX: &str = "rekey/admin/";

/// Settings for tests: no waiting, AWS only (the other providers' settings
/// are their defaults, with no user pattern; see `emulator::Emulator::config`).
pub fn test_config() -> Config {
    let defaults = Config::from_lookup(|_| None).expect("the defaults are valid");
    Config {
        managed_user_path: Some(MANAGED_PATH.into()),
        deactivate_after: Duration::from_secs(24 * 3600),
        delete_after: Duration::from_secs(7 * 24 * 3600),
        idle_before_deactivate: Duration::ZERO,
        test_consecutive: 3,
        test_timeout: Duration::from_secs(3),
        test_spacing: Duration::ZERO,
        member: rekey::config::MemberSettings {
            accounts: MEMBER_ACCOUNTS
                .iter()
                .chain([&DENYING_ACCOUNT])
                .map(|a| a.to_string())
                .collect(),
            external_id: Some(MEMBER_EXTERNAL_ID.into()),
            ..defaults.member.clone()
        },
        ..defaults
    }
}

impl World {
    /// The environment a function binary needs to reach moto as the admin,
    /// with `config` as its settings ([`Config::to_env`]).
    pub fn function_env(&self, config: &Config) -> Vec<(String, String)> {
        let moto = moto();
        let aws = [
            ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", moto.admin.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY",
                moto.admin.secret.expose().to_owned(),
            ),
        ];
        aws.into_iter()
            .chain(config.to_env())
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    /// Runs a built function binary under the local Runtime API with
    /// `config`, invoking it once per event, and checks that its logs are
    /// JSON and hold no secret value this test has seen.
    pub async fn run_function(
        &self,
        binary: &str,
        config: &Config,
        events: Vec<Value>,
    ) -> runtime::Run {
        let run = runtime::invoke(
            std::path::Path::new(binary),
            &self.function_env(config),
            events,
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
        .await;
        // The admin key signs the function's calls: it is in its environment,
        // never in its output.
        self.assert_no_secret_in(&run.logs, "the function's logs");
        for line in run.logs.lines().filter(|l| l.starts_with('{')) {
            serde_json::from_str::<Value>(line).expect("log lines are JSON");
        }
        run
    }
}
