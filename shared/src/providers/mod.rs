//! Key provider adapters.

mod aws;

pub use aws::AwsIam;
