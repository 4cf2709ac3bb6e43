//! Malformed input across the five functions: each gets a clear error that
//! names the problem, and no mutating API call is made (counted by the
//! proxy in front of moto). One test per input, named after it, so a
//! failure names its case.

mod common;

use common::{invoke, Function};
use rekey::model::Provider;
use rekey_testkit::proxy::{Proxy, MUTATING};
use rekey_testkit::{moto, test_config, App, World, MANAGED_PATH};
use serde_json::{json, Value};

const TOKEN: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

const MANAGED: [(&str, &str); 1] = [("rekey:managed", "true")];

/// A world of its own, and an app whose calls the proxy counts.
struct Case {
    w: World,
    proxy: Proxy,
    app: App,
}

impl Case {
    async fn new() -> Case {
        let w = World::new().await;
        let proxy = Proxy::start(&moto().endpoint).await;
        let app = w.app_via(&proxy, test_config()).await;
        Case { w, proxy, app }
    }

    /// `function` refuses `event` with `error_type`, in a message that
    /// mentions `mention` and holds no secret, and makes no mutating call.
    async fn refuses(&self, function: Function, event: Value, error_type: &str, mention: &str) {
        self.proxy.clear_log();
        let shown = event.to_string().chars().take(80).collect::<String>();
        match invoke(&self.app, function, event).await {
            Ok(v) => panic!("{function} {shown}: succeeded with {v}"),
            Err(e) => {
                assert!(
                    e.error_type == error_type && e.error_message.contains(mention),
                    "{function} {shown}: {} {:?}, want {error_type} mentioning {mention:?}",
                    e.error_type,
                    e.error_message
                );
                self.w.assert_no_secret_in(&e.error_message, "an error");
            }
        }
        let mutating: Vec<String> = self
            .proxy
            .calls()
            .into_iter()
            .filter(|c| MUTATING.contains(&c.action.as_str()))
            .map(|c| c.action)
            .collect();
        assert!(
            mutating.is_empty(),
            "{function} {shown}: mutating calls {mutating:?}"
        );
        self.w
            .assert_no_secret_in(&rekey_testkit::captured_logs(), "the logs");
    }

    /// `secret` is refused by the hook's createSecret (in a rotation
    /// Secrets Manager started) or by the pipeline's create.
    async fn refuses_secret(
        &self,
        function: Function,
        secret: &str,
        error_type: &str,
        mention: &str,
    ) {
        let event = match function {
            Function::Hook => {
                let token = self.w.start_rotation(secret).await;
                json!({"SecretId": secret, "ClientRequestToken": token, "Step": "createSecret"})
            }
            _ => json!({ "SecretId": secret }),
        };
        self.refuses(function, event, error_type, mention).await;
    }
}

/// A managed secret holding `value` that does not parse: it owns nothing,
/// so it gets a name of its own.
async fn unparsed(w: &World, value: Value) -> String {
    let name = format!("rekey-test/{}", uuid::Uuid::new_v4().simple());
    w.secret_named(&name, &value, &MANAGED).await
}

/// A managed secret holding `value`, the owning secret of its user.
async fn owning(w: &World, value: Value) -> String {
    w.secret(&value, &MANAGED).await
}

/// One test per malformed event:
/// `name: Function event => error type, mention;`.
macro_rules! malformed_events {
    ($($name:ident: $function:ident $event:expr => $error_type:literal, $mention:literal;)*) => {
        /// Malformed events.
        mod events {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    Case::new()
                        .await
                        .refuses(Function::$function, $event, $error_type, $mention)
                        .await;
                }
            )*
        }
    };
}

malformed_events! {
    hook_null: Hook json!(null) => "InvalidEvent", "JSON object";
    hook_array: Hook json!([1, 2]) => "InvalidEvent", "JSON object";
    hook_string: Hook json!("createSecret") => "InvalidEvent", "JSON object";
    hook_without_step: Hook json!({"SecretId": "s", "ClientRequestToken": TOKEN})
        => "InvalidEvent", "Step";
    hook_numeric_secret_id: Hook
        json!({"SecretId": 5, "ClientRequestToken": TOKEN, "Step": "createSecret"})
        => "InvalidEvent", "invalid type";
    hook_short_token: Hook
        json!({"SecretId": "s", "ClientRequestToken": "abc", "Step": "createSecret"})
        => "InvalidEvent", "ClientRequestToken";
    hook_long_token: Hook
        json!({"SecretId": "s", "ClientRequestToken": "a".repeat(65), "Step": "createSecret"})
        => "InvalidEvent", "ClientRequestToken";
    hook_token_with_a_path: Hook
        json!({"SecretId": "s", "ClientRequestToken": format!("{}/..", &TOKEN[..32]), "Step": "createSecret"})
        => "InvalidEvent", "ClientRequestToken";
    hook_empty_secret_id: Hook
        json!({"SecretId": "", "ClientRequestToken": TOKEN, "Step": "createSecret"})
        => "InvalidEvent", "SecretId";
    hook_long_secret_id: Hook
        json!({"SecretId": "x".repeat(5000), "ClientRequestToken": TOKEN, "Step": "createSecret"})
        => "InvalidEvent", "SecretId";
    hook_numeric_step: Hook json!({"SecretId": "s", "ClientRequestToken": TOKEN, "Step": 1})
        => "InvalidEvent", "invalid type";
    hook_unknown_step: Hook
        json!({"SecretId": "s", "ClientRequestToken": TOKEN, "Step": "dropTables"})
        => "InvalidEvent", "unknown Step";
    create_without_secret_id: Create json!({}) => "InvalidEvent", "SecretId";
    create_secret_id_list: Create json!({"SecretId": ["a"]}) => "InvalidEvent", "invalid type";
    create_numeric_token: Create json!({"SecretId": "s", "ClientRequestToken": 12})
        => "InvalidEvent", "invalid type";
    create_unreadable_rotation_period: Create json!({"SecretId": "s", "RotationPeriod": "soon"})
        => "InvalidEvent", "RotationPeriod";
    create_control_character_in_secret_id: Create
        json!({"SecretId": "s\u{0007}", "ClientRequestToken": TOKEN})
        => "InvalidEvent", "SecretId";
    create_string_resume: Create json!({"SecretId": "s", "Resume": "yes"})
        => "InvalidEvent", "invalid type";
    test_without_token: Test json!({"SecretId": "s"}) => "InvalidEvent", "ClientRequestToken";
    finish_without_token: Finish json!({"SecretId": "s"}) => "InvalidEvent", "ClientRequestToken";
    finish_short_token: Finish json!({"SecretId": "s", "ClientRequestToken": "x".repeat(31)})
        => "InvalidEvent", "ClientRequestToken";
    cleanup_string: Cleanup json!("everything") => "InvalidEvent", "JSON object";
    cleanup_numeric_secret_id: Cleanup json!({"SecretId": 1}) => "InvalidEvent", "invalid type";
    cleanup_array: Cleanup json!([]) => "InvalidEvent", "JSON object";
    cleanup_unknown_field: Cleanup json!({"SecretID": "s"}) => "InvalidEvent", "unknown field";
    triage_without_period: Cleanup json!({"Triage": {}}) => "InvalidEvent", "RotationPeriod";
    triage_bad_period: Cleanup json!({"Triage": {"RotationPeriod": "soon"}}) => "InvalidEvent", "RotationPeriod";
    triage_unknown_field: Cleanup json!({"Triage": {"RotationPeriod": "1d", "Mode": "all"}}) => "InvalidEvent", "unknown field";
    triage_and_secret: Cleanup json!({"SecretId": "s", "Triage": {"RotationPeriod": "1d"}}) => "InvalidEvent", "not both";
    triage_ids_and_token: Cleanup json!({"Triage": {"RotationPeriod": "1d", "SecretIds": ["s"], "NextToken": "t"}}) => "InvalidEvent", "not both";
    triage_null: Cleanup json!({"Triage": null}) => "InvalidEvent", "Triage is null";
    cleanup_null_secret_id: Cleanup json!({"SecretId": null}) => "InvalidEvent", "SecretId is null";
    triage_no_ids: Cleanup json!({"Triage": {"RotationPeriod": "0s", "SecretIds": []}}) => "InvalidEvent", "SecretIds is empty";
    triage_empty_token: Cleanup json!({"Triage": {"RotationPeriod": "1d", "NextToken": ""}}) => "InvalidEvent", "NextToken is empty";
    triage_too_many_ids: Cleanup json!({"Triage": {"RotationPeriod": "1d", "SecretIds": vec!["s"; 101]}}) => "InvalidEvent", "at most 100";
}

/// One test per malformed or refused secret and driver (the hook's
/// createSecret, the pipeline's create): `name(world) { the secret } =>
/// error type, mention;`. A secret that parses is the owning secret of its
/// user (one secret owns each user), so each case makes users of its own;
/// one that does not parse owns nothing.
macro_rules! refused_secrets {
    ($($name:ident($w:ident) $secret:block => $error_type:literal, $mention:literal;)*) => {
        /// Refused secrets, through the hook's createSecret.
        mod hook {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let case = Case::new().await;
                    let $w = &case.w;
                    let secret: String = $secret;
                    case.refuses_secret(Function::Hook, &secret, $error_type, $mention)
                        .await;
                }
            )*
        }

        /// Refused secrets, through the pipeline's create.
        mod create {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let case = Case::new().await;
                    let $w = &case.w;
                    let secret: String = $secret;
                    case.refuses_secret(Function::Create, &secret, $error_type, $mention)
                        .await;
                }
            )*
        }
    };
}

refused_secrets! {
    value_an_array(w) { unparsed(w, json!([1, 2, 3])).await } => "InvalidSecret", "JSON object";
    value_a_number(w) { unparsed(w, json!(42)).await } => "InvalidSecret", "JSON object";
    no_user_name(w) { unparsed(w, json!({})).await } => "InvalidSecret", "UserName is missing";
    numeric_user_name(w) {
        unparsed(w, json!({"UserName": 7})).await
    } => "InvalidSecret", "UserName must be a string";
    user_name_with_a_space(w) {
        unparsed(w, json!({"UserName": "has space"})).await
    } => "InvalidSecret", "UserName may contain only";
    long_user_name(w) {
        unparsed(w, json!({"UserName": "u".repeat(129)})).await
    } => "InvalidSecret", "UserName must be 1 to 128";
    key_id_without_its_secret(w) {
        let user = w.user(MANAGED_PATH).await;
        unparsed(w, json!({"UserName": user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA"})).await
    } => "InvalidSecret", "together";
    numeric_secret_access_key(w) {
        let user = w.user(MANAGED_PATH).await;
        let value = json!({"UserName": user, "AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "SecretAccessKey": 5});
        unparsed(w, value).await
    } => "InvalidSecret", "SecretAccessKey must be a string";
    unknown_provider(w) {
        let user = w.user(MANAGED_PATH).await;
        unparsed(w, json!({"UserName": user, "Provider": "gcp"})).await
    } => "UnknownProvider", "gcp";
    provider_not_a_string(w) {
        let user = w.user(MANAGED_PATH).await;
        unparsed(w, json!({"UserName": user, "Provider": false})).await
    } => "InvalidSecret", "Provider must be a string";
    user_not_found(w) {
        let nobody = format!("nobody-by-that-name-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        owning(w, json!({"UserName": nobody})).await
    } => "UserNotFound", "nobody-by-that-name";
    user_outside_the_managed_path(w) {
        let outsider = w.user("/elsewhere/").await;
        owning(w, json!({"UserName": outsider})).await
    } => "UserNotManaged", "REKEY_MANAGED_USER_PATH";
    user_at_its_key_limit(w) {
        let full = w.user(MANAGED_PATH).await;
        let a = w.create_key(&full).await;
        w.create_key(&full).await;
        let value = json!({"UserName": full, "AccessKeyId": a.access_key_id, "SecretAccessKey": a.secret.expose()});
        owning(w, value).await
    } => "KeyLimitReached", "none may be removed";
    // Secrets that do not own their user: a name not derived from the
    // user, and the right name for a user enrolled to no secret.
    name_not_derived_from_the_user(w) {
        let stray = w.user(MANAGED_PATH).await;
        let value = json!({ "UserName": stray });
        w.secret_named(&format!("team/{stray}"), &value, &MANAGED).await
    } => "SecretNotOwner", "rekey/aws/";
    user_enrolled_to_no_secret(w) {
        let untagged = w.user(MANAGED_PATH).await;
        let owning = rekey::ownership::owning_name("rekey/", Provider::Aws, None, &untagged);
        let value = json!({ "UserName": untagged });
        w.secret_named(&owning, &value, &MANAGED).await
    } => "SecretNotOwner", "tag-user";
}
