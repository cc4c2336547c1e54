//! Starting the server binary and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    child: Child,
}

impl Server {
    /// Starts `rag-agent serve` on a free 127.0.0.1 port.
    pub fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start rag-agent");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("rag-agent printed nothing")
            .expect("read stdout");
        let url = line
            .strip_prefix("rag-agent listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            url,
            data_dir: data_dir.to_path_buf(),
            child,
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let response = client().post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls until no document is PENDING or PROCESSING.
pub async fn wait_until_settled(server: &Server, timeout: Duration) {
    let started = Instant::now();
    loop {
        let mut busy = 0;
        for status in ["PENDING", "PROCESSING"] {
            let (_, page) =
                get_json(&server.at(&format!("/documents?status={status}&limit=1000"))).await;
            busy += page["items"].as_array().map(Vec::len).unwrap_or(0);
        }
        if busy == 0 {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{busy} documents still in flight after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn upload(server: &Server, path: &Path) -> (u16, Value) {
    let bytes = std::fs::read(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(name),
    );
    let response = client()
        .post(server.at("/documents/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The Rust book that ships with the toolchain.
pub fn book_dir() -> PathBuf {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    PathBuf::from(sysroot.trim()).join("share/doc/rust/html/book")
}

/// The book's content pages: not redirects, not the whole-book print page
/// or the table of contents itself, not the tiny "this page moved" stubs.
pub fn book_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(book_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !matches!(name.as_ref(), "print.html" | "toc.html" | "404.html")
        })
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.len() >= 6000 && !text.contains("http-equiv=\"refresh\"")
        })
        .collect();
    pages.sort();
    pages
}
