//! Out of file descriptors: the accept loop backs off instead of spinning, and serves new
//! clients once descriptors are free again.
//!
//! This binary holds this one test only: it lowers the process's `RLIMIT_NOFILE`, which
//! would starve any test running next to it.

mod common_serve;

use std::time::Duration;

use common_serve::*;
use tonic_intercept::server::Server;

fn rlimit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

fn set_rlimit(limit: libc::rlimit) {
    // SAFETY: setrlimit reads the struct we own; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_backs_off_on_emfile_and_recovers() {
    let server = start(Server::builder().handshake_timeout(Duration::from_secs(60))).await;
    let original = rlimit();
    set_rlimit(libc::rlimit {
        rlim_cur: (open_fds() + 40) as libc::rlim_t,
        ..original
    });

    // Connect until this process has no descriptor left: each accepted connection costs
    // two (both ends), the rest wait in the backlog where accept fails with EMFILE.
    let mut clients = Vec::new();
    let mut exhausted = false;
    for _ in 0..200 {
        match std::net::TcpStream::connect(server.addr) {
            Ok(stream) => clients.push(stream),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                exhausted = true;
                break;
            }
            Err(e) => panic!("connect: {e}"),
        }
    }
    assert!(exhausted, "the descriptor limit was reached");
    // Free one descriptor and take it with a new client, whose connection then waits in
    // the backlog while the server's accept fails with EMFILE.
    // The server shares this process's descriptor table: when its backed-off accept
    // wakes first, it takes the freed descriptor for a connection already in its
    // backlog, and the connect below fails with EMFILE. Free another then (at most 10).
    let mut freed = 0;
    let waiting = loop {
        clients.pop();
        freed += 1;
        match std::net::TcpStream::connect(server.addr) {
            Ok(stream) => break stream,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) && freed < 10 => continue,
            Err(e) => panic!("connect after freeing {freed} descriptors: {e}"),
        }
    };
    clients.push(waiting);

    // Out of descriptors for a second: a spinning accept loop would burn about a second
    // of CPU; backing off (5 ms doubling to 1 s) costs a handful of failed accepts.
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_time() - before;
    assert!(
        spent < Duration::from_millis(400),
        "{spent:?} of CPU in 1 s"
    );

    drop(clients);
    set_rlimit(original);
    victim_is_served(server.addr).await;
    server.stop().await;
}
