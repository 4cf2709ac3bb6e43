//! Ownership, end to end against moto: one secret owns each user (its name
//! is derived from provider and user, and the IAM user's `rekey:owner` tag
//! names it); any other secret is refused with `SecretNotOwner` by every
//! function, and nothing changes.

mod common;

use common::*;
use rekey::model::AWSCURRENT;
use rekey_testkit::{test_config, World, MANAGED_PATH};
use serde_json::json;

/// Issue cases 2 and 5: a second managed secret holding the same user's
/// key (or naming any managed user) gets nothing: no key is created for
/// it, none of the owner's keys is reclaimed or retired by it.
#[tokio::test]
async fn a_second_secret_for_a_user_is_refused_everywhere() {
    let w = World::new().await;
    let app = w.app(zero_periods(test_config()));
    let (user, _key, owner) = w.enrolled(MANAGED_PATH).await;
    let value = w.value(&owner, AWSCURRENT).await.unwrap();
    let managed = [("rekey:managed", "true")];
    let second = w
        .secret_named(&format!("team/{user}"), &value, &managed)
        .await;
    // The pipeline's create has a pending rotation of the owner to reclaim.
    invoke(&app, Function::Create, json!({ "SecretId": owner }))
        .await
        .unwrap();
    let before = snapshot(&w, &owner, &user).await;

    let token = w.start_rotation(&second).await;
    assert_error(
        hook(&app, "createSecret", &second, &token).await,
        "SecretNotOwner",
        &[&format!("rekey/aws/{user}"), "Migrating"],
    );
    let piped = w
        .secret_named(
            &format!("team/piped/{user}"),
            &json!({ "UserName": user }),
            &managed,
        )
        .await;
    assert_error(
        invoke(&app, Function::Create, json!({ "SecretId": piped })).await,
        "SecretNotOwner",
        &[],
    );
    assert_error(
        invoke(&app, Function::Cleanup, json!({ "SecretId": second })).await,
        "SecretNotOwner",
        &[],
    );
    assert_eq!(snapshot(&w, &owner, &user).await, before);
}

/// The name alone is not enough on AWS: the IAM user's `rekey:owner` tag
/// must name this very secret. A secret deleted and made again under the
/// same name has a new ARN and owns nothing until an operator re-enrols.
#[tokio::test]
async fn the_user_must_be_enrolled_to_this_very_secret() {
    let w = World::new().await;
    let app = w.app(test_config());
    let (user, key, secret) = w.enrolled(MANAGED_PATH).await;
    w.delete_secret(&secret).await;
    let value = json!({"UserName": user, "AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret.expose()});
    let again = w
        .secret_named(
            &format!("rekey/aws/{user}"),
            &value,
            &[("rekey:managed", "true")],
        )
        .await;
    let before = snapshot(&w, &again, &user).await;
    let msg = assert_error(
        invoke(&app, Function::Create, json!({ "SecretId": again })).await,
        "SecretNotOwner",
        &["enrolled to another secret", "tag-user", &again],
    );
    w.assert_no_secret_in(&msg, "the error");
    assert_eq!(snapshot(&w, &again, &user).await, before);

    // The operator re-enrols the user: the rotation goes through.
    w.enrol(&user, &again).await;
    let created = invoke(&app, Function::Create, json!({ "SecretId": again }))
        .await
        .unwrap();
    let tested = invoke(&app, Function::Test, created).await.unwrap();
    invoke(&app, Function::Finish, tested).await.unwrap();
    w.assert_invariants(&again, &user).await;
}
