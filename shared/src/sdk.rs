//! Shared AWS SDK plumbing: configuration, error and time conversion.

use std::time::SystemTime;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::Error;

/// Loads the SDK configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL`). Makes no network call and loads no certificates:
/// credentials are resolved and TLS is set up on first use. Throttling and
/// transient errors are retried with backoff.
pub async fn load_config() -> aws_config::SdkConfig {
    loader().load().await
}

/// The loader [`load_config`] uses, for callers that add to it (the
/// `rekey` command's `--profile`).
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry_config())
        .http_client(SharedHttpClient::new(OnFirstRequest(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls_provider())
                .build_https(),
        )))
}

/// rustls with aws-lc-rs and the system's root certificates.
fn tls_provider() -> tls::Provider {
    tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc)
}

/// A new HTTPS connector (TLS set-up, root certificates, a pool), built as
/// the SDK's client builds one: what the bench times as TLS set-up.
pub fn new_connector() -> aws_smithy_http_client::Connector {
    aws_smithy_http_client::Connector::builder()
        .tls_provider(tls_provider())
        .build()
}

/// The connector `sdk`'s service clients use (the HTTP client keeps one
/// per set of connector settings, and these are theirs: the timeouts of
/// `sdk`), for the providers without an AWS SDK: one TLS set-up and one
/// connection pool for every call a function makes. `None` when `sdk` has
/// no HTTP client.
pub fn shared_connector(sdk: &aws_config::SdkConfig) -> Option<SharedHttpConnector> {
    let client = sdk.http_client()?;
    // As the SDK's orchestrator makes them from the timeout configuration.
    let timeouts = sdk.timeout_config();
    let mut settings = HttpConnectorSettings::builder();
    settings.set_connect_timeout(timeouts.and_then(|t| t.connect_timeout()));
    settings.set_read_timeout(timeouts.and_then(|t| t.read_timeout()));
    Some(client.http_connector(&settings.build(), &bare_components()))
}

/// What the HTTP client asks of a client's runtime components to build a
/// connector (its sleep and time source, the defaults when absent); the
/// components a builder requires besides are the inert ones (no auth, no
/// retries, a fixed endpoint): no request is made through them.
fn bare_components() -> RuntimeComponents {
    use aws_smithy_runtime::client::auth::no_auth::{NoAuthScheme, NO_AUTH_SCHEME_ID};
    use aws_smithy_runtime::client::identity::no_auth::NoAuthIdentityResolver;
    use aws_smithy_runtime::client::identity::IdentityCache;
    use aws_smithy_runtime::client::orchestrator::endpoints::StaticUriEndpointResolver;
    use aws_smithy_runtime::client::retries::strategy::NeverRetryStrategy;
    use aws_smithy_runtime_api::client::auth::static_resolver::StaticAuthSchemeOptionResolver;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    RuntimeComponentsBuilder::new("rekey providers")
        .with_auth_scheme_option_resolver(Some(StaticAuthSchemeOptionResolver::new(vec![
            NO_AUTH_SCHEME_ID,
        ])))
        .with_endpoint_resolver(Some(StaticUriEndpointResolver::http_localhost(0)))
        .with_auth_scheme(NoAuthScheme::new())
        .with_identity_cache(Some(IdentityCache::no_cache()))
        .with_identity_resolver(NO_AUTH_SCHEME_ID, NoAuthIdentityResolver::new())
        .with_retry_strategy(Some(NeverRetryStrategy::new()))
        .build()
        .expect("every required component is given")
}

/// The SDK's HTTPS client (hyper, rustls with aws-lc-rs, the system's root
/// certificates), shared by every service client. It keeps one connector
/// (root store and connection pool) per set of connector settings, built on
/// the first request; rekey uses one set. What this wrapper leaves out is
/// the client's `validate_base_client_config`, which builds a connector
/// for every service client when it is made, and for every short-lived STS
/// client of a key test: several milliseconds of CPU each, most of them in
/// start-up.
#[derive(Debug)]
struct OnFirstRequest(SharedHttpClient);

impl HttpClient for OnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }
}

/// Standard retries with backoff, five attempts in all.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(5)
}

/// Error codes that mean "try again later".
const RETRYABLE_CODES: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceFailure",
    "ServiceUnavailable",
    "InternalServiceError",
    "InternalFailure",
];

/// The error code of a service error, if the service answered.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Converts an SDK error into rekey's error, keeping only the code and the
/// service's message (never a request body).
pub fn service_error<E, R>(
    service: &'static str,
    operation: &'static str,
    err: SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("Unknown").to_owned();
            Error::Service {
                service,
                operation,
                retryable: RETRYABLE_CODES.contains(&code.as_str()),
                message: e.err().message().unwrap_or("").to_owned(),
                code,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Service {
                service,
                operation,
                code: "Unreachable".into(),
                message: DisplayErrorContext(&err).to_string(),
                retryable: true,
            }
        }
        _ => Error::Service {
            service,
            operation,
            code: "Client".into(),
            message: DisplayErrorContext(&err).to_string(),
            retryable: false,
        },
    }
}

/// An AWS SDK timestamp as a `SystemTime`; `None` when absent or out of
/// range.
pub fn system_time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}
