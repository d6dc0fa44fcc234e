//! A `redis-server` of the test's own, on a free loopback port, stopped by PID on drop.
//!
//! When `redis-server` is not on PATH, [`RedisServer::start`] prints why and returns `None`
//! (the test skips), unless `TONIC_INTERCEPT_REQUIRE_REDIS=1` (CI), where it panics.
// Each test file uses the part it needs.
#![allow(dead_code)]

use tonic_intercept_examples::redis_process::RedisProcess;

/// One `redis-server` child process of the test's own.
pub(crate) struct RedisServer(RedisProcess);

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`; `None`
    /// (the test skips, saying why) when `redis-server` is not on PATH, unless CI
    /// requires it.
    pub(crate) fn start(test: &str) -> Option<Self> {
        if !RedisProcess::installed() {
            if std::env::var("TONIC_INTERCEPT_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("{test}: redis-server is not on PATH and TONIC_INTERCEPT_REQUIRE_REDIS=1");
            }
            eprintln!(
                "SKIPPED {test}: redis-server is not on PATH (apt-get install redis-server); \
                 set TONIC_INTERCEPT_REQUIRE_REDIS=1 to make this a failure"
            );
            return None;
        }
        match RedisProcess::start() {
            Ok(process) => Some(RedisServer(process)),
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub(crate) fn url(&self) -> String {
        self.0.url()
    }

    /// Kills the server (SIGKILL on the PID this helper spawned) and reaps it.
    pub(crate) fn kill(&mut self) {
        self.0.kill();
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)).
    pub(crate) fn restart(&mut self) {
        self.0.restart().unwrap();
    }

    /// Stops the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub(crate) fn pause(&self) {
        self.0.signal("STOP").unwrap();
    }

    /// Resumes a paused process (SIGCONT).
    pub(crate) fn resume(&self) {
        self.0.signal("CONT").unwrap();
    }

    /// `calls` of `cmdstat_<command>` in `INFO commandstats` (0 when never called).
    pub(crate) fn command_calls(&self, command: &str) -> u64 {
        let mut connection = redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut connection)
            .unwrap();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
            .unwrap_or(0)
    }
}
