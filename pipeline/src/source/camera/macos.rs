//! macOS only: the cameras AVFoundation has, their modes, camera access, and ([`session`]) a
//! capture session of scened's own, through `objc2-av-foundation` (docs/macos.md says why not
//! nokhwa's).
//!
//! Not compiled by Linux builds: `scripts/check_macos.sh` type-checks and lints it for
//! `aarch64-apple-darwin` on Linux, and the macOS CI job builds and runs it. What is a decision
//! rather than a call lives in portable code, tested on Linux: which output format
//! ([`super::pixels`]), which camera ([`super::choice`]), when to give up and reopen
//! (`source::deadline`, `source::reconnect`).
//!
//! Objective-C exceptions: AVFoundation raises them for misuse (a pixel format or frame
//! duration the output or format does not support, an input that cannot be added), and one
//! unwinding into Rust aborts the process (nokhwa #180). Every public function here runs its
//! calls inside [`guarded`], which catches an exception where it is raised and turns it into
//! an error (the calls documented to raise are guarded again, each with its own name); the
//! frame callback also catches Rust panics, so none unwinds into the dispatch queue.
//!
//! None of this needs the main thread. A [`Session`] is opened, read and dropped on one
//! thread (the source's worker); only its frame callback runs on a dispatch queue.

mod session;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use block2::RcBlock;
use nokhwa::utils::{CameraFormat, FrameFormat, Resolution};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::Bool;
use objc2::{available, msg_send, Message};
use objc2_av_foundation::{
    AVAuthorizationStatus, AVCaptureDevice, AVCaptureDeviceDiscoverySession, AVCaptureDeviceFormat,
    AVCaptureDevicePosition, AVCaptureDeviceType, AVCaptureDeviceTypeBuiltInWideAngleCamera,
    AVFrameRateRange, AVMediaTypeVideo,
};
use objc2_core_media::{
    kCMPixelFormat_24RGB, kCMPixelFormat_32BGRA, kCMPixelFormat_422YpCbCr8_yuvs,
    kCMPixelFormat_8IndexedGray_WhiteIsZero, kCMVideoCodecType_422YpCbCr8, kCMVideoCodecType_JPEG,
    kCMVideoCodecType_JPEG_OpenDML, CMVideoFormatDescriptionGetDimensions,
};
use objc2_foundation::{NSArray, NSString};

use super::choice::{usb_model, CameraEntry};
use crate::source::FrameError;
pub use session::Session;

/// Core Video's 4:2:0 formats (objc2-core-video names them, but as `u32` consts of another
/// type): `kCVPixelFormatType_420YpCbCr8BiPlanarVideoRange` ('420v'), `…FullRange` ('420f')
/// and `kCVPixelFormatType_420YpCbCr10BiPlanarVideoRange` ('x420').
const CV_420V: u32 = u32::from_be_bytes(*b"420v");
const CV_420F: u32 = u32::from_be_bytes(*b"420f");
const CV_X420: u32 = u32::from_be_bytes(*b"x420");

#[derive(Debug, thiserror::Error)]
pub enum MacError {
    #[error("no camera has this id now")]
    Gone,
    #[error("{call} raised {exception}")]
    Exception {
        call: &'static str,
        exception: String,
    },
    #[error("cannot open it: {0}")]
    Input(String),
    #[error("its capture session refused {0}")]
    Refused(&'static str),
    #[error("its capture output offers no uncompressed pixel format scened reads (it offers {0})")]
    NoPixelFormat(String),
    #[error("it has no {0} format")]
    NoSuchMode(String),
    #[error("its capture session did not start")]
    NotRunning,
    #[error("no frame within {} ms", .0.as_millis())]
    NoFrame(Duration),
    #[error("its capture session stopped delivering")]
    Stopped,
    #[error("{0}")]
    Frame(FrameError),
}

impl MacError {
    /// Whether opening failed on the mode (the next one may work) rather than on the camera.
    pub fn is_mode_refusal(&self) -> bool {
        matches!(self, Self::NoSuchMode(_) | Self::Exception { .. })
    }
}

/// Runs `call` (AVFoundation calls that can raise), turning an Objective-C exception into an
/// error instead of letting it unwind into Rust.
fn guarded<R>(call: &'static str, body: impl FnOnce() -> R) -> Result<R, MacError> {
    objc2::exception::catch(AssertUnwindSafe(body)).map_err(|exception| MacError::Exception {
        call,
        exception: exception.map_or_else(|| "nil".to_owned(), |e| e.to_string()),
    })
}

/// Every video camera, listed in AVFoundation's order: built-in, then external (USB, capture
/// cards), then Continuity Cameras (iPhones), each by its unique id. Needs no camera access.
pub fn cameras() -> Result<Vec<CameraEntry>, MacError> {
    guarded("listing cameras", || {
        autoreleasepool(|_| {
            // SAFETY: reading framework constants (extern statics) that exist since macOS 10.15.
            let mut types: Vec<Retained<AVCaptureDeviceType>> =
                vec![unsafe { AVCaptureDeviceTypeBuiltInWideAngleCamera }.retain()];
            // By value rather than through their extern statics: a reference to a symbol is
            // bound at launch (stable Rust cannot weak-link statics), so a macOS 14 one would
            // keep the binary from starting on macOS 13, and the old name, deprecated since,
            // from starting on a macOS that drops it. Each constant's value is its name; a
            // macOS-only test checks that against the statics.
            if available!(macos = 14.0) {
                types.push(NSString::from_str(EXTERNAL));
                types.push(NSString::from_str(CONTINUITY_CAMERA));
            } else {
                types.push(NSString::from_str(EXTERNAL_UNKNOWN));
            }
            let types = NSArray::from_retained_slice(&types);
            // SAFETY: a class method taking a non-empty array of device types, a media type (or
            // nil) and a position.
            let session = unsafe {
                AVCaptureDeviceDiscoverySession::discoverySessionWithDeviceTypes_mediaType_position(
                    &types,
                    AVMediaTypeVideo,
                    AVCaptureDevicePosition::Unspecified,
                )
            };
            // SAFETY: property reads.
            let devices = unsafe { session.devices() }.to_vec();
            (0u32..)
                .zip(&devices)
                .map(|(index, device)| entry(index, device))
                .collect()
        })
    })
}

pub(super) const EXTERNAL: &str = "AVCaptureDeviceTypeExternal";
pub(super) const CONTINUITY_CAMERA: &str = "AVCaptureDeviceTypeContinuityCamera";
/// `External` before macOS 14.
pub(super) const EXTERNAL_UNKNOWN: &str = "AVCaptureDeviceTypeExternalUnknown";

fn entry(index: u32, device: &AVCaptureDevice) -> CameraEntry {
    // Read as nullable: the headers promise text, but a third-party virtual camera may answer
    // nil, on which objc2's typed methods panic (and a panic would take the listing with it).
    let text =
        |value: Option<Retained<NSString>>| value.map_or_else(String::new, |v| v.to_string());
    // SAFETY: property reads on a device the discovery session returned, each returning an
    // NSString or nil.
    let (id, name, maker, model): (Option<Retained<NSString>>, _, _, _) = unsafe {
        (
            msg_send![device, uniqueID],
            msg_send![device, localizedName],
            msg_send![device, manufacturer],
            msg_send![device, modelID],
        )
    };
    let (id, name, maker, model) = (text(id), text(name), text(maker), text(model));
    // SAFETY: a property read.
    let kind = unsafe { device.deviceType() }.to_string();
    CameraEntry {
        index,
        usb: usb_model(&id, &model),
        id: Some(id),
        name,
        description: format!(
            "{}: {maker} {model}",
            kind.strip_prefix("AVCaptureDeviceType").unwrap_or(&kind)
        ),
    }
}

fn device(id: &str) -> Result<Retained<AVCaptureDevice>, MacError> {
    // SAFETY: a class method; nil (None) for an unknown id.
    unsafe { AVCaptureDevice::deviceWithUniqueID(&NSString::from_str(id)) }.ok_or(MacError::Gone)
}

/// The modes the camera `id` offers: each format's size and encoding (as nokhwa names them,
/// for the listing and the ranking) with the maxima of its frame-rate ranges. Formats of an
/// encoding scened has no name for are left out; the capture output converts any of them.
pub fn modes(id: &str) -> Result<Vec<CameraFormat>, MacError> {
    guarded("reading its formats", || {
        autoreleasepool(|_| {
            let device = device(id)?;
            let mut by_mode: BTreeMap<(u32, u32, u8), (FrameFormat, Vec<u32>)> = BTreeMap::new();
            // SAFETY: property read.
            for format in unsafe { device.formats() }.to_vec() {
                let Some((width, height, encoding)) = describe(&format) else {
                    continue;
                };
                let rates = &mut by_mode
                    .entry((width, height, encoding as u8))
                    .or_insert((encoding, Vec::new()))
                    .1;
                rates.extend(ranges(&format).iter().map(|range| rounded(range.1)));
            }
            Ok(by_mode
                .into_iter()
                .flat_map(|((width, height, _), (encoding, mut rates))| {
                    rates.sort_unstable();
                    rates.dedup();
                    rates.retain(|&rate| rate > 0);
                    rates.into_iter().map(move |rate| {
                        CameraFormat::new(Resolution::new(width, height), encoding, rate)
                    })
                })
                .collect())
        })
    })?
}

/// A video format's size and encoding; `None` for another media type or an encoding without
/// a name here.
fn describe(format: &AVCaptureDeviceFormat) -> Option<(u32, u32, FrameFormat)> {
    // SAFETY: property reads; the description of a video format is a video description.
    let (media, description) = unsafe { (format.mediaType(), format.formatDescription()) };
    // SAFETY: reading a framework constant.
    let video = unsafe { AVMediaTypeVideo }.is_some_and(|video| media.isEqualToString(video));
    if !video {
        return None;
    }
    // SAFETY: as above.
    let (dimensions, subtype) = unsafe {
        (
            CMVideoFormatDescriptionGetDimensions(&description),
            description.media_sub_type(),
        )
    };
    Some((
        u32::try_from(dimensions.width).ok()?,
        u32::try_from(dimensions.height).ok()?,
        encoding(subtype)?,
    ))
}

/// A format's frame-rate ranges as (min, max) rates, with the range itself.
fn ranges(format: &AVCaptureDeviceFormat) -> Vec<(f64, f64, Retained<AVFrameRateRange>)> {
    // SAFETY: property reads.
    unsafe { format.videoSupportedFrameRateRanges() }
        .to_vec()
        .into_iter()
        .map(|range| unsafe { (range.minFrameRate(), range.maxFrameRate(), range) })
        .collect()
}

/// A rate as modes list it: 29.97 → 30.
fn rounded(rate: f64) -> u32 {
    rate.round() as u32
}

/// What the device sends, by the names nokhwa uses (its `raw_fcc_to_frameformat`, plus BGRA).
#[allow(non_upper_case_globals)]
fn encoding(subtype: u32) -> Option<FrameFormat> {
    match subtype {
        kCMVideoCodecType_422YpCbCr8 | kCMPixelFormat_422YpCbCr8_yuvs => Some(FrameFormat::YUYV),
        CV_420V | CV_420F | CV_X420 => Some(FrameFormat::NV12),
        kCMVideoCodecType_JPEG | kCMVideoCodecType_JPEG_OpenDML => Some(FrameFormat::MJPEG),
        kCMPixelFormat_8IndexedGray_WhiteIsZero => Some(FrameFormat::GRAY),
        kCMPixelFormat_24RGB => Some(FrameFormat::RAWRGB),
        kCMPixelFormat_32BGRA => Some(FrameFormat::RAWBGR),
        _ => None,
    }
}

/// Camera access as macOS has recorded it for this program (the terminal app it runs in, or
/// the launchd job): `Some(true)` granted, `Some(false)` denied or restricted, `None` not asked
/// yet.
pub fn access() -> Option<bool> {
    let status = guarded("reading camera access", || {
        // SAFETY: a class method with a framework constant; `None` media type is not passed.
        unsafe { AVMediaTypeVideo }
            .map(|video| unsafe { AVCaptureDevice::authorizationStatusForMediaType(video) })
    });
    match status.ok().flatten() {
        Some(AVAuthorizationStatus::Authorized) => Some(true),
        Some(AVAuthorizationStatus::NotDetermined) => None,
        _ => Some(false),
    }
}

/// Asks for camera access (macOS shows its prompt once) and waits up to `limit` for the
/// answer: `None` if none came (a CI runner never answers).
pub fn request_access(limit: Duration) -> Option<bool> {
    let (answer, answered) = crossbeam_channel::bounded(1);
    let handler = RcBlock::new(move |granted: Bool| {
        let _ = answer.try_send(granted.as_bool());
    });
    // SAFETY: reading a framework constant.
    let Some(video) = (unsafe { AVMediaTypeVideo }) else {
        return Some(false);
    };
    // SAFETY: a class method with a media type and a block it copies; the block may run on
    // any queue, and only sends on a channel.
    guarded("asking for camera access", || unsafe {
        AVCaptureDevice::requestAccessForMediaType_completionHandler(video, &handler)
    })
    .ok()?;
    answered.recv_timeout(limit).ok()
}

#[cfg(test)]
mod tests {
    #[allow(deprecated)]
    use objc2_av_foundation::{
        AVCaptureDeviceTypeContinuityCamera, AVCaptureDeviceTypeExternal,
        AVCaptureDeviceTypeExternalUnknown,
    };

    use super::super::pixels::OutputFormat;
    use super::*;

    /// The values `cameras` spells out are the framework's. The test binary may reference
    /// the macOS 14 statics and the deprecated one: CI runs it on macOS 14 or later.
    #[test]
    #[allow(deprecated)]
    fn device_type_values_are_the_frameworks() {
        // SAFETY: reading framework constants.
        let (external, continuity, unknown) = unsafe {
            (
                AVCaptureDeviceTypeExternal,
                AVCaptureDeviceTypeContinuityCamera,
                AVCaptureDeviceTypeExternalUnknown,
            )
        };
        assert_eq!(external.to_string(), EXTERNAL);
        assert_eq!(continuity.to_string(), CONTINUITY_CAMERA);
        assert_eq!(unknown.to_string(), EXTERNAL_UNKNOWN);
    }

    #[test]
    fn fourccs_name_what_the_camera_sends() {
        assert_eq!(encoding(CV_420V), Some(FrameFormat::NV12));
        assert_eq!(encoding(kCMVideoCodecType_JPEG), Some(FrameFormat::MJPEG));
        assert_eq!(encoding(u32::from_be_bytes(*b"hvc1")), None);
        assert_eq!(kCMPixelFormat_32BGRA, OutputFormat::Bgra.fourcc());
        assert_eq!(kCMPixelFormat_422YpCbCr8_yuvs, OutputFormat::Yuvs.fourcc());
        assert_eq!(kCMVideoCodecType_422YpCbCr8, OutputFormat::Uyvy.fourcc());
    }

    /// Listing needs no camera access, so it runs on a CI runner too (usually with nothing
    /// to list); every camera it finds has an id and its modes can be asked for.
    #[test]
    fn cameras_are_listed_with_ids() {
        for camera in cameras().expect("listed") {
            let id = camera.id.expect("AVFoundation gives every camera an id");
            match modes(&id) {
                Ok(modes) => assert!(modes.iter().all(|mode| mode.frame_rate() > 0)),
                Err(error) => eprintln!("{}: {error}", camera.name),
            }
        }
        assert!(matches!(modes("no such camera"), Err(MacError::Gone)));
    }
}
