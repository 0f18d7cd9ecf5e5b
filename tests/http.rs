//! The telemetry server against real clients over real sockets: floods of idle connections past
//! the process's file limit, slow, oversized and unknown requests, and the token off loopback.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::run::write_config;
use crate::telemetry::{get, Daemon};
use crate::util::*;

/// A response read to its end.
pub(crate) struct Response {
    pub(crate) code: u16,
    /// The status line and headers.
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn code_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// One request over HTTP/1.0, so the server closes after answering; the whole response.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut stream = send(addr, method, path, headers);
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    Response {
        code: code_of(&head),
        head,
        body: response[split + 4..].to_vec(),
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut text = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        text += &format!("{name}: {value}\r\n");
    }
    stream.write_all((text + "\r\n").as_bytes()).unwrap();
    stream
}

/// A response whose body is still coming: the head, and a reader for the rest.
pub(crate) struct Streaming {
    pub(crate) code: u16,
    pub(crate) head: String,
    pub(crate) body: BufReader<TcpStream>,
}

impl Streaming {
    pub(crate) fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut body = BufReader::new(send(addr, "GET", path, headers));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            body.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            head += &line;
        }
        Self {
            code: code_of(&head),
            head,
            body,
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.head, name)
    }
}

/// The value of one series (`name{labels}` as the scrape spells it) in a scrape of `addr`.
pub(crate) fn scraped(addr: SocketAddr, series: &str) -> f64 {
    let (code, scrape) = get(addr, "/metrics");
    assert_eq!(code, 200);
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in the scrape"))
}

/// The OS threads of process `pid`.
fn threads(pid: u32) -> usize {
    if cfg!(target_os = "linux") {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    } else {
        // macOS: a header line, then a line per thread.
        let out = std::process::Command::new("ps")
            .args(["-M", "-p", &pid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count() - 1
    }
}

/// Lets this process hold at least `files` open files, as far as its hard limit allows.
fn allow_own_files(files: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < files {
            limit.rlim_cur = files.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

/// macOS's default limit on a process's open files.
const FILE_LIMIT: libc::rlim_t = 256;

#[test]
fn idle_connections_past_the_file_limit_leave_the_server_answering() {
    allow_own_files(1024);
    let dir = tmp_dir("http-flood");
    // With the default connection cap the extra connections are refused; with a cap above the
    // file limit, accept itself fails (EMFILE) and is retried.
    for (max_connections, counted) in [
        (None, "scened_http_connections_refused_total"),
        (Some(1000), "scened_http_accept_errors_total"),
    ] {
        let mut text = "[source]\nkind = \"synthetic\"\nfps = 10.0\n".to_owned();
        if let Some(max) = max_connections {
            text += &format!("[telemetry]\nmax_connections = {max}\n");
        }
        let config = write_config(&dir, "flood.toml", &text);
        let mut command = scened_command(&["run", "--config", &config]);
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // setrlimit, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: FILE_LIMIT,
                    rlim_max: FILE_LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.stdout(Stdio::null());
        let daemon = Daemon::spawn(command);
        let pid = daemon.child.id();
        let mut most_threads = threads(pid);
        let mut idle = Vec::new();
        for i in 0..400 {
            // Past the listen backlog the kernel stops answering: those attempts time out.
            if let Ok(stream) = TcpStream::connect_timeout(&daemon.addr, Duration::from_millis(100))
            {
                idle.push(stream);
            }
            if i % 25 == 0 {
                most_threads = most_threads.max(threads(pid));
            }
        }
        assert!(idle.len() > 256, "only {} connections made", idle.len());
        most_threads = most_threads.max(threads(pid));
        drop(idle);
        let closed = Instant::now();
        eventually("/healthz to answer again", || {
            most_threads = most_threads.max(threads(pid));
            let mut stream =
                TcpStream::connect_timeout(&daemon.addr, Duration::from_millis(500)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).ok()?;
            response.ends_with("\r\n\r\nok\n").then_some(())
        });
        let back_after = closed.elapsed();
        assert!(
            back_after < Duration::from_secs(5),
            "/healthz answered {back_after:?} after the connections closed"
        );
        assert!(most_threads < 64, "{most_threads} threads");
        assert!(scraped(daemon.addr, counted) > 0.0, "{counted}");
        daemon.stop();
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn slow_oversized_and_unknown_requests_are_refused() {
    let dir = tmp_dir("http-refused");
    let config = write_config(
        &dir,
        "refused.toml",
        "[source]\nkind = \"synthetic\"\nfps = 5.0\n[telemetry]\nclient_timeout_seconds = 1.0\n",
    );
    let daemon = Daemon::start(&["run", "--config", &config]);
    let addr = daemon.addr;
    let closed_by_server = |stream: &mut TcpStream| {
        let mut byte = [0; 1];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => panic!("the server sent data"),
        }
    };

    // A connection that sends nothing is closed…
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(PATIENCE)).unwrap();
    assert!(
        closed_by_server(&mut idle),
        "an idle connection stayed open"
    );
    // …and so is one that sends its head a line at a time, for ever.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: scened\r\n")
        .unwrap();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a client trickling its headers was not cut off"
        );
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
        let mut byte = [0; 1];
        match slow.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => panic!("the server answered a request it never got whole"),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(_) => {} // Still open: read timed out.
        }
    }

    // Request lines and headers over 16 KiB: 431.
    let big = "a".repeat(20 * 1024);
    for raw in [
        format!("GET /healthz HTTP/1.1\r\nHost: scened\r\nX-Big: {big}\r\n\r\n"),
        format!("GET /{big} HTTP/1.1\r\nHost: scened\r\n\r\n"),
    ] {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 431"),
            "{:?}",
            &response[..response.len().min(200)]
        );
    }
    // A head that never ends is not read for ever: the connection is cut while it is sent.
    let mut endless = TcpStream::connect(addr).unwrap();
    endless.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let line = format!("X-More: {}\r\n", "b".repeat(1000));
    let cut = (0..4096).any(|i| {
        if i % 16 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        endless.write_all(line.as_bytes()).is_err()
    });
    assert!(cut, "4 MB of headers were taken");

    // Only GET and HEAD, only known paths.
    for method in ["POST", "PUT", "DELETE"] {
        let response = request(addr, method, "/metrics", &[]);
        assert_eq!(response.code, 405, "{method}");
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
    }
    assert_eq!(request(addr, "GET", "/admin", &[]).code, 404);
    let head = request(addr, "HEAD", "/", &[]);
    assert_eq!(head.code, 200);
    assert_eq!(
        head.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(head.body.is_empty());

    let cut = |reason: &str| {
        scraped(
            addr,
            &format!("scened_http_connections_cut_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(cut("header_timeout") >= 2.0);
    assert!(cut("too_large") >= 3.0);
    assert!(scraped(addr, "scened_http_requests_total{code=\"405\"}") >= 3.0);
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// An address of this machine that is not loopback, to bind and to connect to; without one,
/// the unspecified address (every interface, which is not loopback either) and loopback.
fn own_address() -> (IpAddr, IpAddr) {
    let unspecified = (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into());
    // macOS 15 puts a connection to the machine's own LAN address behind Local Network
    // privacy, which a CI runner is not granted (actions/runner-images #10924, #11901).
    if cfg!(target_os = "macos") {
        return unspecified;
    }
    let mut found = None;
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that freeifaddrs frees; every pointer
    // read is checked for null, and a sockaddr of family AF_INET is a sockaddr_in.
    unsafe {
        if libc::getifaddrs(&mut list) == 0 {
            let mut at = list;
            while !at.is_null() && found.is_none() {
                let entry = &*at;
                let up = entry.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
                if up
                    && !entry.ifa_addr.is_null()
                    && i32::from((*entry.ifa_addr).sa_family) == libc::AF_INET
                {
                    let addr = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
                    if !ip.is_loopback() {
                        found = Some(IpAddr::V4(ip));
                    }
                }
                at = entry.ifa_next;
            }
            libc::freeifaddrs(list);
        }
    }
    found.map_or(unspecified, |ip| (ip, ip))
}

/// The token the tests run with (at least 16 characters, as scened asks).
pub(crate) const TOKEN: &str = "scened-test-token-0123456789";
pub(crate) const TOKEN_ENV: &str = "SCENED_TEST_TOKEN";

/// A `scened run` of `source_toml` on this machine's own non-loopback address, guarded by
/// [`TOKEN`].
pub(crate) fn exposed_daemon(dir: &std::path::Path, source_toml: &str) -> Daemon {
    let (bind, connect) = own_address();
    let config = write_config(
        dir,
        "exposed.toml",
        &format!("{source_toml}[telemetry]\ntoken_env = \"{TOKEN_ENV}\"\n"),
    );
    let listen = format!("{bind}:0");
    let mut command = scened_command(&["run", "--config", &config, "--listen", &listen]);
    command.env(TOKEN_ENV, TOKEN).stdout(Stdio::null());
    let mut daemon = Daemon::spawn(command);
    daemon.addr.set_ip(connect);
    daemon
}

#[test]
fn off_loopback_the_picture_asks_for_the_token() {
    let (bind, _) = own_address();
    assert!(!bind.is_loopback());
    // No token configured: refused at start.
    let listen = format!("{bind}:0");
    let out = scened(&["run", "--source", "synthetic", "--listen", &listen]);
    assert_one_line_error(&out, "telemetry.token_env must be set");
    // The variable named but not set: refused at start, naming it.
    let dir = tmp_dir("http-token");
    let config = write_config(
        &dir,
        "unset.toml",
        "[telemetry]\ntoken_env = \"SCENED_TEST_TOKEN_NOT_SET\"\n",
    );
    let out = scened(&["run", "--config", &config, "--source", "synthetic"]);
    assert_one_line_error(&out, "SCENED_TEST_TOKEN_NOT_SET is not set");

    // Paced below what a test build labels on a loaded machine: the queues stay empty, so the
    // stop drains within scened's limit.
    let daemon = exposed_daemon(&dir, "[source]\nkind = \"synthetic\"\nfps = 5.0\n");
    let addr = daemon.addr;
    let bearer = |token: &str| format!("Bearer {token}");
    let basic = |password: &str| {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("me:{password}"));
        format!("Basic {encoded}")
    };
    for path in ["/", "/snapshot.jpg", "/stream.mjpeg", "/events"] {
        for authorization in [
            None,
            Some(bearer("wrong-token-0123456789")),
            Some(basic("nope")),
        ] {
            let headers: Vec<(&str, &str)> = authorization
                .iter()
                .map(|value| ("Authorization", value.as_str()))
                .collect();
            let response = request(addr, "GET", path, &headers);
            assert_eq!(response.code, 401, "{path} with {authorization:?}");
            let challenge = response.header("WWW-Authenticate").unwrap();
            assert!(challenge.starts_with("Basic realm="), "{challenge}");
        }
    }
    // Scrapers need no token.
    for path in ["/metrics", "/healthz", "/status"] {
        assert_eq!(request(addr, "GET", path, &[]).code, 200, "{path}");
    }
    eventually("/readyz", || (get(addr, "/readyz").0 == 200).then_some(()));
    // The right token opens the page and what it loads, as bearer or as Basic's password.
    let page = request(addr, "GET", "/", &[("Authorization", &bearer(TOKEN))]);
    assert_eq!(page.code, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("id=\"label\""));
    let snapshot = request(
        addr,
        "GET",
        "/snapshot.jpg",
        &[("Authorization", &basic(TOKEN))],
    );
    assert_eq!(snapshot.code, 200);
    assert!(image::load_from_memory(&snapshot.body).is_ok());
    for path in ["/stream.mjpeg", "/events"] {
        let stream = Streaming::open(addr, path, &[("Authorization", &basic(TOKEN))]);
        assert_eq!(stream.code, 200, "{path}");
    }
    daemon.stop();
    let _ = std::fs::remove_dir_all(dir);
}
