//! The deployment the command works on: the functions' settings and the
//! pipeline's rotation period, from a CloudFormation stack (its parameters,
//! mapped to settings by the table the template is held to,
//! `rekey::config::SETTINGS`) or from the `REKEY_*` environment.

use std::collections::HashMap;
use std::time::Duration;

use rekey::config::{parse_duration, TemplateValue, SETTINGS};
use rekey::events::EventBridge;
use rekey::providers::LiveProviders;
use rekey::vault::SecretsManager;
use rekey::{Config, Rekey};

use crate::Failure;

/// Where the pipeline's ARN is read from without `--stack`.
pub const STATE_MACHINE_VARIABLE: &str = "REKEY_STATE_MACHINE_ARN";
/// Where the hook's ARN is read from without `--stack`.
pub const HOOK_VARIABLE: &str = "REKEY_HOOK_FUNCTION_ARN";
/// The template's default `RotationPeriod`.
const DEFAULT_PERIOD: &str = "30d";
/// The template's default `OverdueAfterDays`.
const DEFAULT_OVERDUE_DAYS: u64 = 45;

/// A deployment's settings, as the functions read them.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The functions' settings (`dry_run` always on: the command's steps
    /// run dry unless a change is confirmed, [`Deployment::steps`]).
    pub config: Config,
    /// The deployment is a dry run (`DryRun`, `REKEY_DRY_RUN`): its
    /// functions change nothing, and the command's changes need `--live`
    /// (`rekey::dry_run::command_may_change`).
    pub dry_run: bool,
    /// The pipeline's rotation period (`RotationPeriod`).
    pub period: Duration,
    /// A secret whose AWSCURRENT is older than this is overdue
    /// (`OverdueAfterDays`, the alarm's threshold).
    pub overdue_after: Duration,
    /// The scheduled pipeline (the stack's `StateMachineArn` output, else
    /// `REKEY_STATE_MACHINE_ARN`), which `rekey rotate` starts for a
    /// pipeline-driven secret.
    pub state_machine: Option<String>,
    /// The rotation hook (the stack's `HookFunctionArn` output, else
    /// `REKEY_HOOK_FUNCTION_ARN`), which `rekey enroll --hook` turns
    /// rotation on with.
    pub hook_function: Option<String>,
}

/// The functions' steps, as the command runs them.
pub type Steps = Rekey<SecretsManager, LiveProviders>;

impl Deployment {
    /// The functions' steps with this deployment's settings: dry (they
    /// change nothing) unless `live`, for a change an operator confirmed.
    pub fn steps(&self, sdk: &aws_config::SdkConfig, live: bool) -> Steps {
        let mut config = self.config.clone();
        config.dry_run = !live;
        Rekey::new(
            SecretsManager::new(sdk),
            LiveProviders::new(sdk, &config),
            config,
        )
    }

    /// The deployment's event bus (`REKEY_EVENT_BUS`).
    pub fn events(&self, sdk: &aws_config::SdkConfig) -> EventBridge {
        EventBridge::new(sdk, &self.config.event_bus)
    }

    /// The same deployment with `--period`, when given.
    pub fn with_period(mut self, period: Option<&str>) -> Result<Self, Failure> {
        if let Some(p) = period {
            self.period =
                parse_duration("--period", p).map_err(|e| Failure::Usage(e.to_string()))?;
        }
        Ok(self)
    }
}

/// Reads the deployment from `stack`, or from the environment.
pub async fn load(sdk: &aws_config::SdkConfig, stack: Option<&str>) -> Result<Deployment, Failure> {
    let Some(stack) = stack else {
        let mut d = from_lookup(|name| std::env::var(name).ok(), &HashMap::new())?;
        let variable = |name| std::env::var(name).ok().filter(|a: &String| !a.is_empty());
        d.state_machine = variable(STATE_MACHINE_VARIABLE);
        d.hook_function = variable(HOOK_VARIABLE);
        return Ok(d);
    };
    let out = aws_sdk_cloudformation::Client::new(sdk)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            Failure::Error(format!(
                "stack {stack} could not be read: {} (check its name, the region and your credentials)",
                rekey::sdk::service_error("CloudFormation", "DescribeStacks", e)
            ))
        })?;
    let parameters: HashMap<String, String> = out
        .stacks()
        .first()
        .map(|s| {
            s.parameters()
                .iter()
                .filter_map(|p| {
                    Some((
                        p.parameter_key()?.to_owned(),
                        p.parameter_value()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut d = from_lookup(|name| setting_from(&parameters, name), &parameters)?;
    let output = |key: &str| {
        out.stacks()
            .first()
            .and_then(|s| s.outputs().iter().find(|o| o.output_key() == Some(key)))
            .and_then(|o| o.output_value())
            .map(str::to_owned)
    };
    d.state_machine = output("StateMachineArn");
    d.hook_function = output("HookFunctionArn");
    Ok(d)
}

/// The value the template gives setting `name` from the stack's
/// `parameters`.
fn setting_from(parameters: &HashMap<String, String>, name: &str) -> Option<String> {
    let template = SETTINGS.iter().find(|s| s.name == name)?.template?;
    let value = parameters.get(template.parameter())?;
    Some(match template {
        TemplateValue::Ref(_) => value.clone(),
        TemplateValue::Seconds(_) => format!("{value}s"),
    })
}

fn from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
    parameters: &HashMap<String, String>,
) -> Result<Deployment, Failure> {
    let mut config = Config::from_lookup(lookup)?;
    let dry_run = config.dry_run;
    // The command reads; its changes (pause, resume) are its own calls.
    config.dry_run = true;
    let period = parameters
        .get("RotationPeriod")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PERIOD);
    let overdue_days = parameters
        .get("OverdueAfterDays")
        .and_then(|d| d.parse::<u64>().ok())
        .unwrap_or(DEFAULT_OVERDUE_DAYS);
    Ok(Deployment {
        config,
        dry_run,
        period: parse_duration("RotationPeriod", period)?,
        overdue_after: Duration::from_secs(overdue_days * 86_400),
        state_machine: None,
        hook_function: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stacks_parameters_are_the_functions_settings() {
        let parameters: HashMap<String, String> = [
            ("ManagedUserPath", "/svc/"),
            ("TestTimeout", "90"),
            ("RotationPeriod", "7d"),
            ("OverdueAfterDays", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let d = from_lookup(|n| setting_from(&parameters, n), &parameters).unwrap();
        assert_eq!(d.config.managed_user_path.as_deref(), Some("/svc/"));
        assert_eq!(d.config.test_timeout, Duration::from_secs(90));
        assert!(d.config.dry_run, "the command's steps run dry");
        assert!(!d.dry_run, "a live deployment");
        assert_eq!(d.period, Duration::from_secs(7 * 86_400));
        assert_eq!(d.overdue_after, Duration::from_secs(10 * 86_400));
        let d = d.with_period(Some("1h")).unwrap();
        assert_eq!(d.period, Duration::from_secs(3600));
        assert!(matches!(
            from_lookup(|n| setting_from(&parameters, n), &parameters)
                .unwrap()
                .with_period(Some("soon")),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn a_stacks_dry_run_is_the_deployments() {
        let parameters: HashMap<String, String> = [("DryRun", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let d = from_lookup(|n| setting_from(&parameters, n), &parameters).unwrap();
        assert!(d.dry_run && d.config.dry_run);
    }
}
