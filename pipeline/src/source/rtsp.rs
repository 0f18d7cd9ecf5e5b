//! An RTSP camera sending H.264: retina (Moonfire NVR's RTSP client) on the source's own
//! tokio runtime ([`super::remote`]) depacketizes the RTP stream into access units, in Annex B
//! with the parameter sets before each key frame; openh264 (built from its bundled source, no
//! system library) decodes them.
//!
//! - H.264 only (baseline, main and high profiles): a camera whose video is H.265 is refused
//!   by name at connect time, as is one with no H.264 video at all.
//! - `fps` below the camera's: a frame no other depends on (`nal_ref_idc` 0) is skipped before
//!   decoding; any other must be decoded, since later frames are predicted from it, and is
//!   skipped after decoding, before its conversion to RGB. Most cameras mark no frame
//!   disposable, so labelling fewer frames saves the conversion, resize and inference, not
//!   the decode.
//! - `max_pixels`: the size the sequence parameter set claims is checked before a frame of it
//!   reaches the decoder, which would otherwise allocate for it; frames of a refused size are
//!   counted as frame errors until the camera sends parameters within the limit.
//! - Bounds: retina keeps no reorder buffer (a packet out of order over UDP is a loss), and
//!   reassembles one access unit at a time; a frame whose packets never end is bounded by
//!   the read deadline (no frame for [`READ_DEADLINE`] is a loss, and the session with its
//!   buffers is dropped), not by bytes: see docs/network-cameras.md.
//! - A frame's capture time is when retina hands it over: when its last packet arrived.
//!   Frames before the first key frame cannot be decoded and are passed over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use retina::client::{
    Credentials as Login, Demuxed, PlayOptions, SessionGroup, SessionOptions, SetupOptions,
    Transport as RetinaTransport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoFrame};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tracing::info;

use super::deadline::FIRST_READ_DEADLINE;
use super::reconnect::{Reconnecting, Reopen};
use super::remote::{
    self, next_within, Credentials, Decimator, Endpoint, UrlForm, Waited, READ_DEADLINE,
};
use super::{FrameError, Sequence, SourceError, DEFAULT_MAX_PIXELS};
use crate::error::Invalid;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

const FORM: UrlForm = UrlForm {
    schemes: &["rtsp"],
    expected: "an rtsp:// URL with a host, e.g. rtsp://cam.local:554/stream1",
    unnamed: "rtsp camera",
};
/// How long a closing session may take to say TEARDOWN.
const TEARDOWN_WAIT: Duration = Duration::from_millis(500);

/// How RTP packets travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Interleaved on the RTSP connection: one TCP port, through NAT and firewalls, no loss
    /// (a slow link delays frames instead).
    #[default]
    Tcp,
    /// Separate UDP ports: no head-of-line blocking, but lost or reordered packets cost a
    /// frame (and the frames predicted from it, up to the next key frame); LAN only.
    Udp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspConfig {
    /// The camera's stream, `rtsp://[user[:password]@]host[:port]/path`. A password here is
    /// accepted but warned about: use `password_env`. Written out (`scened bench --json`'s setup) with the
    /// password elided.
    #[serde(serialize_with = "remote::serialize_shown")]
    pub url: String,
    /// User for the camera's basic or digest authentication, overriding the URL's.
    pub username: Option<String>,
    /// Name of the environment variable holding the password (not the password itself).
    pub password_env: Option<String>,
    /// `tcp` (default) or `udp`.
    pub transport: Transport,
    /// Frames per second to label, at most; 0 labels every frame the camera sends.
    pub fps: f64,
    /// Most pixels a frame may have: a stream whose parameters claim more is refused before
    /// decoding, each of its frames counted as a frame error.
    pub max_pixels: u64,
}

impl Default for RtspConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: None,
            password_env: None,
            transport: Transport::default(),
            fps: 0.0,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl RtspConfig {
    /// Checks the settings without connecting.
    pub fn check(&self) -> Result<(), Invalid> {
        FORM.check(&self.url, self.fps, self.max_pixels)
    }

    /// Connects and starts playing: a camera that is not there, refuses the credentials or
    /// has no H.264 video fails start-up. One lost later is reconnected.
    pub fn build(&self) -> Result<Reconnecting<RtspCamera>, SourceError> {
        self.check()?;
        let credentials = Credentials {
            username: self.username.as_deref(),
            password_env: self.password_env.as_deref(),
        };
        let endpoint = FORM.resolve(&self.url, credentials)?;
        let camera = RtspCamera {
            endpoint,
            transport: self.transport,
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

/// Opens the session, as often as needed.
pub struct RtspCamera {
    endpoint: Endpoint,
    transport: Transport,
    fps: f64,
    max_pixels: u64,
}

impl Reopen for RtspCamera {
    type Source = RtspSource;

    fn reopen(&self) -> Result<RtspSource, SourceError> {
        self.reopen_until(&Shutdown::default())
    }

    fn reopen_until(&self, shutdown: &Shutdown) -> Result<RtspSource, SourceError> {
        let what = self.describe();
        let runtime = remote::runtime(&what)?;
        let group = Arc::new(SessionGroup::default());
        let (session, stream) =
            remote::connect(&runtime, &what, shutdown, self.play(group.clone()))?;
        info!(source = %what, transport = ?self.transport, "rtsp playing");
        Ok(RtspSource {
            decoder: H264::new(&what, self.max_pixels)?,
            session: Some(session),
            stream,
            group,
            runtime,
            decimator: Decimator::new(self.fps),
            sequence: Sequence::default(),
            frame_due: Instant::now() + FIRST_READ_DEADLINE,
            frame_wait: FIRST_READ_DEADLINE,
            what,
        })
    }

    fn describe(&self) -> String {
        self.endpoint.shown().to_owned()
    }
}

impl RtspCamera {
    fn error(&self, reason: impl std::fmt::Display) -> SourceError {
        SourceError::Remote {
            what: self.endpoint.shown().to_owned(),
            reason: remote::first_line(&reason.to_string()),
        }
    }

    /// DESCRIBE, SETUP of the H.264 video stream, PLAY; the session and the stream's index.
    async fn play(&self, group: Arc<SessionGroup>) -> Result<(Demuxed, usize), SourceError> {
        let login = self.endpoint.login().map(|(username, password)| Login {
            username: username.to_owned(),
            password: password.to_owned(),
        });
        let options = SessionOptions::default()
            .creds(login)
            .user_agent(concat!("scened/", env!("CARGO_PKG_VERSION")).to_owned())
            .session_group(group);
        let mut session = retina::client::Session::describe(self.endpoint.url.clone(), options)
            .await
            .map_err(|e| self.error(e))?;
        let streams = session.streams();
        let video = streams
            .iter()
            .position(|s| s.media() == "video" && s.encoding_name() == "h264");
        let Some(index) = video else {
            let offered: Vec<String> = streams
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            let h265 = streams
                .iter()
                .any(|s| s.media() == "video" && s.encoding_name() == "h265");
            return Err(self.error(if h265 {
                "its video is H.265 (HEVC), which scened does not decode: set the camera's \
                 stream to H.264"
                    .to_owned()
            } else {
                format!("no H.264 video stream (it offers {})", offered.join(", "))
            }));
        };
        let transport = match self.transport {
            Transport::Tcp => RetinaTransport::Tcp(Default::default()),
            Transport::Udp => RetinaTransport::Udp(Default::default()),
        };
        let setup = SetupOptions::default()
            .transport(transport)
            .frame_format(FrameFormat::SIMPLE);
        session
            .setup(index, setup)
            .await
            .map_err(|e| self.error(e))?;
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| self.error(e))?;
        let demuxed = playing.demuxed().map_err(|e| self.error(e))?;
        Ok((demuxed, index))
    }
}

pub struct RtspSource {
    what: String,
    /// `None` only while being dropped.
    session: Option<Demuxed>,
    /// The H.264 stream's index among the session's.
    stream: usize,
    group: Arc<SessionGroup>,
    runtime: Runtime,
    decoder: H264,
    decimator: Decimator,
    sequence: Sequence,
    frame_due: Instant,
    frame_wait: Duration,
}

impl Source for RtspSource {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        loop {
            let limit = self.frame_due.saturating_duration_since(Instant::now());
            let Some(session) = self.session.as_mut() else {
                return Ok(None);
            };
            let lost = |reason: String| {
                StageError::fatal(SourceError::Remote {
                    what: self.what.clone(),
                    reason,
                })
            };
            let frame = match next_within(&self.runtime, limit, shutdown, session) {
                Waited::Stopped => return Ok(None),
                Waited::TimedOut => {
                    return Err(StageError::fatal(SourceError::ReadTimeout {
                        what: self.what.clone(),
                        after: self.frame_wait,
                    }))
                }
                Waited::Done(None) => return Err(lost("the camera ended the stream".into())),
                Waited::Done(Some(Err(e))) => return Err(lost(remote::first_line(&e.to_string()))),
                Waited::Done(Some(Ok(CodecItem::VideoFrame(frame)))) => frame,
                Waited::Done(Some(Ok(_))) => continue,
            };
            let arrived = Instant::now();
            self.frame_due = arrived + READ_DEADLINE;
            self.frame_wait = READ_DEADLINE;
            if frame.stream_id() != self.stream {
                continue;
            }
            if frame.has_new_parameters() || self.decoder.size.is_none() {
                let params = session.streams()[self.stream].parameters();
                self.decoder.parameters(params);
            }
            // A frame nothing depends on can be left undecoded.
            let keep = self.decimator.keep(arrived);
            if !keep && frame.is_disposable() {
                continue;
            }
            let bad = |reason| {
                StageError::item(SourceError::RemoteFrame {
                    what: self.what.clone(),
                    reason,
                })
            };
            match self.decoder.decode(&frame, keep).map_err(bad)? {
                Some(image) => return Ok(Some(self.sequence.frame(arrived, image))),
                None => continue,
            }
        }
    }
}

impl Drop for RtspSource {
    /// retina says TEARDOWN from a task it spawns when the session drops: drop it inside the
    /// runtime and give that task a moment, so the camera frees the session at once rather
    /// than after its timeout.
    fn drop(&mut self) {
        {
            let _inside = self.runtime.enter();
            drop(self.session.take());
        }
        let group = self.group.clone();
        // The timer is made inside the runtime: a tokio timer needs its context.
        let _ = self.runtime.block_on(async move {
            tokio::time::timeout(TEARDOWN_WAIT, group.await_teardown()).await
        });
    }
}

/// openh264, with the size checked before the decoder sees a frame.
pub struct H264 {
    decoder: Decoder,
    max_pixels: u64,
    /// The size the current parameters claim; `None` before any.
    size: Option<(u32, u32)>,
    /// A key frame has been decoded since the parameters last changed: frames before one
    /// reference pictures the decoder never had.
    keyed: bool,
}

impl H264 {
    pub fn new(what: &str, max_pixels: u64) -> Result<Self, SourceError> {
        let decoder = Decoder::new().map_err(|e| SourceError::Remote {
            what: what.to_owned(),
            reason: format!("cannot start the H.264 decoder: {e}"),
        })?;
        Ok(Self {
            decoder,
            max_pixels,
            size: None,
            keyed: false,
        })
    }

    /// The stream's parameters changed (or came for the first time).
    fn parameters(&mut self, params: Option<ParametersRef<'_>>) {
        if let Some(ParametersRef::Video(video)) = params {
            let size = video.pixel_dimensions();
            if self.size != Some(size) {
                info!(size = %format!("{}x{}", size.0, size.1), "h264 stream size");
            }
            self.size = Some(size);
            self.keyed = false;
        }
    }

    /// Decodes `frame`; converts it to RGB only if `keep`. `None` when there is no picture
    /// to give: skipped, before the first key frame, or held by the decoder.
    fn decode(&mut self, frame: &VideoFrame, keep: bool) -> Result<Option<RgbImage>, FrameError> {
        let Some((width, height)) = self.size else {
            return Err(FrameError::Malformed("H.264 frame before any parameters"));
        };
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(FrameError::TooLarge {
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        if !self.keyed && !frame.is_random_access_point() {
            return Ok(None);
        }
        self.keyed = true;
        self.decode_annex_b(frame.data(), keep)
    }

    /// Decodes one access unit in Annex B form, parameter sets included where they changed.
    pub fn decode_annex_b(
        &mut self,
        data: &[u8],
        keep: bool,
    ) -> Result<Option<RgbImage>, FrameError> {
        remote::timed_decode(|| self.decode_picture(data, keep))
    }

    fn decode_picture(&mut self, data: &[u8], keep: bool) -> Result<Option<RgbImage>, FrameError> {
        let decoded = self
            .decoder
            .decode(data)
            .map_err(|e| FrameError::H264(e.to_string()))?;
        let Some(yuv) = decoded.filter(|_| keep) else {
            return Ok(None);
        };
        let (width, height) = yuv.dimensions();
        // The decoder's own size, checked again: the picture is about to be copied out.
        let (w, h) = (width as u32, height as u32);
        if u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(FrameError::TooLarge {
                width: w,
                height: h,
                max_pixels: self.max_pixels,
            });
        }
        let mut rgb = vec![0; width * height * 3];
        yuv.write_rgb8(&mut rgb);
        Ok(RgbImage::from_raw(w, h, rgb))
    }
}
