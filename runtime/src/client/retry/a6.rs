//! The retry policy core against gRFC A6 (moved here from `tests/client_retry.rs` when
//! these internals stopped being public): backoff, throttling, pushback and every
//! branch of the retry decision.

use std::time::Duration;

use super::{GiveUpReason, Pushback, RetryDecision, RetryPolicy, RetryThrottle, pushback};
use crate::client::ClientPolicy;
use crate::rpc::{IdempotencyLevel, Rpc};
use crate::util::Jitter;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

mod pb {
    crate::__doc_rpc!(
        CreateUser,
        "users.v1.UserService",
        "CreateUser",
        Unary,
        (),
        ()
    );
    crate::__doc_rpc!(
        GetUser,
        "users.v1.UserService",
        "GetUser",
        Unary,
        (),
        (),
        NoSideEffects
    );
    crate::__doc_rpc!(
        PutUser,
        "users.v1.UserService",
        "PutUser",
        Unary,
        (),
        (),
        Idempotent
    );
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 100 ms doubling up to 1 s, 5 attempts.
const POLICY: RetryPolicy = RetryPolicy::new()
    .max_attempts(5)
    .initial_backoff(ms(100))
    .max_backoff(ms(1_000))
    .backoff_multiplier(2.0);

fn with_pushback(code: Code, values: &[&'static str]) -> Status {
    let mut metadata = MetadataMap::new();
    for value in values {
        metadata.append("grpc-retry-pushback-ms", MetadataValue::from_static(value));
    }
    Status::with_metadata(code, "pushed back", metadata)
}

// ---- RetryPolicy builder ----

#[test]
fn max_attempts_is_capped_at_five() {
    for (asked, got) in [(2, 2), (3, 3), (5, 5), (6, 5), (100, 5), (u32::MAX, 5)] {
        assert_eq!(
            RetryPolicy::new().max_attempts(asked).attempts(),
            got,
            "{asked}"
        );
    }
}

#[test]
fn builder_sets_every_field() {
    const CODES: &[Code] = &[Code::Unavailable, Code::Aborted];
    let policy = RetryPolicy::new()
        .max_attempts(4)
        .initial_backoff(ms(10))
        .max_backoff(ms(20))
        .backoff_multiplier(3.0)
        .retryable_codes(CODES)
        .per_attempt_timeout(ms(30));
    assert_eq!(policy.attempts(), 4);
    assert_eq!(policy.initial(), ms(10));
    assert_eq!(policy.max(), ms(20));
    assert_eq!(policy.multiplier(), 3.0);
    assert_eq!(policy.codes(), CODES);
    assert_eq!(policy.attempt_timeout(), Some(ms(30)));
    assert_eq!(RetryPolicy::default(), RetryPolicy::new());
}

#[test]
fn default_retries_unavailable_only() {
    let policy = RetryPolicy::new();
    assert!(policy.is_retryable(Code::Unavailable));
    for code in [
        Code::Ok,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::ResourceExhausted,
    ] {
        assert!(!policy.is_retryable(code), "{code:?}");
    }
    // OK is never retryable, even when listed.
    assert!(
        !RetryPolicy::new()
            .retryable_codes(&[Code::Ok])
            .is_retryable(Code::Ok)
    );
}

#[test]
fn attempt_deadline_stays_inside_the_overall_deadline() {
    let policy = RetryPolicy::new().per_attempt_timeout(ms(300));
    assert_eq!(policy.attempt_deadline(Some(ms(1_000))), Some(ms(300)));
    assert_eq!(policy.attempt_deadline(Some(ms(300))), Some(ms(300)));
    assert_eq!(policy.attempt_deadline(Some(ms(5))), Some(ms(5)));
    assert_eq!(policy.attempt_deadline(None), Some(ms(300)));
    assert_eq!(
        RetryPolicy::new().attempt_deadline(Some(ms(7))),
        Some(ms(7))
    );
    assert_eq!(RetryPolicy::new().attempt_deadline(None), None);
}

// ---- Backoff ----

#[test]
fn backoff_ceilings_grow_geometrically_up_to_the_cap() {
    let ceilings: Vec<u128> = (1..=7)
        .map(|n| POLICY.backoff_ceiling(n).as_millis())
        .collect();
    assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
}

#[test]
fn backoff_is_the_draw_times_the_ceiling_exactly() {
    // (attempt, random, expected)
    let cases = [
        (1, 0.0, ms(0)),
        (1, 0.5, ms(50)),
        (1, 1.0, ms(100)),
        (2, 0.25, ms(50)),
        (2, 0.75, ms(150)),
        (3, 0.5, ms(200)),
        (4, 0.125, ms(100)),
        (4, 1.0, ms(800)),
        // 100 * 2^4 = 1600 ms, capped at 1 s.
        (5, 0.5, ms(500)),
        (5, 1.0, ms(1_000)),
        (30, 0.25, ms(250)),
    ];
    for (attempt, random, expected) in cases {
        assert_eq!(
            POLICY.backoff(attempt, random),
            expected,
            "attempt {attempt}, random {random}"
        );
    }
}

#[test]
fn backoff_with_non_integer_multiplier_rounds_to_the_nanosecond() {
    let policy = RetryPolicy::new()
        .initial_backoff(ms(1_000))
        .max_backoff(ms(120_000))
        .backoff_multiplier(1.6);
    // 1 s * 1.6^2 = 2.56 s; * 0.3 = 0.768 s.
    assert_eq!(policy.backoff(3, 0.3), ms(768));
    // 1 s * 1.6^10 = 109.9511627776 s.
    assert_eq!(
        policy.backoff_ceiling(11),
        Duration::from_nanos(109_951_162_778)
    );
    assert_eq!(policy.backoff_ceiling(12), ms(120_000));
}

#[test]
fn backoff_with_takes_one_draw_per_call() {
    let mut draws = [0.5, 0.25, 1.0].into_iter();
    let mut rng = || draws.next().unwrap();
    assert_eq!(POLICY.backoff_with(1, &mut rng), ms(50));
    assert_eq!(POLICY.backoff_with(2, &mut rng), ms(50));
    assert_eq!(POLICY.backoff_with(3, &mut rng), ms(400));
}

#[test]
fn jittered_backoff_stays_within_its_ceiling() {
    let mut jitter = Jitter::seeded(99);
    for attempt in 1..=6 {
        let ceiling = POLICY.backoff_ceiling(attempt);
        let waits: Vec<Duration> = (0..1_000)
            .map(|_| POLICY.backoff_with(attempt, &mut || jitter.next_f64()))
            .collect();
        assert!(waits.iter().all(|w| *w <= ceiling));
        // Full jitter: draws land both in the low and the high half of the range.
        assert!(waits.iter().any(|w| *w < ceiling / 2));
        assert!(waits.iter().any(|w| *w > ceiling / 2));
    }
}

// ---- Throttle (A6's example: maxTokens 10, tokenRatio 0.1) ----

#[test]
fn throttle_stops_retries_at_half_the_tokens() {
    let throttle = RetryThrottle::new(10, 0.1);
    assert_eq!(throttle.tokens(), Some(10.0));
    for failures in 1..=4 {
        throttle.on_failure();
        assert_eq!(throttle.tokens(), Some(10.0 - f64::from(failures)));
        assert!(throttle.allows_retry(), "after {failures} failures");
    }
    // The 5th failure leaves 5 tokens: not more than 10 / 2.
    throttle.on_failure();
    assert_eq!(throttle.tokens(), Some(5.0));
    assert!(!throttle.allows_retry());
    // One success (+0.1) is enough to cross the threshold again.
    throttle.on_success();
    assert_eq!(throttle.tokens(), Some(5.1));
    assert!(throttle.allows_retry());
}

#[test]
fn throttle_floors_at_zero_and_caps_at_max() {
    let throttle = RetryThrottle::new(10, 0.1);
    for _ in 0..50 {
        throttle.on_failure();
    }
    assert_eq!(throttle.tokens(), Some(0.0));
    // 51 successes: 5.1 tokens, the first level above the threshold.
    for n in 1..=51 {
        assert!(!throttle.allows_retry(), "after {n} successes");
        throttle.on_success();
    }
    assert_eq!(throttle.tokens(), Some(5.1));
    assert!(throttle.allows_retry());
    for _ in 0..1_000 {
        throttle.on_success();
    }
    assert_eq!(throttle.tokens(), Some(10.0));
}

#[test]
fn throttle_clones_share_one_bucket() {
    let throttle = RetryThrottle::new(10, 0.1);
    let other = throttle.clone();
    for _ in 0..5 {
        other.on_failure();
    }
    assert!(!throttle.allows_retry());
    assert_eq!(throttle.tokens(), other.tokens());
}

#[test]
fn disabled_throttle_always_allows() {
    let throttle = RetryThrottle::disabled();
    for _ in 0..100 {
        throttle.on_failure();
    }
    assert!(throttle.allows_retry());
    assert_eq!(throttle.tokens(), None);
}

// ---- Pushback ----

#[test]
fn pushback_parsing() {
    let cases: [(&[&'static str], Pushback); 16] = [
        (&[], Pushback::None),
        (&["0"], Pushback::RetryAfter(ms(0))),
        (&["250"], Pushback::RetryAfter(ms(250))),
        (&["007"], Pushback::RetryAfter(ms(7))),
        // A6: "an ASCII encoded signed 32-bit integer": i32::MAX is the largest delay.
        (&["2147483647"], Pushback::RetryAfter(ms(2_147_483_647))),
        (&["2147483648"], Pushback::DoNotRetry),
        (&["4294967296"], Pushback::DoNotRetry),
        (&["18446744073709551615"], Pushback::DoNotRetry),
        (&["18446744073709551616"], Pushback::DoNotRetry),
        (&["-2147483648"], Pushback::DoNotRetry),
        (&["-1"], Pushback::DoNotRetry),
        (&["+5"], Pushback::DoNotRetry),
        (&["1.5"], Pushback::DoNotRetry),
        (&["soon"], Pushback::DoNotRetry),
        (&[""], Pushback::DoNotRetry),
        (&["10", "20"], Pushback::DoNotRetry),
    ];
    for (values, expected) in cases {
        let status = with_pushback(Code::Unavailable, values);
        assert_eq!(pushback(status.metadata()), expected, "{values:?}");
    }
}

#[test]
fn pushback_reads_the_header_the_server_side_sends() {
    assert_eq!(crate::wire::RETRY_PUSHBACK, "grpc-retry-pushback-ms");
}

// ---- decide: every branch ----

#[test]
fn decide_retries_a_retryable_failure_after_the_backoff() {
    let throttle = RetryThrottle::new(10, 0.1);
    let status = Status::unavailable("down");
    assert_eq!(
        POLICY.decide(1, 1, &status, false, &throttle, 0.5),
        RetryDecision::RetryAfter(ms(50))
    );
    assert_eq!(
        POLICY.decide(2, 2, &status, false, &throttle, 0.5),
        RetryDecision::RetryAfter(ms(100))
    );
    // Each failure was counted.
    assert_eq!(throttle.tokens(), Some(8.0));
}

#[test]
fn decide_gives_up_when_committed_and_counts_the_failure() {
    let throttle = RetryThrottle::new(10, 0.1);
    let status = Status::unavailable("down");
    assert_eq!(
        POLICY.decide(1, 1, &status, true, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::Committed)
    );
    // Committed wins over a pushback that would have said "retry".
    let pushed = with_pushback(Code::Unavailable, &["10"]);
    assert_eq!(
        POLICY.decide(1, 1, &pushed, true, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::Committed)
    );
    // A6 counts failed RPCs with a retryable code, committed or not.
    assert_eq!(throttle.tokens(), Some(8.0));
    // A committed failure with a code the policy does not retry is just not retryable,
    // and not counted.
    assert_eq!(
        POLICY.decide(1, 1, &Status::internal("boom"), true, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::NotRetryable)
    );
    assert_eq!(throttle.tokens(), Some(8.0));
}

#[test]
fn throttle_counts_what_a6_counts() {
    use super::counts_as_failure;
    let none = Pushback::None;
    let stop = Pushback::DoNotRetry;
    let wait = Pushback::RetryAfter(ms(5));
    // With a policy: its retryable codes, and a pushback saying not to retry.
    assert!(counts_as_failure(Some(&POLICY), Code::Unavailable, none));
    assert!(counts_as_failure(Some(&POLICY), Code::Unavailable, wait));
    assert!(!counts_as_failure(Some(&POLICY), Code::Internal, none));
    assert!(counts_as_failure(Some(&POLICY), Code::Internal, stop));
    // Without one, no code is retryable: only the pushback counts.
    assert!(!counts_as_failure(None, Code::Unavailable, none));
    assert!(!counts_as_failure(None, Code::Unavailable, wait));
    assert!(counts_as_failure(None, Code::Unavailable, stop));
    // OK never.
    assert!(!counts_as_failure(Some(&POLICY), Code::Ok, stop));
}

#[test]
fn backoff_restarts_from_the_initial_one_after_a_pushback_driven_retry() {
    use super::BackoffStep;
    // A6, "Pushback: Retry in n ms": "If this attempt also fails, retry delay will reset
    // to initial backoff for the following retry". The engine keeps the step like this:
    let throttle = RetryThrottle::disabled();
    let plain = Status::unavailable("down");
    let pushed = with_pushback(Code::Unavailable, &["7"]);
    let mut step = BackoffStep::default();
    let mut waits = Vec::new();
    for (attempt, status) in [(1, &plain), (2, &plain), (3, &pushed), (4, &plain)] {
        let RetryDecision::RetryAfter(wait) =
            POLICY.decide(attempt, step.get(), status, false, &throttle, 1.0)
        else {
            panic!("attempt {attempt} was not retried");
        };
        waits.push(wait);
        step.advance(matches!(
            pushback(status.metadata()),
            Pushback::RetryAfter(_)
        ));
    }
    // 100 ms, 200 ms (x2), the pushback's 7 ms, then 100 ms again (not 800 ms).
    assert_eq!(waits, [ms(100), ms(200), ms(7), ms(100)]);
    assert_eq!(step.get(), 2);
}

#[test]
fn decide_gives_up_on_a_non_retryable_code_without_counting() {
    let throttle = RetryThrottle::new(10, 0.1);
    for status in [
        Status::invalid_argument("bad"),
        Status::internal("boom"),
        Status::ok(""),
    ] {
        assert_eq!(
            POLICY.decide(1, 1, &status, false, &throttle, 0.5),
            RetryDecision::GiveUp(GiveUpReason::NotRetryable),
            "{:?}",
            status.code()
        );
    }
    assert_eq!(throttle.tokens(), Some(10.0));
}

#[test]
fn decide_gives_up_after_the_last_attempt() {
    let throttle = RetryThrottle::disabled();
    let policy = RetryPolicy::new().max_attempts(3);
    let status = Status::unavailable("down");
    assert!(
        policy
            .decide(1, 1, &status, false, &throttle, 0.5)
            .is_retry()
    );
    assert!(
        policy
            .decide(2, 2, &status, false, &throttle, 0.5)
            .is_retry()
    );
    assert_eq!(
        policy.decide(3, 3, &status, false, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
    );
    assert_eq!(
        policy.decide(4, 4, &status, false, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
    );
}

#[test]
fn decide_gives_up_when_throttled() {
    // A6's example: the 5th failure on a fresh bucket of 10 is not retried.
    let throttle = RetryThrottle::new(10, 0.1);
    let status = Status::unavailable("down");
    let decisions: Vec<RetryDecision> = (0..6)
        .map(|_| POLICY.decide(1, 1, &status, false, &throttle, 0.5))
        .collect();
    let retry = RetryDecision::RetryAfter(ms(50));
    let throttled = RetryDecision::GiveUp(GiveUpReason::Throttled);
    assert_eq!(
        decisions,
        [retry, retry, retry, retry, throttled, throttled]
    );
    // Successes of other calls restore it.
    for _ in 0..12 {
        throttle.on_success();
    }
    assert_eq!(throttle.tokens(), Some(5.2));
    assert_eq!(
        POLICY.decide(1, 1, &status, false, &throttle, 0.5),
        throttled
    ); // 4.2 left
    for _ in 0..19 {
        throttle.on_success();
    }
    assert_eq!(throttle.tokens(), Some(6.1));
    assert_eq!(POLICY.decide(1, 1, &status, false, &throttle, 0.5), retry); // 5.1 left
}

#[test]
fn decide_gives_up_when_the_server_says_do_not_retry_and_counts_it() {
    let throttle = RetryThrottle::new(10, 0.1);
    for values in [&["-1"][..], &["nope"], &["1", "2"]] {
        let status = with_pushback(Code::Unavailable, values);
        assert_eq!(
            POLICY.decide(1, 1, &status, false, &throttle, 0.5),
            RetryDecision::GiveUp(GiveUpReason::Pushback),
            "{values:?}"
        );
    }
    // Also for a code the policy would not retry anyway, and for a value past i32::MAX.
    let status = with_pushback(Code::ResourceExhausted, &["-1"]);
    assert_eq!(
        POLICY.decide(1, 1, &status, false, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::Pushback)
    );
    let status = with_pushback(Code::Unavailable, &["2147483648"]);
    assert_eq!(
        POLICY.decide(1, 1, &status, false, &throttle, 0.5),
        RetryDecision::GiveUp(GiveUpReason::Pushback)
    );
    assert_eq!(throttle.tokens(), Some(5.0));
}

#[test]
fn decide_uses_the_pushback_delay_instead_of_the_backoff() {
    let throttle = RetryThrottle::disabled();
    let status = with_pushback(Code::Unavailable, &["1500"]);
    // Longer than max_backoff, and independent of the draw.
    assert_eq!(
        POLICY.decide(1, 1, &status, false, &throttle, 0.0),
        RetryDecision::RetryAfter(ms(1_500))
    );
    assert_eq!(
        POLICY.decide(4, 4, &status, false, &throttle, 1.0),
        RetryDecision::RetryAfter(ms(1_500))
    );
    let zero = with_pushback(Code::Unavailable, &["0"]);
    assert_eq!(
        POLICY.decide(2, 2, &zero, false, &throttle, 1.0),
        RetryDecision::RetryAfter(ms(0))
    );
}

#[test]
fn pushback_delay_does_not_make_a_code_retryable_or_lift_limits() {
    let status = with_pushback(Code::Internal, &["10"]);
    assert_eq!(
        POLICY.decide(1, 1, &status, false, &RetryThrottle::disabled(), 0.5),
        RetryDecision::GiveUp(GiveUpReason::NotRetryable)
    );
    let status = with_pushback(Code::Unavailable, &["10"]);
    assert_eq!(
        POLICY.decide(5, 5, &status, false, &RetryThrottle::disabled(), 0.5),
        RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
    );
}

#[test]
fn reasons_have_distinct_labels() {
    let labels: Vec<&str> = GiveUpReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "not_retryable",
            "attempts_exhausted",
            "committed",
            "throttled",
            "pushback",
            "deadline"
        ]
    );
    for reason in GiveUpReason::ALL {
        assert_eq!(reason.to_string(), reason.as_str());
    }
}

// ---- ClientPolicy ----

const GET_USER: ClientPolicy<pb::GetUser> = ClientPolicy::retry(POLICY);
const PUT_USER: ClientPolicy<pb::PutUser> = ClientPolicy::retry(RetryPolicy::new());
const CREATE_USER: ClientPolicy<pb::CreateUser> =
    ClientPolicy::retry_non_idempotent(RetryPolicy::new().max_attempts(2));

#[test]
fn idempotent_rpcs_retry_without_acceptance() {
    assert_eq!(
        pb::GetUser::DESCRIPTOR.idempotency,
        IdempotencyLevel::NoSideEffects
    );
    assert_eq!(
        pb::PutUser::DESCRIPTOR.idempotency,
        IdempotencyLevel::Idempotent
    );
    assert_eq!(GET_USER.retry_policy(), Some(&POLICY));
    assert_eq!(PUT_USER.retry_policy(), Some(&RetryPolicy::new()));
    assert!(!GET_USER.retries_non_idempotent());
    assert!(!PUT_USER.retries_non_idempotent());
}

#[test]
fn non_idempotent_rpcs_retry_only_when_accepted() {
    assert_eq!(
        pb::CreateUser::DESCRIPTOR.idempotency,
        IdempotencyLevel::Unknown
    );
    assert_eq!(CREATE_USER.retry_policy().map(|p| p.attempts()), Some(2));
    assert!(CREATE_USER.retries_non_idempotent());
    // Without a policy, nothing is retried.
    let none = ClientPolicy::<pb::CreateUser>::default();
    assert!(none.retry_policy().is_none());
    assert!(!none.retries_non_idempotent());
}

#[test]
fn client_policy_debug_names_the_rpc() {
    let debug = format!("{CREATE_USER:?}");
    assert!(
        debug.contains("/users.v1.UserService/CreateUser"),
        "{debug}"
    );
    assert!(debug.contains("accepted_non_idempotent: true"), "{debug}");
}
