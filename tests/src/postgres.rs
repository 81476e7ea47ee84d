//! A throwaway PostgreSQL server for the tests that need the real engine:
//! a fresh cluster (`initdb`) in a temporary directory, started on a free
//! loopback port with its unix socket in that directory, one database per
//! test, stopped and removed when dropped.
//!
//! PostgreSQL refuses to run as root, and CI runs the tests as root: then
//! the cluster belongs to the unprivileged `postgres` user (which Debian's
//! `postgresql` package creates) and every PostgreSQL program runs as that
//! user through `setpriv`. The server also dies with the test's thread
//! (`--pdeathsig`), so a test killed outright leaves no server behind.
//!
//! When PostgreSQL is not installed or does not start, the fixture panics
//! with what to install or what the server said: a test on the real engine
//! never passes without it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian (and Ubuntu) install each PostgreSQL major version.
const DEBIAN_BINARIES: &str = "/usr/lib/postgresql";

/// The superuser the fixture's cluster is created with.
pub const SUPERUSER: &str = "tailor";

/// A PostgreSQL server of a test's own; see the module docs.
pub struct Postgres {
    /// The server's loopback port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// The directory holding `initdb` and `postgres`: the newest major version
/// under [`DEBIAN_BINARIES`], else the one on `PATH`.
fn binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_BINARIES)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: no initdb under {DEBIAN_BINARIES}/*/bin or on PATH. \
             Install it with `apt-get install postgresql` (tests/run.sh does)."
        )
    })
}

/// The user and group ids the cluster runs as when the tests run as root.
fn unprivileged_user() -> Option<(u32, u32)> {
    let euid = std::fs::metadata("/proc/self").map_or(1, |m| m.uid());
    if euid != 0 {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(output.stdout).ok()?.trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Some((uid, gid)),
        _ => panic!(
            "the tests run as root, and PostgreSQL refuses to: it runs as the user `postgres`, \
             which does not exist. `apt-get install postgresql` creates it."
        ),
    }
}

/// `program` from `bin` run through `setpriv`: as `user` when given, and
/// killed when the thread that started it ends.
fn command(bin: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new("setpriv");
    if let Some((uid, gid)) = user {
        command.args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
        ]);
    }
    command
        .arg("--pdeathsig=KILL")
        .arg("--")
        .arg(bin.join(program));
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `postgres://tailor@127.0.0.1:<port>/<database>`.
fn url(port: u16, database: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{database}")
}

/// Whether the server accepts connections within `limit` (false at once
/// when it exited).
async fn ready(child: &mut Child, port: u16, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if tokio_postgres::connect(&url(port, "postgres"), tokio_postgres::NoTls)
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

impl Postgres {
    /// Creates a cluster and starts it; panics with the reason when it
    /// cannot.
    pub async fn start() -> Postgres {
        let bin = binaries();
        let user = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("tailor-postgres-")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let initdb = command(&bin, "initdb", user)
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", SUPERUSER, "--auth=trust", "--encoding=UTF8"])
            .args(["--no-locale", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running initdb through setpriv failed: {e}"));
        assert!(
            initdb.status.success(),
            "initdb ({}) failed: {}",
            bin.display(),
            String::from_utf8_lossy(&initdb.stderr)
        );
        // A port picked free may be taken before the server binds it.
        let log = dir.path().join("server.log");
        for _ in 0..3 {
            let port = free_port();
            let mut child = command(&bin, "postgres", user)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                // A throwaway cluster: nothing to keep through a crash.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting postgres through setpriv failed: {e}"));
            if ready(&mut child, port, Duration::from_secs(30)).await {
                return Postgres { port, dir, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "PostgreSQL ({}) did not start: {}",
            bin.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The URL of `database` on this server, as `--database-url` takes it.
    pub fn url(&self, database: &str) -> String {
        url(self.port, database)
    }

    /// Creates the database `name` and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        self.client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(name)
    }

    /// A connection to `database`, for a test to look at the tables.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Runs as the postgres user when the tests run as root: the child
        // is setpriv's exec of postgres, so the signal reaches the server.
        // SIGQUIT: immediate shutdown, nothing here is worth keeping.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
