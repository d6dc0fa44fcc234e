//! `bench serve | load | callgrind | allocations | wallclock | client-load |
//! client-callgrind | client-allocations`: see BENCHMARKS.md.
//!
//! Instructions come from callgrind, by the difference of two runs of the server with
//! different call (or message) counts, so start-up and shutdown cancel out. Allocations
//! come from the counting allocator below, the same way. The `client-*` commands measure
//! the other side the same way: the load generator under callgrind, against a `bare`
//! server running natively. Wall-clock figures interleave
//! the variants (A B A B ...) and report ratios to bare tonic with their spread.
//!
//! The variants that keep a call rate in Redis get a `redis-server` of the command's own
//! (`RedisProcess`), started from PATH on a free loopback port, not measured, and
//! stopped at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;
use tonic_intercept::prometheus_client::registry::Registry;
use tonic_intercept_bench::{
    ClientVariant, Handled, Load, Variant, Workload, run_client_load, run_load, serve_with_redis,
};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const USAGE: &str = "usage:
  bench serve --variant V [--addr 127.0.0.1:0] [--redis redis://127.0.0.1:PORT/]
  bench load --addr A --workload W [--calls N] [--messages M] [--size B] [--concurrency C]
  bench callgrind [--out target/bench] [--variants a,b] [--workloads w,x]  (needs valgrind; --profile bench-lto)
  bench allocations [--variants a,b] [--workloads w,x]   (heap allocations and bytes, no valgrind)
  bench wallclock [--rounds R] [--calls N] [--concurrency C] [--variants a,b]   (build with --profile bench-lto)
  bench client-load --addr A --client C [--calls N]   (one client process, current-thread)
  bench client-callgrind [--out target/bench] [--clients a,b]   (the client measured; needs valgrind)
  bench client-allocations [--clients a,b]    (the client's allocations and bytes, no valgrind)
clients: tonic tonic-deadline intercept-new intercept-no-ids intercept-config
variants: bare interceptor tower tower-full intercept-none intercept-auth intercept-full intercept-full-edge bare-hardened intercept-full-hardened intercept-hooks intercept-suite intercept-shared intercept-shared-denied
(intercept-shared*: a redis-server from PATH is started for them, unless `serve --redis` names one)
workloads: unary server-stream client-stream bidi no-token oversize";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => cmd_serve(&args[1..]),
        Some("load") => cmd_load(&args[1..]),
        Some("callgrind") => cmd_callgrind(&args[1..]),
        Some("allocations") => cmd_allocations(&args[1..]),
        Some("wallclock") => cmd_wallclock(&args[1..]),
        Some("client-load") => cmd_client_load(&args[1..]),
        Some("client-callgrind") => cmd_client_measure(&args[1..], true),
        Some("client-allocations") => cmd_client_measure(&args[1..], false),
        _ => Err(USAGE.to_string()),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(2);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn parsed<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match flag(args, name) {
        Some(v) => v.parse().map_err(|_| format!("bad value for {name}: {v}")),
        None => Ok(default),
    }
}

/// The server, on one thread so that a run under callgrind is deterministic. Prints
/// `listening on ADDR`, serves until SIGINT, then prints what it handled and allocated
/// (and, for the Redis variants, its round trips to Redis and the decisions taken
/// without it). A Redis variant without `--redis` starts a Redis of its own.
fn cmd_serve(args: &[String]) -> Result<(), String> {
    let variant: Variant = flag(args, "--variant").ok_or(USAGE)?.parse()?;
    let addr: SocketAddr = parsed(args, "--addr", "127.0.0.1:0".parse().unwrap())?;
    let own_redis = match flag(args, "--redis") {
        None if variant.redis() => redis_for(&[variant])?,
        _ => None,
    };
    let redis = flag(args, "--redis")
        .map(str::to_string)
        .or_else(|| own_redis.as_ref().map(RedisProcess::url));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let handled = Arc::new(Handled::default());
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "listening on {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        std::io::stdout().flush().ok();
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve_with_redis(variant, listener, handled.clone(), redis, shutdown)
            .await
            .map_err(|e| e.to_string())
    })?;
    println!(
        "handled calls={} messages_in={} allocations={} allocated_bytes={} round_trips={} backend_errors={}",
        handled.calls.load(Ordering::Relaxed),
        handled.messages_in.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
        handled.round_trips(),
        handled.backend_errors(),
    );
    drop(own_redis);
    Ok(())
}

/// `redis_process::RedisProcess`, shared with the examples crate by its file rather than
/// by a dependency: depending on the examples crate here would turn on the runtime's
/// `opentelemetry` feature in the measured binary.
#[path = "../../examples/src/redis_process.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_process;

use redis_process::RedisProcess;

/// A Redis for `variants` when one of them needs it.
fn redis_for(variants: &[Variant]) -> Result<Option<RedisProcess>, String> {
    if !variants.iter().any(|v| v.redis()) {
        return Ok(None);
    }
    RedisProcess::start().map(Some).map_err(|e| {
        format!("the intercept-shared variants need a redis-server ({e}); or leave them out with --variants")
    })
}

fn load_from(args: &[String]) -> Result<Load, String> {
    Ok(Load {
        workload: flag(args, "--workload").unwrap_or("unary").parse()?,
        calls: parsed(args, "--calls", 1000)?,
        messages: parsed(args, "--messages", 100)?,
        size: parsed(args, "--size", 16)?,
        concurrency: parsed(args, "--concurrency", 1)?,
    })
}

fn cmd_load(args: &[String]) -> Result<(), String> {
    let addr: SocketAddr = flag(args, "--addr")
        .ok_or(USAGE)?
        .parse()
        .map_err(|_| "bad --addr")?;
    let load = load_from(args)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let report = runtime.block_on(run_load(addr, load));
    println!(
        "{} calls in {:.3}s: {:?}; {} messages received; p50 {:?} p99 {:?} p99.9 {:?}",
        load.calls,
        report.elapsed.as_secs_f64(),
        report.statuses,
        report.messages,
        report.quantile(0.5),
        report.quantile(0.99),
        report.quantile(0.999),
    );
    Ok(())
}

/// A server process of ours, maybe under valgrind.
struct Server {
    child: Child,
    addr: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
}

/// What a server said as it stopped.
#[derive(Debug, Clone, Copy)]
struct Stopped {
    /// Handler invocations.
    calls: u64,
    allocations: u64,
    allocated_bytes: u64,
    /// Round trips to Redis after the server's warm-up.
    round_trips: u64,
    /// Decisions the Redis backend took without Redis.
    backend_errors: u64,
}

impl Server {
    /// Starts the server of `variant`; the Redis variants keep their rates in the Redis
    /// at `redis`.
    fn start(
        variant: Variant,
        valgrind_out: Option<&PathBuf>,
        redis: Option<&RedisProcess>,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = match valgrind_out {
            Some(out) => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out.display()))
                    .arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        command.args(["serve", "--variant", variant.name()]);
        if variant.redis() {
            let redis = redis.ok_or_else(|| format!("{}: no Redis started", variant.name()))?;
            command.args(["--redis", &redis.url()]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the server (is valgrind installed?): {e}"))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
        Ok(Self {
            child,
            addr,
            stdout,
        })
    }

    /// SIGINT, then the server's closing line.
    fn stop(mut self) -> Result<Stopped, String> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        self.child.wait().map_err(|e| e.to_string())?;
        let field = |name: &str| -> Result<u64, String> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no {name} in {line:?}"))
        };
        Ok(Stopped {
            calls: field("calls")?,
            allocations: field("allocations")?,
            allocated_bytes: field("allocated_bytes")?,
            round_trips: field("round_trips")?,
            backend_errors: field("backend_errors")?,
        })
    }
}

/// Ir (instructions executed) from a callgrind output file.
fn instructions(out: &PathBuf) -> Result<u64, String> {
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no summary in {}", out.display()))
}

/// Instructions spent inside glibc's allocator (`malloc`, `free` and their internals),
/// from `callgrind_annotate`'s per-function totals.
///
/// Its cost per call varies with the heap's layout by a few hundred instructions between
/// processes making the same allocations, more than many differences between variants,
/// so `callgrind` reports it beside the total: the instructions outside it repeat within
/// a few tens per call.
fn allocator_instructions(out: &PathBuf) -> Result<u64, String> {
    const ALLOCATOR: [&str; 8] = [
        "malloc",
        "free",
        "realloc",
        "calloc",
        "posix_memalign",
        "memalign",
        "cfree",
        "sysmalloc",
    ];
    let output = Command::new("callgrind_annotate")
        .args(["--inclusive=no", "--threshold=100"])
        .arg(out)
        .output()
        .map_err(|e| format!("cannot run callgrind_annotate: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "callgrind_annotate {}: {}",
            out.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut total = 0;
    // Lines read `1,234 (0.01%)  ./malloc/./malloc/malloc.c:_int_free [/usr/lib/.../libc.so.6]`.
    for line in text.lines() {
        let Some((count, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((function, object)) = rest.rsplit_once(" [") else {
            continue;
        };
        if !object.contains("libc.so") {
            continue;
        }
        let (file, name) = function.rsplit_once(':').unwrap_or(("", function));
        let name = name.trim();
        let internal = name.starts_with("_int_")
            || name.starts_with("_mid_memalign")
            || name.starts_with("malloc_")
            || name.starts_with("unlink_chunk")
            || name.starts_with("systrim")
            || name.starts_with("alloc_perturb")
            || name.starts_with("tcache_");
        if file.contains("/malloc/") || internal || ALLOCATOR.contains(&name) {
            total += count;
        }
    }
    Ok(total)
}

/// One server run under callgrind.
#[derive(Debug, Clone, Copy)]
struct Measured {
    instructions: u64,
    /// Of which inside the allocator.
    allocator: u64,
    allocations: u64,
}

/// One measured server run: instructions and allocations for `load`.
fn measure(
    runtime: &tokio::runtime::Runtime,
    variant: Variant,
    load: Load,
    dir: &std::path::Path,
    redis: Option<&RedisProcess>,
) -> Result<Measured, String> {
    let out = dir.join(format!(
        "callgrind.{}.{}.{}x{}",
        variant.name(),
        load.workload.name(),
        load.calls,
        load.messages
    ));
    let server = Server::start(variant, Some(&out), redis)?;
    let report = runtime.block_on(run_load(server.addr, load));
    let expected = load.workload.expected(variant);
    let stopped = server.stop()?;
    check_redis(variant, load, &stopped)?;
    let (handled, allocations) = (stopped.calls, stopped.allocations);
    // A run of rejected calls must not pass as a fast run.
    if report.count(expected) != load.calls {
        return Err(format!(
            "{} {}: expected {} x {expected:?}, got {:?}",
            variant.name(),
            load.workload.name(),
            load.calls,
            report.statuses
        ));
    }
    let expected_handled = if expected == Code::Ok { load.calls } else { 0 };
    if handled != expected_handled {
        return Err(format!(
            "{} {}: the server handled {handled} calls, expected {expected_handled}",
            variant.name(),
            load.workload.name()
        ));
    }
    Ok(Measured {
        instructions: instructions(&out)?,
        allocator: allocator_instructions(&out)?,
        allocations,
    })
}

/// A Redis variant's run made exactly the round trips its workload must (one per call
/// the shared rate admitted, none for a refusal from the deny cache), and Redis never
/// failed it: a run served by the failure policy (fail open) would measure no round trip.
fn check_redis(variant: Variant, load: Load, stopped: &Stopped) -> Result<(), String> {
    let round_trips = load.workload.round_trips(variant) * load.calls;
    if stopped.backend_errors != 0 || stopped.round_trips != round_trips {
        return Err(format!(
            "{} {}: {} round trips to Redis and {} decisions without it, expected {round_trips} and 0",
            variant.name(),
            load.workload.name(),
            stopped.round_trips,
            stopped.backend_errors
        ));
    }
    Ok(())
}

/// Per-unit cost by the difference of two runs.
struct Cost {
    instructions: f64,
    /// Of which inside the allocator.
    allocator: f64,
    allocations: f64,
}

fn cost(a: Measured, b: Measured, units: f64) -> Cost {
    let per = |x: u64, y: u64| (y as f64 - x as f64) / units;
    Cost {
        instructions: per(a.instructions, b.instructions),
        allocator: per(a.allocator, b.allocator),
        allocations: per(a.allocations, b.allocations),
    }
}

fn cmd_callgrind(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(flag(args, "--out").unwrap_or("target/bench"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let (calls1, calls2) = (200, 1200);
    let (msgs1, msgs2, stream_calls) = (100, 1100, 20);
    let base = |workload, calls, messages| Load {
        workload,
        calls,
        messages,
        size: 16,
        concurrency: 1,
    };
    let variants: Vec<Variant> = match flag(args, "--variants") {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Variant::ALL.to_vec(),
    };
    let workloads: Vec<Workload> = match flag(args, "--workloads") {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Workload::ALL.to_vec(),
    };
    let redis = redis_for(&variants)?;
    let redis = redis.as_ref();
    let mut rows = Vec::new();
    for variant in variants {
        let mut row = vec![variant.name().to_string()];
        for &workload in &workloads {
            let c = match workload {
                Workload::Unary | Workload::NoToken | Workload::Oversize => {
                    let a = measure(&runtime, variant, base(workload, calls1, 1), &dir, redis)?;
                    let b = measure(&runtime, variant, base(workload, calls2, 1), &dir, redis)?;
                    cost(a, b, (calls2 - calls1) as f64)
                }
                _ => {
                    let (a, b) = (
                        base(workload, stream_calls, msgs1),
                        base(workload, stream_calls, msgs2),
                    );
                    let a = measure(&runtime, variant, a, &dir, redis)?;
                    let b = measure(&runtime, variant, b, &dir, redis)?;
                    cost(a, b, (stream_calls * u64::from(msgs2 - msgs1)) as f64)
                }
            };
            eprintln!(
                "{:<23} {:<14} {:>9.0} instructions ({:>6.0} outside the allocator) {:>6.2} allocations",
                variant.name(),
                workload.name(),
                c.instructions,
                c.instructions - c.allocator,
                c.allocations
            );
            row.push(format!(
                "{:.0} ({:.0}) / {:.2}",
                c.instructions,
                c.instructions - c.allocator,
                c.allocations
            ));
        }
        rows.push(row);
    }
    let per = |w: &Workload| match w {
        Workload::Unary | Workload::NoToken | Workload::Oversize => "per call",
        Workload::ServerStream | Workload::ClientStream => "per msg",
        Workload::Bidi => "per round trip",
    };
    let mut table = format!(
        "Server instructions (of which outside glibc's allocator) / heap allocations, \
         by the difference of two runs.\n\n| variant | {} |\n|---|{}\n",
        workloads
            .iter()
            .map(|w| format!("{} ({})", w.name(), per(w)))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(workloads.len())
    );
    for row in rows {
        table.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    println!("{table}");
    std::fs::write(dir.join("callgrind.md"), &table).map_err(|e| e.to_string())?;
    Ok(())
}

/// Heap allocations and bytes per call and per message, by the same difference of two
/// runs as `callgrind`, without valgrind: the counting allocator is exact natively.
fn cmd_allocations(args: &[String]) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let variants: Vec<Variant> = match flag(args, "--variants") {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Variant::ALL.to_vec(),
    };
    let workloads: Vec<Workload> = match flag(args, "--workloads") {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Workload::ALL.to_vec(),
    };
    let redis = redis_for(&variants)?;
    let run = |variant: Variant, load: Load| -> Result<(u64, u64), String> {
        let server = Server::start(variant, None, redis.as_ref())?;
        let report = runtime.block_on(run_load(server.addr, load));
        let stopped = server.stop()?;
        check_redis(variant, load, &stopped)?;
        let (allocations, bytes) = (stopped.allocations, stopped.allocated_bytes);
        let expected = load.workload.expected(variant);
        if report.count(expected) != load.calls {
            return Err(format!(
                "{} {}: {:?}",
                variant.name(),
                load.workload.name(),
                report.statuses
            ));
        }
        Ok((allocations, bytes))
    };
    let base = |workload, calls, messages| Load {
        workload,
        calls,
        messages,
        size: 16,
        concurrency: 1,
    };
    let per = |w: &Workload| match w {
        Workload::Unary | Workload::NoToken | Workload::Oversize => "per call",
        Workload::ServerStream | Workload::ClientStream => "per msg",
        Workload::Bidi => "per round trip",
    };
    let mut table = format!(
        "| variant | {} |\n|---|{}\n",
        workloads
            .iter()
            .map(|w| format!("{} ({})", w.name(), per(w)))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(workloads.len())
    );
    for variant in variants {
        let mut row = vec![variant.name().to_string()];
        for &workload in &workloads {
            let (a, b, units) = match workload {
                Workload::Unary | Workload::NoToken | Workload::Oversize => (
                    run(variant, base(workload, 200, 1))?,
                    run(variant, base(workload, 1200, 1))?,
                    1000.0,
                ),
                _ => (
                    run(variant, base(workload, 20, 100))?,
                    run(variant, base(workload, 20, 1100))?,
                    20_000.0,
                ),
            };
            let per = |x: u64, y: u64| (y as f64 - x as f64) / units;
            row.push(format!("{:.2} / {:.0} B", per(a.0, b.0), per(a.1, b.1)));
        }
        eprintln!("{}", row.join("  "));
        table.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    println!("{table}");
    Ok(())
}

/// Calls per second, latency quantiles and streamed messages per second, the variants
/// interleaved round by round; `bare` always runs first in each round, as the reference
/// of the ratios. `--concurrency` sets the concurrent unary callers (32): with 1, the
/// quantiles are one call's latency, without queueing behind the others.
fn cmd_wallclock(args: &[String]) -> Result<(), String> {
    let rounds: usize = parsed(args, "--rounds", 3)?;
    let calls: u64 = parsed(args, "--calls", 20_000)?;
    let concurrency: usize = parsed(args, "--concurrency", 32)?;
    let mut variants: Vec<Variant> = match flag(args, "--variants") {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Variant::ALL.to_vec(),
    };
    variants.retain(|v| *v != Variant::Bare);
    variants.insert(0, Variant::Bare);
    let redis = redis_for(&variants)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let load = Load {
        workload: Workload::Unary,
        calls,
        messages: 1,
        size: 16,
        concurrency,
    };
    let stream_load = Load {
        workload: Workload::ServerStream,
        calls: 200,
        messages: 1_000,
        size: 16,
        concurrency: 8,
    };
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        for (i, &variant) in variants.iter().enumerate() {
            let server = Server::start(variant, None, redis.as_ref())?;
            let unary = runtime.block_on(run_load(server.addr, load));
            let stream = runtime.block_on(run_load(server.addr, stream_load));
            let stopped = server.stop()?;
            check_redis(variant, load, &stopped)?;
            let expected = load.workload.expected(variant);
            if unary.count(expected) != calls || stream.count(Code::Ok) != stream_load.calls {
                return Err(format!(
                    "{}: not every call ended {expected:?}: {:?} {:?}",
                    variant.name(),
                    unary.statuses,
                    stream.statuses
                ));
            }
            let sample = Sample {
                calls_per_second: calls as f64 / unary.elapsed.as_secs_f64(),
                p50: unary.quantile(0.5),
                p99: unary.quantile(0.99),
                p999: unary.quantile(0.999),
                messages_per_second: stream.messages as f64 / stream.elapsed.as_secs_f64(),
            };
            eprintln!("round {round} {:<23} {sample:?}", variant.name());
            results[i].push(sample);
        }
    }
    let mut table = String::from(
        "| variant | unary calls/s (× bare, min–max) | p50 | p99 | p99.9 | server-stream msgs/s (× bare, min–max) |\n|---|---|---|---|---|---|\n",
    );
    for (i, variant) in variants.iter().enumerate() {
        let samples = &results[i];
        let bare = &results[0];
        table.push_str(&format!(
            "| {} | {:.0} ({}) | {:?} | {:?} | {:?} | {:.0} ({}) |\n",
            variant.name(),
            mean(samples, |s| s.calls_per_second),
            ratio(samples, bare, |s| s.calls_per_second),
            median(samples, |s| s.p50),
            median(samples, |s| s.p99),
            median(samples, |s| s.p999),
            mean(samples, |s| s.messages_per_second),
            ratio(samples, bare, |s| s.messages_per_second),
        ));
    }
    println!("{table}");
    Ok(())
}

/// One variant's wall-clock figures in one round.
#[derive(Debug, Clone)]
struct Sample {
    calls_per_second: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    messages_per_second: f64,
}

fn mean(samples: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    samples.iter().map(f).sum::<f64>() / samples.len() as f64
}

fn median(samples: &[Sample], f: fn(&Sample) -> Duration) -> Duration {
    let mut d: Vec<Duration> = samples.iter().map(f).collect();
    d.sort();
    d[d.len() / 2]
}

/// The mean ratio to bare tonic over the rounds (each round's variant against the same
/// round's bare run, as they were interleaved), with its min and max.
fn ratio(samples: &[Sample], bare: &[Sample], f: fn(&Sample) -> f64) -> String {
    let ratios: Vec<f64> = samples.iter().zip(bare).map(|(a, b)| f(a) / f(b)).collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let (min, max) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    format!("{mean:.3}, {min:.3}–{max:.3}")
}

/// One client process: `calls` sequential unary calls against the server at `--addr`, on
/// tokio's current-thread runtime so that a run under callgrind is deterministic. Prints
/// what came back and what it allocated.
fn cmd_client_load(args: &[String]) -> Result<(), String> {
    let addr: SocketAddr = flag(args, "--addr")
        .ok_or(USAGE)?
        .parse()
        .map_err(|_| "bad --addr")?;
    let variant: ClientVariant = flag(args, "--client").ok_or(USAGE)?.parse()?;
    let calls: u64 = parsed(args, "--calls", 1000)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut registry = Registry::default();
    let report = runtime.block_on(run_client_load(addr, variant, calls, &mut registry));
    drop(runtime);
    println!(
        "client ok={} statuses={:?} allocations={} allocated_bytes={}",
        report.count(Code::Ok),
        report.statuses,
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    Ok(())
}

/// One measured client run (maybe under callgrind): instructions (0 without valgrind),
/// allocations and bytes.
fn measure_client(
    addr: SocketAddr,
    variant: ClientVariant,
    calls: u64,
    dir: &std::path::Path,
    valgrind: bool,
) -> Result<(Measured, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = dir.join(format!("callgrind.client.{}.{calls}", variant.name()));
    let mut command = match valgrind {
        true => {
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe);
            c
        }
        false => Command::new(&exe),
    };
    let output = command
        .args(["client-load", "--addr", &addr.to_string()])
        .args(["--client", variant.name(), "--calls", &calls.to_string()])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the client (is valgrind installed?): {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("client "))
        .ok_or_else(|| format!("{}: no report from the client: {stdout:?}", variant.name()))?;
    let field = |name: &str| -> Result<u64, String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in {line:?}"))
    };
    // A run of failed calls must not pass as a fast run.
    if field("ok")? != calls {
        return Err(format!(
            "{}: expected {calls} OK calls: {line}",
            variant.name()
        ));
    }
    let (instructions, allocator) = match valgrind {
        true => (instructions(&out)?, allocator_instructions(&out)?),
        false => (0, 0),
    };
    Ok((
        Measured {
            instructions,
            allocator,
            allocations: field("allocations")?,
        },
        field("allocated_bytes")?,
    ))
}

/// The client side: instructions (under callgrind) or allocations and bytes per unary
/// call in the client process, by the difference of two client runs of 200 and 1,200
/// calls against one `bare` server running natively.
fn cmd_client_measure(args: &[String], valgrind: bool) -> Result<(), String> {
    let dir = PathBuf::from(flag(args, "--out").unwrap_or("target/bench"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let clients: Vec<ClientVariant> = match flag(args, "--clients") {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => ClientVariant::ALL.to_vec(),
    };
    let (calls1, calls2) = (200, 1200);
    let server = Server::start(Variant::Bare, None, None)?;
    let mut table = match valgrind {
        true => String::from(
            "Client instructions per unary call (of which outside glibc's allocator) / heap \
             allocations / bytes, by the difference of two client runs.\n\n\
             | client | instructions | outside the allocator | allocations | bytes |\n|---|---|---|---|---|\n",
        ),
        false => String::from("| client | allocations | bytes |\n|---|---|---|\n"),
    };
    let mut expected_handled = 0;
    for variant in clients {
        let (a, a_bytes) = measure_client(server.addr, variant, calls1, &dir, valgrind)?;
        let (b, b_bytes) = measure_client(server.addr, variant, calls2, &dir, valgrind)?;
        expected_handled += calls1 + calls2;
        let units = (calls2 - calls1) as f64;
        let c = cost(a, b, units);
        let bytes = (b_bytes as f64 - a_bytes as f64) / units;
        eprintln!(
            "{:<17} {:>9.0} instructions ({:>6.0} outside the allocator) {:>6.2} allocations {:>7.0} B",
            variant.name(),
            c.instructions,
            c.instructions - c.allocator,
            c.allocations,
            bytes,
        );
        match valgrind {
            true => table.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.0} |\n",
                variant.name(),
                c.instructions,
                c.instructions - c.allocator,
                c.allocations,
                bytes
            )),
            false => table.push_str(&format!(
                "| {} | {:.2} | {:.0} |\n",
                variant.name(),
                c.allocations,
                bytes
            )),
        }
    }
    let handled = server.stop()?.calls;
    if handled != expected_handled {
        return Err(format!(
            "the server handled {handled} calls, expected {expected_handled}"
        ));
    }
    println!("{table}");
    if valgrind {
        std::fs::write(dir.join("client-callgrind.md"), &table).map_err(|e| e.to_string())?;
    }
    Ok(())
}
