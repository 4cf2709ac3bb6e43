//! rekey: automated access-key rotation for AWS Lambda.
//!
//! The functions under `functions/` are thin: each calls [`lambda::serve`]
//! with its [`lambda::Function`]. The protocol lives in [`steps`], the
//! decisions in [`plan`], the I/O behind the traits in [`ports`].

pub mod audit;
pub mod config;
pub mod dry_run;
pub mod error;
pub mod events;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod model;
pub mod ownership;
pub mod plan;
pub mod ports;
pub mod providers;
pub mod records;
pub mod sdk;
pub mod steps;
pub mod triage;
pub mod vault;

pub use config::Config;
pub use error::{Error, Result};
pub use steps::{Driver, Probing, Rekey, ADMIN_GRACE};
