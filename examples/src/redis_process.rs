//! A `redis-server` from PATH, started on a free loopback port without persistence and
//! stopped by its PID: what the `replicas` example runs its replicas against, and what
//! the workspace's Redis tests start, one per test.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` child process, killed (by PID) when dropped.
#[derive(Debug)]
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
}

impl RedisProcess {
    /// Whether `redis-server` is on PATH.
    pub fn installed() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    }

    /// Starts a server on a free loopback port (up to 10 ports are tried: another
    /// process may take one between the probe and the bind) and waits until it answers
    /// `PING`.
    ///
    /// # Errors
    ///
    /// When `redis-server` is not on PATH or does not start.
    pub fn start() -> io::Result<Self> {
        for _ in 0..10 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            let mut server = RedisProcess { child: None, port };
            if server.spawn()? {
                return Ok(server);
            }
        }
        Err(io::Error::other(
            "could not start redis-server on a free port in 10 tries",
        ))
    }

    /// Spawns `redis-server` on `self.port`; `false` when it exited (the port was taken)
    /// or did not answer within 10 s.
    fn spawn(&mut self) -> io::Result<bool> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("redis-server not found on PATH ({e}); apt-get install redis-server"),
                )
            })?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(child) = self.child.as_mut()
                && child.try_wait()?.is_some()
            {
                self.child = None;
                return Ok(false);
            }
            if self.ping() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Ok(false)
    }

    /// Whether the server answers `PING` with `+PONG` (within 500 ms).
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID; `None` once killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL, by PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a stopped (SIGSTOP) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, after [`kill`](Self::kill) (empty: it
    /// keeps nothing).
    ///
    /// # Errors
    ///
    /// When it does not start within 10 s.
    pub fn restart(&mut self) -> io::Result<()> {
        assert!(self.child.is_none(), "kill it first");
        let until = Instant::now() + Duration::from_secs(10);
        while !self.spawn()? {
            if Instant::now() >= until {
                return Err(io::Error::other(format!(
                    "redis-server did not restart on port {}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Sends `signal` to the server by PID, with `kill(1)`: `STOP` pauses it (it keeps
    /// its sockets and answers nothing), `CONT` resumes it.
    ///
    /// # Errors
    ///
    /// When the server is not running or `kill` fails.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{signal} {pid} failed")))
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
