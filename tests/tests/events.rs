//! The sample events in events/ are well-formed for their functions.

mod common;

use common::{invoke, Function};
use lambda_runtime::{Context, LambdaEvent};
use rekey_testkit::{test_config, workspace_root, World};
use serde_json::Value;

#[tokio::test]
async fn sample_events_parse() {
    let w = World::new().await;
    let app = w.app(test_config());
    let dir = workspace_root().join("events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let result = if name.starts_with("hook-") {
            rekey::lambda::handle(
                &app,
                Function::Hook,
                LambdaEvent::new(event, Context::default()),
            )
            .await
        } else {
            let function = name.split('-').next().unwrap().parse().unwrap();
            invoke(&app, function, event).await
        };
        // The demo secret does not exist here: anything but a parse error.
        match result {
            Ok(_) => {}
            Err(e) => assert_ne!(e.error_type, "InvalidEvent", "{name}: {}", e.error_message),
        }
        seen += 1;
    }
    assert_eq!(seen, 10, "every sample event was tried");
}
