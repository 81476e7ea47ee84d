//! What the accounts store and the sign-in limits must do on either
//! engine, as checks the SQLite unit tests and the end-to-end tests on
//! PostgreSQL both run. The sign-in checks use names and addresses of
//! their own, so they may share one store.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use tailor_auth::{SessionStore, hash_session_handle};
use tailor_interceptors::limits::Rate;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{AccountError, Accounts};
use crate::throttle::{SignInLimits, SignInThrottle};

/// Passwords verify (and only the right one), names are checked, a name
/// is taken once.
pub async fn passwords_verify_and_names_are_checked(accounts: &Accounts) {
    let user = accounts.add_user("ada", "Ada", "lovelace").await.unwrap();
    assert_eq!(user.user_id, "user-ada");
    assert_eq!(
        accounts.verify("ada", "lovelace").await.unwrap(),
        Some(user)
    );
    assert_eq!(accounts.verify("ada", "Lovelace").await.unwrap(), None);
    assert_eq!(accounts.verify("bob", "lovelace").await.unwrap(), None);
    assert!(matches!(
        accounts.add_user("ada", "", "other").await,
        Err(AccountError::UserExists(_))
    ));
    assert!(matches!(
        accounts.add_user("Ada Lovelace", "", "other").await,
        Err(AccountError::InvalidUsername)
    ));
    assert!(matches!(
        accounts.add_user("bob", "", "abc").await,
        Err(AccountError::WeakPassword)
    ));
}

/// A session resolves to its user until it is ended.
pub async fn sessions_start_resolve_and_end(accounts: &Accounts) {
    let user = accounts.add_user("cyd", "", "lovelace").await.unwrap();
    let (handle, session) = accounts.start_session(user.clone()).await.unwrap();
    let hash = hash_session_handle(&handle);
    assert_eq!(accounts.session(hash).await.unwrap(), Some(session));
    let identity = accounts.identity(&hash).await.unwrap().unwrap();
    assert_eq!(identity.subject, "user-cyd");
    assert_eq!(
        accounts
            .session(hash_session_handle("forged"))
            .await
            .unwrap(),
        None
    );
    accounts.end_session(hash).await.unwrap();
    assert_eq!(accounts.session(hash).await.unwrap(), None);
    assert_eq!(accounts.identity(&hash).await.unwrap(), None);
}

/// Tokens come back every 2 s: nothing refills while a check runs.
pub const STEADY: SignInLimits = SignInLimits {
    per_name: Rate {
        per_second: 0.5,
        burst: 3,
    },
    per_address: Rate {
        per_second: 0.5,
        burst: 6,
    },
};

/// Tokens come back every 100 ms, to see a bucket recover.
pub const QUICK: SignInLimits = SignInLimits {
    per_name: Rate {
        per_second: 10.0,
        burst: 3,
    },
    per_address: Rate {
        per_second: 10.0,
        burst: 6,
    },
};

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

/// A refusal naming `what`, with a RetryInfo of at most `within`.
fn refused_for(result: Result<(), Status>, what: &str, within: Duration) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains(what), "{}", status.message());
    let retry = status
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(retry > Duration::ZERO && retry <= within, "{retry:?}");
}

const TWO_SECONDS: Duration = Duration::from_secs(2);

/// One password sprayed over many names from one address is slowed per
/// address; IPv6 neighbours in one /64 share a bucket. `throttle` is built
/// with [`STEADY`].
pub async fn one_password_sprayed_over_many_names_is_slowed_per_address(throttle: &SignInThrottle) {
    let sprayer = ip("203.0.113.7");
    for n in 0..6 {
        throttle.admit(&format!("user-{n}"), sprayer).await.unwrap();
    }
    refused_for(
        throttle.admit("user-6", sprayer).await,
        "from this address",
        TWO_SECONDS,
    );
    // Someone else, elsewhere, signs in as usual.
    throttle.admit("eve", ip("198.51.100.7")).await.unwrap();
    let v6 = |last: u16| {
        Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 1, 2, 0, 0, 0, last,
        )))
    };
    for n in 0..6 {
        throttle.admit(&format!("v6-{n}"), v6(n)).await.unwrap();
    }
    refused_for(
        throttle.admit("v6-x", v6(99)).await,
        "from this address",
        TWO_SECONDS,
    );
    throttle.admit("v6-x", ip("2001:db8:1:3::1")).await.unwrap();
}

/// Guessing one name from many addresses is slowed, and not for the day:
/// a token is back within 100 ms. `throttle` is built with [`QUICK`].
pub async fn guessing_one_name_from_many_addresses_is_slowed_and_recovers(
    throttle: &SignInThrottle,
) {
    for n in 0..3 {
        throttle
            .admit("grace", ip(&format!("192.0.2.{n}")))
            .await
            .unwrap();
    }
    refused_for(
        throttle.admit("grace", ip("192.0.2.200")).await,
        "for this user",
        Duration::from_millis(100),
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    throttle.admit("grace", ip("192.0.2.201")).await.unwrap();
}

/// A stranger emptying a name's bucket does not lock its user out from
/// where they signed in before. `throttle` is built with [`STEADY`].
pub async fn a_stranger_cannot_lock_out_a_user_from_where_they_signed_in_before(
    throttle: &SignInThrottle,
) {
    let home = ip("198.51.100.20");
    throttle.admit("hopper", home).await.unwrap();
    throttle.signed_in("hopper", home).await;
    // A stranger empties the name's bucket (the first attempt at home took
    // a token from it too)...
    let stranger = ip("203.0.113.90");
    for _ in 0..2 {
        throttle.admit("hopper", stranger).await.unwrap();
    }
    refused_for(
        throttle.admit("hopper", stranger).await,
        "for this user",
        TWO_SECONDS,
    );
    // ... but at home she draws from her own pair's bucket.
    for _ in 0..3 {
        throttle.admit("hopper", home).await.unwrap();
    }
    // Which is limited like the name, for whoever shares her address.
    refused_for(
        throttle.admit("hopper", home).await,
        "for this user",
        TWO_SECONDS,
    );
    // A new address of hers waits behind the stranger's attempts.
    refused_for(
        throttle.admit("hopper", ip("192.0.2.150")).await,
        "for this user",
        TWO_SECONDS,
    );
}
