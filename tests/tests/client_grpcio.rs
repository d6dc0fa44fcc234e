//! The generated client against a server nobody here wrote: Python grpcio (gRPC C-core)
//! with fault injection, `tests/python/a6_server.py`, which records every attempt of every
//! call as it saw it on the wire. Each test checks one rule of gRFC A6 ("gRPC Retry
//! Design") by the attempts the server counted: retries of a retryable code, the commit
//! at response headers (unary, server-streaming, client-streaming, bidi), Trailers-Only
//! failures retried, pushback (its delay, "do not retry", the signed 32-bit range, the
//! backoff restarting after it), the deadline each attempt carries, the replay of a
//! request stream, credentials and `grpc-previous-rpc-attempts` on every retry, and the
//! throttle's exact token counts.
//!
//! It needs a Python with grpcio: `TONIC_INTERCEPT_PYTHON=target/py-venv/bin/python` (see
//! `tests/python/README.md`). Without it each test says why it skips and passes, unless
//! `TONIC_INTERCEPT_REQUIRE_PYTHON=1` (CI), where that is a failure. Each test starts its
//! own server on a free loopback port and kills it by its PID at the end (and on drop).
//!
//! No assertion is about time: where a rule is about waiting, the test is built so that
//! only the right wait lets the call succeed within its deadline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_intercept::client::{
    BearerToken, ClientOutcome, GiveUpReason, RetryPolicy, RetryThrottle, TokenProvider,
    TokenSource,
};
use tonic_intercept::{ClientConfig, ClientHook, ClientPolicy, Rpc};

#[allow(clippy::all, unreachable_pub, missing_docs, dead_code)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/a6/a6.v1.rs"));
}

use pb::a6_service_intercept::{self as rpc, Chat, Unary, Upload, Watch};
use pb::{Attempt, Mode, Plan, ReportRequest, Seen, Step};

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- the Python server -----------------------------------------------------------------

/// `tests/python/a6_server.py`, running; killed by its PID when dropped.
struct PyServer {
    child: Child,
    port: u16,
}

impl PyServer {
    /// Starts the server with the Python of `TONIC_INTERCEPT_PYTHON`; `None` (after saying
    /// why) when it is not set, unless `TONIC_INTERCEPT_REQUIRE_PYTHON=1`.
    fn start() -> Option<Self> {
        let python = match std::env::var_os("TONIC_INTERCEPT_PYTHON") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => {
                let why = "TONIC_INTERCEPT_PYTHON is not set: it names a Python with grpcio \
                           (target/py-venv/bin/python, see tests/python/README.md)";
                if std::env::var("TONIC_INTERCEPT_REQUIRE_PYTHON").as_deref() == Ok("1") {
                    panic!("TONIC_INTERCEPT_REQUIRE_PYTHON=1, but {why}");
                }
                eprintln!("skipped: {why}");
                return None;
            }
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/a6_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            // The server exits when this pipe closes: also if this process dies.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Self { child, port: 0 };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a6_server.py printed no port within 60 s");
        server.port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("a6_server.py did not start (it printed {line:?})"));
        Some(server)
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// What the server recorded for `call`.
    async fn report(&self, call: &str) -> Vec<Attempt> {
        let mut client = pb::a6_service_client::A6ServiceClient::new(self.channel().await);
        client
            .report(ReportRequest {
                call: call.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .attempts
    }

    /// Kills the server by its PID and reaps it.
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- requests and plans ------------------------------------------------------------------

/// A request of the call `call` (the server numbers attempts per call).
fn call<T>(call: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-a6-call", call.parse().unwrap());
    request
}

fn step(mode: Mode, code: Code) -> Step {
    Step {
        mode: mode as i32,
        code: code as i32,
        ..Step::default()
    }
}

/// A Trailers-Only failure with `code`.
fn trailers_only(code: Code) -> Step {
    step(Mode::TrailersOnly, code)
}

/// A failure with `code` after the response headers.
fn headers_then(code: Code) -> Step {
    step(Mode::HeadersThenFail, code)
}

/// A Trailers-Only `UNAVAILABLE` carrying `grpc-retry-pushback-ms: value`.
fn pushback(value: &str) -> Step {
    Step {
        pushback: value.to_owned(),
        ..trailers_only(Code::Unavailable)
    }
}

fn plan(steps: Vec<Step>) -> Plan {
    Plan {
        steps,
        ..Plan::default()
    }
}

fn numbers(report: &[Attempt]) -> Vec<u32> {
    report.iter().map(|a| a.number).collect()
}

/// Retries with at most 1 ms of backoff, for tests about something else than backoff.
const QUICK: RetryPolicy = RetryPolicy::new()
    .initial_backoff(ms(1))
    .max_backoff(ms(1))
    .retryable_codes(&[Code::Unavailable]);

// ---- the client's side -------------------------------------------------------------------

/// How a call ended, as the client hook saw it: (rpc, code, attempts, gave up).
type End = (&'static str, Code, u32, Option<GiveUpReason>);

/// Every call's [`End`].
#[derive(Debug, Clone, Default)]
struct Ends(Arc<Mutex<Vec<End>>>);

impl Ends {
    fn last(&self) -> End {
        *self.0.lock().unwrap().last().expect("no call ended")
    }
}

impl<R: Rpc> ClientHook<R> for Ends {
    fn on_finish(&self, outcome: &ClientOutcome) {
        self.0.lock().unwrap().push((
            R::DESCRIPTOR.method,
            outcome.code,
            outcome.attempts,
            outcome.gave_up,
        ));
    }
}

type Client = rpc::Client<Channel, Ends>;

async fn client(server: &PyServer, config: ClientConfig<rpc::Service>) -> (Client, Ends) {
    let ends = Ends::default();
    let client = rpc::Client::with_config(server.channel().await, config.hooks(ends.clone()));
    (client, ends)
}

/// Tokens that never expire.
struct Tokens;

impl TokenSource for Tokens {
    async fn fetch(&self) -> Result<BearerToken, Status> {
        Ok(BearerToken::expires_in(
            "a6-token",
            Duration::from_secs(3_600),
        ))
    }
}

// ---- retries ---------------------------------------------------------------------------

#[tokio::test]
async fn a_retryable_code_is_retried_with_the_same_metadata_and_the_attempt_count() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(QUICK.max_attempts(4));
    let config = ClientConfig::new()
        .policy(UNARY)
        .credentials(TokenProvider::new(Tokens, Duration::from_secs(60)));
    let (mut client, ends) = client(&server, config).await;

    // Two Trailers-Only UNAVAILABLEs, then success: exactly 3 attempts.
    let mut request = call(
        "retried",
        Plan {
            value: 7,
            ..plan(vec![
                trailers_only(Code::Unavailable),
                trailers_only(Code::Unavailable),
            ])
        },
    );
    request
        .metadata_mut()
        .insert("x-a6-custom", "kept".parse().unwrap());
    let reply = client.unary(request).await.unwrap().into_inner();
    assert_eq!(
        reply,
        Seen {
            attempt: 3,
            value: 7
        }
    );
    assert_eq!(ends.last(), ("Unary", Code::Ok, 3, None));

    let report = server.report("retried").await;
    assert_eq!(numbers(&report), [1, 2, 3]);
    // A6, "Exposed Retry Metadata": absent on the first attempt, then 1, 2.
    let previous: Vec<&str> = report
        .iter()
        .map(|a| a.previous_attempts.as_str())
        .collect();
    assert_eq!(previous, ["", "1", "2"]);
    // The credentials, the request id and the application's metadata on every attempt.
    assert!(report.iter().all(|a| a.authorization == "Bearer a6-token"));
    assert!(report.iter().all(|a| a.custom == "kept"));
    assert!(!report[0].request_id.is_empty());
    assert!(report.iter().all(|a| a.request_id == report[0].request_id));

    // A code the policy does not retry: exactly 1 attempt.
    let status = client
        .unary(call(
            "invalid",
            plan(vec![trailers_only(Code::InvalidArgument)]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(numbers(&server.report("invalid").await), [1]);
    assert_eq!(
        ends.last(),
        (
            "Unary",
            Code::InvalidArgument,
            1,
            Some(GiveUpReason::NotRetryable)
        )
    );

    // Failing on every attempt: maxAttempts (4) attempts.
    let status = client
        .unary(call(
            "exhausted",
            plan(vec![trailers_only(Code::Unavailable); 5]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(numbers(&server.report("exhausted").await), [1, 2, 3, 4]);
    assert_eq!(
        ends.last(),
        (
            "Unary",
            Code::Unavailable,
            4,
            Some(GiveUpReason::AttemptsExhausted)
        )
    );
    server.stop();
}

// ---- the commit point: response headers ----------------------------------------------------

#[tokio::test]
async fn no_retry_after_the_response_headers_for_any_kind_of_call() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    let config = ClientConfig::new()
        .policy(ClientPolicy::<Unary>::retry(QUICK))
        .policy(ClientPolicy::<Watch>::retry(QUICK))
        .policy(ClientPolicy::<Upload>::retry(QUICK))
        .policy(ClientPolicy::<Chat>::retry(QUICK));
    let (mut client, ends) = client(&server, config).await;
    let committed = Some(GiveUpReason::Committed);

    // Unary: headers, then UNAVAILABLE (retryable): exactly 1 attempt.
    let status = client
        .unary(call(
            "unary-headers",
            plan(vec![headers_then(Code::Unavailable)]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(numbers(&server.report("unary-headers").await), [1]);
    assert_eq!(ends.last(), ("Unary", Code::Unavailable, 1, committed));

    // Server-streaming: headers, then UNAVAILABLE before any message. The stream is the
    // application's from the headers on, and the failure arrives in it.
    let stream = client
        .watch(call(
            "watch-headers",
            plan(vec![headers_then(Code::Unavailable)]),
        ))
        .await
        .unwrap()
        .into_inner();
    let items: Vec<Result<Seen, Code>> = stream
        .map(|item| item.map_err(|s| s.code()))
        .collect()
        .await;
    assert_eq!(items, [Err(Code::Unavailable)]);
    assert_eq!(numbers(&server.report("watch-headers").await), [1]);
    assert_eq!(ends.last(), ("Watch", Code::Unavailable, 1, committed));

    // Server-streaming: one message, then UNAVAILABLE.
    let stream = client
        .watch(call(
            "watch-message",
            plan(vec![step(Mode::MessageThenFail, Code::Unavailable)]),
        ))
        .await
        .unwrap()
        .into_inner();
    let items: Vec<Result<Seen, Code>> = stream
        .map(|item| item.map_err(|s| s.code()))
        .collect()
        .await;
    assert_eq!(
        items,
        [
            Ok(Seen {
                attempt: 1,
                value: 1
            }),
            Err(Code::Unavailable)
        ]
    );
    assert_eq!(numbers(&server.report("watch-message").await), [1]);

    // Client-streaming and bidi: headers, then UNAVAILABLE.
    let first = plan(vec![headers_then(Code::Unavailable)]);
    let status = client
        .upload(call("upload-headers", tokio_stream::iter([first.clone()])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(numbers(&server.report("upload-headers").await), [1]);
    assert_eq!(ends.last(), ("Upload", Code::Unavailable, 1, committed));

    let stream = client
        .chat(call("chat-headers", tokio_stream::iter([first])))
        .await
        .unwrap()
        .into_inner();
    let items: Vec<Result<Seen, Code>> = stream
        .map(|item| item.map_err(|s| s.code()))
        .collect()
        .await;
    assert_eq!(items, [Err(Code::Unavailable)]);
    assert_eq!(numbers(&server.report("chat-headers").await), [1]);
    assert_eq!(ends.last(), ("Chat", Code::Unavailable, 1, committed));
    server.stop();
}

#[tokio::test]
async fn a_trailers_only_failure_is_retried_for_every_kind_of_call() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    let config = ClientConfig::new()
        .policy(ClientPolicy::<Unary>::retry(QUICK))
        .policy(ClientPolicy::<Watch>::retry(QUICK))
        .policy(ClientPolicy::<Chat>::retry(QUICK));
    let (mut client, ends) = client(&server, config).await;
    let once = || plan(vec![trailers_only(Code::Unavailable)]);

    let reply = client.unary(call("unary-to", once())).await.unwrap();
    assert_eq!(reply.into_inner().attempt, 2);
    assert_eq!(numbers(&server.report("unary-to").await), [1, 2]);

    let watch = Plan {
        messages: 2,
        ..once()
    };
    let stream = client
        .watch(call("watch-to", watch))
        .await
        .unwrap()
        .into_inner();
    let items: Vec<Result<Seen, Code>> = stream
        .map(|item| item.map_err(|s| s.code()))
        .collect()
        .await;
    assert_eq!(
        items,
        [
            Ok(Seen {
                attempt: 2,
                value: 1
            }),
            Ok(Seen {
                attempt: 2,
                value: 2
            })
        ]
    );
    assert_eq!(numbers(&server.report("watch-to").await), [1, 2]);
    assert_eq!(ends.last(), ("Watch", Code::Ok, 2, None));

    let stream = client
        .chat(call("chat-to", tokio_stream::iter([once()])))
        .await
        .unwrap()
        .into_inner();
    let items: Vec<Result<Seen, Code>> = stream
        .map(|item| item.map_err(|s| s.code()))
        .collect()
        .await;
    assert_eq!(
        items,
        [Ok(Seen {
            attempt: 2,
            value: 0
        })]
    );
    assert_eq!(numbers(&server.report("chat-to").await), [1, 2]);
    server.stop();
}

// ---- replay ----------------------------------------------------------------------------

#[tokio::test]
async fn a_retried_request_stream_is_replayed_in_full() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    let config = ClientConfig::new()
        .policy(ClientPolicy::<Upload>::retry(QUICK))
        .policy(ClientPolicy::<Chat>::retry(QUICK));
    let (mut client, _ends) = client(&server, config).await;
    let messages = |first: Plan| {
        let rest = [2, 3, 4].map(|value| Plan {
            value,
            ..Plan::default()
        });
        tokio_stream::iter(std::iter::once(first).chain(rest))
    };
    let first = Plan {
        value: 1,
        ..plan(vec![trailers_only(Code::Unavailable)])
    };

    // Upload: the server reads every message, then fails the first attempt.
    let reply = client
        .upload(call("upload-replay", messages(first.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply,
        Seen {
            attempt: 2,
            value: 10
        }
    );
    let values: Vec<Vec<u64>> = server
        .report("upload-replay")
        .await
        .into_iter()
        .map(|a| a.values)
        .collect();
    assert_eq!(values, [vec![1, 2, 3, 4], vec![1, 2, 3, 4]]);

    // Chat: the first attempt fails after the first message; the second gets them all.
    let stream = client
        .chat(call("chat-replay", messages(first)))
        .await
        .unwrap()
        .into_inner();
    let echoed: Vec<u64> = stream.map(|item| item.unwrap().value).collect().await;
    assert_eq!(echoed, [1, 2, 3, 4]);
    let report = server.report("chat-replay").await;
    assert_eq!(numbers(&report), [1, 2]);
    assert_eq!(report[0].values, [1]);
    assert_eq!(report[1].values, [1, 2, 3, 4]);
    server.stop();
}

// ---- pushback ----------------------------------------------------------------------------

#[tokio::test]
async fn pushback_delays_or_stops_retries_within_a_signed_32_bit_range() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    // A backoff of up to an hour under a 5 s deadline: a retry made in time is the
    // pushback's doing.
    const SLOW: RetryPolicy = RetryPolicy::new()
        .max_attempts(3)
        .initial_backoff(Duration::from_secs(3_600))
        .max_backoff(Duration::from_secs(3_600));
    const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(SLOW).deadline(Duration::from_secs(5));
    let (mut client, ends) = client(&server, ClientConfig::new().policy(UNARY)).await;

    // "20": retry after 20 ms, twice.
    let reply = client
        .unary(call("pushed", plan(vec![pushback("20"), pushback("20")])))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().attempt, 3);
    assert_eq!(numbers(&server.report("pushed").await), [1, 2, 3]);

    // Negative, past i32::MAX, not an integer: do not retry. Exactly 1 attempt each.
    for (name, value) in [
        ("negative", "-1"),
        ("huge", "2147483648"),
        ("fraction", "1.5"),
    ] {
        let status = client
            .unary(call(name, plan(vec![pushback(value); 3])))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{value}");
        assert_eq!(numbers(&server.report(name).await), [1], "{value}");
        assert_eq!(
            ends.last(),
            ("Unary", Code::Unavailable, 1, Some(GiveUpReason::Pushback)),
            "{value}"
        );
    }

    // i32::MAX itself is a delay (about 25 days): past the deadline, so the call ends
    // with DEADLINE_EXCEEDED after 1 attempt, instead of being refused a retry.
    let status = client
        .unary(call("max", plan(vec![pushback("2147483647"); 3])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(numbers(&server.report("max").await), [1]);
    assert_eq!(
        ends.last(),
        (
            "Unary",
            Code::DeadlineExceeded,
            1,
            Some(GiveUpReason::Deadline)
        )
    );
    server.stop();
}

#[tokio::test]
async fn the_backoff_restarts_from_the_initial_one_after_a_pushback_driven_retry() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    // Backoff bounds 1 ms, 100 s, then an hour (capped): under a 10 s deadline, only the
    // first step of the backoff can be waited. After attempt 1 (no pushback) the client
    // waits up to 1 ms; after attempt 2 the pushback's 0 ms; after attempt 3 up to 1 ms
    // again only if the backoff restarted (A6), where it would otherwise draw from an
    // hour and give up at the deadline.
    const STEEP: RetryPolicy = RetryPolicy::new()
        .max_attempts(5)
        .initial_backoff(ms(1))
        .backoff_multiplier(100_000.0)
        .max_backoff(Duration::from_secs(3_600));
    const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(STEEP).deadline(Duration::from_secs(10));
    let (mut client, ends) = client(&server, ClientConfig::new().policy(UNARY)).await;

    let steps = vec![
        trailers_only(Code::Unavailable),
        pushback("0"),
        trailers_only(Code::Unavailable),
    ];
    let reply = client.unary(call("reset", plan(steps))).await.unwrap();
    assert_eq!(reply.into_inner().attempt, 4);
    assert_eq!(numbers(&server.report("reset").await), [1, 2, 3, 4]);
    assert_eq!(ends.last(), ("Unary", Code::Ok, 4, None));
    server.stop();
}

// ---- deadlines ---------------------------------------------------------------------------

#[tokio::test]
async fn each_attempt_carries_what_is_left_of_the_deadline() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(QUICK.max_attempts(3));
    let (mut client, _ends) = client(&server, ClientConfig::new().policy(UNARY)).await;

    // The request's own deadline, 5 s; each failing attempt takes 200 ms at the server.
    let stalled = Step {
        sleep_ms: 200,
        ..trailers_only(Code::Unavailable)
    };
    let mut request = call("deadline", plan(vec![stalled.clone(), stalled.clone()]));
    request.set_timeout(Duration::from_secs(5));
    assert_eq!(client.unary(request).await.unwrap().into_inner().attempt, 3);
    let left: Vec<i64> = server
        .report("deadline")
        .await
        .iter()
        .map(|a| a.time_remaining_ms)
        .collect();
    assert_eq!(left.len(), 3);
    // Present (grpc-timeout reached the server), within the deadline, and shrinking from
    // one attempt to the next: each carries what is left after the 200 ms the previous
    // one took (far more than the jitter of its way to the server).
    assert!(left.iter().all(|&ms| (0..=5_000).contains(&ms)), "{left:?}");
    assert!(left[0] > left[1] && left[1] > left[2], "{left:?}");

    // A per-attempt timeout bounds each attempt's deadline inside the call's.
    const PER_ATTEMPT: ClientPolicy<Unary> = ClientPolicy::retry(
        QUICK
            .max_attempts(2)
            .per_attempt_timeout(Duration::from_secs(1)),
    )
    .deadline(Duration::from_secs(5));
    let (mut client, _ends) = client_with(&server, PER_ATTEMPT).await;
    let reply = client
        .unary(call("per-attempt", plan(vec![stalled])))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().attempt, 2);
    let left: Vec<i64> = server
        .report("per-attempt")
        .await
        .iter()
        .map(|a| a.time_remaining_ms)
        .collect();
    assert!(left.iter().all(|&ms| (0..=1_000).contains(&ms)), "{left:?}");
    server.stop();
}

async fn client_with(server: &PyServer, policy: ClientPolicy<Unary>) -> (Client, Ends) {
    client(server, ClientConfig::new().policy(policy)).await
}

// ---- throttling ------------------------------------------------------------------------

#[tokio::test]
async fn the_throttle_counts_failures_and_successes_as_a6_says() {
    let Some(mut server) = PyServer::start() else {
        return;
    };
    const UNARY: ClientPolicy<Unary> = ClientPolicy::retry(QUICK.max_attempts(5));
    // 10 tokens; a counted failure takes 1, a successful call gives back 0.5; retries
    // while more than 5 are left.
    let throttle = RetryThrottle::new(10, 0.5);
    let config = ClientConfig::new().policy(UNARY).throttle(throttle.clone());
    let (mut client, ends) = client(&server, config).await;
    let failing = || plan(vec![trailers_only(Code::Unavailable); 5]);

    // 10 -> 9, 8, 7, 6: retried; the 5th failure leaves 5: throttled.
    client.unary(call("t1", failing())).await.unwrap_err();
    assert_eq!(numbers(&server.report("t1").await), [1, 2, 3, 4, 5]);
    assert_eq!(
        ends.last(),
        ("Unary", Code::Unavailable, 5, Some(GiveUpReason::Throttled))
    );
    assert_eq!(throttle.tokens(), Some(5.0));

    // 5 -> 4: not retried at all.
    client.unary(call("t2", failing())).await.unwrap_err();
    assert_eq!(numbers(&server.report("t2").await), [1]);
    assert_eq!(throttle.tokens(), Some(4.0));

    // `Plain` has no retry policy, so no retryable code: its UNAVAILABLE does not count...
    client
        .plain(call("t3", plan(vec![trailers_only(Code::Unavailable)])))
        .await
        .unwrap_err();
    assert_eq!(throttle.tokens(), Some(4.0));
    // ...its pushback saying not to retry does (A6): 4 -> 3.
    client
        .plain(call("t4", plan(vec![pushback("-1")])))
        .await
        .unwrap_err();
    assert_eq!(throttle.tokens(), Some(3.0));

    // Successes of RPCs without a retry policy give tokens back too: 7 unary calls and one
    // response stream read to its end, 3 + 8 * 0.5 = 7.
    for n in 0..7 {
        client
            .plain(call(&format!("ok-{n}"), Plan::default()))
            .await
            .unwrap();
    }
    let watch = Plan {
        messages: 2,
        ..Plan::default()
    };
    let stream = client
        .watch(call("ok-watch", watch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.collect::<Vec<_>>().await.len(), 2);
    assert_eq!(throttle.tokens(), Some(7.0));

    // 7 -> 6: retried; 6 -> 5: throttled. Exactly 2 attempts.
    client.unary(call("t5", failing())).await.unwrap_err();
    assert_eq!(numbers(&server.report("t5").await), [1, 2]);
    assert_eq!(throttle.tokens(), Some(5.0));

    // A failure after the response headers is not retried, and counts: 5 -> 4.
    client
        .unary(call("t6", plan(vec![headers_then(Code::Unavailable)])))
        .await
        .unwrap_err();
    assert_eq!(numbers(&server.report("t6").await), [1]);
    assert_eq!(throttle.tokens(), Some(4.0));

    // A code the policy does not retry does not count.
    client
        .unary(call("t7", plan(vec![trailers_only(Code::InvalidArgument)])))
        .await
        .unwrap_err();
    assert_eq!(throttle.tokens(), Some(4.0));
    server.stop();
}
