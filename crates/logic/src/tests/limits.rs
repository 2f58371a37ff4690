//! Rate limits: each lets its burst through, refuses the next with RATE_LIMITED and the time
//! to wait, and lifts when that time has passed.

use super::harness::*;
use crate::{Rate, RateLimits};
use missive_proto::client::*;
use missive_rpc::{Code, Ctx, Status};
use std::time::Duration;

fn rate(count: u32, seconds: u64) -> Rate {
    Rate { count, per: Duration::from_secs(seconds) }
}

/// A request from `address`, as the access layer marks it.
fn from(address: &str) -> Ctx {
    Ctx { client_address: Some(address.parse().unwrap()), ..Ctx::new(0) }
}

fn limited(result: Result<impl std::fmt::Debug, Status>) -> Duration {
    let status = result.unwrap_err();
    assert_eq!(status.code, Code::RateLimited, "{status}");
    status.retry_after.expect("a time to wait")
}

fn login(username: &str, password: &str) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        password: password.into(),
        device_name: String::new(),
    }
}

#[tokio::test]
async fn password_guessing_is_slowed_per_account_and_per_address() {
    let node = Node::with(|config| {
        config.rate_limits = RateLimits {
            login_failures_per_account: rate(2, 60),
            logins_per_address: rate(4, 60),
            ..RateLimits::default()
        };
    })
    .await;
    let api = node.api();
    let (ann, _) = node.user_with_token("ann").await;
    let guesser = from("203.0.113.7");
    for _ in 0..2 {
        let wrong = api.login(&guesser, login("ann", "not her password")).await;
        assert_eq!(wrong.unwrap_err().code, Code::InvalidCredentials);
    }
    // Ann's account is now locked for guessers everywhere, even with the right password, for
    // twice a refill (the second failure emptied the bucket: a strike)...
    let wait = limited(api.login(&from("198.51.100.1"), login("ann", "long enough")).await);
    assert_eq!(wait, Duration::from_secs(60));
    // ...but her device that holds a token keeps working, and other accounts are untouched.
    api.get_profile(&ann, GetProfileRequest::default()).await.expect("her session");
    node.user("bob").await;
    api.login(&from("198.51.100.1"), login("bob", "long enough")).await.unwrap();

    // The guesser's address has had its 4 attempts (2 wrong, then 2 for other names).
    let other = api.login(&guesser, login("nobody", "x".repeat(8).as_str())).await;
    assert_eq!(other.unwrap_err().code, Code::InvalidCredentials);
    let bob = api.login(&guesser, login("bob", "long enough")).await;
    bob.expect("the fourth attempt from the address");
    limited(api.login(&guesser, login("bob", "long enough")).await);

    node.advance(60_000);
    api.login(&from("198.51.100.1"), login("ann", "long enough")).await.expect("lifted");
}

#[tokio::test]
async fn failed_logins_back_off_longer_at_each_strike_per_account_and_per_address() {
    let node = Node::with(|config| {
        config.rate_limits = RateLimits {
            login_failures_per_account: rate(2, 20),
            login_failures_per_address: rate(3, 30),
            login_backoff_max: Duration::from_secs(100),
            ..RateLimits::default()
        };
    })
    .await;
    let api = node.api();
    node.user("ann").await;
    let guess = |from: Ctx| async move { api.login(&from, login("ann", "a wrong guess")).await };
    for _ in 0..2 {
        assert_eq!(guess(from("198.51.100.1")).await.unwrap_err().code, Code::InvalidCredentials);
    }
    // Each guess let through after its wait empties the bucket again, and waits twice as long,
    // until the longest wait (the bucket at most 100 s past full).
    let mut waits = Vec::new();
    for n in 0..5 {
        let wait = limited(guess(from(&format!("198.51.100.{}", n + 2))).await);
        waits.push(wait.as_secs());
        node.advance(wait.as_millis() as i64);
        let answer = guess(from(&format!("198.51.100.{}", n + 2))).await;
        assert_eq!(answer.unwrap_err().code, Code::InvalidCredentials);
    }
    assert_eq!(waits, [20, 40, 80, 110, 110]);
    // The owner's success forgives the strikes: one strike again after the next failure.
    node.advance(110_000);
    api.login(&from("198.51.100.1"), login("ann", "long enough")).await.expect("her own");
    guess(from("198.51.100.1")).await.unwrap_err();
    assert_eq!(limited(guess(from("198.51.100.1")).await), Duration::from_secs(20));

    // One password tried on many accounts from one address: the address backs off.
    let sprayer = from("203.0.113.5");
    for name in ["amy", "ben", "cal"] {
        let answer = api.login(&sprayer, login(name, "Summer2026!")).await;
        assert_eq!(answer.unwrap_err().code, Code::InvalidCredentials);
    }
    let wait = limited(api.login(&sprayer, login("dee", "Summer2026!")).await);
    assert_eq!(wait, Duration::from_secs(20), "twice the address's refill of 10 s");
    api.login(&from("203.0.113.6"), login("dee", "Summer2026!")).await.unwrap_err();
}

#[tokio::test]
async fn registrations_sends_and_group_adds_are_limited_and_lift() {
    let node = Node::with(|config| {
        config.rate_limits = RateLimits {
            registrations_per_address: rate(3, 3_600),
            sends_per_user: rate(3, 3),
            group_adds_per_user: rate(2, 3_600),
            ..RateLimits::default()
        };
        config.direct_messages = crate::Audience::Anyone;
        config.group_invites = crate::GroupInvites::Add(crate::Audience::Anyone);
    })
    .await;
    let api = node.api();
    let register = |name: &str| RegisterRequest {
        username: name.into(),
        password: "long enough".into(),
        nickname: String::new(),
    };
    let farm = from("203.0.113.9");
    for name in ["farm1", "farm2", "farm3"] {
        api.register(&farm, register(name)).await.unwrap();
    }
    let wait = limited(api.register(&farm, register("farm4")).await);
    assert!(wait > Duration::from_secs(1_000), "{wait:?}");
    api.register(&from("198.51.100.2"), register("elsewhere")).await.expect("another address");

    let ann = node.user("ann").await;
    let bob = node.user("bob").await;
    for n in 0..3 {
        api.send(&ann, text_to("bob", &format!("m{n}"), "hi")).await.unwrap();
    }
    let wait = limited(api.send(&ann, text_to("bob", "m3", "hi")).await);
    assert_eq!(wait, Duration::from_secs(1));
    api.send(&bob, text_to("ann", "b0", "hi")).await.expect("bob has his own bucket");
    node.advance(1_000);
    api.send(&ann, text_to("bob", "m3", "hi")).await.expect("one more after a second");

    let cat = node.user("cat").await;
    let create = GroupCreateRequest { name: "Trip".into(), member_ids: vec![id(&bob), id(&cat)] };
    let group_id = api.group_create(&ann, create).await.unwrap().group.unwrap().group_id;
    let dan = node.user("dan").await;
    let invite = GroupInviteRequest { group_id, user_ids: vec![id(&dan)] };
    limited(api.group_invite(&ann, invite).await);
}

#[tokio::test]
async fn with_the_limits_off_nothing_is_counted() {
    let node = Node::with(|config| {
        config.rate_limits =
            RateLimits { enabled: false, sends_per_user: rate(1, 3_600), ..RateLimits::default() };
        config.direct_messages = crate::Audience::Anyone;
    })
    .await;
    let ann = node.user("ann").await;
    node.user("bob").await;
    for n in 0..5 {
        node.api().send(&ann, text_to("bob", &format!("m{n}"), "hi")).await.unwrap();
    }
}

#[tokio::test]
async fn a_device_has_a_share_of_its_users_sends_and_uploads_are_counted_in_bytes() {
    let node = Node::with(|config| {
        config.rate_limits = RateLimits {
            sends_per_device: rate(2, 2),
            sends_per_user: rate(10, 10),
            upload_bytes_per_user: rate(1_000, 1_000),
            ..RateLimits::default()
        };
        config.direct_messages = crate::Audience::Anyone;
    })
    .await;
    let api = node.api();
    let phone = node.user("ann").await;
    let laptop = node.device("ann", "laptop").await;
    let bob = node.user("bob").await;
    for n in 0..2 {
        api.send(&phone, text_to("bob", &format!("p{n}"), "hi")).await.unwrap();
    }
    assert_eq!(limited(api.send(&phone, text_to("bob", "p2", "hi")).await), Duration::from_secs(1));
    api.send(&laptop, text_to("bob", "l0", "hi")).await.expect("another device of hers");

    let upload = |bytes: usize| UploadRequest {
        conversation_id: id(&bob),
        name: "scan.pdf".into(),
        mime_type: "application/pdf".into(),
        data: vec![7; bytes],
    };
    api.upload(&phone, upload(600)).await.unwrap();
    // 600 more would be 200 bytes past the bucket: 200 s at a byte a second, counted for her
    // laptop too.
    assert_eq!(limited(api.upload(&laptop, upload(600)).await), Duration::from_secs(200));
    api.upload(&laptop, upload(400)).await.expect("what is left");
    api.upload(&bob, upload(1_000)).await.expect("bob has his own bytes");
    node.advance(600_000);
    api.upload(&laptop, upload(600)).await.expect("refilled");
}

#[tokio::test]
async fn guesses_made_at_once_cannot_pass_the_account_limit_together() {
    let node = Node::with(|config| {
        config.rate_limits =
            RateLimits { login_failures_per_account: rate(5, 60), ..RateLimits::default() };
    })
    .await;
    node.user("ann").await;
    let api = node.api();
    let guesses = (0..20).map(|n| {
        let from = from(&format!("203.0.113.{n}"));
        async move { api.login(&from, login("ann", &format!("guess number {n}"))).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked =
        answers.iter().filter(|a| a.as_ref().is_err_and(|s| s.code == Code::InvalidCredentials));
    assert_eq!(checked.count(), 5, "only the bucket's five reach a password check");
    // A right password is given its place back: the owner may sign in again and again.
    node.advance(60_000);
    for _ in 0..8 {
        api.login(&from("198.51.100.1"), login("ann", "long enough")).await.expect("her own");
    }
}

#[tokio::test]
async fn an_attempt_that_ends_before_its_password_is_checked_is_not_held_against_anyone() {
    use futures_util::FutureExt as _;
    let node = Node::with(|config| {
        config.rate_limits =
            RateLimits { login_failures_per_account: rate(1, 3_600), ..RateLimits::default() };
    })
    .await;
    node.user("ann").await;
    let api = node.api();
    // Every hashing slot is taken, so the attempt below waits for one however fast the
    // store and the hash are.
    let slots = node.logic.auth.hashing.clone();
    let taken = slots.available_permits() as u32;
    let held = slots.acquire_many_owned(taken).await.expect("open");
    // Polled once, then dropped while it waits for a hashing slot (a client gone, a
    // deadline passed): it took the account's one place ahead, and gives it back.
    let gone = api.login(&from("203.0.113.1"), login("ann", "whatever it was")).now_or_never();
    assert!(gone.is_none(), "still waiting when dropped");
    drop(held);
    api.login(&from("198.51.100.1"), login("ann", "long enough")).await.expect("her place");
    let wrong = api.login(&from("203.0.113.1"), login("ann", "a wrong one")).await;
    assert_eq!(wrong.unwrap_err().code, Code::InvalidCredentials);
    limited(api.login(&from("198.51.100.1"), login("ann", "long enough")).await);
}
