//! Events as an application's team receives them: an EventBridge rule on
//! rekey's events (source `rekey`) about one secret sends them to an SQS
//! queue of the test's own, read back here.

use std::time::Duration;

use serde_json::{json, Value};

use crate::World;

/// A queue that receives every rekey event about `secret_arn` through a
/// rule on the default bus (each test its own rule and queue: the tests
/// share moto).
pub struct Inbox {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl Inbox {
    /// A queue and a rule of their own for `secret_arn`'s events.
    pub async fn for_secret(w: &World, secret_arn: &str) -> Inbox {
        let name = format!(
            "rekey-events-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let sqs = aws_sdk_sqs::Client::new(&w.sdk);
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("a queue url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .expect("the queue's ARN");
        let events = aws_sdk_eventbridge::Client::new(&w.sdk);
        let pattern = json!({"source": ["rekey"], "detail": {"SecretArn": [secret_arn]}});
        events
            .put_rule()
            .name(&name)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .expect("PutRule");
        events
            .put_targets()
            .rule(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("PutTargets");
        Inbox { sqs, url }
    }

    /// The next `n` events (waiting up to 10 s), as EventBridge delivers them.
    pub async fn take(&self, n: usize) -> Vec<Value> {
        let mut got = Vec::new();
        for _ in 0..20 {
            if got.len() >= n {
                break;
            }
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("ReceiveMessage");
            for m in out.messages.unwrap_or_default() {
                got.push(serde_json::from_str(m.body().unwrap_or("null")).unwrap());
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(got.len(), n, "expected {n} events: {got:#?}");
        got
    }
}
