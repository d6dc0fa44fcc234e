//! The stream wrappers allocate nothing per message: counted with a global allocator,
//! exactly, on a stream with every per-message policy on (count, size, pacing, hooks,
//! panic recovery).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::pin;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use tonic_intercept::__private::Guard;
use tonic_intercept::limits::OnRateExceeded;
use tonic_intercept::{Call, CallOutcome, Hook, Hooks, Limits};

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

#[derive(Clone, PartialEq, prost::Message)]
pub struct Tick {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
}

tonic_intercept::__doc_rpc!(
    Ticks,
    "bench.v1.Ticker",
    "Ticks",
    ServerStreaming,
    Tick,
    Tick
);

#[derive(Clone, Default)]
struct SumSeq(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Hook<Ticks> for SumSeq {
    fn on_response(&self, _: &Call, tick: &Tick) -> Result<(), Status> {
        self.0
            .fetch_add(tick.seq, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn on_finish(&self, _: &Call, outcome: &CallOutcome) {
        assert_eq!(outcome.messages_out, 2_000);
    }
}

/// What `#[intercept]` generates for `hook(SumSeq, Ticks)`.
#[derive(Clone)]
struct TicksHooks(SumSeq);

impl Hooks<Ticks> for TicksHooks {
    fn on_request(&self, call: &Call, message: &Tick) -> Result<(), Status> {
        self.0.on_request(call, message)
    }
    fn on_response(&self, call: &Call, message: &Tick) -> Result<(), Status> {
        self.0.on_response(call, message)
    }
    fn on_finish(&self, call: &Call, outcome: &CallOutcome) {
        self.0.on_finish(call, outcome)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn outbound_allocates_nothing_per_message() {
    const N: u64 = 2_000;
    let limits = Limits::new()
        .max_messages_out(N)
        .max_message_bytes(64)
        // 100 µs apart with a burst of 1: the warm-up below surely waits once, which
        // boxes the pacing timer (once per stream); every later wait reuses it.
        .messages_per_second_out(10_000, 1, OnRateExceeded::Delay);
    let hook = SumSeq::default();
    // With `recover` on: catching panics per poll allocates nothing either.
    let mut guard =
        Guard::<Ticks, TicksHooks>::new(&Request::new(()), limits, TicksHooks(hook.clone()), true);
    let source = tokio_stream::iter((1..=N).map(|seq| Ok(Tick { seq })));
    let response = guard
        .server_streaming(async move { Ok::<_, Status>(Response::new(source)) })
        .await
        .unwrap();
    let mut stream = pin!(response.into_inner());

    // Warm up: the first messages arm the pacing timer once for the whole stream.
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    let before = allocations();
    let mut received = 10;
    while let Some(tick) = stream.next().await {
        assert_eq!(tick.unwrap().seq, received + 1);
        received += 1;
    }
    let after = allocations();

    assert_eq!(received, N);
    assert_eq!(
        hook.0.load(std::sync::atomic::Ordering::Relaxed),
        N * (N + 1) / 2
    );
    assert_eq!(
        after - before,
        0,
        "allocations while streaming {} messages",
        N - 10
    );
}
