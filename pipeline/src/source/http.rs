//! An HTTP-MJPEG camera: `multipart/x-mixed-replace` over HTTP or HTTPS, as cheap IP cameras,
//! ESP32-CAM boards and phone apps serve it. hyper's HTTP/1 client on the source's own tokio
//! runtime ([`super::remote`]); the parts are read by [`super::multipart`] with the clip's
//! JPEG walker and decoded through the same nokhwa path as a camera's MJPEG.
//!
//! Basic authentication only: hyper does not do digest, and a camera asking for it is refused
//! by name. A frame's capture time is when the read that completed it returned. Frames the
//! `fps` setting skips are not decoded: only their segments are walked.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use nokhwa::utils::{FrameFormat, Resolution};
use nokhwa::Buffer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use super::clip::MAX_FRAME_BYTES;
use super::deadline::FIRST_READ_DEADLINE;
use super::multipart::{Multipart, Step};
use super::reconnect::{Reconnecting, Reopen};
use super::remote::{
    self, next_within, Credentials, Decimator, Endpoint, UrlForm, Waited, READ_DEADLINE,
};
use super::{decode, Sequence, SourceError, DEFAULT_MAX_PIXELS};
use crate::error::Invalid;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

const FORM: UrlForm = UrlForm {
    schemes: &["http", "https"],
    expected: "an http:// or https:// URL with a host, e.g. http://cam.local/video",
    unnamed: "http camera",
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The camera's MJPEG stream, `http[s]://[user[:password]@]host[:port]/path`. A password
    /// here is accepted but warned about: use `password_env`. Written out (`scened bench --json`'s setup) with the
    /// password elided.
    #[serde(serialize_with = "remote::serialize_shown")]
    pub url: String,
    /// User for basic authentication, overriding the URL's.
    pub username: Option<String>,
    /// Name of the environment variable holding the password (not the password itself).
    pub password_env: Option<String>,
    /// Frames per second to label, at most; 0 labels every frame the camera sends. Frames
    /// skipped are not decoded.
    pub fps: f64,
    /// Most pixels a frame may have: one claiming more is refused from its JPEG header before
    /// decoding, counted as a frame error, and the stream goes on.
    pub max_pixels: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: None,
            password_env: None,
            fps: 0.0,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl HttpConfig {
    /// Checks the settings without connecting.
    pub fn check(&self) -> Result<(), Invalid> {
        FORM.check(&self.url, self.fps, self.max_pixels)
    }

    /// Connects and reads the stream's first answer: a camera that is not there, refuses the
    /// credentials or serves no MJPEG fails start-up. One lost later is reconnected.
    pub fn build(&self) -> Result<Reconnecting<HttpCamera>, SourceError> {
        self.check()?;
        let credentials = Credentials {
            username: self.username.as_deref(),
            password_env: self.password_env.as_deref(),
        };
        let endpoint = FORM.resolve(&self.url, credentials)?;
        let tls = (endpoint.url.scheme() == "https")
            .then(|| tls(endpoint.shown()))
            .transpose()?;
        let camera = HttpCamera {
            endpoint,
            tls,
            fps: self.fps,
            max_pixels: self.max_pixels,
        };
        let first = camera.reopen()?;
        Ok(Reconnecting::new(camera, first, remote::RETRY))
    }

    /// The URL as events and logs show it, password elided.
    pub fn shown(&self) -> String {
        FORM.shown(&self.url)
    }
}

/// The system's trusted roots, with rustls's ring provider named rather than taken from the
/// process default.
fn tls(what: &str) -> Result<Arc<rustls::ClientConfig>, SourceError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| remote_error(what, e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn remote_error(what: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Remote {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

/// Opens the stream, as often as needed.
pub struct HttpCamera {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    fps: f64,
    max_pixels: u64,
}

impl Reopen for HttpCamera {
    type Source = HttpSource;

    fn reopen(&self) -> Result<HttpSource, SourceError> {
        self.reopen_until(&Shutdown::default())
    }

    fn reopen_until(&self, shutdown: &Shutdown) -> Result<HttpSource, SourceError> {
        let what = self.describe();
        let runtime = remote::runtime(&what)?;
        let response = remote::connect(&runtime, &what, shutdown, self.request())?;
        let boundary = self.stream_boundary(response.status(), response.headers())?;
        Ok(HttpSource {
            parts: Multipart::new(boundary.as_deref(), MAX_FRAME_BYTES),
            body: response.into_body(),
            runtime,
            decimator: Decimator::new(self.fps),
            max_pixels: self.max_pixels,
            sequence: Sequence::default(),
            arrived: Instant::now(),
            frame_due: Instant::now() + FIRST_READ_DEADLINE,
            frame_wait: FIRST_READ_DEADLINE,
            what,
        })
    }

    fn describe(&self) -> String {
        self.endpoint.shown().to_owned()
    }
}

impl HttpCamera {
    async fn request(&self) -> Result<Response<Incoming>, SourceError> {
        let what = self.endpoint.shown();
        let url = &self.endpoint.url;
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        let failed = |e: std::io::Error| remote_error(what, format!("cannot connect: {e}"));
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(failed)?;
        // Frames are read as they come, not batched.
        tcp.set_nodelay(true).map_err(failed)?;
        match &self.tls {
            None => self.send(tcp).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_matches(['[', ']']).to_owned(),
                )
                .map_err(|e| remote_error(what, e.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| remote_error(what, format!("TLS: {e}")))?;
                self.send(tls).await
            }
        }
    }

    async fn send<IO>(&self, io: IO) -> Result<Response<Incoming>, SourceError>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let what = self.endpoint.shown();
        let failed = |e: hyper::Error| remote_error(what, format!("HTTP: {e}"));
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(failed)?;
        // Runs while the source's runtime is driven, i.e. during its reads.
        tokio::spawn(connection);
        let url = &self.endpoint.url;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let mut request = Request::get(path)
            .header(HOST, host)
            .header(USER_AGENT, concat!("scened/", env!("CARGO_PKG_VERSION")));
        if let Some((user, password)) = self.endpoint.login() {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header(AUTHORIZATION, format!("Basic {token}"));
        }
        let request = request
            .body(String::new())
            .map_err(|e| remote_error(what, e.to_string()))?;
        sender.send_request(request).await.map_err(failed)
    }

    /// The multipart boundary of a good answer: from the header, or `None` to read it from
    /// the first line when the server says `application/octet-stream`.
    fn stream_boundary(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Option<String>, SourceError> {
        let what = self.endpoint.shown();
        if status == StatusCode::UNAUTHORIZED {
            let asks = headers
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let reason: &str = if asks.trim_start().to_ascii_lowercase().starts_with("digest") {
                "the camera asks for digest authentication; scened sends basic only"
            } else if self.endpoint.login().is_some() {
                "HTTP 401: the camera refused the user and password"
            } else {
                "HTTP 401: the camera wants a user and password (username, password_env)"
            };
            return Err(remote_error(what, reason));
        }
        if !status.is_success() {
            return Err(remote_error(what, format!("HTTP {status}")));
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("multipart/x-mixed-replace") {
            return Ok(Multipart::boundary_of(content_type).map(str::to_owned));
        }
        if essence.eq_ignore_ascii_case("application/octet-stream") || essence.is_empty() {
            return Ok(None);
        }
        Err(remote_error(
            what,
            format!("not an MJPEG stream (Content-Type: {content_type}); use the camera's multipart/x-mixed-replace URL"),
        ))
    }
}

pub struct HttpSource {
    what: String,
    runtime: Runtime,
    body: Incoming,
    parts: Multipart,
    decimator: Decimator,
    max_pixels: u64,
    sequence: Sequence,
    /// When the last read returned: the capture time of the frames it completed.
    arrived: Instant,
    /// A frame must be complete by then, or the camera is lost.
    frame_due: Instant,
    /// How long the wait for that frame is.
    frame_wait: Duration,
}

impl HttpSource {
    /// Reads more of the body into the parts.
    fn read(&mut self, shutdown: &Shutdown) -> Result<bool, StageError> {
        let lost = |reason: String| {
            StageError::fatal(SourceError::Remote {
                what: self.what.clone(),
                reason,
            })
        };
        let limit = self.frame_due.saturating_duration_since(Instant::now());
        let body = &mut self.body;
        let mut frames = futures::stream::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
        let read = next_within(&self.runtime, limit, shutdown, &mut frames);
        match read {
            Waited::Stopped => Ok(false),
            Waited::TimedOut => Err(StageError::fatal(SourceError::ReadTimeout {
                what: self.what.clone(),
                after: self.frame_wait,
            })),
            Waited::Done(None) => Err(lost("the camera ended the stream".into())),
            Waited::Done(Some(Err(e))) => Err(lost(format!("HTTP: {e}"))),
            Waited::Done(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.arrived = Instant::now();
                    self.parts.push(&data);
                }
                Ok(true)
            }
        }
    }
}

impl Source for HttpSource {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        loop {
            let what = &self.what;
            match self.parts.step() {
                Step::More => {
                    if !self.read(shutdown)? {
                        return Ok(None);
                    }
                }
                Step::Skipped(reason) => {
                    return Err(StageError::item(SourceError::Remote {
                        what: what.clone(),
                        reason: format!("bad part: {reason}"),
                    }))
                }
                Step::Frame { jpeg, size } => {
                    let captured_at = self.arrived;
                    self.frame_due = Instant::now() + READ_DEADLINE;
                    self.frame_wait = READ_DEADLINE;
                    if !self.decimator.keep(captured_at) {
                        continue;
                    }
                    let buffer =
                        Buffer::new(Resolution::new(size.0, size.1), jpeg, FrameFormat::MJPEG);
                    let decoded = remote::timed_decode(|| decode(&buffer, self.max_pixels));
                    let image = decoded.map_err(|reason| {
                        StageError::item(SourceError::RemoteFrame {
                            what: what.clone(),
                            reason,
                        })
                    })?;
                    return Ok(Some(self.sequence.frame(captured_at, image)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn camera(url: &str) -> HttpCamera {
        let credentials = Credentials {
            username: None,
            password_env: None,
        };
        HttpCamera {
            endpoint: FORM.resolve(url, credentials).unwrap(),
            tls: None,
            fps: 0.0,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    fn answer(
        camera: &HttpCamera,
        status: u16,
        headers: &[(&'static str, &'static str)],
    ) -> Result<Option<String>, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        camera
            .stream_boundary(StatusCode::from_u16(status).unwrap(), &map)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_answer_gives_the_boundary_or_a_reason_naming_the_camera() {
        let cam = camera("http://viewer:pw@cam/video");
        let multipart = [("content-type", "multipart/x-mixed-replace; boundary=frame")];
        assert_eq!(answer(&cam, 200, &multipart), Ok(Some("frame".into())));
        let octets = [("content-type", "application/octet-stream")];
        assert_eq!(answer(&cam, 200, &octets), Ok(None));
        assert_eq!(
            answer(&cam, 200, &[("content-type", "text/html")]).unwrap_err(),
            "http://viewer:***@cam/video: not an MJPEG stream (Content-Type: text/html); use \
             the camera's multipart/x-mixed-replace URL"
        );
        let digest = [("www-authenticate", "Digest realm=\"cam\", nonce=\"1\"")];
        assert!(answer(&cam, 401, &digest).unwrap_err().contains("digest"));
        assert!(answer(&cam, 401, &[])
            .unwrap_err()
            .contains("refused the user and password"));
        let anonymous = camera("http://cam/video");
        assert!(answer(&anonymous, 401, &[])
            .unwrap_err()
            .contains("password_env"));
        assert_eq!(
            answer(&anonymous, 404, &[]).unwrap_err(),
            "http://cam/video: HTTP 404 Not Found"
        );
    }
}
