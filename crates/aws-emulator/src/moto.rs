//! Starts a `moto` server (PyPI `moto[server]`) on a free 127.0.0.1 port
//! for S3, DynamoDB and S3 Vectors CRUD over the real wire protocols.
//!
//! The interpreter comes from `RAG_TEST_PYTHON` (set by `scripts/test.sh`
//! to the virtual environment it installs moto into), else `python3`.
//!
//! moto is served single-threaded: its DynamoDB `TransactWriteItems`
//! deep-copies tables while other request threads change them and fails
//! with HTTP 500 under concurrent writers (moto 5.2.5). DynamoDB itself
//! has no such limit, so the harness serialises requests instead of the
//! adapter avoiding transactions.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto's own `moto.server` entry point, minus `threaded=True`.
const SERVE_SINGLE_THREADED: &str = "\
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False, use_reloader=False)
";

pub struct MotoServer {
    pub url: String,
    child: Child,
}

impl MotoServer {
    /// Starts moto and waits until it accepts connections. Panics with the
    /// install command when moto is missing, because tests must not pass
    /// silently without the server they exist to exercise.
    pub fn start() -> MotoServer {
        let python = std::env::var("RAG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut last_exit = None;
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&python)
                .args(["-c", SERVE_SINGLE_THREADED, &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {python} -m moto.server: {e}; install it with `{python} -m pip install 'moto[server]'`"));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(status)) = child.try_wait() {
                    // Most likely the port was taken between choosing and
                    // binding; another attempt tells that from a missing moto.
                    last_exit = Some(status);
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return MotoServer {
                        url: format!("http://{addr}"),
                        child,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "moto did not start (last exit: {last_exit:?}); install it with `{python} -m pip install 'moto[server]'`"
        );
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
