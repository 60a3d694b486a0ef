//! A real Azurite (npm `azurite`, installed in tools/azurite by scripts/test.sh) per test, on a free port of 127.0.0.1.
//!
//! The harness starts it, creates containers (the one request signed here by
//! hand, with the emulator's well-known Shared Key), uploads and downloads
//! through object_store, and stops it when the test ends (`Drop`). Its data
//! lives in a temporary folder removed with it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use deltalake::logstore::object_store::azure::MicrosoftAzureBuilder;
use deltalake::logstore::object_store::path::Path as StorePath;
use deltalake::logstore::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use futures::TryStreamExt;

use crate::common::*;

/// Azurite's documented development account.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    repo().join("tools/azurite/node_modules/.bin/azurite-blob")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Azurite {
    /// An emulator with the fixtures in container `raw` and an empty container `lake`.
    pub fn with_fixtures() -> Azurite {
        let az = Azurite::start();
        az.create_container("raw");
        az.create_container("lake");
        az.upload_dir("raw", &crate::common::fixtures_raw());
        az
    }

    pub fn start() -> Azurite {
        let bin = binary();
        assert!(
            bin.exists(),
            "Azurite is not installed at {}: run ./scripts/test.sh, which installs it (npm ci in tools/azurite)",
            bin.display()
        );
        for _attempt in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new(&bin)
                .args(["--blobHost", "127.0.0.1", "--blobPort"])
                .arg(port.to_string())
                .arg("--location")
                .arg(dir.path())
                .args([
                    "--silent",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start azurite-blob");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: the port was taken in between; try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Azurite {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("Azurite did not start on 127.0.0.1 in three attempts");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points `coldpath`'s `az://` URLs at this emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            ("AZURITE_BLOB_STORAGE_URL", self.url()),
        ]
    }

    /// Creates a container (Create Container, signed with the account key).
    pub fn create_container(&self, name: &str) {
        let response = self.signed_put(name, &[("restype", "container")], &[]);
        assert!(
            response.starts_with("HTTP/1.1 201"),
            "creating container {name}: {response}"
        );
    }

    /// Sets a blob's access tier (Set Blob Tier), as a lifecycle policy would.
    pub fn set_tier(&self, container: &str, blob: &str, tier: &str) {
        let response = self.signed_put(
            &format!("{container}/{blob}"),
            &[("comp", "tier")],
            &[("x-ms-access-tier", tier)],
        );
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.1 202"),
            "setting the tier of {container}/{blob}: {response}"
        );
    }

    /// One empty-bodied PUT signed with the account key (Shared Key); `query`
    /// and `headers` (x-ms-* only) sorted by name. Returns the raw response.
    fn signed_put(
        &self,
        resource: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> String {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let mut ms_headers: Vec<(&str, &str)> = headers.to_vec();
        ms_headers.push(("x-ms-date", &date));
        ms_headers.push(("x-ms-version", version));
        ms_headers.sort();
        let canonical_headers: String = ms_headers
            .iter()
            .map(|(k, v)| format!("{k}:{v}\n"))
            .collect();
        let canonical_query: String = query.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\n{canonical_headers}/{ACCOUNT}/{ACCOUNT}/{resource}{canonical_query}"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .unwrap();
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            to_sign.as_bytes(),
        );
        let signature = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        let query_string: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let header_lines: String = ms_headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let request = format!(
            "PUT /{ACCOUNT}/{resource}?{} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{header_lines}Authorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            query_string.join("&"),
            port = self.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// An object_store client for one container (explicit endpoint: no process environment needed).
    pub fn store(&self, container: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            MicrosoftAzureBuilder::new()
                .with_account(ACCOUNT)
                .with_access_key(KEY)
                .with_endpoint(format!("{}/{ACCOUNT}", self.url()))
                .with_allow_http(true)
                .with_container_name(container)
                .build()
                .unwrap(),
        )
    }

    /// Uploads every file under `dir` to `container` with the same relative paths.
    pub fn upload_dir(&self, container: &str, dir: &Path) {
        let store = self.store(container);
        let mut files = Vec::new();
        walk(dir, &mut files);
        block_on(async {
            for file in files {
                let rel = file
                    .strip_prefix(dir)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let bytes = std::fs::read(&file).unwrap();
                store
                    .put(&StorePath::from(rel), PutPayload::from(bytes))
                    .await
                    .unwrap();
            }
        });
    }

    /// Downloads everything under `prefix` of `container` into `to` (e.g. a Delta table, to read it locally).
    pub fn download(&self, container: &str, prefix: &str, to: &Path) {
        let store = self.store(container);
        block_on(async {
            let prefix = StorePath::from(prefix);
            let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
            for meta in metas {
                let rel = meta.location.as_ref()[prefix.as_ref().len()..].trim_start_matches('/');
                let target = to.join(rel);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                let bytes = store
                    .get(&meta.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                std::fs::write(target, bytes).unwrap();
            }
        });
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            walk(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

/// A proxy in front of an [`Azurite`] that forwards every request but those
/// naming `marker`: their connection is held, unanswered, until the proxy is
/// dropped, or forwarded from [`Stall::release`] on. A blob read that never
/// ends, whatever the build's speed, for a signal to land in mid-read
/// (object_store's request timeout is 30 s); or a commit held until after it.
pub struct Stall {
    pub port: u16,
    stalled: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Stall {
    pub fn start(az: &Azurite, marker: &str) -> Stall {
        let (stalled, released, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let marker = marker.as_bytes().to_vec();
        let (s, r, t) = (stalled.clone(), released.clone(), stop.clone());
        let port = proxy(az, stop.clone(), move |client, server| {
            requests(client, server, &marker, &s, &r, &t)
        });
        Stall {
            port,
            stalled,
            released,
            stop,
        }
    }

    /// Forwards the held requests, and every later one, as they are.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    /// The environment that points `coldpath` at the emulator through this proxy.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }

    /// Waits (up to `limit`) until a request naming the marker is being held.
    pub fn wait_stalled(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.stalled.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A proxy in front of an [`Azurite`] that forwards every request but the
/// `nth` (from 1) to name `marker`: that one is answered `400 Bad Request`,
/// which no client retries, and its connection closed. One write of a run made
/// to fail where the test chooses, those before and after it passing.
/// Requests on a connection go one at a time, so each starts a read, its
/// request line (the marker's place) in the read's first bytes.
pub struct Refuse {
    pub port: u16,
    seen: Arc<AtomicUsize>,
    nth: usize,
    stop: Arc<AtomicBool>,
}

impl Refuse {
    pub fn start(az: &Azurite, marker: &str, nth: usize) -> Refuse {
        let (seen, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (marker, n) = (marker.as_bytes().to_vec(), seen.clone());
        let port = proxy(az, stop.clone(), move |client, server| {
            refusing(client, server, &marker, nth, &n)
        });
        Refuse {
            port,
            seen,
            nth,
            stop,
        }
    }

    /// Whether the `nth` request naming the marker came (and was refused).
    pub fn refused(&self) -> bool {
        self.seen.load(Ordering::SeqCst) >= self.nth
    }

    /// The environment that points `coldpath` at the emulator through this proxy.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }
}

impl Drop for Refuse {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Client to server, but the `nth` request naming `marker`: answered 400, the connection closed.
fn refusing(
    mut client: TcpStream,
    mut server: TcpStream,
    marker: &[u8],
    nth: usize,
    seen: &AtomicUsize,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let names = buf[..n].windows(marker.len()).any(|w| w == marker);
        if names && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            let refusal =
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = client.write_all(refusal);
            let _ = client.shutdown(std::net::Shutdown::Both);
            break;
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

/// A proxy on a free port in front of `az`: each connection's answers are
/// piped back as they come, its requests go through `requests` (on a thread
/// of their own) until `stop` is set and the port is connected to once more.
fn proxy<F>(az: &Azurite, stop: Arc<AtomicBool>, requests: F) -> u16
where
    F: Fn(TcpStream, TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (upstream, requests) = (az.port, Arc::new(requests));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || pipe(s2, c2));
            let requests = requests.clone();
            std::thread::spawn(move || requests(client, server));
        }
    });
    port
}

/// Server to client, as it comes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Client to server, until a request names `marker`: from then on nothing more
/// is forwarded (requests on a connection go one at a time, so its answer never comes).
fn requests(
    mut client: TcpStream,
    mut server: TcpStream,
    marker: &[u8],
    stalled: &AtomicBool,
    released: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 << 10];
    // The last bytes forwarded, for a marker split across two reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut seen = std::mem::take(&mut tail);
        seen.extend_from_slice(&buf[..n]);
        if !released.load(Ordering::SeqCst) && seen.windows(marker.len()).any(|w| w == marker) {
            stalled.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) && !released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !released.load(Ordering::SeqCst) {
                break;
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
        tail = seen[seen.len().saturating_sub(marker.len())..].to_vec();
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}
