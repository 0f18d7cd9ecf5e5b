//! Where frames come from. Each kind is a config whose `build()` does the fallible work
//! (open the folder, file or camera) and returns a [`Source`].

pub mod camera;
pub mod clip;
pub mod deadline;
pub mod http;
pub mod images;
pub mod multipart;
pub mod reconnect;
pub mod remote;
pub mod rtsp;
pub mod synthetic;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::FrameFormat;
use nokhwa::{Buffer, NokhwaError};
use serde::{Deserialize, Serialize};

use self::reconnect::Reopen;
use crate::contain;
use crate::error::Invalid;
use crate::events::Events;
use crate::frame::Frame;
use crate::jpeg;
use crate::stage::{Shutdown, Source, StageError};

/// Above this a frame rate is a typo, not a camera.
pub const MAX_FPS: f64 = 1000.0;
/// Largest frame width or height accepted.
pub const MAX_SIDE: u32 = 8192;
/// Most pixels a frame or image may have, `[source] max_pixels` unless set: 8192 × 8192 (a
/// decoded frame of 192 MiB).
pub const DEFAULT_MAX_PIXELS: u64 = 8192 * 8192;

/// One source, chosen by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    Synthetic(synthetic::SyntheticConfig),
    Images(images::ImagesConfig),
    Clip(clip::ClipConfig),
    Camera(camera::CameraConfig),
    /// An HTTP-MJPEG camera.
    Http(http::HttpConfig),
    /// An RTSP camera sending H.264.
    Rtsp(rtsp::RtspConfig),
}

/// The demo clip: the first run needs no camera and no file.
impl Default for SourceConfig {
    fn default() -> Self {
        Self::Clip(clip::ClipConfig::default())
    }
}

impl SourceConfig {
    /// Checks the settings without opening anything.
    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Self::Synthetic(config) => config.check(),
            Self::Images(config) => config.check(),
            Self::Clip(config) => config.check().map(|_| ()),
            Self::Camera(config) => config.check().map(|_| ()),
            Self::Http(config) => config.check(),
            Self::Rtsp(config) => config.check(),
        }
    }

    pub fn build(&self) -> Result<Box<dyn Source>, SourceError> {
        // Every source has the series, 0 unless a camera is reopened: a dashboard reads a
        // count, not a missing series.
        ::metrics::counter!(crate::metrics::SOURCE_RECONNECTS_TOTAL).increment(0);
        Ok(match self {
            Self::Synthetic(config) => Box::new(config.build()?),
            Self::Images(config) => paced(config.clone(), config.fps)?,
            Self::Clip(config) => paced(config.clone(), config.fps)?,
            Self::Camera(config) => Box::new(config.build()?),
            Self::Http(config) => Box::new(config.build()?),
            Self::Rtsp(config) => Box::new(config.build()?),
        })
    }

    /// Whether the source is on the network: `scened validate` checks it without connecting.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Http(_) | Self::Rtsp(_))
    }

    /// What events call the source, e.g. `camera 0`, `clip (built-in demo clip)`, or a
    /// camera's URL with its password elided.
    pub fn describe(&self) -> String {
        match self {
            Self::Synthetic(config) => format!("synthetic {}x{}", config.width, config.height),
            Self::Images(config) => format!("images {}", config.dir.display()),
            Self::Clip(config) => format!("clip {}", config.name().display()),
            Self::Camera(config) => config.selector().to_string(),
            Self::Http(config) => config.shown(),
            Self::Rtsp(config) => config.shown(),
        }
    }

    /// Time between frames the source aims for; `None` when it runs as fast as it can.
    pub fn frame_period(&self) -> Option<Duration> {
        let fps = match self {
            Self::Synthetic(config) => config.fps,
            Self::Images(config) => config.fps,
            Self::Clip(config) => config.fps,
            Self::Camera(config) => f64::from(config.fps),
            Self::Http(config) => config.fps,
            Self::Rtsp(config) => config.fps,
        };
        (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps))
    }
}

/// A file source as it is read: unpaced, directly; paced (live), with its reads under a
/// deadline and reopened when one is missed.
fn paced<R: Reopen + Sync>(reopen: R, fps: f64) -> Result<Box<dyn Source>, SourceError> {
    Ok(match deadline::read_deadline(fps) {
        None => Box::new(reopen.reopen()?),
        Some(limit) => {
            let live = deadline::Live::new(reopen, limit);
            let first = live.reopen()?;
            Box::new(reconnect::Reconnecting::new(live, first, FILE_RETRY))
        }
    })
}

/// A file that stalled is retried soon; past a few seconds, retrying faster only floods the
/// log.
const FILE_RETRY: reconnect::Backoff = reconnect::Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// Ends a source's stream after some frames or some time, whichever comes first.
pub struct Limited<S> {
    source: S,
    frames_left: Option<u64>,
    run_for: Option<Duration>,
    /// Set at the first read, so the time counts from when the source starts, not from build.
    started: Option<Instant>,
}

impl<S: Source> Limited<S> {
    pub fn new(source: S, frames: Option<u64>, run_for: Option<Duration>) -> Self {
        Self {
            source,
            frames_left: frames,
            run_for,
            started: None,
        }
    }
}

impl<S: Source> Source for Limited<S> {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let out_of_time = self
            .run_for
            .is_some_and(|run_for| started.elapsed() >= run_for);
        if self.frames_left == Some(0) || out_of_time {
            return Ok(None);
        }
        let frame = self.source.next_frame(shutdown)?;
        if let (Some(left), Some(_)) = (&mut self.frames_left, &frame) {
            *left -= 1;
        }
        Ok(frame)
    }

    fn publish_to(&mut self, events: &Events) {
        self.source.publish_to(events);
    }
}

/// How a raw clip encodes its frames (a camera's format is [`camera::choice::CameraPixelFormat`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    /// Each frame a JPEG.
    #[default]
    Mjpeg,
    /// Packed YUV 4:2:2, two bytes a pixel.
    Yuyv,
}

impl PixelFormat {
    fn frame_format(self) -> FrameFormat {
        match self {
            Self::Mjpeg => FrameFormat::MJPEG,
            Self::Yuyv => FrameFormat::YUYV,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{dir} holds no image files (jpg, jpeg, png, bmp, webp, tif, tiff)")]
    NoImages { dir: PathBuf },
    #[error("no readable images left in {dir}")]
    NoReadableImages { dir: PathBuf },
    #[error(transparent)]
    Image(crate::decode::ImageError),
    #[error("clip {path} is empty")]
    EmptyClip { path: PathBuf },
    #[error("clip {path} has no decodable frames")]
    NoFrames { path: PathBuf },
    #[error("clip {path}: bad frame at byte {offset}: {reason}")]
    BadFrame {
        path: PathBuf,
        offset: u64,
        reason: FrameError,
    },
    #[error("no camera found")]
    NoCamera,
    #[error("camera index {index} out of range ({count} cameras)")]
    CameraIndex { index: u32, count: usize },
    #[error("no camera with id {id:?} (ids: {ids})")]
    CameraId { id: String, ids: String },
    #[error(
        "camera access was not granted (macOS: System Settings > Privacy & Security > Camera, \
         for the app scened runs in; `tccutil reset Camera` asks again)"
    )]
    CameraPermission,
    #[error("cannot list cameras")]
    CameraQuery(#[source] NokhwaError),
    #[error("cannot list cameras: {0}")]
    CameraList(String),
    #[error("{what}")]
    Camera {
        what: String,
        #[source]
        source: NokhwaError,
    },
    #[error("{what}: cannot read its modes: {reason}")]
    CameraModes { what: String, reason: String },
    #[error("{what} has no mode scened can decode")]
    NoCameraMode { what: String },
    #[error("{what}: cannot decode frame: {reason}")]
    CameraFrame { what: String, reason: FrameError },
    #[error("{what}: no frame within {} ms", after.as_millis())]
    ReadTimeout { what: String, after: Duration },
    /// A network camera that cannot be reached, or answers what scened cannot use.
    #[error("{what}: {reason}")]
    Remote { what: String, reason: String },
    #[error("{what}: no answer within {} s", after.as_secs())]
    NoAnswer { what: String, after: Duration },
    #[error("{what}: bad frame: {reason}")]
    RemoteFrame { what: String, reason: FrameError },
    #[error("{what}: not open within {} ms", after.as_millis())]
    OpenTimeout { what: String, after: Duration },
    #[error("{what}: opening it panicked: {panic}")]
    OpenPanicked { what: String, panic: contain::Panic },
    #[error("{what}: still closing from before (a call into its driver has not returned)")]
    StillClosing { what: String },
    #[error("{what}: cannot start its reader thread")]
    Thread {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} unavailable, retrying in {} ms", retry_in.as_millis())]
    Unavailable {
        what: String,
        retry_in: Duration,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn check_size(width: u32, height: u32) -> Result<(), Invalid> {
    let side = 1..=MAX_SIDE;
    Invalid::check(side.contains(&width), "source.width", "1 to 8192", width)?;
    Invalid::check(side.contains(&height), "source.height", "1 to 8192", height)
}

fn check_max_pixels(max_pixels: u64) -> Result<(), Invalid> {
    Invalid::check(
        max_pixels >= 1,
        "source.max_pixels",
        "at least 1",
        max_pixels,
    )
}

fn check_fps(fps: f64) -> Result<(), Invalid> {
    Invalid::check(
        (0.0..=MAX_FPS).contains(&fps),
        "source.fps",
        "0 (as fast as possible) to 1000",
        fps,
    )?;
    // A frame period must be a duration: 5e-324 fps would be one every 2e323 s.
    let period_ok = fps == 0.0 || 1.0 / fps <= Invalid::MAX_SECONDS;
    Invalid::check(
        period_ok,
        "source.fps",
        "0, or a frame every 1e9 s or more often",
        fps,
    )
}

/// Why a frame's bytes gave no picture.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a whole frame.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Decode(NokhwaError),
    /// mozjpeg reports corrupt JPEG data by unwinding, and nokhwa does not catch it.
    #[error("{0}")]
    Panicked(contain::Panic),
    /// openh264 could not decode an access unit.
    #[error("H.264: {0}")]
    H264(String),
    /// Refused before decoding: the decoder would allocate for every claimed pixel.
    #[error("the frame claims {width}x{height} pixels, over source.max_pixels ({max_pixels})")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

/// Decodes a frame exactly as nokhwa does for a camera, so files test the camera's path. A
/// frame claiming more than `max_pixels` is refused from its header (a JPEG's frame header,
/// or the camera mode's size), before any allocation: neither nokhwa nor mozjpeg bound it.
fn decode(buffer: &Buffer, max_pixels: u64) -> Result<RgbImage, FrameError> {
    let (width, height) = match buffer.source_frame_format() {
        FrameFormat::MJPEG => {
            jpeg::claimed_size(buffer.buffer()).ok_or(FrameError::Malformed("no frame header"))?
        }
        _ => (buffer.resolution().width(), buffer.resolution().height()),
    };
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(FrameError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    contain::catch(|| buffer.decode_image::<RgbFormat>())
        .map_err(FrameError::Panicked)?
        .map_err(FrameError::Decode)
}

/// Numbers a source's frames from 0.
#[derive(Debug, Default)]
struct Sequence(u64);

impl Sequence {
    fn frame(&mut self, captured_at: Instant, image: RgbImage) -> Frame {
        let seq = self.0;
        self.0 += 1;
        Frame {
            seq,
            captured_at,
            image,
        }
    }
}

/// Releases frames at a steady rate by the wall clock.
#[derive(Debug)]
struct Pacer {
    period: Option<Duration>,
    next_due: Option<Instant>,
}

impl Pacer {
    /// `fps` 0 means no pacing.
    fn new(fps: f64) -> Self {
        Self {
            period: (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps)),
            next_due: None,
        }
    }

    /// Waits until the next frame is due; `false` if a stop came first.
    fn wait(&mut self, shutdown: &Shutdown) -> bool {
        let Some(period) = self.period else {
            return true;
        };
        let now = Instant::now();
        let due = self.next_due.unwrap_or(now);
        if due > now && shutdown.sleep(due - now) {
            return false;
        }
        // After a stall, restart the schedule rather than burst to catch up.
        let after = Instant::now();
        let late = after.saturating_duration_since(due) > period;
        self.next_due = Some(if late { after + period } else { due + period });
        true
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Real encoded frames for the file sources' tests.

    use std::io::Cursor;

    use image::codecs::jpeg::JpegEncoder;
    use image::{ImageFormat, Rgb, RgbImage};

    pub(crate) fn solid(width: u32, height: u32, color: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(width, height, Rgb(color))
    }

    pub(crate) fn jpeg(width: u32, height: u32, color: [u8; 3]) -> Vec<u8> {
        let mut bytes = Vec::new();
        JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&solid(width, height, color))
            .expect("encode JPEG");
        bytes
    }

    /// A header bomb: a real 16x16 JPEG whose frame header claims 65535x65535 pixels (a
    /// decoder believing it allocates 12 GiB).
    pub(crate) fn jpeg_bomb() -> Vec<u8> {
        let mut bytes = jpeg(16, 16, [90, 90, 90]);
        let sof = bytes
            .windows(2)
            .position(|pair| pair == [0xFF, 0xC0])
            .expect("a baseline frame header");
        // Marker (2), length (2), precision (1), then height and width.
        bytes[sof + 5..sof + 9].fill(0xFF);
        bytes
    }

    pub(crate) fn encoded(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).expect("encode image");
        bytes.into_inner()
    }

    /// Whether `image` is `color` everywhere, give or take JPEG's error.
    pub(crate) fn is_about(image: &RgbImage, color: [u8; 3]) -> bool {
        image.pixels().all(|p| {
            p.0.iter()
                .zip(color)
                .all(|(&got, want)| got.abs_diff(want) <= 12)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_chosen_by_kind_and_refuse_unknown_fields() {
        let config: SourceConfig =
            toml::from_str("kind = \"synthetic\"\nwidth = 32\nfps = 0").expect("parses");
        assert_eq!(
            config,
            SourceConfig::Synthetic(synthetic::SyntheticConfig {
                width: 32,
                fps: 0.0,
                ..Default::default()
            })
        );
        let err =
            toml::from_str::<SourceConfig>("kind = \"synthetic\"\nwidht = 32").expect_err("typo");
        assert!(err.to_string().contains("widht"), "{err}");
        assert!(toml::from_str::<SourceConfig>("kind = \"webcam\"").is_err());
    }

    #[test]
    fn a_built_source_produces_frames_through_the_trait_object() {
        let config: SourceConfig =
            toml::from_str("kind = \"synthetic\"\nwidth = 8\nheight = 4\nfps = 0").expect("parses");
        let mut source = Limited::new(config.build().expect("builds"), Some(2), None);
        let shutdown = Shutdown::new();
        let first = source.next_frame(&shutdown).expect("ok").expect("a frame");
        assert_eq!((first.seq, first.image.dimensions()), (0, (8, 4)));
        assert_eq!(
            source.next_frame(&shutdown).expect("ok").map(|f| f.seq),
            Some(1)
        );
        assert!(source.next_frame(&shutdown).expect("ok").is_none());
    }

    #[test]
    fn limited_ends_the_stream_after_its_frames_or_its_time() {
        let endless = || {
            synthetic::SyntheticConfig {
                width: 4,
                height: 4,
                fps: 0.0,
            }
            .build()
            .expect("valid")
        };
        let shutdown = Shutdown::new();
        let mut by_count = Limited::new(endless(), Some(3), None);
        let seqs: Vec<u64> = std::iter::from_fn(|| by_count.next_frame(&shutdown).expect("ok"))
            .map(|frame| frame.seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
        let mut by_time = Limited::new(endless(), None, Some(Duration::ZERO));
        assert!(by_time.next_frame(&shutdown).expect("ok").is_none());
    }

    #[test]
    fn the_pacer_spaces_frames_and_unpaced_never_waits() {
        let shutdown = Shutdown::new();
        let mut paced = Pacer::new(100.0);
        let started = Instant::now();
        for _ in 0..6 {
            assert!(paced.wait(&shutdown));
        }
        // Five periods of 10 ms at least; the upper bound is only a sanity check.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");

        let mut unpaced = Pacer::new(0.0);
        let started = Instant::now();
        for _ in 0..1000 {
            assert!(unpaced.wait(&shutdown));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_stop_interrupts_the_pacer() {
        let shutdown = Shutdown::new();
        let mut pacer = Pacer::new(0.01);
        assert!(pacer.wait(&shutdown));
        shutdown.trigger();
        assert!(!pacer.wait(&shutdown));
    }

    /// A camera's buffers go through the same decode as a clip's: a JPEG claiming more than
    /// `max_pixels` is refused from its header, and so is a raw frame of a larger mode.
    #[test]
    fn decode_refuses_frames_over_max_pixels_before_decoding() {
        use nokhwa::utils::Resolution;

        let bomb = testing::jpeg_bomb();
        let buffer = Buffer::new(Resolution::new(640, 480), &bomb, FrameFormat::MJPEG);
        let err = decode(&buffer, DEFAULT_MAX_PIXELS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the frame claims 65535x65535 pixels, over source.max_pixels (67108864)"
        );
        let small = testing::jpeg(32, 16, [200, 30, 30]);
        let buffer = Buffer::new(Resolution::new(32, 16), &small, FrameFormat::MJPEG);
        assert_eq!(decode(&buffer, 512).unwrap().dimensions(), (32, 16));
        assert!(matches!(
            decode(&buffer, 511),
            Err(FrameError::TooLarge {
                width: 32,
                height: 16,
                max_pixels: 511
            })
        ));
        let yuyv = vec![128; 64 * 2 * 2];
        let buffer = Buffer::new(Resolution::new(64, 2), &yuyv, FrameFormat::YUYV);
        assert!(decode(&buffer, 128).is_ok());
        assert!(decode(&buffer, 127).is_err());
    }

    #[test]
    fn fps_must_be_in_range() {
        // 5e-324 fps would be a frame every 2e323 s, past any duration.
        for fps in [-1.0, f64::NAN, 1000.5, 5e-324, f64::INFINITY] {
            let err = check_fps(fps).expect_err("refused");
            assert!(err.to_string().starts_with("source.fps must be 0"), "{err}");
        }
        assert!(check_fps(0.0).is_ok() && check_fps(30.0).is_ok());
    }
}
