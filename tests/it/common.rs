//! The test harness: a running `hearth` process and HTTP helpers.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A `hearth serve` process with its own data directory.
pub struct TestServer {
    child: Option<Child>,
    pub dir: TempDir,
    /// Its PostgreSQL database, when the tests run on that backend: held to be dropped after
    /// the server.
    _database: Option<TestDatabase>,
    pub base_url: String,
    env: Vec<(String, String)>,
    /// An HTTP client for it (any certificate accepted: test servers' are self-issued).
    pub http: reqwest::Client,
}

/// The PostgreSQL cluster the tests keep their stores in instead of RocksDB: its URL without a
/// database, from `HEARTH_TEST_POSTGRES` (`scripts/test` starts one with `scripts/postgres`).
pub fn postgres_cluster() -> Option<String> {
    std::env::var("HEARTH_TEST_POSTGRES").ok().filter(|url| !url.is_empty())
}

/// The certificate of the CA that signed the test cluster's, when it serves TLS
/// (`HEARTH_TEST_POSTGRES_CA`): the servers then connect with `sslmode=require` and verify it.
fn postgres_ca() -> Option<String> {
    std::env::var("HEARTH_TEST_POSTGRES_CA").ok().filter(|path| !path.is_empty())
}

/// A database of its own for one test server, dropped with it.
pub struct TestDatabase {
    cluster: String,
    name: String,
}

impl TestDatabase {
    pub fn create(cluster: &str) -> TestDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("hearth_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let database = TestDatabase {
            cluster: cluster.to_owned(),
            name,
        };
        database.psql(&format!("CREATE DATABASE {}", database.name));
        database
    }

    pub fn url(&self) -> String {
        let tls = if postgres_ca().is_some() { "?sslmode=require" } else { "" };
        format!("{}/{}{tls}", self.cluster, self.name)
    }

    fn psql(&self, sql: &str) {
        let output = Command::new("psql")
            .arg(format!("{}/postgres", self.cluster))
            .args(["-qtAc", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestServer {
    /// Starts a server with open registration and generous rate limits; `env` overrides. The
    /// free port may be taken by another test before the server binds it: then it tries another.
    pub async fn start(env: &[(&str, &str)]) -> TestServer {
        for _ in 0..4 {
            let mut server = TestServer::prepare("127.0.0.1", free_port(), env);
            match server.try_spawn().await {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("{log}"),
            }
        }
        TestServer::start_on(free_port(), env).await
    }

    /// Like `start`, on a given loopback port.
    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> TestServer {
        TestServer::start_at("127.0.0.1", port, env).await
    }

    /// Like `start`, on a given loopback address and port.
    pub async fn start_at(ip: &str, port: u16, env: &[(&str, &str)]) -> TestServer {
        let mut server = TestServer::prepare(ip, port, env);
        server.spawn().await;
        server
    }

    /// A server's data directory and environment, not started yet.
    fn prepare(ip: &str, port: u16, env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut all_env: Vec<(String, String)> = [
            ("HEARTH_SERVER_NAME", "localhost"),
            ("HEARTH_REGISTRATION", "open"),
            ("HEARTH_RATE_LIMITS__LOGIN__BURST", "1000"),
            ("HEARTH_RATE_LIMITS__LOGIN__PER_SECOND", "1000"),
            ("HEARTH_RATE_LIMITS__REGISTRATION__BURST", "1000"),
            ("HEARTH_RATE_LIMITS__REGISTRATION__PER_SECOND", "1000"),
            ("HEARTH_RATE_LIMITS__MESSAGE__BURST", "100000"),
            ("HEARTH_RATE_LIMITS__MESSAGE__PER_SECOND", "100000"),
            ("HEARTH_LOG__LEVEL", "info,ruma_state_res=warn,tower_http=debug"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (key, value) in env {
            all_env.retain(|(k, _)| k != key);
            all_env.push((key.to_string(), value.to_string()));
        }
        let scheme = if all_env.iter().any(|(key, _)| key == "HEARTH_TLS__CERTIFICATE") {
            "https"
        } else {
            "http"
        };
        all_env.push(("HEARTH_DATA_DIR".into(), dir.path().join("data").display().to_string()));
        all_env.push(("HEARTH_LISTEN".into(), format!("{ip}:{port}")));
        // A test that names its backend keeps it.
        let database = postgres_cluster()
            .filter(|_| !env.iter().any(|(key, _)| *key == "HEARTH_STORAGE__BACKEND"))
            .map(|cluster| TestDatabase::create(&cluster));
        if let Some(ca) = postgres_ca() {
            all_env.push(("HEARTH_STORAGE__POSTGRES_CA_FILE".into(), ca));
        }
        if let Some(database) = &database {
            all_env.push(("HEARTH_STORAGE__BACKEND".into(), "postgres".into()));
            all_env.push(("HEARTH_STORAGE__POSTGRES_URL".into(), database.url()));
        }
        TestServer {
            child: None,
            dir,
            _database: database,
            base_url: format!("{scheme}://{ip}:{port}"),
            env: all_env,
            // Servers with TLS use a self-signed certificate made by the test. An idle
            // connection is not reused after half a second: a server closes idle ones after its
            // header timeout (one second in the strict tests), and a request written into a
            // connection as it closes fails.
            http: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .pool_idle_timeout(Duration::from_millis(500))
                .build()
                .unwrap(),
        }
    }

    /// A second `hearth serve` process of the same server on the same PostgreSQL database,
    /// with a data directory and port of its own.
    pub async fn another_process(&self) -> TestServer {
        let mut other = TestServer::prepare("127.0.0.1", free_port(), &[]);
        let own = |key: &str| key == "HEARTH_DATA_DIR" || key == "HEARTH_LISTEN";
        let data_dir = other.dir.path().join("data").display().to_string();
        other.env = self.env.iter().filter(|(key, _)| !own(key)).cloned().collect();
        other.env.push(("HEARTH_DATA_DIR".into(), data_dir));
        other
            .env
            .push(("HEARTH_LISTEN".into(), other.base_url.trim_start_matches("http://").to_owned()));
        other._database = None;
        other.spawn().await;
        other
    }

    /// Another homeserver already running at `base_url` (HTTPS with any certificate), driven
    /// with the same helpers.
    pub fn remote(base_url: &str) -> TestServer {
        TestServer {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            _database: None,
            base_url: base_url.to_owned(),
            env: Vec::new(),
            http: reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap(),
        }
    }

    /// Sets one of the server's environment variables, for its next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A `hearth` command with this server's environment.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    pub async fn spawn(&mut self) {
        if let Err(log) = self.try_spawn().await {
            panic!("{log}");
        }
    }

    /// Starts the process and waits until it serves; the log when it exited at start-up.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hearth starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("{}/_matrix/client/versions", self.base_url);
            if self.http.get(url).send().await.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("hearth exited with {status} at start-up:\n{}", self.log()));
            }
            assert!(Instant::now() < deadline, "hearth did not start:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().ok()?.code()
    }

    /// The process's ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data directory and port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Crashes the process and starts it again.
    pub async fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Runs `hearth admin <args> --json` and parses its output.
    pub fn admin(&self, args: &[&str]) -> (Output, Value) {
        let output = self.command().arg("admin").args(args).arg("--json").output().unwrap();
        let value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        (output, value)
    }

    /// Sends a request; `body` is JSON unless `None`.
    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends a request with a raw body.
    pub async fn request_raw(&self, method: Method, path: &str, token: Option<&str>, body: &'static str) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    /// Registers `name` with the dummy stage; returns the access token and device ID.
    pub async fn register(&self, name: &str, password: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({ "username": name, "password": password, "auth": { "type": "m.login.dummy" } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "register {name}: {body}");
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["device_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates a room with `body`; returns its ID.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let (status, response) = self.post("/_matrix/client/v3/createRoom", Some(token), body).await;
        assert_eq!(status, StatusCode::OK, "createRoom: {response}");
        response["room_id"].as_str().unwrap().to_owned()
    }

    /// Joins a room (by ID or alias), which must succeed.
    pub async fn join(&self, token: &str, room: &str) {
        let (status, body) = self.post(&format!("/_matrix/client/v3/join/{room}"), Some(token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "join {room}: {body}");
    }

    /// Sends an event of type `kind` with a fresh transaction ID; returns its event ID.
    pub async fn send(&self, token: &str, room: &str, kind: &str, content: Value) -> String {
        static TRANSACTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let txn = TRANSACTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/common{txn}");
        let (status, sent) = self.put(&path, Some(token), content).await;
        assert_eq!(status, StatusCode::OK, "send {kind}: {sent}");
        sent["event_id"].as_str().unwrap().to_owned()
    }

    /// Logs in with a password; returns the whole response.
    pub async fn login(&self, name: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": password }),
        )
        .await
    }
}

impl Drop for TestServer {
    /// Stops the server; when a test failed, prints the end of its log with the failure.
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!("--- the last lines of {}'s log ---", self.base_url);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Asserts a Matrix error answer.
pub fn assert_error(answer: &(StatusCode, Value), status: u16, errcode: &str) {
    assert_eq!(answer.0.as_u16(), status, "unexpected status, body: {}", answer.1);
    assert_eq!(answer.1["errcode"], errcode, "unexpected body: {}", answer.1);
    assert!(answer.1["error"].is_string(), "error message missing: {}", answer.1);
}

/// The `body` of each event in a list of events that has one.
pub fn message_bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
