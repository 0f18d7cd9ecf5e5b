//! A camera: V4L2 through nokhwa 0.10.11 on Linux, scened's own AVFoundation capture session
//! on macOS (`macos.rs`; docs/macos.md says why).
//!
//! nokhwa's known traps, and what this module does about them. The macOS ones were read in
//! the sources of nokhwa 0.10.11, nokhwa-core 0.1.9 and nokhwa-bindings-macos 0.2.4 (cargo's
//! registry cache), not seen on a Mac: nobody here has one (docs/macos.md).
//! - `CallbackCamera` can deadlock (nokhwa #111, #165): frames are read with `Camera::frame`.
//! - Format negotiation: `RequestedFormatType::Closest` looks only within the requested
//!   format and takes its frame rates from the *requested* size, so it fails whenever that
//!   exact size is missing (nokhwa-core `types.rs` 155–196; #115, #99, #194). Here the mode is
//!   chosen from what the camera offers ([`choice::ranked_modes`]: `format = "auto"` takes
//!   MJPEG where offered, else YUYV, else another decodable format) and opened with `Exact`;
//!   on any of the backends' "cannot fulfill" errors ([`choice::is_mode_refusal`]) the next
//!   mode is tried.
//! - Why not nokhwa on macOS (bindings `lib.rs`): for an MJPEG mode it asks the capture output
//!   for `'jpeg'` (2331–2356), which AVFoundation refuses with an Objective-C exception that
//!   aborts the process (#180: it unwinds through `objc_exception`'s `extern "C"` frame); its
//!   `lock()` refuses a camera another app uses (985–992) and its `unlock()` never unlocks
//!   (`locked` is never set, 1023–1028); `open_stream` resets the rate to the format's highest
//!   (`active_format`, 2267–2293, then `set_all`); `frame()` waits on a channel the camera
//!   itself keeps open, so it never fails when the camera goes (`avfoundation.rs` 282–292);
//!   `compatible_camera_formats()` keeps the formats that do *not* match (#246); discovery
//!   omits Continuity Cameras (#162). [`macos`] does all of it itself: only uncompressed output
//!   formats ([`pixels`]), the configuration lock held only while configuring, every
//!   exception caught where it is raised, reads with a limit.
//! - Which camera: [`macos::cameras`] lists built-in, external and Continuity cameras (with
//!   `NSCameraUseContinuityCameraDeviceType` in the embedded Info.plist, an iPhone reports that
//!   type: nokhwa #162, #176), each by its unique id. A config may name the camera by `id`;
//!   one named by `index` is reopened after a loss by the id resolved at the first open
//!   ([`choice::pinned`]), so a phone that comes or goes cannot put another camera at index 0.
//!   A USB camera's macOS id holds its port: one not found under its id is looked for by
//!   vendor, product and name ([`choice::moved`]), and the log says so. On Linux the id is the
//!   udev `/dev/v4l/by-id` name and a reopen finds its current `/dev/videoN`.
//! - A camera that goes away or hangs: opens and reads run on a worker thread under deadlines
//!   ([`super::deadline`]); a few failed reads in a row, or one that outlasts the deadline,
//!   is a loss: the camera is closed (its session stopped and released) and reopened with
//!   backoff ([`Reconnecting`]), never more than one session at a time.
//! - macOS asks the user for camera access: the camera is found first (listing needs no
//!   access), so a missing one fails at once; then the recorded answer is read
//!   ([`macos::access`]) and only if there is none is the user asked.
//! - Corrupt MJPEG makes mozjpeg unwind and `Camera`'s `Drop` unwraps `stop_stream`: both
//!   are caught.
//!
//! nokhwa 0.10 does not expose the V4L2 buffer count (it asks for 4), so a frame can wait up
//! to 4 frame periods in the driver; this source reads continuously, and the edge after it
//! should be small with `drop_oldest` so frames do not also age in the pipeline.

pub mod choice;
#[cfg(target_os = "macos")]
mod macos;
pub mod pixels;

use std::fmt;
use std::time::{Duration, Instant};

use image::RgbImage;
use nokhwa::utils::{CameraFormat, FrameFormat};
#[cfg(not(target_os = "macos"))]
use nokhwa::{
    pixel_format::RgbFormat,
    utils::{CameraIndex, RequestedFormat, RequestedFormatType},
    Camera, NokhwaError,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use self::choice::{
    moved, pinned, ranked_modes, select, CameraEntry, CameraPixelFormat, Selector, Wanted,
};
#[cfg(target_os = "macos")]
use super::deadline::FIRST_READ_DEADLINE;
use super::deadline::{read_deadline, Live, MIN_READ_DEADLINE};
use super::reconnect::{Backoff, Reconnecting, Reopen};
use super::{
    check_max_pixels, check_size, FrameError, Sequence, SourceError, DEFAULT_MAX_PIXELS, MAX_FPS,
};
#[cfg(not(target_os = "macos"))]
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
#[cfg(target_os = "macos")]
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
    /// Checks the request, finds the camera, asks for access where needed and opens its
    /// stream; a camera lost later is reopened.
    pub fn build(&self) -> Result<Reconnecting<Live<CameraTarget>>, SourceError> {
        let selector = self.check()?;
        // Found before access is asked for: listing needs none, so a missing camera fails
        // at once instead of after a prompt nobody answers.
        let cameras = cameras()?;
        let camera = find(&cameras, &selector, None)?;
        request_access()?;
        let target = CameraTarget {
            config: self.clone(),
            selector: pinned(camera),
            like: camera.clone(),
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

/// The camera `selector` names. One pinned by an id no camera has now is looked for as the
/// same model on another USB port ([`moved`]: `like` is the camera as first found, if it was),
/// and the log says so: its macOS id holds the port it was plugged into.
fn find<'a>(
    cameras: &'a [CameraEntry],
    selector: &Selector,
    like: Option<&CameraEntry>,
) -> Result<&'a CameraEntry, SourceError> {
    let error = match select(cameras, selector) {
        Ok(camera) => return Ok(camera),
        Err(error) => error,
    };
    let Selector::Id(id) = selector else {
        return Err(error);
    };
    let camera = moved(cameras, id, like).ok_or(error)?;
    warn!(
        camera = %selector,
        now = camera.id.as_deref().unwrap_or_default(),
        model = %camera.usb.map(|usb| usb.to_string()).unwrap_or_default(),
        name = %camera.name,
        "camera not found under its id; opening the one camera of the same vendor, product and \
         name under its new id (plugged into another port?)"
    );
    Ok(camera)
}

/// Asks for camera access where the OS requires it (macOS): the recorded answer, else the
/// user's, waited for up to [`PERMISSION_TIMEOUT`].
#[cfg(target_os = "macos")]
fn request_access() -> Result<(), SourceError> {
    match macos::access().or_else(|| macos::request_access(PERMISSION_TIMEOUT)) {
        Some(true) => Ok(()),
        _ => Err(SourceError::CameraPermission),
    }
}

/// V4L2 needs no permission beyond the device file's.
#[cfg(not(target_os = "macos"))]
fn request_access() -> Result<(), SourceError> {
    Ok(())
}

/// Whether camera access is granted, as recorded: tests never ask. A test binary carries no
/// Info.plist, and asking without one can get the process killed where it is the one
/// responsible (a CI runner's agent); a person answers `scened run`'s prompt once instead.
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
    macos::cameras().map_err(|error| SourceError::CameraList(error.to_string()))
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
                usb: None,
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

/// The modes `camera` offers.
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

/// An open camera: nokhwa's on Linux, a capture session on macOS.
#[cfg(not(target_os = "macos"))]
type Device = Camera;
#[cfg(target_os = "macos")]
type Device = macos::Session;

/// Opens `camera` in the best mode it offers for `config` and starts its stream.
fn open(camera: &CameraEntry, config: &CameraConfig, what: &str) -> Result<Device, SourceError> {
    let wanted = config.wanted();
    let modes = ranked_modes(wanted, &offered(camera, what)?, config.max_pixels);
    let mut refused = None;
    for mode in modes.into_iter().take(MODES_TRIED) {
        match start(camera, mode, what) {
            Ok(opened) => {
                if wanted.format != CameraPixelFormat::Auto && !matches_format(wanted.format, mode)
                {
                    warn!(camera = what, mode = %mode, "the camera lacks the requested format");
                }
                return Ok(opened);
            }
            Err(Start::Refused(error)) => {
                debug!(camera = what, mode = %mode, %error, "mode refused");
                refused = Some(error);
            }
            Err(Start::Failed(error)) => return Err(error),
        }
    }
    Err(refused.unwrap_or(SourceError::NoCameraMode {
        what: what.to_owned(),
    }))
}

/// Why a mode did not start: the mode (the next one may), or the camera.
enum Start {
    Refused(SourceError),
    Failed(SourceError),
}

fn matches_format(format: CameraPixelFormat, mode: CameraFormat) -> bool {
    match format {
        CameraPixelFormat::Mjpeg => mode.format() == FrameFormat::MJPEG,
        CameraPixelFormat::Yuyv => mode.format() == FrameFormat::YUYV,
        CameraPixelFormat::Auto => true,
    }
}

#[cfg(not(target_os = "macos"))]
fn start(camera: &CameraEntry, mode: CameraFormat, what: &str) -> Result<Camera, Start> {
    let fail = |error: NokhwaError| {
        let refused = choice::is_mode_refusal(&error);
        let error = SourceError::Camera {
            what: what.to_owned(),
            source: error,
        };
        if refused {
            Start::Refused(error)
        } else {
            Start::Failed(error)
        }
    };
    let mut opened = Camera::new(
        nokhwa_index(camera),
        request(RequestedFormatType::Exact(mode)),
    )
    .map_err(fail)?;
    if let Err(error) = opened.open_stream() {
        close(opened);
        return Err(fail(error));
    }
    // What runs, read back: V4L2 may adjust the rate.
    info!(camera = what, mode = %mode, running = %opened.camera_format(), "camera opened");
    Ok(opened)
}

#[cfg(target_os = "macos")]
fn start(camera: &CameraEntry, mode: CameraFormat, what: &str) -> Result<macos::Session, Start> {
    let id = camera.id.as_deref().unwrap_or_default();
    let session = macos::Session::open(id, mode).map_err(|error| {
        let refused = error.is_mode_refusal();
        let error = SourceError::CameraModes {
            what: what.to_owned(),
            reason: error.to_string(),
        };
        if refused {
            Start::Refused(error)
        } else {
            Start::Failed(error)
        }
    })?;
    let (width, height, fps) = session.running;
    let running = format!("{width}x{height} @ {fps:.2} fps");
    if session.configured {
        info!(camera = what, mode = %mode, %running, "camera opened");
    } else {
        warn!(
            camera = what,
            mode = %mode,
            %running,
            "camera opened in the mode another app set (it holds the camera's configuration)"
        );
    }
    Ok(session)
}

/// How nokhwa opens `camera`: by `/dev/videoN`.
#[cfg(not(target_os = "macos"))]
fn nokhwa_index(camera: &CameraEntry) -> CameraIndex {
    CameraIndex::Index(camera.index)
}

#[cfg(not(target_os = "macos"))]
fn request(kind: RequestedFormatType) -> RequestedFormat<'static> {
    RequestedFormat::new::<RgbFormat>(kind)
}

/// Stops and drops a camera. nokhwa's `Drop` unwraps `stop_stream`, which can fail on a
/// device that is already gone.
#[cfg(not(target_os = "macos"))]
fn close(camera: Camera) {
    let _ = contain::catch(move || drop(camera));
}

/// The camera a run found at start-up, as it is reopened after a loss.
#[derive(Clone, Debug)]
pub struct CameraTarget {
    config: CameraConfig,
    /// By id where the camera has one ([`choice::pinned`]).
    selector: Selector,
    /// The camera as found at start-up: its model and name find it on another port.
    like: CameraEntry,
}

impl Reopen for CameraTarget {
    type Source = CameraSource;

    fn reopen(&self) -> Result<CameraSource, SourceError> {
        // Listed again each time: on Linux an id's /dev/videoN can change on replug, on macOS
        // a USB camera's id changes with its port.
        let cameras = cameras()?;
        let camera = find(&cameras, &self.selector, Some(&self.like))?;
        let what = self.describe();
        Ok(CameraSource {
            device: Some(open(camera, &self.config, &what)?),
            what,
            max_pixels: self.config.max_pixels,
            #[cfg(target_os = "macos")]
            limit: FIRST_READ_DEADLINE,
            #[cfg(target_os = "macos")]
            deadline: read_deadline(f64::from(self.config.fps)).unwrap_or(MIN_READ_DEADLINE),
            read_failures: 0,
            sequence: Sequence::default(),
        })
    }

    fn describe(&self) -> String {
        self.selector.to_string()
    }
}

/// An open camera. A few failed reads in a row, or (macOS) a read that got no frame within
/// the deadline, mean it is lost: that is a fatal error, on which [`Reconnecting`] closes and
/// reopens it.
pub struct CameraSource {
    what: String,
    max_pixels: u64,
    /// Always `Some` until dropped, which needs to own it.
    device: Option<Device>,
    /// How long the next read may wait for a frame: the first after an open longer.
    #[cfg(target_os = "macos")]
    limit: Duration,
    #[cfg(target_os = "macos")]
    deadline: Duration,
    read_failures: u32,
    sequence: Sequence,
}

/// A read that gave no picture: the camera's fault, or this frame's.
enum ReadError {
    Camera(SourceError),
    Frame(FrameError),
}

impl CameraSource {
    /// The next picture and when it was captured.
    #[cfg(not(target_os = "macos"))]
    fn read(&mut self) -> Result<(Instant, RgbImage), ReadError> {
        let device = self.device.as_mut().expect("open until dropped");
        let buffer = device.frame().map_err(|source| {
            ReadError::Camera(SourceError::Camera {
                what: self.what.clone(),
                source,
            })
        })?;
        let captured_at = Instant::now();
        let image = super::decode(&buffer, self.max_pixels).map_err(ReadError::Frame)?;
        Ok((captured_at, image))
    }

    /// The next picture and when it was captured.
    #[cfg(target_os = "macos")]
    fn read(&mut self) -> Result<(Instant, RgbImage), ReadError> {
        let limit = std::mem::replace(&mut self.limit, self.deadline);
        let device = self.device.as_mut().expect("open until dropped");
        device
            .frame(limit, self.max_pixels)
            .map_err(|error| match error {
                macos::MacError::Frame(error) => ReadError::Frame(error),
                // Nothing comes: lost at once, so the worker closes the session.
                _ => ReadError::Camera(SourceError::ReadTimeout {
                    what: self.what.clone(),
                    after: limit,
                }),
            })
    }
}

impl Source for CameraSource {
    fn next_frame(&mut self, _: &Shutdown) -> Result<Option<Frame>, StageError> {
        match self.read() {
            Ok((captured_at, image)) => {
                self.read_failures = 0;
                Ok(Some(self.sequence.frame(captured_at, image)))
            }
            Err(ReadError::Frame(reason)) => Err(StageError::item(SourceError::CameraFrame {
                what: self.what.clone(),
                reason,
            })),
            Err(ReadError::Camera(error @ SourceError::ReadTimeout { .. })) => {
                Err(StageError::fatal(error))
            }
            Err(ReadError::Camera(error)) => {
                self.read_failures += 1;
                if self.read_failures == READ_FAILURES_BEFORE_REOPEN {
                    Err(StageError::fatal(error))
                } else {
                    Err(StageError::item(error))
                }
            }
        }
    }
}

#[cfg(not(target_os = "macos"))]
impl Drop for CameraSource {
    fn drop(&mut self) {
        if let Some(camera) = self.device.take() {
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
/// Needs no camera access: a Mac lists its cameras and their formats without asking.
pub fn list_cameras() -> Result<Vec<CameraListing>, SourceError> {
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
    /// the error is one line, and nothing panics. No access is needed: the camera is looked
    /// for before access is asked for.
    #[test]
    fn a_missing_camera_is_one_clean_line() {
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

    /// Listing needs no access, so this runs everywhere.
    #[test]
    fn listing_works_with_or_without_cameras() {
        let cameras = list_cameras().expect("query works");
        for listing in cameras {
            assert!(!listing.camera.name.is_empty());
        }
    }

    /// Where there is a camera and access to it: it opens, streams frames of the size it
    /// says it runs at, and closes. Skipped, saying why, where access is not granted or was
    /// never answered (a CI runner), or there is no camera (this machine, and a runner).
    #[test]
    fn the_first_camera_streams_when_access_is_granted() {
        let cameras = list_cameras().expect("query works");
        if cameras.is_empty() {
            eprintln!("skipped: no camera here");
            return;
        }
        if !access_granted() {
            eprintln!(
                "skipped: camera access not granted (or never answered: run `scened run \
                 --source camera` once from this terminal to be asked)"
            );
            return;
        }
        let config = CameraConfig {
            width: 640,
            height: 480,
            ..CameraConfig::default()
        };
        let mut source = config.build().expect("opens");
        let shutdown = Shutdown::new();
        for _ in 0..3 {
            let frame = source
                .next_frame(&shutdown)
                .expect("a frame")
                .expect("not ended");
            assert!(frame.image.width() > 0 && frame.image.height() > 0);
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
