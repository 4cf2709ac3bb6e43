//! Test harness for rekey: `moto_server` on loopback with signature
//! checking on, an admin signed in to it, helpers that play Secrets Manager,
//! captured logs, and a Lambda Runtime API harness ([`runtime`]) that runs
//! the built function binaries.
//!
//! By concern: `moto` (the moto_server process and SDK configurations that
//! reach it), `logs` (log capture), `world` ([`World`] and its helpers),
//! `env` (the test settings and a function's environment), [`emulator`]
//! (the Alibaba and SCloud emulators), [`proxy`] (a fault-injecting proxy),
//! [`runtime`] (the Lambda Runtime API harness), [`sim`] (the simulation),
//! [`roles`] (the functions' roles as moto users, and the policy gate's log).
//! Everything a test uses is re-exported here.

pub mod emulator;
mod env;
pub mod inbox;
mod logs;
mod moto;
pub mod proxy;
pub mod roles;
pub mod runtime;
pub mod sim;
mod world;

pub use env::{test_config, ADMIN_PREFIX, MANAGED_PATH, OWNING_PREFIX};
pub use logs::captured_logs;
pub(crate) use moto::start_support_server;
pub use moto::{
    moto, moto_behind_policy_gate, python, sdk_config, sdk_config_at, workspace_root, Moto,
    DENYING_ACCOUNT, MEMBER_ACCOUNTS, MEMBER_EXTERNAL_ID, REGION,
};
pub use world::{version_with, App, World};
