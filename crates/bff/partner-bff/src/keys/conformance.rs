//! What the key store must do on either engine, as checks the SQLite unit
//! tests and the end-to-end tests on PostgreSQL both run.

use std::time::Duration;

use tailor_auth::{ApiKey, ApiKeyAuthenticator, AuthError};
use tailor_interceptors::limits::{Plan, QuotaLedger, Refusal};

use super::{KeyStore, KeyStoreError, scopes};

fn all() -> Vec<String> {
    scopes::ALL.iter().map(|s| s.to_string()).collect()
}

/// Keys are created, verified by the shared authenticator, listed per
/// tenant and revoked; bad tenants, scopes and unknown ids are refused.
/// Returns the key, for the caller to look for its secret in the storage.
pub async fn keys_verify_list_and_revoke(store: &KeyStore) -> ApiKey {
    let (key, info) = store
        .create("acme", "test", &all(), "standard")
        .await
        .unwrap();
    assert_eq!(info.tenant, "acme");
    let (other, _) = store
        .create(
            "globex",
            "other",
            &[scopes::CATALOG_READ.to_owned()],
            "trial",
        )
        .await
        .unwrap();

    let auth = ApiKeyAuthenticator::new(std::sync::Arc::new(store.clone()));
    let identity = auth.verify(&key.token).await.unwrap();
    assert_eq!(identity.subject, "partner:acme");
    assert!(identity.has_scope("orders.write"));
    assert_eq!(identity.plan.as_deref(), Some("standard"));
    let narrow = auth.verify(&other.token).await.unwrap();
    assert!(!narrow.has_scope("orders.write"));
    let forged = format!("{}{}", &key.token[..key.token.len() - 4], "0000");
    assert!(auth.verify(&forged).await.is_err());

    let acme = store.list(Some("acme".into())).await.unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(store.list(None).await.unwrap().len(), 2);
    store.revoke(&info.key_id).await.unwrap();
    assert_eq!(
        auth.verify(&key.token).await,
        Err(AuthError::Invalid("API key revoked"))
    );
    assert!(store.list(Some("acme".into())).await.unwrap()[0].revoked);
    store.revoke(&info.key_id).await.unwrap();
    assert!(matches!(
        store.revoke("nope").await,
        Err(KeyStoreError::NoSuchKey(_))
    ));
    assert!(matches!(
        store.create("Bad Tenant", "x", &[], "trial").await,
        Err(KeyStoreError::InvalidTenant)
    ));
    assert!(matches!(
        store.create("t", "x", &["admin".into()], "trial").await,
        Err(KeyStoreError::UnknownScope(_))
    ));
    assert!(matches!(
        store.create("t", "x", &[], "platinum").await,
        Err(KeyStoreError::UnknownPlan(_))
    ));
    key
}

/// The day's quota counts a BFF counting in memory saves are loaded back,
/// replaced by later saves, and older days are forgotten.
pub async fn quota_counts_are_kept_per_day(store: &KeyStore) {
    store
        .save(vec![("a".into(), 100, 3), ("b".into(), 100, 1)])
        .await
        .unwrap();
    store.save(vec![("a".into(), 100, 5)]).await.unwrap();
    let day = store.load(100).await.unwrap();
    assert_eq!((day.get("a"), day.get("b")), (Some(&5), Some(&1)));
    store.save(vec![("a".into(), 102, 1)]).await.unwrap();
    assert!(store.load(100).await.unwrap().is_empty(), "two days ago");
    assert_eq!(store.load(102).await.unwrap().get("a"), Some(&1));
}

/// Only for a store with [`KeyStore::shared_limits`]: many calls of one key
/// at once get exactly its burst (with a refill too slow to add a token
/// during the check), then a rate refusal with RetryInfo; on a plan whose
/// quota is smaller than its burst, exactly the quota, then quota
/// refusals. Other keys have buckets of their own.
pub async fn shared_limits_admit_exactly_the_allowance(store: &KeyStore) {
    let limits = store.shared_limits().expect("a store with shared limits");
    let count = |plan: Plan, key: &'static str, calls: usize| {
        let limits = limits.clone();
        async move {
            let takes = (0..calls).map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move { limits.take(key, &plan).await.unwrap() })
            });
            let mut outcomes = Vec::new();
            for take in futures_util::future::join_all(takes).await {
                outcomes.push(take.unwrap());
            }
            outcomes
        }
    };
    let bursty = Plan {
        per_second: 0.001,
        burst: 12,
        daily_quota: 1_000,
    };
    let outcomes = count(bursty, "bursty", 40).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 12);
    for refusal in outcomes.iter().filter_map(|o| o.err()) {
        let Refusal::Rate { retry_after } = refusal else {
            panic!("{refusal:?}");
        };
        assert!(retry_after > Duration::from_secs(100), "{retry_after:?}");
    }
    let metered = Plan {
        per_second: 1_000.0,
        burst: 1_000,
        daily_quota: 7,
    };
    let outcomes = count(metered, "metered", 30).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 7);
    assert!(
        outcomes
            .iter()
            .filter_map(|o| o.err())
            .all(|r| matches!(r, Refusal::Quota { limit: 7, .. }))
    );
    assert_eq!(count(bursty, "another", 1).await, vec![Ok(())]);
}
