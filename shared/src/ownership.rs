//! Ownership (invariant one-owner): each (provider, user) is owned by exactly
//! one managed secret, by construction.
//!
//! - The owning secret's name is derived: `<REKEY_SECRET_PREFIX><provider>/<user>`
//!   (`rekey/aws/alice`), or `<REKEY_SECRET_PREFIX>aws/<account>/<user>` for
//!   an IAM user of a member account (`rekey/aws/111111111111/alice`): the
//!   same user name in two accounts is two users. Secrets Manager names are unique, so two secrets
//!   cannot both own a user, and the right to enrol a user (creating a secret
//!   of that name) is granted by IAM policy apart from the right to tag or
//!   edit secrets.
//! - On AWS the IAM user also carries the tag `rekey:owner` naming the owning
//!   secret's ARN, written by an operator at enrolment (the functions may not
//!   tag users). A secret deleted and made again under the same name has a
//!   new ARN, so it owns nothing until an operator says so.
//! - An Alibaba or SCloud secret's `AdminSecretId` must name a secret under
//!   `REKEY_ADMIN_SECRET_PREFIX`, which holds no owning secret of a user
//!   rotated with an admin key.
//! - An admin user (whose key signs for others) is owned by its admin
//!   secret when that secret is managed: it is named
//!   `<REKEY_ADMIN_SECRET_PREFIX><provider>/<user>` (`rekey/admin/alibaba/rekey-admin`)
//!   and signs with its own key (no `AdminSecretId`). Such a user could also
//!   be named by a secret under the owning prefix: the admin secret takes
//!   precedence, and the other's create, cleanup and rollback refuse while
//!   it exists
//!   ([`admin_claim`]; the functions may describe any secret under the
//!   admin prefix, so the look is never denied).
//!
//! A secret that does not own its user is refused with `SecretNotOwner`
//! before any change. Pure functions; the steps call them.

use crate::config::MemberSettings;
use crate::model::{ManagedSecret, Provider, Signing};

/// The IAM user tag that names the user's owning secret (its ARN).
pub const OWNER_TAG: &str = "rekey:owner";

/// The name of the secret that owns `user` of `provider`, in `account`
/// when it is a member account.
pub fn owning_name(prefix: &str, provider: Provider, account: Option<&str>, user: &str) -> String {
    match account {
        Some(account) => format!("{prefix}{}/{account}/{user}", provider.name()),
        None => format!("{prefix}{}/{user}", provider.name()),
    }
}

/// The name of the managed admin secret that owns admin user `user` of
/// `provider` (which signs with key pairs).
pub fn admin_owning_name(admin_prefix: &str, provider: Provider, user: &str) -> String {
    format!("{admin_prefix}{}/{user}", provider.name())
}

/// Whether the secret named `name` (not an ARN) is an admin secret: under
/// a non-empty `admin_prefix`.
pub fn is_admin_secret(admin_prefix: &str, name: &str) -> bool {
    !admin_prefix.is_empty() && name.starts_with(admin_prefix)
}

/// Whether `secret` signs with its own key pair: it may then be the
/// managed admin secret of its user.
fn self_signed(secret: &ManagedSecret) -> bool {
    secret.provider.signing() == Signing::KeyPair && secret.admin_secret_id.is_none()
}

/// Why the secret named `name` does not own the user its value names, if
/// it does not: it must be named [`owning_name`] under `prefix`, or, when
/// it signs with its own key pair, [`admin_owning_name`] under
/// `admin_prefix`.
pub fn not_owner(
    prefix: &str,
    admin_prefix: &str,
    name: &str,
    secret: &ManagedSecret,
) -> Option<String> {
    let account = secret.account_id.as_deref();
    let owner = owning_name(prefix, secret.provider, account, &secret.user_name);
    let admin_owner = (self_signed(secret) && !admin_prefix.is_empty())
        .then(|| admin_owning_name(admin_prefix, secret.provider, &secret.user_name));
    if name == owner || admin_owner.as_deref() == Some(name) {
        return None;
    }
    let in_account = account
        .map(|a| format!(" in account {a}"))
        .unwrap_or_default();
    let user = format!(
        "user {} of provider {}{in_account}",
        secret.user_name,
        secret.provider.name()
    );
    Some(if is_admin_secret(admin_prefix, name) {
        let admin_owner = admin_owning_name(admin_prefix, secret.provider, &secret.user_name);
        format!(
            "this admin secret is named {name}; rekey rotates an admin secret only when it is named {admin_owner} after the admin user it holds ({user}), signs with that user's own key (no AdminSecretId) and is tagged rekey:managed. Nothing was changed. Rename it (create {admin_owner} with the same value), or take the rekey:managed tag off to leave it unrotated"
        )
    } else {
        format!(
            "{user} is owned by the secret named {owner}, and this secret is named {name}. Nothing was changed. To move its rotation there, see the README, \"Migrating a secret\""
        )
    })
}

/// The name of the managed admin secret that would own the user of the
/// key-pair secret named `name`, when `name` is another name: a managed
/// admin secret takes precedence, so the other secret refuses while it
/// exists. `None` for a provider whose calls are signed by the function's
/// role, without admin secrets, or for the admin secret itself.
pub fn admin_claim(admin_prefix: &str, name: &str, secret: &ManagedSecret) -> Option<String> {
    if secret.provider.signing() != Signing::KeyPair || admin_prefix.is_empty() {
        return None;
    }
    let admin_owner = admin_owning_name(admin_prefix, secret.provider, &secret.user_name);
    (name != admin_owner).then_some(admin_owner)
}

/// Why the secret named `name` does not own its user while the managed
/// admin secret `admin` ([`admin_claim`]) names it.
pub fn claimed_by_admin(name: &str, admin: &str, secret: &ManagedSecret) -> String {
    format!(
        "user {} of provider {} is an admin user, owned by the managed admin secret {admin}, which rotates its key; this secret ({name}) may not rotate it too. Nothing was changed. Take the rekey:managed tag off this secret (or delete it), or, if the user is no admin user, take the tag off {admin}",
        secret.user_name,
        secret.provider.name()
    )
}

/// Why rekey may not act in the account `secret` names, if it may not: a
/// member account must be listed in `REKEY_MEMBER_ACCOUNTS`. Checked before
/// any call is made there.
pub fn account_not_allowed(member: &MemberSettings, secret: &ManagedSecret) -> Option<String> {
    let account = secret.account_id.as_deref()?;
    (!member.accounts.iter().any(|a| a == account)).then(|| {
        format!(
            "its AccountId {account} is not one of this deployment's member accounts (REKEY_MEMBER_ACCOUNTS: {}); add the account there (template parameter MemberAccounts) or fix AccountId. Nothing was changed",
            if member.accounts.is_empty() { "none".to_owned() } else { member.accounts.join(",") }
        )
    })
}

/// Why `admin_id` (a name, or an ARN) may not be used as an admin secret,
/// if it may not.
pub fn bad_admin_secret(admin_prefix: &str, admin_id: &str) -> Option<String> {
    let name = match admin_id.split_once(":secret:") {
        Some((arn, name)) if arn.starts_with("arn:") => name,
        _ => admin_id,
    };
    (!name.starts_with(admin_prefix)).then(|| {
        format!(
            "its AdminSecretId {admin_id} is not the name of a secret under REKEY_ADMIN_SECRET_PREFIX {admin_prefix}: only those may hold admin keys. Nothing was changed"
        )
    })
}

/// Why the IAM user's `rekey:owner` tag does not name `secret_arn`, if it
/// does not.
pub fn bad_owner_tag(user: &str, tag: Option<&str>, secret_arn: &str) -> Option<String> {
    let fix = format!(
        "an operator enrols the user with `aws iam tag-user --user-name {user} --tags Key={OWNER_TAG},Value={secret_arn}`. Nothing was changed"
    );
    match tag {
        Some(t) if t == secret_arn => None,
        Some(t) => Some(format!(
            "IAM user {user} is enrolled to another secret ({OWNER_TAG} = {t}); if this secret is to own it, {fix}"
        )),
        None => Some(format!(
            "IAM user {user} has no {OWNER_TAG} tag naming its owning secret; {fix}"
        )),
    }
}

/// What is there when a user is enrolled (`rekey enroll`).
#[derive(Clone, Copy, Debug)]
pub struct EnrolFacts<'a> {
    /// The user's owning name ([`owning_name`]).
    pub owning_name: &'a str,
    /// The secret of that name, if it exists: its ARN, and whether it is
    /// tagged `rekey:managed`.
    pub secret: Option<(&'a str, bool)>,
    /// An IAM user's `rekey:owner` tag, and whether the secret it names
    /// exists; `None` when untagged or not an IAM user.
    pub owner_tag: Option<(&'a str, bool)>,
    /// An IAM user (only those carry `rekey:owner`).
    pub iam_user: bool,
}

/// What enrolling a user still takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enrolling {
    /// Nothing: its owning secret exists, is managed, and (IAM) the user's
    /// tag names it.
    Done,
    /// Create the owning secret (if `create`), then (IAM) tag the user
    /// with its ARN (if `tag`): a first enrolment, or one a crash cut short.
    Steps {
        /// Create the owning secret.
        create: bool,
        /// Tag the IAM user with the secret's ARN.
        tag: bool,
    },
}

/// What enrolling a user takes, or why it would break invariant one-owner
/// (nothing may then change): a user tagged to another secret that exists
/// has an owner already, and a secret of the owning name that rekey does
/// not manage is someone else's. A tag naming a deleted secret is stale
/// and is replaced.
pub fn enrolling(f: EnrolFacts<'_>) -> Result<Enrolling, String> {
    let name = f.owning_name;
    if let Some((arn, false)) = f.secret {
        return Err(format!(
            "a secret named {name} ({arn}) exists and is not tagged rekey:managed=true: enrolling would take over a secret rekey did not make. If it is this user's, tag it rekey:managed=true and enrol again; otherwise delete or rename it"
        ));
    }
    let owning_arn = f.secret.map(|(arn, _)| arn);
    let tagged_here = matches!((f.owner_tag, owning_arn), (Some((t, _)), Some(a)) if t == a);
    if let Some((other, true)) = f.owner_tag.filter(|_| !tagged_here) {
        return Err(format!(
            "the user is enrolled already: its {OWNER_TAG} tag names {other}, which exists, and a user has one owner. To move its rotation to {name}, see the README, \"Migrating a secret\""
        ));
    }
    let tag = f.iam_user && !tagged_here;
    match (f.secret.is_some(), tag) {
        (true, false) => Ok(Enrolling::Done),
        (exists, tag) => Ok(Enrolling::Steps {
            create: !exists,
            tag,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(provider: Provider, user: &str) -> ManagedSecret {
        ManagedSecret::new(provider, user)
    }

    #[test]
    fn only_the_derived_name_owns_a_user() {
        let alice = secret(Provider::Aws, "alice");
        assert_eq!(
            owning_name("rekey/", Provider::Aws, None, "alice"),
            "rekey/aws/alice"
        );
        assert_eq!(
            not_owner("rekey/", "rekey/admin/", "rekey/aws/alice", &alice),
            None
        );
        let why = not_owner("rekey/", "rekey/admin/", "team/alice", &alice).unwrap();
        assert!(
            why.contains("rekey/aws/alice") && why.contains("Migrating"),
            "{why}"
        );
        // The same user name of another provider is another user.
        assert!(not_owner(
            "rekey/",
            "rekey/admin/",
            "rekey/aws/alice",
            &secret(Provider::Alibaba, "alice")
        )
        .is_some());
        assert_eq!(
            not_owner(
                "rekey/",
                "rekey/admin/",
                "rekey/alibaba/alice",
                &secret(Provider::Alibaba, "alice")
            ),
            None
        );
    }

    #[test]
    fn a_self_signed_admin_secret_owns_its_admin_user() {
        let (p, a) = ("rekey/", "rekey/admin/");
        let admin = secret(Provider::Alibaba, "rekey-admin");
        assert_eq!(
            admin_owning_name(a, Provider::Alibaba, "rekey-admin"),
            "rekey/admin/alibaba/rekey-admin"
        );
        assert_eq!(
            not_owner(p, a, "rekey/admin/alibaba/rekey-admin", &admin),
            None
        );
        assert_eq!(not_owner(p, a, "rekey/alibaba/rekey-admin", &admin), None);
        // Another name under the admin prefix owns nothing, and says what would.
        let why = not_owner(p, a, "rekey/admin/ram", &admin).unwrap();
        assert!(why.contains("rekey/admin/alibaba/rekey-admin"), "{why}");
        // Signed by another admin key, it is an ordinary secret.
        let mut signed = admin.clone();
        signed.admin_secret_id = Some("rekey/admin/alibaba/root".into());
        assert!(not_owner(p, a, "rekey/admin/alibaba/rekey-admin", &signed).is_some());
        // Without admin secrets, or on AWS, there is no admin owner.
        assert!(not_owner(p, "", "rekey/admin/alibaba/rekey-admin", &admin).is_some());
        let aws = secret(Provider::Aws, "alice");
        assert!(not_owner(p, a, "rekey/admin/aws/alice", &aws).is_some());
        // Another secret naming the admin user yields to the admin secret.
        assert_eq!(
            admin_claim(a, "rekey/alibaba/rekey-admin", &signed).as_deref(),
            Some("rekey/admin/alibaba/rekey-admin")
        );
        assert_eq!(
            admin_claim(a, "rekey/admin/alibaba/rekey-admin", &admin),
            None
        );
        assert_eq!(admin_claim(a, "rekey/aws/alice", &aws), None);
        assert_eq!(admin_claim("", "rekey/alibaba/rekey-admin", &admin), None);
        assert!(is_admin_secret(a, "rekey/admin/alibaba/rekey-admin"));
        assert!(!is_admin_secret(a, "rekey/alibaba/rekey-admin"));
        assert!(!is_admin_secret("", "rekey/admin/x"));
    }

    #[test]
    fn a_member_account_user_is_owned_by_a_name_with_its_account() {
        let mut bob = secret(Provider::Aws, "bob");
        bob.account_id = Some("111111111111".into());
        let owner = owning_name("rekey/", Provider::Aws, Some("111111111111"), "bob");
        assert_eq!(owner, "rekey/aws/111111111111/bob");
        assert_eq!(not_owner("rekey/", "rekey/admin/", &owner, &bob), None);
        // The same name without the account is another user's secret.
        let why = not_owner("rekey/", "rekey/admin/", "rekey/aws/bob", &bob).unwrap();
        assert!(why.contains("in account 111111111111"), "{why}");
        bob.account_id = Some("222222222222".into());
        assert!(not_owner("rekey/", "rekey/admin/", &owner, &bob).is_some());
    }

    #[test]
    fn only_listed_member_accounts_may_be_named() {
        let mut member = MemberSettings::default();
        let mut bob = secret(Provider::Aws, "bob");
        assert_eq!(
            account_not_allowed(&member, &bob),
            None,
            "no account: this one"
        );
        bob.account_id = Some("111111111111".into());
        let why = account_not_allowed(&member, &bob).unwrap();
        assert!(
            why.contains("none") && why.contains("MemberAccounts"),
            "{why}"
        );
        member.accounts = vec!["222222222222".into(), "111111111111".into()];
        assert_eq!(account_not_allowed(&member, &bob), None);
        bob.account_id = Some("333333333333".into());
        assert!(account_not_allowed(&member, &bob).is_some());
    }

    #[test]
    fn admin_secrets_live_under_their_prefix() {
        assert_eq!(bad_admin_secret("rekey/admin/", "rekey/admin/ram"), None);
        assert!(bad_admin_secret("rekey/admin/", "rekey/aws/alice").is_some());
        assert!(bad_admin_secret("rekey/admin/", "arn:aws:secretsmanager:x").is_some());
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:rekey/admin/ram-AbCdEf";
        assert_eq!(bad_admin_secret("rekey/admin/", arn), None);
        let other = "arn:aws:secretsmanager:us-east-1:1:secret:rekey/aws/alice-AbCdEf";
        assert!(bad_admin_secret("rekey/admin/", other).is_some());
    }

    #[test]
    fn the_owner_tag_must_name_this_secret() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:rekey/aws/alice-AbCdEf";
        assert_eq!(bad_owner_tag("alice", Some(arn), arn), None);
        let missing = bad_owner_tag("alice", None, arn).unwrap();
        assert!(
            missing.contains("tag-user") && missing.contains(arn),
            "{missing}"
        );
        assert!(bad_owner_tag("alice", Some("arn:other"), arn)
            .unwrap()
            .contains("arn:other"));
    }

    #[test]
    fn enrolment_refuses_a_second_owner_and_finishes_what_a_crash_cut_short() {
        let facts = |secret, owner_tag| EnrolFacts {
            owning_name: "rekey/aws/alice",
            secret,
            owner_tag,
            iam_user: true,
        };
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:rekey/aws/alice-AbCdEf";
        let other = "arn:aws:secretsmanager:us-east-1:1:secret:team/alice-XyZxYz";
        let steps = |create, tag| Ok(Enrolling::Steps { create, tag });
        assert_eq!(enrolling(facts(None, None)), steps(true, true));
        assert_eq!(
            enrolling(facts(Some((arn, true)), None)),
            steps(false, true)
        );
        assert_eq!(
            enrolling(facts(Some((arn, true)), Some((arn, true)))),
            Ok(Enrolling::Done)
        );
        // A tag naming a deleted secret is stale; one naming a live
        // secret is an owner.
        assert_eq!(
            enrolling(facts(None, Some((other, false)))),
            steps(true, true)
        );
        let second = enrolling(facts(None, Some((other, true)))).unwrap_err();
        assert!(
            second.contains("has one owner") && second.contains(other),
            "{second}"
        );
        let second = enrolling(facts(Some((arn, true)), Some((other, true)))).unwrap_err();
        assert!(second.contains("Migrating a secret"), "{second}");
        // A secret of the owning name that rekey does not manage.
        let foreign = enrolling(facts(Some((arn, false)), None)).unwrap_err();
        assert!(foreign.contains("not tagged rekey:managed"), "{foreign}");
        // Other providers bind by name alone.
        let ram = |secret| EnrolFacts {
            iam_user: false,
            ..facts(secret, None)
        };
        assert_eq!(enrolling(ram(None)), steps(true, false));
        assert_eq!(enrolling(ram(Some((arn, true)))), Ok(Enrolling::Done));
    }
}
