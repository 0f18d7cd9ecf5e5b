//! A camera, through nokhwa (V4L2 on Linux, AVFoundation on macOS).
//!
//! nokhwa's known traps, and what this module does about them:
//! - `CallbackCamera` can deadlock (nokhwa #111, #165): frames are read with `Camera::frame`
//!   on the capture thread instead.
//! - Format negotiation fails with "Failed to Fufill" (#115, #99, #194), e.g. when the
//!   requested size is missing: the camera is then opened in any format and the closest of
//!   its `compatible_camera_formats()` is chosen here.
//! - V4L2 reads can start failing after 15–30 s (#47), and cameras get unplugged: after a
//!   few failed reads in a row the camera is closed and reopened with backoff
//!   ([`Reconnecting`]); every failed read and reopen is an item error, so it is counted, and
//!   the run goes on.
//! - macOS asks the user for camera access, which needs `nokhwa_initialize` first (#232).
//! - Corrupt MJPEG makes mozjpeg unwind and `Camera`'s `Drop` unwraps `stop_stream`: both
//!   are caught.
//!
//! nokhwa 0.10 does not expose the V4L2 buffer count (it asks for 4), so a frame can wait up
//! to 4 frame periods in the driver; this source reads continuously, and the edge after it
//! should be small with `drop_oldest` so frames do not also age in the pipeline.

use std::fmt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use nokhwa::{nokhwa_initialize, query, Camera, NokhwaError};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::reconnect::{Backoff, Reconnecting, Reopen};
use super::{check_size, decode, PixelFormat, Sequence, SourceError, MAX_FPS};
use crate::config::Invalid;
use crate::contain;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

pub const DEFAULT_INDEX: u32 = 0;
pub const DEFAULT_WIDTH: u32 = 1280;
pub const DEFAULT_HEIGHT: u32 = 720;
pub const DEFAULT_FPS: u32 = 30;
const READ_FAILURES_BEFORE_REOPEN: u32 = 3;
/// A replug takes a second or two; after that, retrying more often than every 5 s only
/// floods the log.
const RETRY: Backoff = Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(5),
};
/// How long a macOS user has to answer the camera-access prompt.
const PERMISSION_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera index as the OS numbers it (`/dev/videoN` on Linux); `scened cameras` lists them.
    pub index: u32,
    /// Requested width in pixels, 1 to 8192; without an exact match the closest size the
    /// camera offers is used.
    pub width: u32,
    /// Requested height in pixels, 1 to 8192.
    pub height: u32,
    /// Requested frames per second, 1 to 1000; the closest rate offered is used.
    pub fps: u32,
    /// Requested pixel format: `mjpeg` (compressed, fits more frames through USB 2) or
    /// `yuyv`; another format the camera offers is used if it has neither.
    pub format: PixelFormat,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            index: DEFAULT_INDEX,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            format: PixelFormat::default(),
        }
    }
}

impl CameraConfig {
    /// Checks the request, finds the camera and opens its stream; a camera lost later is
    /// reopened.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        check_size(self.width, self.height)?;
        let fps = 1..=MAX_FPS as u32;
        Invalid::check(fps.contains(&self.fps), "source.fps", "1 to 1000", self.fps)
    }

    pub fn build(&self) -> Result<Reconnecting<CameraConfig>, SourceError> {
        self.check()?;
        request_access()?;
        let indices: Vec<u32> = cameras()?
            .iter()
            .filter_map(|info| info.index().as_index().ok())
            .collect();
        check_index(self.index, &indices)?;
        Ok(Reconnecting::new(self.clone(), self.reopen()?, RETRY))
    }

    fn wanted(&self) -> CameraFormat {
        CameraFormat::new(
            Resolution::new(self.width, self.height),
            self.format.frame_format(),
            self.fps,
        )
    }
}

/// Asks for camera access where the OS requires it (macOS); elsewhere nokhwa grants at once.
fn request_access() -> Result<(), SourceError> {
    let (granted_tx, granted) = mpsc::sync_channel(1);
    nokhwa_initialize(move |ok| {
        let _ = granted_tx.send(ok);
    });
    match granted.recv_timeout(PERMISSION_TIMEOUT) {
        Ok(true) => Ok(()),
        _ => Err(SourceError::CameraPermission),
    }
}

fn cameras() -> Result<Vec<nokhwa::utils::CameraInfo>, SourceError> {
    query(ApiBackend::Auto).map_err(SourceError::CameraQuery)
}

fn check_index(index: u32, available: &[u32]) -> Result<(), SourceError> {
    if available.is_empty() {
        Err(SourceError::NoCamera)
    } else if available.contains(&index) {
        Ok(())
    } else {
        Err(SourceError::CameraIndex {
            index,
            count: available.len(),
        })
    }
}

fn request(kind: RequestedFormatType) -> RequestedFormat<'static> {
    RequestedFormat::new::<RgbFormat>(kind)
}

fn open(config: &CameraConfig) -> Result<Camera, SourceError> {
    let index = config.index;
    let camera_error = |source| SourceError::Camera { index, source };
    let wanted = config.wanted();
    let mut camera = match Camera::new(
        CameraIndex::Index(index),
        request(RequestedFormatType::Closest(wanted)),
    ) {
        Ok(camera) => camera,
        Err(NokhwaError::GetPropertyError { .. } | NokhwaError::SetPropertyError { .. }) => {
            let mut camera = Camera::new(
                CameraIndex::Index(index),
                request(RequestedFormatType::None),
            )
            .map_err(camera_error)?;
            let modes = camera.compatible_camera_formats().map_err(camera_error)?;
            let mode = closest_mode(wanted, &modes).ok_or(SourceError::NoCameraMode { index })?;
            camera
                .set_camera_requset(request(RequestedFormatType::Exact(mode)))
                .map_err(camera_error)?;
            camera
        }
        Err(source) => return Err(camera_error(source)),
    };
    camera.open_stream().map_err(camera_error)?;
    info!(index, mode = %camera.camera_format(), requested = %wanted, "camera opened");
    Ok(camera)
}

/// The mode nearest `wanted`: same pixel format first, then nearest size, then nearest rate.
fn closest_mode(wanted: CameraFormat, modes: &[CameraFormat]) -> Option<CameraFormat> {
    modes.iter().copied().min_by_key(|mode| {
        let (dw, dh) = (
            u64::from(mode.width().abs_diff(wanted.width())),
            u64::from(mode.height().abs_diff(wanted.height())),
        );
        (
            mode.format() != wanted.format(),
            dw * dw + dh * dh,
            mode.frame_rate().abs_diff(wanted.frame_rate()),
        )
    })
}

/// Stops and drops a camera. nokhwa's `Drop` unwraps `stop_stream`, which can fail on a
/// device that is already gone.
fn close(camera: Camera) {
    let _ = contain::catch(move || drop(camera));
}

impl Reopen for CameraConfig {
    type Source = CameraSource;

    fn reopen(&self) -> Result<CameraSource, SourceError> {
        Ok(CameraSource {
            index: self.index,
            camera: Some(open(self)?),
            read_failures: 0,
            sequence: Sequence::default(),
        })
    }

    fn describe(&self) -> String {
        format!("camera {}", self.index)
    }
}

/// An open camera. A few failed reads in a row mean it is lost: that is a fatal error,
/// on which [`Reconnecting`] closes and reopens it.
pub struct CameraSource {
    index: u32,
    /// Always `Some` until dropped, which needs to own it.
    camera: Option<Camera>,
    read_failures: u32,
    sequence: Sequence,
}

impl Source for CameraSource {
    fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
        let index = self.index;
        let Some(camera) = self.camera.as_mut() else {
            return Ok(None);
        };
        match camera.frame() {
            Ok(buffer) => {
                let captured_at = Instant::now();
                self.read_failures = 0;
                let image = decode(&buffer).map_err(|reason| {
                    StageError::item(SourceError::CameraFrame { index, reason })
                })?;
                Ok(Some(self.sequence.frame(captured_at, image)))
            }
            Err(source) => {
                self.read_failures += 1;
                let error = SourceError::Camera { index, source };
                if self.read_failures == READ_FAILURES_BEFORE_REOPEN {
                    Err(StageError::fatal(error))
                } else {
                    Err(StageError::item(error))
                }
            }
        }
    }
}

impl Drop for CameraSource {
    fn drop(&mut self) {
        if let Some(camera) = self.camera.take() {
            close(camera);
        }
    }
}

/// A camera and the modes it offers, for `scened cameras`.
#[derive(Clone, Debug)]
pub struct CameraListing {
    pub index: u32,
    pub name: String,
    pub description: String,
    /// Sorted; the error text if the camera could not be opened to ask (busy, no access).
    pub modes: Result<Vec<CameraMode>, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CameraMode {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: FrameFormat,
}

impl fmt::Display for CameraMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{} {} @ {} fps",
            self.width, self.height, self.format, self.fps
        )
    }
}

impl From<CameraFormat> for CameraMode {
    fn from(format: CameraFormat) -> Self {
        Self {
            width: format.width(),
            height: format.height(),
            fps: format.frame_rate(),
            format: format.format(),
        }
    }
}

/// Every camera the OS reports, with its modes. Opens each camera briefly.
pub fn list_cameras() -> Result<Vec<CameraListing>, SourceError> {
    request_access()?;
    Ok(cameras()?
        .into_iter()
        .filter_map(|info| {
            let index = info.index().as_index().ok()?;
            Some(CameraListing {
                index,
                name: info.human_name(),
                description: info.description().to_owned(),
                modes: modes(index).map_err(|error| error.to_string()),
            })
        })
        .collect())
}

fn modes(index: u32) -> Result<Vec<CameraMode>, NokhwaError> {
    let mut camera = Camera::new(
        CameraIndex::Index(index),
        request(RequestedFormatType::None),
    )?;
    let formats = camera.compatible_camera_formats();
    close(camera);
    let mut modes: Vec<CameraMode> = formats?.into_iter().map(CameraMode::from).collect();
    modes.sort();
    Ok(modes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(width: u32, height: u32, format: FrameFormat, fps: u32) -> CameraFormat {
        CameraFormat::new(Resolution::new(width, height), format, fps)
    }

    /// This machine has no camera; elsewhere index 4000 is still out of range. Either way
    /// the error is one line, and nothing panics.
    #[test]
    fn a_missing_camera_is_one_clean_line() {
        let config = CameraConfig {
            index: 4000,
            ..CameraConfig::default()
        };
        let message = config.build().err().expect("no camera 4000").to_string();
        let out_of_range = message.starts_with("camera index 4000 out of range (")
            && message.ends_with(" cameras)");
        assert!(message == "no camera found" || out_of_range, "{message}");
        assert!(!message.contains('\n'));
    }

    #[test]
    fn listing_works_with_or_without_cameras() {
        let cameras = list_cameras().expect("query works");
        for camera in cameras {
            assert!(!camera.name.is_empty());
        }
    }

    #[test]
    fn the_index_must_be_among_the_cameras() {
        assert_eq!(
            check_index(0, &[]).err().map(|e| e.to_string()).as_deref(),
            Some("no camera found")
        );
        let err = check_index(1, &[0, 2]).expect_err("1 is not there");
        assert_eq!(err.to_string(), "camera index 1 out of range (2 cameras)");
        assert!(check_index(2, &[0, 2]).is_ok());
    }

    #[test]
    fn the_closest_mode_prefers_format_then_size_then_rate() {
        let wanted = mode(1280, 720, FrameFormat::MJPEG, 30);
        let modes = [
            mode(1280, 720, FrameFormat::YUYV, 30),
            mode(1920, 1080, FrameFormat::MJPEG, 30),
            mode(640, 480, FrameFormat::MJPEG, 30),
            mode(800, 600, FrameFormat::MJPEG, 15),
            mode(800, 600, FrameFormat::MJPEG, 25),
        ];
        // 800x600 is nearer 1280x720 than 1920x1080 or 640x480 are; 25 fps is nearer 30.
        assert_eq!(closest_mode(wanted, &modes), Some(modes[4]));
        let yuyv_only = [
            mode(640, 480, FrameFormat::YUYV, 30),
            mode(1280, 720, FrameFormat::YUYV, 10),
        ];
        assert_eq!(closest_mode(wanted, &yuyv_only), Some(yuyv_only[1]));
        assert_eq!(closest_mode(wanted, &[]), None);
    }

    #[test]
    fn the_request_is_checked_before_any_device_is_touched() {
        let config = CameraConfig {
            fps: 0,
            ..CameraConfig::default()
        };
        assert_eq!(
            config.build().err().map(|e| e.to_string()).as_deref(),
            Some("source.fps must be 1 to 1000, got 0")
        );
    }

    #[test]
    fn config_defaults_and_refuses_unknown_fields() {
        let config: CameraConfig = toml::from_str("index = 2\nformat = \"yuyv\"").expect("parses");
        assert_eq!(
            config,
            CameraConfig {
                index: 2,
                format: PixelFormat::Yuyv,
                ..CameraConfig::default()
            }
        );
        assert!(toml::from_str::<CameraConfig>("device = \"/dev/video0\"").is_err());
    }

    #[test]
    fn modes_print_for_the_listing() {
        let shown = CameraMode::from(mode(1280, 720, FrameFormat::MJPEG, 30)).to_string();
        assert_eq!(shown, "1280x720 MJPEG @ 30 fps");
    }
}
