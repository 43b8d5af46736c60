//! The throwaway cluster: finding the binaries, `initdb`, start, and the
//! watchdog that removes everything when the process ends.
//!
//! Everything here is blocking; [`crate::server`] runs [`start`] on tokio's
//! blocking pool.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::TestDbError;

/// How many ports to try when another process grabs the chosen one between
/// probing and binding.
const START_ATTEMPTS: usize = 3;

/// Lines of the server log quoted in a start error.
const LOG_TAIL_LINES: usize = 30;

/// Settings appended to `postgresql.conf` (the port is given on the command
/// line, the socket directory is added by [`write_config`]).
const SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
wal_level = logical
shared_preload_libraries = 'pg_stat_statements'
fsync = off
max_connections = 300
max_wal_senders = 64
max_replication_slots = 64
";

/// The watchdog: `sh -c WATCHDOG rowsync-testdb-watchdog ROOT DATA BINDIR`.
///
/// Its standard input is a pipe whose only writer is the test process (std
/// opens it close-on-exec, so no other child inherits it). `read` sees end of
/// file once the test process is gone however it ended (normal exit, panic,
/// SIGKILL); then the server is stopped and the directory removed. It runs
/// in its own process group so a Ctrl-C aimed at the tests does not kill it,
/// and as the cluster's owner so that `pg_ctl` (which refuses root) works.
const WATCHDOG: &str = r#"trap '' HUP INT
while read -r _; do :; done
if [ -f "$2/postmaster.pid" ]; then
  "$3/pg_ctl" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1
fi
rm -rf "$1"
"#;

/// A running throwaway cluster. Dropping it (it normally lives in a static,
/// so it is never dropped) or ending the process stops and removes it.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// The temporary directory holding data, socket and log.
    pub(crate) root: PathBuf,
    /// TCP port on 127.0.0.1.
    pub(crate) port: u16,
    /// The server binaries.
    bindir: PathBuf,
    /// The OS user running the server (when the tests run as root).
    user: Option<OsUser>,
    /// Write end of the watchdog's pipe; closing it triggers the clean-up.
    _watchdog: ChildStdin,
    /// PEM of the CA that signed the server's TLS certificate.
    pub(crate) tls_root_pem: String,
}

/// The OS user the cluster runs as when the test process is root.
#[derive(Debug, Clone, Copy)]
struct OsUser {
    uid: u32,
    gid: u32,
}

/// Finds the binaries, creates the directory, starts the watchdog, runs
/// `initdb` and starts the server.
pub(crate) fn start() -> Result<Cluster, TestDbError> {
    start_with(&[])
}

/// [`start`], with `settings` (`name = value` lines) appended to
/// `postgresql.conf` after the harness's own, so they win.
pub(crate) fn start_with(settings: &[&str]) -> Result<Cluster, TestDbError> {
    let bindir = find_bindir().ok_or(TestDbError::BinariesNotFound)?;
    let root = make_root()?;
    // A fresh directory is owned by our effective uid: root or not.
    let is_root = fs::metadata(&root)
        .map_err(|e| TestDbError::io(format!("reading metadata of {}", root.display()), e))?
        .uid()
        == 0;
    let user = if is_root {
        let user = postgres_user().inspect_err(|_| {
            let _ = fs::remove_dir_all(&root);
        })?;
        if let Err(e) = std::os::unix::fs::chown(&root, Some(user.uid), Some(user.gid)) {
            let _ = fs::remove_dir_all(&root);
            return Err(TestDbError::io(
                format!("changing the owner of {} to `postgres`", root.display()),
                e,
            ));
        }
        Some(user)
    } else {
        None
    };
    let data = root.join("data");
    let watchdog = spawn_watchdog(&root, &data, &bindir, user).inspect_err(|_| {
        let _ = fs::remove_dir_all(&root);
    })?;
    // From here on the watchdog removes `root` if anything fails (the
    // `ChildStdin` is dropped on return) or when the process ends.

    let mut initdb = pg_command(&bindir, "initdb", &root, user);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"])
        .arg("--no-sync");
    run(initdb, "initdb")?;
    write_config(&data, &root, settings)?;
    let tls_root_pem = write_tls(&data, user)?;
    let port = start_server(&bindir, &root, &data, user)?;
    Ok(Cluster {
        root,
        port,
        bindir,
        user,
        _watchdog: watchdog,
        tls_root_pem,
    })
}

impl Cluster {
    /// What restarts this cluster (to run on the blocking pool).
    pub(crate) fn restart_command(&self) -> Restart {
        Restart {
            bindir: self.bindir.clone(),
            root: self.root.clone(),
            port: self.port,
            user: self.user,
        }
    }
}

/// `pg_ctl restart` of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Restart {
    bindir: PathBuf,
    root: PathBuf,
    port: u16,
    user: Option<OsUser>,
}

impl Restart {
    /// `pg_ctl restart -m fast`: every connection ends, the server comes back on the same
    /// port with the same data (a clean shutdown: a checkpoint, slots saved).
    pub(crate) fn run(self) -> Result<(), TestDbError> {
        let data = self.root.join("data");
        let mut pg_ctl = pg_command(&self.bindir, "pg_ctl", &self.root, self.user);
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .arg("-o")
            .arg(format!("-p {}", self.port))
            .args(["-m", "fast", "-w", "-t", "60", "restart"]);
        run(pg_ctl, "pg_ctl restart").map(|_| ())
    }
}

/// A throwaway CA, and a server certificate it signs for 127.0.0.1 and localhost, so the
/// server accepts TLS (`ssl = on`); plain connections keep working. Returns the CA's PEM.
fn write_tls(data: &Path, user: Option<OsUser>) -> Result<String, TestDbError> {
    let tls_error = |e: rcgen::Error| {
        TestDbError::io(
            "generating the TLS certificates",
            std::io::Error::other(e.to_string()),
        )
    };
    let ca_key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rowsync-testdb CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls_error)?;
    let server_key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let server_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(tls_error)?;
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .map_err(tls_error)?;
    for (name, text) in [
        ("server.crt", server_cert.pem()),
        ("server.key", server_key.serialize_pem()),
    ] {
        let path = data.join(name);
        let written = fs::write(&path, text)
            .and_then(|()| {
                let mode = <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
                fs::set_permissions(&path, mode)
            })
            .and_then(|()| match user {
                Some(user) => std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)),
                None => Ok(()),
            });
        written.map_err(|e| TestDbError::io(format!("writing {}", path.display()), e))?;
    }
    fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .and_then(|mut file| file.write_all(b"ssl = on\n"))
        .map_err(|e| TestDbError::io("enabling ssl in postgresql.conf", e))?;
    Ok(ca.pem())
}

/// `pg_config --bindir`, then `/usr/lib/postgresql/*/bin` (newest version
/// first), then `initdb` on `PATH`.
fn find_bindir() -> Option<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if usable(&dir) {
                return Some(dir);
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u64>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        if let Some((_, dir)) = versions.into_iter().find(|(_, dir)| usable(dir)) {
            return Some(dir);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| usable(dir))
}

/// Environment variable naming the directory to create the cluster in.
pub(crate) const DIR_VAR: &str = "ROWSYNC_TESTDB_DIR";

/// Free space `/dev/shm` needs before the cluster goes there (Docker's
/// default is only 64 MiB; a cluster takes about 40 MiB plus ~8 MiB per
/// database alive at once).
const MIN_SHM_FREE_KIB: u64 = 1024 * 1024;

/// Where the cluster directory goes: `$ROWSYNC_TESTDB_DIR`, else
/// `/dev/shm` when it has at least 1 GiB free (a tmpfs makes `CREATE
/// DATABASE` about ten times faster than an ext4 disk: ~20 ms instead of
/// ~230 ms), else [`std::env::temp_dir`].
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DIR_VAR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && free_kib(shm).is_some_and(|kib| kib >= MIN_SHM_FREE_KIB) {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// Available space in KiB according to `df -Pk`.
fn free_kib(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Creates `<base>/rowsync-pg-<pid>-<random>` (see [`base_dir`]).
fn make_root() -> Result<PathBuf, TestDbError> {
    let base = base_dir();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut last_error = None;
    for attempt in 0u32..16 {
        let random = RandomState::new().hash_one((nanos, attempt));
        let root = base.join(format!("rowsync-pg-{}-{random:016x}", std::process::id()));
        match fs::create_dir(&root) {
            Ok(()) => return Ok(root),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => {
                return Err(TestDbError::io(
                    format!("creating directory {}", root.display()),
                    e,
                ))
            }
        }
    }
    Err(TestDbError::io(
        format!("creating a directory in {}", base.display()),
        last_error.unwrap_or_else(|| std::io::Error::other("no free name")),
    ))
}

/// Looks up the `postgres` OS user with `id`.
fn postgres_user() -> Result<OsUser, TestDbError> {
    let id = |flag: &str| -> Result<u32, TestDbError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| TestDbError::NoPostgresUser {
                detail: format!("running `id {flag} postgres`: {e}"),
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse() {
            Ok(n) if out.status.success() => Ok(n),
            _ => Err(TestDbError::NoPostgresUser {
                detail: format!(
                    "`id {flag} postgres`: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }),
        }
    };
    Ok(OsUser {
        uid: id("-u")?,
        gid: id("-g")?,
    })
}

fn spawn_watchdog(
    root: &Path,
    data: &Path,
    bindir: &Path,
    user: Option<OsUser>,
) -> Result<ChildStdin, TestDbError> {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(WATCHDOG)
        .arg("rowsync-testdb-watchdog")
        .arg(root)
        .arg(data)
        .arg(bindir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
    let mut child = command
        .spawn()
        .map_err(|e| TestDbError::io("starting the clean-up watchdog (/bin/sh)", e))?;
    // The `Child` itself is not kept: dropping it neither kills nor waits.
    child.stdin.take().ok_or_else(|| {
        TestDbError::io(
            "starting the clean-up watchdog",
            std::io::Error::other("no stdin pipe"),
        )
    })
}

/// A command for one of the server binaries, run as `user` if given, with
/// a neutral environment.
fn pg_command(bindir: &Path, program: &str, root: &Path, user: Option<OsUser>) -> Command {
    let mut command = Command::new(bindir.join(program));
    command
        .current_dir(root)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .env_remove("PGHOST")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null());
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
    command
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn run(mut command: Command, name: &str) -> Result<Output, TestDbError> {
    let output = command
        .output()
        .map_err(|e| TestDbError::io(format!("running {name} ({})", describe(&command)), e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(TestDbError::CommandFailed {
            command: describe(&command),
            status: output.status.to_string(),
            output: combined(&output),
        })
    }
}

fn combined(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr.trim());
    }
    text
}

/// Appends [`SETTINGS`], the socket directory and `extra` to `postgresql.conf`.
fn write_config(data: &Path, root: &Path, extra: &[&str]) -> Result<(), TestDbError> {
    let path = data.join("postgresql.conf");
    let socket_dir = root.to_string_lossy().replace('\'', "''");
    let mut text = format!(
        "\n# added by rowsync-testdb\n{SETTINGS}unix_socket_directories = '{socket_dir}'\n"
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| TestDbError::io(format!("writing {}", path.display()), e))
}

fn free_port() -> Result<u16, TestDbError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| TestDbError::io("finding a free TCP port on 127.0.0.1", e))
}

/// `pg_ctl start -w` on a free port; retries with another port when the
/// chosen one was taken in the meantime.
fn start_server(
    bindir: &Path,
    root: &Path,
    data: &Path,
    user: Option<OsUser>,
) -> Result<u16, TestDbError> {
    let log = root.join("server.log");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let log_start = fs::metadata(&log).map_or(0, |m| m.len());
        let mut pg_ctl = pg_command(bindir, "pg_ctl", root, user);
        pg_ctl
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!("-p {port}"))
            .args(["-w", "-t", "60", "start"]);
        let description = describe(&pg_ctl);
        let output = pg_ctl
            .output()
            .map_err(|e| TestDbError::io(format!("running {description}"), e))?;
        if output.status.success() {
            return Ok(port);
        }
        let new_log = read_from(&log, log_start);
        let port_taken =
            new_log.contains("could not bind") || new_log.contains("Address already in use");
        if port_taken && attempt < START_ATTEMPTS {
            continue;
        }
        return Err(TestDbError::ServerStart {
            reason: format!(
                "`{description}` failed ({}): {}",
                output.status,
                combined(&output)
            ),
            log: log.display().to_string(),
            log_tail: tail(&read_from(&log, 0), LOG_TAIL_LINES),
        });
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(could not read the log: {e})"),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
