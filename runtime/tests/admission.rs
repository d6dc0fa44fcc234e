//! Admission control: concurrency, queue, deadline, call rates and retry pushback, under
//! paused time (no sleeps: every timing assertion is exact).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::{Code, Request, Status};
use tonic_intercept::__private::{Admission, AdmissionConfig, Admitted};
use tonic_intercept::limits::identity_key;
use tonic_intercept::{Call, PolicyKind, Rpc};

tonic_intercept::__doc_rpc!(
    CreateUser,
    "users.v1.UserService",
    "CreateUser",
    Unary,
    (),
    ()
);

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn call() -> Call {
    Call::start(&CreateUser::DESCRIPTOR, &Request::new(()), None)
}

fn call_with_deadline(ms: u64) -> Call {
    Call::start(
        &CreateUser::DESCRIPTOR,
        &Request::new(()),
        Some(Duration::from_millis(ms)),
    )
}

fn leak(config: AdmissionConfig) -> &'static Admission {
    Box::leak(Box::new(Admission::new(config)))
}

/// The `grpc-retry-pushback-ms` trailer, as an integer.
fn pushback(status: &Status) -> u64 {
    status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("a pushback trailer")
        .to_str()
        .unwrap()
        .parse()
        .expect("an integer")
}

fn refused(result: Result<Admitted, (PolicyKind, Status)>) -> (PolicyKind, Status) {
    match result {
        Ok(_) => panic!("admitted"),
        Err(e) => e,
    }
}

/// Lets spawned tasks run until they block.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

static CONCURRENCY: Admission = Admission::new(AdmissionConfig::new().max_in_flight(3));

#[tokio::test(start_paused = true)]
async fn concurrency_admits_exactly_max_in_flight() {
    let (release, released) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let mut released = released.clone();
        tasks.spawn(async move {
            let admitted = CONCURRENCY.admit(&call(), None).await?;
            released.wait_for(|r| *r).await.unwrap();
            drop(admitted);
            Ok::<_, (PolicyKind, Status)>(())
        });
    }
    settle().await;
    assert_eq!(CONCURRENCY.in_flight(), 3);
    release.send(true).unwrap();
    let (mut ok, mut rejected) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => ok += 1,
            Err((policy, status)) => {
                assert_eq!(policy, PolicyKind::Concurrency);
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(status.message().contains("CreateUser"), "{status:?}");
                assert!(status.message().contains("max_in_flight = 3"), "{status:?}");
                assert!(pushback(&status) >= 1);
                rejected += 1;
            }
        }
    }
    assert_eq!((ok, rejected), (3, 7));
    assert_eq!(CONCURRENCY.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn queue_holds_n_and_rejects_the_next_at_once() {
    let admission = leak(AdmissionConfig::new().max_in_flight(1).queue(2));
    let first = admission.admit(&call(), None).await.unwrap();

    let mut waiting = JoinSet::new();
    for _ in 0..2 {
        waiting.spawn(async move { admission.admit(&call(), None).await.map(|_| Instant::now()) });
    }
    settle().await;
    assert_eq!(admission.queued(), 2);

    // The third in line is refused at once, without waiting.
    let t0 = Instant::now();
    let (policy, status) = refused(admission.admit(&call(), None).await);
    assert_eq!(Instant::now(), t0);
    assert_eq!(policy, PolicyKind::Concurrency);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("queue of 2 full"), "{status:?}");

    // A slot frees: a queued call takes it.
    tokio::time::advance(Duration::from_millis(40)).await;
    drop(first);
    let admitted_at = waiting.join_next().await.unwrap().unwrap().unwrap();
    assert_eq!(admitted_at, t0 + Duration::from_millis(40));
    assert_eq!(admission.queued(), 0);
    assert_eq!(
        waiting.join_next().await.unwrap().unwrap().unwrap(),
        admitted_at
    );
    assert_eq!(admission.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_is_admitted_when_a_slot_frees() {
    let admission = leak(AdmissionConfig::new().max_in_flight(2).queue(1));
    let a = admission.admit(&call(), None).await.unwrap();
    let _b = admission.admit(&call(), None).await.unwrap();
    let queued = tokio::spawn(async move {
        let admitted = admission.admit(&call(), None).await;
        (admitted.is_ok(), admission.in_flight())
    });
    settle().await;
    assert_eq!(admission.queued(), 1);
    assert!(!queued.is_finished());
    drop(a);
    assert_eq!(queued.await.unwrap(), (true, 2));
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gives_up_at_its_deadline() {
    let admission = leak(AdmissionConfig::new().max_in_flight(1).queue(4));
    let _held = admission.admit(&call(), None).await.unwrap();
    let t0 = Instant::now();
    let (policy, status) = refused(admission.admit(&call_with_deadline(50), None).await);
    assert_eq!(policy, PolicyKind::Deadline);
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(t0.elapsed(), Duration::from_millis(50));
    assert_eq!(admission.queued(), 0, "the queue place is given back");
}

static RATE: Admission = Admission::new(AdmissionConfig::new().calls_per_second(10).call_burst(3));

#[tokio::test(start_paused = true)]
async fn call_rate_per_rpc_with_burst_and_exact_pushback() {
    for _ in 0..3 {
        drop(RATE.admit(&call(), None).await.unwrap());
    }
    let (policy, status) = refused(RATE.admit(&call(), None).await);
    assert_eq!(policy, PolicyKind::CallRate);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("CreateUser"), "{status:?}");
    assert!(
        status.message().contains("10 calls per second"),
        "{status:?}"
    );
    assert_eq!(pushback(&status), 100);

    tokio::time::advance(Duration::from_millis(30)).await;
    assert_eq!(pushback(&refused(RATE.admit(&call(), None).await).1), 70);

    tokio::time::advance(Duration::from_millis(70)).await;
    drop(RATE.admit(&call(), None).await.unwrap());
    assert_eq!(pushback(&refused(RATE.admit(&call(), None).await).1), 100);

    // A quiet second refills the burst, and no more.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..3 {
        drop(RATE.admit(&call(), None).await.unwrap());
    }
    assert!(RATE.admit(&call(), None).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn burst_defaults_to_the_rate() {
    let admission = leak(AdmissionConfig::new().calls_per_second(5));
    for _ in 0..5 {
        drop(admission.admit(&call(), None).await.unwrap());
    }
    assert_eq!(
        pushback(&refused(admission.admit(&call(), None).await).1),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn call_rate_queue_waits_for_tokens() {
    let admission = leak(
        AdmissionConfig::new()
            .calls_per_second(10)
            .call_burst(1)
            .queue(2),
    );
    let t0 = Instant::now();
    drop(admission.admit(&call(), None).await.unwrap());
    let mut waiting = JoinSet::new();
    for _ in 0..2 {
        waiting.spawn(async move { admission.admit(&call(), None).await.map(|_| Instant::now()) });
    }
    settle().await;
    assert_eq!(admission.queued(), 2);
    // The queue is full: refused, told the next free token is 300 ms away.
    let (policy, status) = refused(admission.admit(&call(), None).await);
    assert_eq!(policy, PolicyKind::CallRate);
    assert_eq!(pushback(&status), 300);

    let mut at: Vec<_> = Vec::new();
    while let Some(r) = waiting.join_next().await {
        at.push(r.unwrap().unwrap() - t0);
    }
    at.sort();
    assert_eq!(at, [Duration::from_millis(100), Duration::from_millis(200)]);
}

#[tokio::test(start_paused = true)]
async fn a_token_after_the_deadline_is_refused_at_once() {
    let admission = leak(
        AdmissionConfig::new()
            .calls_per_second(10)
            .call_burst(1)
            .queue(2),
    );
    drop(admission.admit(&call(), None).await.unwrap());
    let t0 = Instant::now();
    let (policy, status) = refused(admission.admit(&call_with_deadline(50), None).await);
    assert_eq!(policy, PolicyKind::Deadline);
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        Instant::now(),
        t0,
        "no point waiting for a token past the deadline"
    );
    // Nothing was reserved: the next call still gets the 100 ms token.
    let waited = admission.admit(&call_with_deadline(100), None).await;
    assert!(waited.is_ok());
    assert_eq!(t0.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn identities_have_independent_buckets() {
    let admission = leak(
        AdmissionConfig::new()
            .calls_per_second(3)
            .calls_per_second_per_identity(2),
    );
    let (a, b) = (identity_key("alice"), identity_key("bob"));
    assert_ne!(a, b);
    assert_eq!(a, identity_key("alice"));

    drop(admission.admit(&call(), Some(a)).await.unwrap());
    drop(admission.admit(&call(), Some(a)).await.unwrap());
    let (policy, status) = refused(admission.admit(&call(), Some(a)).await);
    assert_eq!(policy, PolicyKind::CallRate);
    assert!(status.message().contains("per caller"), "{status:?}");
    assert_eq!(pushback(&status), 500);

    // Alice's refusal gave the RPC token back: Bob gets the third.
    drop(admission.admit(&call(), Some(b)).await.unwrap());
    // Now the RPC's own bucket is empty.
    let (policy, status) = refused(admission.admit(&call(), Some(b)).await);
    assert_eq!(policy, PolicyKind::CallRate);
    assert!(!status.message().contains("per caller"), "{status:?}");
    assert_eq!(pushback(&status), 334); // 1/3 s, rounded up to whole milliseconds

    // Without an identity only the RPC rate applies. (A token of 3/s is 333 333 334 ns:
    // rounded up, never faster than the rate, so three take a second and 2 ns.)
    tokio::time::advance(Duration::from_millis(1_001)).await;
    for _ in 0..3 {
        drop(admission.admit(&call(), None).await.unwrap());
    }
}

/// A call from `peer`, as tonic's TCP transport would start it.
fn call_from(peer: &str) -> Call {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer.parse().unwrap()),
        });
    Call::start(&CreateUser::DESCRIPTOR, &request, None)
}

#[tokio::test(start_paused = true)]
async fn peers_have_independent_buckets() {
    let admission = leak(
        AdmissionConfig::new()
            .calls_per_second(3)
            .calls_per_second_per_peer(2),
    );
    // Two connections from one address share its bucket: the port does not count.
    drop(
        admission
            .admit(&call_from("127.0.0.1:5000"), None)
            .await
            .unwrap(),
    );
    drop(
        admission
            .admit(&call_from("127.0.0.1:5001"), None)
            .await
            .unwrap(),
    );
    let (policy, status) = refused(admission.admit(&call_from("127.0.0.1:5002"), None).await);
    assert_eq!(policy, PolicyKind::CallRate);
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "CreateUser: more than 2 calls per second per peer address \
         (calls_per_second_per_peer); retry in 500 ms"
    );
    assert_eq!(pushback(&status), 500);
    assert_eq!(admission.tracked_peers(), 1);

    // The refusal gave the RPC token back: another address gets the third.
    drop(
        admission
            .admit(&call_from("127.0.0.2:5000"), None)
            .await
            .unwrap(),
    );
    assert_eq!(admission.tracked_peers(), 2);
    // Now the RPC's own bucket is empty.
    let (_, status) = refused(admission.admit(&call_from("127.0.0.3:5000"), None).await);
    assert_eq!(pushback(&status), 334);
    assert!(!status.message().contains("per peer"), "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn ipv6_peers_count_by_their_64_prefix() {
    let admission = leak(AdmissionConfig::new().calls_per_second_per_peer(1));
    drop(
        admission
            .admit(&call_from("[2001:db8:1:2::1]:443"), None)
            .await
            .unwrap(),
    );
    // Another address of the same /64: the same bucket.
    let (_, status) = refused(
        admission
            .admit(&call_from("[2001:db8:1:2:ffff::9]:443"), None)
            .await,
    );
    assert_eq!(pushback(&status), 1_000);
    // The neighbouring /64: a bucket of its own.
    drop(
        admission
            .admit(&call_from("[2001:db8:1:3::1]:443"), None)
            .await
            .unwrap(),
    );
    // An IPv4-mapped IPv6 address is its IPv4 address.
    drop(
        admission
            .admit(&call_from("192.0.2.7:1"), None)
            .await
            .unwrap(),
    );
    assert!(
        admission
            .admit(&call_from("[::ffff:192.0.2.7]:2"), None)
            .await
            .is_err()
    );
    assert_eq!(admission.tracked_peers(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_call_without_a_peer_address_is_not_rated_per_peer() {
    let admission = leak(AdmissionConfig::new().calls_per_second_per_peer(1));
    // An in-memory transport (here: no connection info at all) has no peer address.
    for _ in 0..10 {
        drop(admission.admit(&call(), None).await.unwrap());
    }
    assert_eq!(admission.tracked_peers(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_per_identity_refusal_gives_the_peer_token_back() {
    let admission = leak(
        AdmissionConfig::new()
            .calls_per_second_per_peer(2)
            .calls_per_second_per_identity(1),
    );
    let (a, b) = (identity_key("alice"), identity_key("bob"));
    drop(
        admission
            .admit(&call_from("10.0.0.1:1"), Some(a))
            .await
            .unwrap(),
    );
    let (_, status) = refused(admission.admit(&call_from("10.0.0.1:1"), Some(a)).await);
    assert!(status.message().contains("per caller"), "{status:?}");
    // Alice's refusal gave the address its token back: Bob, behind it too, gets it.
    drop(
        admission
            .admit(&call_from("10.0.0.1:2"), Some(b))
            .await
            .unwrap(),
    );
    let (_, status) = refused(admission.admit(&call_from("10.0.0.1:3"), None).await);
    assert!(status.message().contains("per peer"), "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn the_queue_waits_for_a_peer_token() {
    let admission = leak(AdmissionConfig::new().calls_per_second_per_peer(2).queue(1));
    let t0 = Instant::now();
    for _ in 0..2 {
        drop(
            admission
                .admit(&call_from("127.0.0.1:1"), None)
                .await
                .unwrap(),
        );
    }
    // The third waits for the token due in 500 ms.
    drop(
        admission
            .admit(&call_from("127.0.0.1:1"), None)
            .await
            .unwrap(),
    );
    assert_eq!(t0.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn peer_map_is_bounded() {
    let admission = leak(AdmissionConfig::new().calls_per_second_per_peer(1));
    for i in 0..25_000u32 {
        let peer = std::net::SocketAddr::from((std::net::Ipv4Addr::from_bits(0x0a00_0000 + i), 1));
        drop(
            admission
                .admit(&call_from(&peer.to_string()), None)
                .await
                .unwrap(),
        );
        assert!(admission.tracked_peers() <= 10_000);
    }
    assert!(admission.tracked_peers() > 9_000);
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(
        admission
            .admit(&call_from("127.0.0.1:1"), None)
            .await
            .unwrap(),
    );
    assert_eq!(admission.tracked_peers(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrency_pushback_follows_recent_call_durations() {
    let admission = leak(AdmissionConfig::new().max_in_flight(1));
    // No call finished yet: the least pushback, 1 ms.
    let held = admission.admit(&call(), None).await.unwrap();
    assert_eq!(
        pushback(&refused(admission.admit(&call(), None).await).1),
        1
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    drop(held);

    let held = admission.admit(&call(), None).await.unwrap();
    assert_eq!(
        pushback(&refused(admission.admit(&call(), None).await).1),
        200
    );
    tokio::time::advance(Duration::from_millis(400)).await;
    drop(held);
    // Moving average, weight 1/8: 200 + (400 - 200) / 8 = 225.
    let _held = admission.admit(&call(), None).await.unwrap();
    assert_eq!(
        pushback(&refused(admission.admit(&call(), None).await).1),
        225
    );
}

#[tokio::test(start_paused = true)]
async fn identity_map_is_bounded() {
    let admission = leak(AdmissionConfig::new().calls_per_second_per_identity(1));
    for i in 0..25_000u64 {
        drop(
            admission
                .admit(&call(), Some(identity_key(&i)))
                .await
                .unwrap(),
        );
        assert!(admission.tracked_identities() <= 10_000);
    }
    assert!(admission.tracked_identities() > 9_000);
    // Once every bucket is full again, a new identity drops them all.
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(
        admission
            .admit(&call(), Some(identity_key("new")))
            .await
            .unwrap(),
    );
    assert_eq!(admission.tracked_identities(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_identity_map_evicts_the_least_recently_used() {
    let admission = leak(
        AdmissionConfig::new()
            .calls_per_second_per_identity(1)
            .max_identities(3),
    );
    let [a, b, c, d] = ["a", "b", "c", "d"].map(identity_key);
    for id in [a, b, c] {
        drop(admission.admit(&call(), Some(id)).await.unwrap());
    }
    tokio::time::advance(Duration::from_millis(10)).await;
    // Touch `a` (refused, but used): `b` is now the least recently used.
    assert!(admission.admit(&call(), Some(a)).await.is_err());
    drop(admission.admit(&call(), Some(d)).await.unwrap());
    assert_eq!(admission.tracked_identities(), 3);
    // `b` was forgotten and starts over with a full bucket (making room by evicting `c`,
    // now the least recently used); `a` was kept, still empty.
    drop(admission.admit(&call(), Some(b)).await.unwrap());
    assert!(admission.admit(&call(), Some(a)).await.is_err());
    assert_eq!(admission.tracked_identities(), 3);
}

static FAST: Admission = Admission::new(
    AdmissionConfig::new()
        .max_in_flight(8)
        .calls_per_second(1_000_000)
        .queue(4),
);

#[tokio::test(start_paused = true)]
async fn the_admitted_fast_path_does_not_allocate() {
    let call = call();
    drop(FAST.admit(&call, None).await.unwrap());
    let before = allocations();
    for _ in 0..1_000 {
        let admitted = FAST.admit(&call, None).await.unwrap();
        drop(admitted);
    }
    assert_eq!(allocations() - before, 0);
}
