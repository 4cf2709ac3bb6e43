//! Vault adapters.

mod secrets_manager;

pub use secrets_manager::SecretsManager;
