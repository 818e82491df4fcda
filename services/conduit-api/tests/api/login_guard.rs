//! The failed-login limits under attack: many guesses at once, an attacker trying to lock a
//! victim out, one address spraying many accounts, and IPv6 clients changing address.

use crate::helpers::{spawn_with, test_config, unique_prefix, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A replica behind a trusted proxy, so a test can choose the client address.
async fn guarded(pair: u64, per_address: u64, per_account: u64) -> TestApp {
    let mut config = test_config(&unique_prefix(), "replica-a");
    config.trust_forwarded = true;
    config.login_max_failures = pair;
    config.login_max_failures_per_address = per_address;
    config.login_max_failures_per_account = per_account;
    spawn_with(config).await
}

async fn login_from(app: &TestApp, address: &str, email: &str, password: &str) -> StatusCode {
    let body = json!({"user": {"email": email, "password": password}});
    app.raw(
        Method::POST,
        "/api/users/login",
        None,
        Some(body.to_string().into_bytes()),
        &[("X-Forwarded-For", address)],
    )
    .await
    .status
}

#[tokio::test]
async fn a_burst_of_guesses_gets_no_more_password_checks_than_the_limit() {
    // Arrange: 10 failures allowed per account and address.
    let app = std::sync::Arc::new(guarded(10, 1000, 1000).await);
    app.register("jake").await;

    // Act: 150 wrong passwords at once, from one address.
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..150 {
        let app = app.clone();
        burst.spawn(async move {
            login_from(
                &app,
                "198.51.100.7",
                "jake@example.com",
                &format!("guess-{i}"),
            )
            .await
        });
    }
    let statuses = burst.join_all().await;

    // Assert: at most 10 were checked (401), the rest refused before hashing (429).
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(
        checked <= 10,
        "{checked} guesses were checked: {statuses:?}"
    );
    assert_eq!(checked + refused, 150, "{statuses:?}");
}

#[tokio::test]
async fn an_attacker_cannot_lock_the_owner_out_from_another_address() {
    // Arrange
    let app = guarded(10, 100, 1000).await;
    app.register("jake").await;

    // Act: the attacker spends every try the limit allows, and more.
    for i in 0..15 {
        login_from(
            &app,
            "203.0.113.66",
            "jake@example.com",
            &format!("guess-{i}"),
        )
        .await;
    }

    // Assert: the attacker is refused, the owner from home is not.
    assert_eq!(
        login_from(&app, "203.0.113.66", "jake@example.com", "password123").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&app, "192.0.2.10", "jake@example.com", "password123").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_limited() {
    // Arrange: 5 failures per address over every account.
    let app = guarded(10, 5, 1000).await;

    // Act: one wrong password for each of 8 accounts.
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses
            .push(login_from(&app, "198.51.100.9", &format!("u{i}@example.com"), "guess").await);
    }

    // Assert
    assert_eq!(
        &statuses[..5],
        &[StatusCode::UNAUTHORIZED; 5],
        "{statuses:?}"
    );
    assert_eq!(
        &statuses[5..],
        &[StatusCode::TOO_MANY_REQUESTS; 3],
        "{statuses:?}"
    );
}

#[tokio::test]
async fn an_ipv6_client_counts_by_its_64_not_by_its_address() {
    // Arrange
    let app = guarded(3, 100, 1000).await;
    app.register("jake").await;

    // Act: three failures, each from another address of one /64.
    for host in ["::1", "::2", "::3"] {
        let address = format!("2001:db8:7:7{host}");
        assert_eq!(
            login_from(&app, &address, "jake@example.com", "guess").await,
            StatusCode::UNAUTHORIZED
        );
    }

    // Assert: a fourth address of that /64 is refused, another /64 is not.
    assert_eq!(
        login_from(&app, "2001:db8:7:7::4", "jake@example.com", "guess").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&app, "2001:db8:7:8::1", "jake@example.com", "guess").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn every_failed_login_counter_expires() {
    // Arrange
    let app = guarded(10, 100, 1000).await;
    app.register("jake").await;

    // Act
    for _ in 0..3 {
        login_from(&app, "198.51.100.3", "jake@example.com", "guess").await;
    }

    // Assert: three counters (account from address, address, account), each with an expiry.
    let counters: Vec<String> = app
        .keys()
        .into_iter()
        .filter(|k| k.contains("{lf:"))
        .collect();
    assert_eq!(counters.len(), 3, "{counters:?}");
    for key in counters {
        let ttl: i64 = app.redis_cmd(redis::cmd("PTTL").arg(&key));
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
}
