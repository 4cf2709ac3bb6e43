//! Admin keys: the key pairs that sign Alibaba RAM and SCloud calls for the
//! secrets that name them (`AdminSecretId`). In its own test binary, so its
//! moto holds only the secrets made here (a sweep covers every managed
//! secret).

mod common;

use common::*;
use rekey::model::Provider;
use rekey_testkit::emulator::emulator;
use rekey_testkit::proxy::Proxy;
use rekey_testkit::{moto, World};
use serde_json::json;

/// A sweep over several secrets signed by one admin reads the admin secret
/// once; the next invocation reads it again (a rotated admin key is picked
/// up there).
#[tokio::test]
async fn an_invocation_reads_each_admin_secret_once() {
    let w = World::new().await;
    let e = emulator(Provider::Alibaba);
    let admin = w.admin_secret(e).await;
    let mut secrets = Vec::new();
    for _ in 0..3 {
        let (_, _, secret) = w.provider_enrolled(e, Some(&admin)).await;
        secrets.push(secret);
    }
    let proxy = Proxy::start(&moto().endpoint).await;
    let app = w.app_via(&proxy, e.config()).await;
    let admin_reads = || {
        proxy
            .calls()
            .iter()
            .filter(|c| c.action == "GetSecretValue" && c.secret_id.as_deref() == Some(&admin))
            .count()
    };

    let out = invoke(&app, Function::Cleanup, json!({})).await.unwrap();
    for secret in &secrets {
        let report = out["Secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["SecretId"] == secret.as_str())
            .unwrap_or_else(|| panic!("{secret} not swept: {out}"));
        assert_eq!(report["Status"], "cleaned", "{report}");
    }
    assert_eq!(admin_reads(), 1, "one read for three secrets");

    proxy.clear_log();
    invoke(&app, Function::Cleanup, json!({ "SecretId": secrets[0] }))
        .await
        .unwrap();
    assert_eq!(admin_reads(), 1, "read again by the next invocation");
}
