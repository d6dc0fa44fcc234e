//! Three replicas of `fleet.v1.Checkout` (`examples/src/fleet.rs`), each its own process,
//! sharing one Redis: a caller's call rate holds across them, a rate each replica keeps
//! alone does not, a retried payment is replayed by another replica instead of paying
//! twice, and what happens when Redis goes away and comes back.
//!
//! `cargo run -p tonic-intercept-examples --bin replicas` starts a `redis-server` found on
//! PATH (on a free loopback port), the three replicas (this binary again, with `serve`),
//! drives them, prints a report and stops every process it started, by PID. It exits
//! non-zero at the first result that differs from what the report claims.
//!
//! `replicas serve NAME REDIS_URL` runs one replica on a free loopback port and prints
//! `listening on ADDR`.

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_intercept::backend::{FailurePolicy, RedisGcra, RedisGcraConfig};
use tonic_intercept::idempotency::{RedisIdempotency, RedisIdempotencyConfig};
use tonic_intercept::server::Server;
use tonic_intercept_examples::checkout::checkout_client::CheckoutClient;
use tonic_intercept_examples::checkout::checkout_server::CheckoutServer;
use tonic_intercept_examples::checkout::{
    BrowseRequest, PayRequest, QuoteRequest, Receipt, ReplicaStats, StatsRequest,
};
use tonic_intercept_examples::fleet::Replica;
use tonic_intercept_examples::redis_process::RedisProcess;
use tonic_intercept_examples::{ADA_TOKEN, BOB_TOKEN, demo_tokens};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.as_slice() {
        [serve, name, redis] if serve == "serve" => runtime.block_on(serve_replica(name, redis)),
        [] => runtime.block_on(run_fleet()),
        _ => Err("usage: replicas | replicas serve NAME REDIS_URL".into()),
    }
}

/// One replica: its own `RedisGcra`s (one fail closed, one fail open), on a free port.
async fn serve_replica(name: &str, redis: &str) -> Result<()> {
    let payments = RedisGcra::new(
        redis,
        RedisGcraConfig::new().failure_policy(FailurePolicy::FailClosed),
    )?;
    let quotes = RedisGcra::new(redis, RedisGcraConfig::new())?;
    let receipts = RedisIdempotency::new(redis, RedisIdempotencyConfig::new())?;
    let replica = Replica::new(name, demo_tokens(), payments, quotes, receipts);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    Server::builder()
        .add_service(CheckoutServer::new(replica))
        .serve(listener)
        .await?;
    Ok(())
}

/// What the report says; each line is checked before it is printed.
async fn run_fleet() -> Result<()> {
    let mut redis = RedisProcess::start()?;
    let mut replicas = Vec::new();
    for name in ["r1", "r2", "r3"] {
        replicas.push(ReplicaChild::start(name, &redis.url())?);
    }
    let mut clients = Vec::new();
    for replica in &replicas {
        let channel = Channel::from_shared(format!("http://{}", replica.addr))?
            .connect()
            .await?;
        clients.push(CheckoutClient::new(channel));
    }
    println!(
        "redis-server on 127.0.0.1:{} (pid {}); replicas r1, r2, r3 (pids {})",
        redis.port(),
        redis.pid().unwrap_or_default(),
        replicas
            .iter()
            .map(|r| r.child.id().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 30 calls from ada, round robin over the three replicas, of each RPC.
    let pays = spread(&mut clients, 30, ADA_TOKEN, Rpc::Pay).await;
    expect(
        pays.ok == 5 && pays.exhausted == 25 && pays.pushback_ok,
        format!(
            "Pay: ada sent 30 over 3 replicas: {} OK, {} RESOURCE_EXHAUSTED with grpc-retry-pushback-ms \
             (calls_per_minute_per_identity = 5, shared in Redis)",
            pays.ok, pays.exhausted
        ),
    )?;
    let quotes = spread(&mut clients, 30, ADA_TOKEN, Rpc::Quote).await;
    expect(
        quotes.ok == 5 && quotes.exhausted == 25,
        format!(
            "Quote: the same: {} OK, {} RESOURCE_EXHAUSTED (shared in Redis)",
            quotes.ok, quotes.exhausted
        ),
    )?;
    let browses = spread(&mut clients, 30, ADA_TOKEN, Rpc::Browse).await;
    expect(
        browses.ok == 15 && browses.exhausted == 15,
        format!(
            "Browse: {} OK, {} RESOURCE_EXHAUSTED: each replica keeps its own 5 a minute (local), so 3 replicas admit 3 x 5",
            browses.ok, browses.exhausted
        ),
    )?;
    let bob = spread(&mut clients, 2, BOB_TOKEN, Rpc::Pay).await;
    expect(
        bob.ok == 2,
        "Pay: bob, meanwhile, 2 of 2 OK: his own bucket".to_string(),
    )?;
    let taken = payments(&mut clients).await?;
    expect(
        taken.iter().sum::<u64>() == 7,
        format!("payments taken by r1, r2, r3: {taken:?}, 7 in all (5 of ada's, 2 of bob's)"),
    )?;

    // A payment retried on another replica: replayed from Redis, not paid twice.
    let first = keyed_pay(&mut clients[0], "order-42", 250).await;
    let retry = keyed_pay(&mut clients[1], "order-42", 250).await;
    let other = keyed_pay(&mut clients[2], "order-42", 999).await;
    let after = payments(&mut clients).await?;
    let (first, retry) = match (first, retry) {
        (Ok(first), Ok(retry)) => (first, retry),
        (first, retry) => return Err(format!("✘ keyed payments: {first:?}, {retry:?}").into()),
    };
    expect(
        first.0 == retry.0 && !first.1 && retry.1 && after.iter().sum::<u64>() == 8,
        format!(
            "Pay with idempotency-key order-42 on r1: receipt {}; retried on r2: receipt {}, \
             idempotency-replayed: {}; payments taken {after:?}: one payment",
            first.0.id, retry.0.id, retry.1
        ),
    )?;
    let other = other.err().map(|s| (s.code(), s.message().to_owned()));
    expect(
        other
            .as_ref()
            .is_some_and(|(code, _)| *code == Code::InvalidArgument),
        format!("the same key with another amount on r3: {other:?}"),
    )?;

    // Redis stops answering (the process paused): no call waits past the backend's
    // timeouts (50 ms for an answer, 100 ms in all).
    redis.signal("STOP")?;
    let mut pay = clients[0].clone();
    let slow = call(&mut pay, BOB_TOKEN, Rpc::Pay, 0).await;
    let mut quote = clients[1].clone();
    let slow_quote = call(&mut quote, BOB_TOKEN, Rpc::Quote, 0).await;
    redis.signal("CONT")?;
    let slow = slow.err().map(|s| (s.code(), s.message().to_owned()));
    expect(
        slow.as_ref().is_some_and(|(code, message)| {
            *code == Code::Unavailable && message.contains("did not answer within")
        }) && slow_quote.is_ok(),
        format!("Redis paused (SIGSTOP): bob's Pay on r1 {slow:?}; his Quote on r2 OK, unchecked"),
    )?;

    // Redis goes away: Pay fails closed, Quote fails open, both counted.
    redis.kill();
    let closed = spread(&mut clients, 3, BOB_TOKEN, Rpc::Pay).await;
    let open = spread(&mut clients, 3, BOB_TOKEN, Rpc::Quote).await;
    expect(
        closed.unavailable == 3 && open.ok == 3,
        format!(
            "Redis stopped: bob's Pay {} of 3 UNAVAILABLE (fail closed); his Quote {} of 3 OK, unchecked (fail open)",
            closed.unavailable, open.ok
        ),
    )?;
    let errors = backend_errors(&mut clients).await?;
    expect(
        errors == [(2, 1), (1, 2), (1, 1)],
        format!(
            "grpc_server_limit_backend_errors_total{{backend=\"redis\"}} of r1, r2, r3 as (Pay, Quote): {errors:?}: \
             each decision taken without Redis, counted where it was taken"
        ),
    )?;

    // Redis comes back on its port: the replicas reconnect by themselves.
    redis.restart()?;
    let mut tries = 0;
    let recovered = loop {
        tries += 1;
        let again = spread(&mut clients, 3, BOB_TOKEN, Rpc::Pay).await;
        if again.ok + again.exhausted == 3 || tries == 50 {
            break again;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    expect(
        recovered.ok + recovered.exhausted == 3,
        format!(
            "Redis restarted (empty): bob's Pay decided by Redis again on every replica, without restarting them \
             ({} OK, {} RESOURCE_EXHAUSTED, after {tries} round(s))",
            recovered.ok, recovered.exhausted
        ),
    )?;

    for replica in &mut replicas {
        replica.stop();
    }
    redis.kill();
    println!("all processes stopped");
    Ok(())
}

fn expect(ok: bool, line: String) -> Result<()> {
    if ok {
        println!("✔ {line}");
        Ok(())
    } else {
        Err(format!("✘ {line}").into())
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Pay,
    Quote,
    Browse,
}

#[derive(Default)]
struct Tally {
    ok: u32,
    exhausted: u32,
    unavailable: u32,
    /// Every `RESOURCE_EXHAUSTED` carried a positive `grpc-retry-pushback-ms`.
    pushback_ok: bool,
}

/// `n` calls, the `i`th to replica `i % 3`, tallied by code.
async fn spread(clients: &mut [CheckoutClient<Channel>], n: usize, token: &str, rpc: Rpc) -> Tally {
    let mut tally = Tally {
        pushback_ok: true,
        ..Tally::default()
    };
    for i in 0..n {
        let len = clients.len();
        let client = &mut clients[i % len];
        let code = match call(client, token, rpc, i).await {
            Ok(()) => Code::Ok,
            Err(status) => {
                if status.code() == Code::ResourceExhausted {
                    let pushback = status
                        .metadata()
                        .get("grpc-retry-pushback-ms")
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    tally.pushback_ok &= pushback.is_some_and(|ms| ms > 0);
                }
                status.code()
            }
        };
        match code {
            Code::Ok => tally.ok += 1,
            Code::ResourceExhausted => tally.exhausted += 1,
            Code::Unavailable => tally.unavailable += 1,
            _ => {}
        }
    }
    tally
}

/// A payment of bob's with an `idempotency-key`: the receipt and whether it was replayed.
async fn keyed_pay(
    client: &mut CheckoutClient<Channel>,
    key: &str,
    cents: u64,
) -> Result<(Receipt, bool), Status> {
    let basket = "basket 42".to_string();
    let mut request = authorized(PayRequest { basket, cents }, BOB_TOKEN);
    let key = key.parse().expect("an ASCII key");
    request.metadata_mut().insert("idempotency-key", key);
    let response = client.pay(request).await?;
    let replayed = response.metadata().get("idempotency-replayed").is_some();
    Ok((response.into_inner(), replayed))
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("an ASCII token");
    request.metadata_mut().insert("authorization", value);
    request
}

async fn call(
    client: &mut CheckoutClient<Channel>,
    token: &str,
    rpc: Rpc,
    i: usize,
) -> Result<(), Status> {
    let basket = format!("basket {i}");
    match rpc {
        Rpc::Pay => {
            let cents = 250;
            client
                .pay(authorized(PayRequest { basket, cents }, token))
                .await?;
        }
        Rpc::Quote => {
            client
                .quote(authorized(QuoteRequest { basket }, token))
                .await?;
        }
        Rpc::Browse => {
            client.browse(authorized(BrowseRequest {}, token)).await?;
        }
    }
    Ok(())
}

async fn stats(clients: &mut [CheckoutClient<Channel>]) -> Result<Vec<ReplicaStats>> {
    let mut all = Vec::new();
    for client in clients {
        all.push(client.stats(StatsRequest {}).await?.into_inner());
    }
    Ok(all)
}

async fn payments(clients: &mut [CheckoutClient<Channel>]) -> Result<Vec<u64>> {
    Ok(stats(clients).await?.iter().map(|s| s.payments).collect())
}

/// `(Pay, Quote)` of each replica's `grpc_server_limit_backend_errors_total`.
async fn backend_errors(clients: &mut [CheckoutClient<Channel>]) -> Result<Vec<(u64, u64)>> {
    let series = |metrics: &str, method: &str| {
        let head = format!(
            "grpc_server_limit_backend_errors_total{{grpc_type=\"unary\",grpc_service=\"fleet.v1.Checkout\",grpc_method=\"{method}\",backend=\"redis\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&head)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(stats(clients)
        .await?
        .iter()
        .map(|s| (series(&s.metrics, "Pay"), series(&s.metrics, "Quote")))
        .collect())
}

/// A replica process: this binary with `serve`, stopped by PID.
struct ReplicaChild {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl ReplicaChild {
    fn start(name: &str, redis: &str) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", name, redis])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = match line.trim().strip_prefix("listening on ") {
            Some(addr) => addr.parse()?,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("replica {name} did not start: {line:?}").into());
            }
        };
        Ok(Self {
            child,
            addr,
            _stdout: stdout,
        })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReplicaChild {
    fn drop(&mut self) {
        self.stop();
    }
}
