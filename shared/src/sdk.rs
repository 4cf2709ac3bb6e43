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
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https(),
        )))
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
