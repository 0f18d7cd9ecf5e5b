//! What the network sources ([`super::rtsp`], [`super::http`]) share: the URL and its
//! credentials, with the password kept out of every name shown; the read deadline and the
//! backoff; which frames to decode when `fps` is below the camera's; the tokio runtime their
//! client libraries need, owned by the source's thread.
//!
//! A URL's password (or a password from `password_env`) only ever goes into the request that
//! needs it: the URL handed to the client library has none, and every string scened shows —
//! logs, errors, events, `/status`, the live view, metric labels — is [`Endpoint::shown`].

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tracing::warn;
use url::Url;

use super::deadline::{FIRST_READ_DEADLINE, MIN_READ_DEADLINE};
use super::reconnect::Backoff;
use super::{check_fps, check_max_pixels, SourceError};
use crate::error::Invalid;
use crate::stage::Shutdown;

/// A camera that sends nothing for this long is lost. Longer than a local camera's deadline:
/// frames cross a network, and an RTSP camera's rate is unknown until it sends.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Connecting, and each request and answer before the stream starts, gets this long.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// A camera rebooting takes tens of seconds; a router, longer. Past 5 s, retrying more often
/// only floods the log.
pub const RETRY: Backoff = Backoff {
    first: Duration::from_millis(250),
    max: Duration::from_secs(5),
};
/// How often a wait on the network looks at the stop request.
const STOP_POLL: Duration = Duration::from_millis(50);
/// What a password is shown as.
const ELIDED: &str = "***";
/// Query parameters some cameras take credentials in (`?user=admin&pwd=…`): their values are
/// elided too.
const SECRET_PARAMS: [&str; 5] = ["pass", "pwd", "token", "key", "auth"];

const _: () = assert!(MIN_READ_DEADLINE.as_secs() <= READ_DEADLINE.as_secs());
const _: () = assert!(READ_DEADLINE.as_secs() <= FIRST_READ_DEADLINE.as_secs());

/// What a kind of network camera takes as its URL, and the checks its config shares.
pub struct UrlForm {
    pub schemes: &'static [&'static str],
    /// What `source.url` must be, said by its error.
    pub expected: &'static str,
    /// What a URL that does not parse is shown as.
    pub unnamed: &'static str,
}

impl UrlForm {
    /// A camera's settings, checked without connecting.
    pub fn check(&self, url: &str, fps: f64, max_pixels: u64) -> Result<(), Invalid> {
        Endpoint::check(url, self.schemes, self.expected)?;
        check_fps(fps)?;
        check_max_pixels(max_pixels)
    }

    /// The endpoint to connect to ([`Endpoint::resolve`]).
    pub fn resolve(&self, url: &str, credentials: Credentials) -> Result<Endpoint, SourceError> {
        Endpoint::resolve(url, self.schemes, self.expected, credentials)
    }

    /// The URL as events and logs show it, password elided.
    pub fn shown(&self, url: &str) -> String {
        Endpoint::check(url, self.schemes, self.expected)
            .map_or_else(|_| self.unnamed.into(), |url| shown(&url))
    }
}

/// A network source's URL and credentials, checked.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Without user or password: what the client library is given.
    pub url: Url,
    pub username: Option<String>,
    password: Option<String>,
    shown: String,
}

/// Whose password is read from where.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    pub username: Option<&'a str>,
    pub password_env: Option<&'a str>,
}

impl Endpoint {
    /// Checks `url`'s form against `schemes` without connecting; `password_env` is not read.
    pub fn check(url: &str, schemes: &[&str], expected: &'static str) -> Result<Url, Invalid> {
        let bad = || Invalid {
            key: "source.url".into(),
            expected,
            got: format!("{:?}", shown_raw(url)),
        };
        let parsed = Url::parse(url).map_err(|_| bad())?;
        if !schemes.contains(&parsed.scheme()) || parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        Ok(parsed)
    }

    /// The endpoint to connect to: the URL's credentials, or `username` and the password in
    /// the environment variable `password_env` (which wins over one in the URL).
    pub fn resolve(
        url: &str,
        schemes: &[&str],
        expected: &'static str,
        credentials: Credentials,
    ) -> Result<Self, SourceError> {
        let mut url = Self::check(url, schemes, expected)?;
        let shown = shown(&url);
        let decode = |text: &str| {
            percent_decode(text).ok_or_else(|| Invalid {
                key: "source.url".into(),
                expected: "user and password percent-encoded as UTF-8",
                got: shown.clone(),
            })
        };
        let in_url_user = Some(decode(url.username())?).filter(|user| !user.is_empty());
        let in_url_password = url.password().map(decode).transpose()?;
        let password = match credentials.password_env {
            Some(name) => Some(std::env::var(name).map_err(|_| Invalid {
                key: "source.password_env".into(),
                expected: "the name of a set environment variable holding the password",
                got: format!("{name:?}, which is not set"),
            })?),
            None => in_url_password,
        };
        if url.password().is_some() {
            warn!(
                source = %shown,
                "the URL holds a password, which the process list and shell history show: \
                 give it in the environment variable named by [source] password_env"
            );
        }
        // Cannot fail for a URL with a host, which `check` made sure of.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Self {
            url,
            username: credentials.username.map(str::to_owned).or(in_url_user),
            password,
            shown,
        })
    }

    /// The URL as logs and events show it: user kept, password elided.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// User and password, when a user is given (a password alone has no one to belong to).
    pub fn login(&self) -> Option<(&str, &str)> {
        let user = self.username.as_deref()?;
        Some((user, self.password.as_deref().unwrap_or_default()))
    }
}

/// `url` with its password and any secret-looking query value replaced by `***`.
pub fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(ELIDED));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let secret = SECRET_PARAMS.iter().any(|s| lower.contains(s));
                let value = if secret { ELIDED.into() } else { value.into() };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.into()
}

/// Serializes a URL as [`shown`] writes it: a config written out shows no password.
pub fn serialize_shown<S, T>(url: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    S: serde::Serializer,
    T: AsRef<str>,
{
    let url = url.as_ref();
    let shown = Url::parse(url).map_or_else(|_| shown_raw(url), |url| shown(&url));
    serializer.serialize_str(&shown)
}

/// A URL that did not parse, shown without anything between `//` and `@`.
fn shown_raw(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{ELIDED}@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The first line of a client library's error: some (retina's) add a hex dump of what was
/// received below, which belongs in no one-line message.
pub fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Which frames to decode when `fps` is below the camera's rate: the first to arrive once a
/// period has passed since the last one kept, on a fixed schedule so the rate holds on
/// average.
#[derive(Debug)]
pub struct Decimator {
    period: Option<Duration>,
    next_due: Option<Instant>,
}

impl Decimator {
    /// `fps` 0 keeps every frame.
    pub fn new(fps: f64) -> Self {
        Self {
            period: (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps)),
            next_due: None,
        }
    }

    /// Whether the frame that arrived at `now` is one to keep.
    pub fn keep(&mut self, now: Instant) -> bool {
        let Some(period) = self.period else {
            return true;
        };
        match self.next_due {
            Some(due) if now < due => false,
            due => {
                // After a gap, the schedule restarts rather than keeping a burst.
                let next = due.map_or(now + period, |due| due + period);
                self.next_due = Some(if now > next { now + period } else { next });
                true
            }
        }
    }
}

/// The current-thread tokio runtime a network source drives its client with, on the source's
/// own thread: the pipeline's threads never see async code.
pub fn runtime(what: &str) -> Result<tokio::runtime::Runtime, SourceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| SourceError::Thread {
            what: what.to_owned(),
            source,
        })
}

/// Time spent decoding network cameras' frames (in microseconds), for `scened bench`'s decode
/// line. Process-wide: the source runs inside the pipeline, which hands out only its frames.
static DECODE_MICROS: Mutex<Option<Histogram<u64>>> = Mutex::new(None);

/// What decoding cost per frame, over the frames decoded.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DecodeCost {
    pub frames: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Times one frame's decoding.
pub fn timed_decode<T>(decode: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let decoded = decode();
    let micros = started.elapsed().as_micros().max(1) as u64;
    let mut times = DECODE_MICROS.lock().unwrap_or_else(PoisonError::into_inner);
    let times = times.get_or_insert_with(|| {
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
    });
    times.saturating_record(micros);
    decoded
}

/// The decode cost so far; `None` before any frame was decoded.
pub fn decode_cost() -> Option<DecodeCost> {
    let times = DECODE_MICROS.lock().unwrap_or_else(PoisonError::into_inner);
    let times = times.as_ref().filter(|t| !t.is_empty())?;
    let ms = |micros: u64| micros as f64 / 1e3;
    Some(DecodeCost {
        frames: times.len(),
        mean_ms: times.mean() / 1e3,
        p50_ms: ms(times.value_at_quantile(0.5)),
        p99_ms: ms(times.value_at_quantile(0.99)),
    })
}

/// How a wait on the network ended.
pub enum Waited<T> {
    Done(T),
    TimedOut,
    Stopped,
}

/// `work`'s outcome, unless `limit` passes or a stop comes first: connecting, a request, a
/// read. Dropping `work` unfinished is safe for all of them (a stream's `next` loses no item).
pub fn within<F: Future>(
    runtime: &tokio::runtime::Runtime,
    limit: Duration,
    shutdown: &Shutdown,
    work: F,
) -> Waited<F::Output> {
    let started = Instant::now();
    runtime.block_on(async {
        let mut work = std::pin::pin!(work);
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Waited::TimedOut;
            }
            if shutdown.is_triggered() {
                return Waited::Stopped;
            }
            if let Ok(done) = tokio::time::timeout(left.min(STOP_POLL), &mut work).await {
                return Waited::Done(done);
            }
        }
    })
}

/// Connecting: `work`'s outcome, unless it takes over [`CONNECT_DEADLINE`] or a stop comes.
pub fn connect<T, F>(
    runtime: &tokio::runtime::Runtime,
    what: &str,
    shutdown: &Shutdown,
    work: F,
) -> Result<T, SourceError>
where
    F: Future<Output = Result<T, SourceError>>,
{
    match within(runtime, CONNECT_DEADLINE, shutdown, work) {
        Waited::Done(done) => done,
        Waited::TimedOut => Err(SourceError::NoAnswer {
            what: what.to_owned(),
            after: CONNECT_DEADLINE,
        }),
        Waited::Stopped => Err(SourceError::Remote {
            what: what.to_owned(),
            reason: "stopped while connecting".into(),
        }),
    }
}

/// The stream's next item, unless `limit` passes or a stop comes first.
pub fn next_within<S: Stream + Unpin>(
    runtime: &tokio::runtime::Runtime,
    limit: Duration,
    shutdown: &Shutdown,
    stream: &mut S,
) -> Waited<Option<S::Item>> {
    within(runtime, limit, shutdown, stream.next())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTSP: [&str; 1] = ["rtsp"];

    #[test]
    fn the_password_is_elided_and_kept_out_of_the_url_given_to_the_client() {
        let endpoint = Endpoint::resolve(
            "rtsp://admin:s%40cret@cam.local:8554/live?token=abc&ch=1",
            &RTSP,
            "an rtsp:// URL",
            Credentials {
                username: None,
                password_env: None,
            },
        )
        .unwrap();
        assert_eq!(
            endpoint.shown(),
            "rtsp://admin:***@cam.local:8554/live?token=***&ch=1"
        );
        assert_eq!(endpoint.login(), Some(("admin", "s@cret")));
        assert_eq!(
            endpoint.url.as_str(),
            "rtsp://cam.local:8554/live?token=abc&ch=1"
        );
    }

    #[test]
    fn a_config_written_out_shows_no_password() {
        let config = crate::source::SourceConfig::Rtsp(crate::source::rtsp::RtspConfig {
            url: "rtsp://admin:hunter2@cam/live".into(),
            ..Default::default()
        });
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("rtsp://admin:***@cam/live"), "{json}");
        assert!(!json.contains("hunter2"), "{json}");
    }

    #[test]
    fn the_password_env_wins_and_a_missing_variable_names_the_key() {
        std::env::set_var("SCENED_TEST_CAMERA_PW", "from-env");
        let endpoint = Endpoint::resolve(
            "http://cam:80/video",
            &["http", "https"],
            "an http:// URL",
            Credentials {
                username: Some("viewer"),
                password_env: Some("SCENED_TEST_CAMERA_PW"),
            },
        )
        .unwrap();
        assert_eq!(endpoint.login(), Some(("viewer", "from-env")));
        assert_eq!(endpoint.shown(), "http://cam/video");
        let missing = Endpoint::resolve(
            "http://cam/video",
            &["http"],
            "an http:// URL",
            Credentials {
                username: Some("viewer"),
                password_env: Some("SCENED_TEST_NOT_SET"),
            },
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("source.password_env"),
            "{missing}"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_showing_its_password() {
        for url in [
            "http://cam/x",
            "rtsp://",
            "rtsp//cam",
            "rtsp://u:hunter2@:554/",
        ] {
            let err = Endpoint::check(url, &RTSP, "an rtsp:// URL").unwrap_err();
            assert_eq!(err.key, "source.url");
            assert!(!err.got.contains("hunter2"), "{err}");
        }
        assert!(Endpoint::check("rtsp://cam/x", &RTSP, "").is_ok());
    }

    #[test]
    fn a_connection_that_never_answers_gives_way_to_a_stop() {
        let runtime = runtime("test").unwrap();
        let shutdown = Shutdown::new();
        let stopper = shutdown.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stopper.trigger();
        });
        let never = std::future::pending::<Result<(), SourceError>>();
        let err = connect(&runtime, "cam", &shutdown, never).unwrap_err();
        assert!(
            err.to_string().contains("stopped while connecting"),
            "{err}"
        );
        // Well before CONNECT_DEADLINE: the stop was seen, not the deadline.
        assert!(
            started.elapsed() < CONNECT_DEADLINE / 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_decimator_keeps_one_frame_a_period_on_average() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // A 30 fps camera, 10 fps wanted: every third frame.
        let mut every_third = Decimator::new(10.0);
        let kept: Vec<u64> = (0..30)
            .map(|i| i * 100 / 3)
            .filter(|&ms| every_third.keep(at(ms)))
            .collect();
        assert_eq!(kept.len(), 10, "{kept:?}");
        let mut all = Decimator::new(0.0);
        assert!((0..5).all(|i| all.keep(at(i))));
        // After a long gap, one frame, not a burst to catch up.
        let mut gap = Decimator::new(10.0);
        assert!(gap.keep(at(0)));
        assert!(gap.keep(at(5_000)));
        assert!(!gap.keep(at(5_050)));
        assert!(gap.keep(at(5_100)));
    }
}
