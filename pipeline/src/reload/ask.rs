//! How a reload is asked for: SIGHUP, or `POST /reload` on the HTTP side (`scened reload`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use crate::config::Config;

/// The pipe SIGHUP's handler writes a byte to; -1 until [`on_hangup`].
static HANGUP: AtomicI32 = AtomicI32::new(-1);

/// Calls `reload` on its own thread after each SIGHUP (several at once: once). Replaces the
/// signal's handler, the termination one `ctrlc` installs among them: a hangup no longer stops.
pub fn on_hangup(reload: impl Fn() + Send + 'static) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `pipe` just opened fds[0]; this is its only owner.
    let mut hangups = unsafe { File::from_raw_fd(fds[0]) };
    HANGUP.store(fds[1], Ordering::SeqCst);
    thread::Builder::new()
        .name("scened-hangup".into())
        .spawn(move || {
            let mut bytes = [0; 64];
            while matches!(hangups.read(&mut bytes), Ok(1..)) {
                reload();
            }
        })?;
    extern "C" fn hung_up(_: libc::c_int) {
        let fd = HANGUP.load(Ordering::SeqCst);
        // SAFETY: write(2) is async-signal-safe; a full pipe already has a reload waiting.
        unsafe { libc::write(fd, b"h".as_ptr().cast(), 1) };
    }
    // SAFETY: a zeroed sigaction is a valid empty one; the handler only calls write(2).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = hung_up as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGHUP, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Asks the daemon serving `config`'s HTTP side to reload, with its token if it has one:
/// whether it took, and the `reloaded` or `reload_failed` event.
pub fn ask(config: &Config) -> Result<(bool, String), String> {
    let telemetry = &config.telemetry;
    if !telemetry.enabled {
        return Err("telemetry is off in this config: send the daemon SIGHUP instead".into());
    }
    let listen = telemetry.listen;
    // Bound to every address: it answers on loopback.
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    let token = match &telemetry.token_env {
        Some(var) => match std::env::var(var) {
            Ok(token) => format!("Authorization: Bearer {token}\r\n"),
            Err(_) => return Err(format!("telemetry.token_env: {var} is not set")),
        },
        None => String::new(),
    };
    let fail = |e: io::Error| format!("{addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
    // A model load takes seconds at most.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(fail)?;
    let request =
        format!("POST /reload HTTP/1.0\r\nHost: {addr}\r\n{token}Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).unwrap_or_default();
    match status {
        "200" => Ok((true, body.trim().to_owned())),
        "422" => Ok((false, body.trim().to_owned())),
        _ => Err(format!(
            "{addr} answered {}",
            head.lines().next().unwrap_or("")
        )),
    }
}
