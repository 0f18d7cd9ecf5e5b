//! A camera, through nokhwa 0.10.11 (V4L2 on Linux, AVFoundation on macOS).
//!
//! nokhwa's known traps, and what this module does about them. The macOS ones were read in
//! the sources of nokhwa 0.10.11, nokhwa-core 0.1.9 and nokhwa-bindings-macos 0.2.4 (cargo's
//! registry cache), not seen on a Mac: nobody here has one (docs/macos.md).
//! - `CallbackCamera` can deadlock (nokhwa #111, #165): frames are read with `Camera::frame`.
//! - Format negotiation: `RequestedFormatType::Closest` looks only within the requested
//!   format and takes its frame rates from the *requested* size, so it fails whenever that
//!   exact size is missing (nokhwa-core `types.rs` 155–196; #115, #99, #194). AVFoundation
//!   labels every 4:2:0 and 4:2:2 mode YUYV and offers no MJPEG (bindings `lib.rs` 394–407),
//!   so the old default, MJPEG, failed to open on every Mac with `OpenDeviceError("Cannot
//!   fulfill request")` (`avfoundation.rs` 74–76). Here the mode is chosen from what the
//!   camera offers ([`choice::ranked_modes`]: `format = "auto"` takes MJPEG where offered,
//!   else YUYV, else another decodable format) and opened with `Exact`; on any of the
//!   backends' "cannot fulfill" errors ([`choice::is_mode_refusal`]) the next mode is tried.
//! - What a camera offers: on macOS `compatible_camera_formats()` is empty, because
//!   `compatible_list_by_resolution` keeps the formats that do *not* match (`avfoundation.rs`
//!   159, `.filter(|x| x.format() != fourcc)`; fixed only in the open PR #246). It is never
//!   called there: [`macos::modes`] reads the formats, reporting for each size only the rates
//!   `set_all` accepts (the frame-rate-range maxima of the last format of that size,
//!   bindings `lib.rs` 1031–1069; a mismatch can throw, #246, #145, #180). A camera with any
//!   format nokhwa does not know cannot be opened at all (`try_ns_arr_to_vec` fails on the
//!   first, `lib.rs` 371–384, 830–840); the listing says so.
//! - Which camera: nokhwa's macOS discovery asks for five device types and not
//!   ContinuityCamera (`lib.rs` 572–581), and with `NSCameraUseContinuityCameraDeviceType`
//!   in the Info.plist (which scened embeds, so that macOS 14+ shows iPhones at all: nokhwa
//!   #162, #176) an iPhone reports that type. [`macos::cameras`] lists built-in, external and
//!   Continuity cameras; each is opened by its unique id, `CameraIndex::String`, which
//!   nokhwa looks up with `deviceWithUniqueID` (`lib.rs` 908–945). A config may name the
//!   camera by `id`; one named by `index` is reopened after a loss by the id resolved at the
//!   first open ([`choice::pinned`]), so a phone that comes or goes cannot put another camera
//!   at index 0. On Linux the id is the udev `/dev/v4l/by-id` name and a reopen finds its
//!   current `/dev/videoN`.
//! - A camera that goes away: on macOS `frame()` waits on a channel whose sender the camera
//!   object itself holds (`avfoundation.rs` 58–59, 88, 285–288), so a read never fails; V4L2
//!   reads can fail after 15–30 s (#47) or hang in the driver. Reads run under a deadline
//!   ([`super::deadline`]); a few failed reads in a row, or one that outlasts the deadline,
//!   is a loss: the camera is reopened with backoff ([`Reconnecting`]).
//! - macOS asks the user for camera access, which needs `nokhwa_initialize` first (#232); its
//!   answer is read first ([`macos::access`]) so a refusal fails at once instead of after
//!   the prompt's timeout.
//! - Corrupt MJPEG makes mozjpeg unwind and `Camera`'s `Drop` unwraps `stop_stream`: both
//!   are caught.
//!
//! nokhwa 0.10 does not expose the V4L2 buffer count (it asks for 4), so a frame can wait up
//! to 4 frame periods in the driver; this source reads continuously, and the edge after it
//! should be small with `drop_oldest` so frames do not also age in the pipeline.

pub mod choice;
#[cfg(target_os = "macos")]
mod macos;

use std::fmt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::{nokhwa_initialize, Camera, NokhwaError};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use self::choice::{
    pinned, ranked_modes, select, CameraEntry, CameraPixelFormat, Selector, Wanted,
};
use super::deadline::{read_deadline, Live, MIN_READ_DEADLINE};
use super::reconnect::{Backoff, Reconnecting, Reopen};
use super::{
    check_max_pixels, check_size, decode, Sequence, SourceError, DEFAULT_MAX_PIXELS, MAX_FPS,
};
use crate::contain;
use crate::error::Chain;
use crate::error::Invalid;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

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
/// Modes tried, best first, before opening gives up on "cannot fulfill" errors.
const MODES_TRIED: usize = 4;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// Which camera, by its place in `scened cameras`' list (N of `/dev/videoN` on Linux);
    /// camera 0 when neither this nor `id` is set. A place can change when a camera (an
    /// iPhone) comes or goes; the camera found at start-up is reopened by its id.
    pub index: Option<u32>,
    /// Which camera, by the id `scened cameras` prints: the same camera across replugs and
    /// reboots. Not together with `index`.
    pub id: Option<String>,
    /// Requested width in pixels, 1 to 8192; without an exact match the closest size the
    /// camera offers is used.
    pub width: u32,
    /// Requested height in pixels, 1 to 8192.
    pub height: u32,
    /// Requested frames per second, 1 to 1000; the closest rate offered is used.
    pub fps: u32,
    /// `auto` (MJPEG where offered, else YUYV, else another format scened decodes), or
    /// `mjpeg` or `yuyv` first; another offered format is used if the camera lacks it.
    pub format: CameraPixelFormat,
    /// Most pixels a frame may have: larger modes are not chosen, and a frame claiming more
    /// (a corrupt JPEG header) is refused before decoding and counted as a frame error.
    pub max_pixels: u64,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            index: None,
            id: None,
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
            format: CameraPixelFormat::default(),
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl CameraConfig {
    /// Checks the request, finds the camera and opens its stream; a camera lost later is
    /// reopened.
    pub fn build(&self) -> Result<Reconnecting<Live<CameraTarget>>, SourceError> {
        let selector = self.check()?;
        request_access()?;
        let cameras = cameras()?;
        let target = CameraTarget {
            config: self.clone(),
            selector: pinned(select(&cameras, &selector)?),
        };
        // fps is at least 1 here, so there is a deadline.
        let deadline = read_deadline(f64::from(self.fps)).unwrap_or(MIN_READ_DEADLINE);
        let live = Live::new(target, deadline);
        let first = live.reopen()?;
        Ok(Reconnecting::new(live, first, RETRY))
    }

    /// Checks the settings without touching a device; returns how the camera is chosen.
    pub(super) fn check(&self) -> Result<Selector, Invalid> {
        check_size(self.width, self.height)?;
        check_max_pixels(self.max_pixels)?;
        let fps = 1..=MAX_FPS as u32;
        Invalid::check(fps.contains(&self.fps), "source.fps", "1 to 1000", self.fps)?;
        match (self.index, &self.id) {
            (Some(index), Some(id)) => Err(Invalid {
                key: "source.id".into(),
                expected: "left out when index is set (one or the other)",
                got: format!("{id:?} with index {index}"),
            }),
            (_, Some(id)) if id.is_empty() => Err(Invalid {
                key: "source.id".into(),
                expected: "a camera id as `scened cameras` prints it",
                got: "\"\"".into(),
            }),
            _ => Ok(self.selector()),
        }
    }

    /// The camera as configured: by id if one is set, else by index (0 when neither is).
    pub fn selector(&self) -> Selector {
        match (&self.id, self.index) {
            (Some(id), _) => Selector::Id(id.clone()),
            (None, index) => Selector::Index(index.unwrap_or_default()),
        }
    }

    fn wanted(&self) -> Wanted {
        Wanted {
            width: self.width,
            height: self.height,
            fps: self.fps,
            format: self.format,
        }
    }
}

/// Asks for camera access where the OS requires it (macOS); elsewhere nokhwa grants at once.
fn request_access() -> Result<(), SourceError> {
    #[cfg(target_os = "macos")]
    match macos::access() {
        Some(true) => return Ok(()),
        Some(false) => return Err(SourceError::CameraPermission),
        None => {}
    }
    let (granted_tx, granted) = mpsc::sync_channel(1);
    nokhwa_initialize(move |ok| {
        let _ = granted_tx.send(ok);
    });
    match granted.recv_timeout(PERMISSION_TIMEOUT) {
        Ok(true) => Ok(()),
        _ => Err(SourceError::CameraPermission),
    }
}

/// Whether camera access is already granted, so tests can skip instead of prompting.
#[cfg(test)]
fn access_granted() -> bool {
    #[cfg(target_os = "macos")]
    {
        macos::access() == Some(true)
    }
    #[cfg(not(target_os = "macos"))]
    {
        true
    }
}

/// Every camera, as `index` and `id` select them.
#[cfg(target_os = "macos")]
fn cameras() -> Result<Vec<CameraEntry>, SourceError> {
    Ok(macos::cameras())
}

/// Every camera, as `index` and `id` select them.
#[cfg(not(target_os = "macos"))]
fn cameras() -> Result<Vec<CameraEntry>, SourceError> {
    let ids = v4l_ids(std::path::Path::new(V4L_BY_ID));
    let infos = nokhwa::query(nokhwa::utils::ApiBackend::Auto).map_err(SourceError::CameraQuery)?;
    Ok(infos
        .into_iter()
        .filter_map(|info| {
            let index = info.index().as_index().ok()?;
            Some(CameraEntry {
                index,
                id: ids
                    .iter()
                    .find(|(n, _)| *n == index)
                    .map(|(_, id)| id.clone()),
                name: info.human_name(),
                description: info.description().to_owned(),
            })
        })
        .collect())
}

/// Where udev links each USB camera by a name built from its vendor, model and serial.
#[cfg(not(target_os = "macos"))]
const V4L_BY_ID: &str = "/dev/v4l/by-id";

/// `(N, name)` for each link in `dir` to a `videoN` device; empty if `dir` is missing.
#[cfg(not(target_os = "macos"))]
fn v4l_ids(dir: &std::path::Path) -> Vec<(u32, String)> {
    let Ok(links) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids: Vec<(u32, String)> = links
        .flatten()
        .filter_map(|link| {
            let target = std::fs::read_link(link.path()).ok()?;
            let node = target
                .file_name()?
                .to_str()?
                .strip_prefix("video")?
                .parse()
                .ok()?;
            Some((node, link.file_name().to_str()?.to_owned()))
        })
        .collect();
    ids.sort();
    ids
}

/// How nokhwa opens `camera`: by unique id through AVFoundation; by `/dev/videoN` on Linux.
fn nokhwa_index(camera: &CameraEntry) -> CameraIndex {
    match &camera.id {
        Some(id) if cfg!(target_os = "macos") => CameraIndex::String(id.clone()),
        _ => CameraIndex::Index(camera.index),
    }
}

/// The modes `camera` offers, as nokhwa labels them.
#[cfg(target_os = "macos")]
fn offered(camera: &CameraEntry, what: &str) -> Result<Vec<CameraFormat>, SourceError> {
    let id = camera.id.as_deref().unwrap_or_default();
    macos::modes(id).map_err(|error| SourceError::CameraModes {
        what: what.to_owned(),
        reason: error.to_string(),
    })
}

/// The modes `camera` offers, as nokhwa labels them.
#[cfg(not(target_os = "macos"))]
fn offered(camera: &CameraEntry, what: &str) -> Result<Vec<CameraFormat>, SourceError> {
    let camera_error = |source| SourceError::Camera {
        what: what.to_owned(),
        source,
    };
    let mut any = Camera::new(nokhwa_index(camera), request(RequestedFormatType::None))
        .map_err(camera_error)?;
    let modes = any.compatible_camera_formats();
    close(any);
    modes.map_err(camera_error)
}

fn request(kind: RequestedFormatType) -> RequestedFormat<'static> {
    RequestedFormat::new::<RgbFormat>(kind)
}

/// Opens `camera` in the best mode it offers for `config` and starts its stream.
fn open(camera: &CameraEntry, config: &CameraConfig, what: &str) -> Result<Camera, SourceError> {
    let camera_error = |source| SourceError::Camera {
        what: what.to_owned(),
        source,
    };
    let wanted = config.wanted();
    let modes = ranked_modes(wanted, &offered(camera, what)?, config.max_pixels);
    let mut refused = None;
    for mode in modes.into_iter().take(MODES_TRIED) {
        match start(nokhwa_index(camera), mode) {
            Ok(opened) => {
                if wanted.format != CameraPixelFormat::Auto && !matches_format(wanted.format, mode)
                {
                    warn!(camera = what, mode = %mode, "the camera lacks the requested format");
                }
                info!(camera = what, mode = %mode, "camera opened");
                return Ok(opened);
            }
            Err(error) if choice::is_mode_refusal(&error) => {
                debug!(camera = what, mode = %mode, %error, "mode refused");
                refused = Some(error);
            }
            Err(error) => return Err(camera_error(error)),
        }
    }
    Err(match refused {
        Some(error) => camera_error(error),
        None => SourceError::NoCameraMode {
            what: what.to_owned(),
        },
    })
}

fn matches_format(format: CameraPixelFormat, mode: CameraFormat) -> bool {
    match format {
        CameraPixelFormat::Mjpeg => mode.format() == FrameFormat::MJPEG,
        CameraPixelFormat::Yuyv => mode.format() == FrameFormat::YUYV,
        CameraPixelFormat::Auto => true,
    }
}

fn start(index: CameraIndex, mode: CameraFormat) -> Result<Camera, NokhwaError> {
    let mut camera = Camera::new(index, request(RequestedFormatType::Exact(mode)))?;
    match camera.open_stream() {
        Ok(()) => Ok(camera),
        Err(error) => {
            close(camera);
            Err(error)
        }
    }
}

/// Stops and drops a camera. nokhwa's `Drop` unwraps `stop_stream`, which can fail on a
/// device that is already gone.
fn close(camera: Camera) {
    let _ = contain::catch(move || drop(camera));
}

/// The camera a run found at start-up, as it is reopened after a loss.
#[derive(Clone, Debug)]
pub struct CameraTarget {
    config: CameraConfig,
    /// By id where the camera has one ([`choice::pinned`]).
    selector: Selector,
}

impl Reopen for CameraTarget {
    type Source = CameraSource;

    fn reopen(&self) -> Result<CameraSource, SourceError> {
        // Listed again each time: on Linux an id's /dev/videoN can change on replug.
        let cameras = cameras()?;
        let camera = select(&cameras, &self.selector)?;
        let what = self.describe();
        Ok(CameraSource {
            camera: Some(open(camera, &self.config, &what)?),
            what,
            max_pixels: self.config.max_pixels,
            read_failures: 0,
            sequence: Sequence::default(),
        })
    }

    fn describe(&self) -> String {
        self.selector.to_string()
    }
}

/// An open camera. A few failed reads in a row mean it is lost: that is a fatal error,
/// on which [`Reconnecting`] closes and reopens it.
pub struct CameraSource {
    what: String,
    max_pixels: u64,
    /// Always `Some` until dropped, which needs to own it.
    camera: Option<Camera>,
    read_failures: u32,
    sequence: Sequence,
}

impl Source for CameraSource {
    fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
        let Some(camera) = self.camera.as_mut() else {
            return Ok(None);
        };
        match camera.frame() {
            Ok(buffer) => {
                let captured_at = Instant::now();
                self.read_failures = 0;
                let image = decode(&buffer, self.max_pixels).map_err(|reason| {
                    StageError::item(SourceError::CameraFrame {
                        what: self.what.clone(),
                        reason,
                    })
                })?;
                Ok(Some(self.sequence.frame(captured_at, image)))
            }
            Err(source) => {
                self.read_failures += 1;
                let error = SourceError::Camera {
                    what: self.what.clone(),
                    source,
                };
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
    pub camera: CameraEntry,
    /// Sorted; the error text if they could not be read (busy, no access, unopenable).
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

/// Every camera the OS reports, with its modes. On Linux it opens each camera briefly.
pub fn list_cameras() -> Result<Vec<CameraListing>, SourceError> {
    request_access()?;
    Ok(cameras()?
        .into_iter()
        .map(|camera| {
            let what = pinned(&camera).to_string();
            let modes = offered(&camera, &what).map(|offered| {
                let mut modes: Vec<CameraMode> =
                    offered.into_iter().map(CameraMode::from).collect();
                modes.sort();
                modes.dedup();
                modes
            });
            CameraListing {
                camera,
                modes: modes.map_err(|error| Chain(&error).to_string()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use nokhwa::utils::Resolution;

    use super::*;

    /// This machine has no camera; elsewhere index 4000 is still out of range. Either way
    /// the error is one line, and nothing panics. Skipped where access would prompt.
    #[test]
    fn a_missing_camera_is_one_clean_line() {
        if !access_granted() {
            eprintln!("skipped: camera access not granted to this process");
            return;
        }
        let config = CameraConfig {
            index: Some(4000),
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
        if !access_granted() {
            eprintln!("skipped: camera access not granted to this process");
            return;
        }
        let cameras = list_cameras().expect("query works");
        for listing in cameras {
            assert!(!listing.camera.name.is_empty());
        }
    }

    #[test]
    fn the_request_is_checked_before_any_device_is_touched() {
        let check = |config: CameraConfig| config.build().err().map(|e| e.to_string());
        assert_eq!(
            check(CameraConfig {
                fps: 0,
                ..CameraConfig::default()
            })
            .as_deref(),
            Some("source.fps must be 1 to 1000, got 0")
        );
        assert_eq!(
            check(CameraConfig {
                index: Some(1),
                id: Some("0x1420000005ac8600".into()),
                ..CameraConfig::default()
            })
            .as_deref(),
            Some(
                "source.id must be left out when index is set (one or the other), \
                 got \"0x1420000005ac8600\" with index 1"
            )
        );
        assert!(check(CameraConfig {
            id: Some(String::new()),
            ..CameraConfig::default()
        })
        .is_some_and(|e| e.starts_with("source.id must be a camera id")));
    }

    #[test]
    fn config_defaults_and_refuses_unknown_fields() {
        let config: CameraConfig = toml::from_str("index = 2\nformat = \"yuyv\"").expect("parses");
        assert_eq!(
            config,
            CameraConfig {
                index: Some(2),
                format: CameraPixelFormat::Yuyv,
                ..CameraConfig::default()
            }
        );
        let by_id: CameraConfig = toml::from_str("id = \"0x1420000005ac8600\"").expect("parses");
        assert_eq!(
            by_id.check().unwrap(),
            Selector::Id("0x1420000005ac8600".into())
        );
        assert_eq!(CameraConfig::default().check().unwrap(), Selector::Index(0));
        assert_eq!(CameraConfig::default().format, CameraPixelFormat::Auto);
        assert!(toml::from_str::<CameraConfig>("device = \"/dev/video0\"").is_err());
        assert!(toml::from_str::<CameraConfig>("format = \"nv12\"").is_err());
    }

    #[test]
    fn modes_print_for_the_listing() {
        let mode = CameraFormat::new(Resolution::new(1280, 720), FrameFormat::MJPEG, 30);
        assert_eq!(
            CameraMode::from(mode).to_string(),
            "1280x720 MJPEG @ 30 fps"
        );
    }

    /// udev's by-id links, made for real in a temporary folder: each names a `videoN` node.
    #[cfg(not(target_os = "macos"))]
    #[test]
    fn linux_ids_are_the_by_id_links_to_video_nodes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let link = |name: &str, target: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).expect("symlink")
        };
        link(
            "usb-046d_HD_Pro_Webcam_C920_A1B2C3D4-video-index0",
            "../../video2",
        );
        link(
            "usb-046d_HD_Pro_Webcam_C920_A1B2C3D4-video-index1",
            "../../video3",
        );
        link("usb-Elgato_Cam_Link_4K_0005-video-index0", "../../video0");
        link("not-a-camera", "../../media0");
        assert_eq!(
            v4l_ids(dir.path()),
            [
                (0, "usb-Elgato_Cam_Link_4K_0005-video-index0".to_owned()),
                (
                    2,
                    "usb-046d_HD_Pro_Webcam_C920_A1B2C3D4-video-index0".to_owned()
                ),
                (
                    3,
                    "usb-046d_HD_Pro_Webcam_C920_A1B2C3D4-video-index1".to_owned()
                ),
            ]
        );
        assert!(v4l_ids(&dir.path().join("missing")).is_empty());
    }
}
