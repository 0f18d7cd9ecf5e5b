//! macOS only: the cameras AVFoundation has, their modes, camera access, and a capture session
//! of scened's own, through `objc2-av-foundation` (docs/macos.md says why not nokhwa's).
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

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use block2::RcBlock;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use dispatch2::{DispatchQueue, DispatchRetained};
use image::RgbImage;
use nokhwa::utils::{CameraFormat, FrameFormat, Resolution};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::{AnyObject, Bool, NSObject, NSObjectProtocol, ProtocolObject};
use objc2::{available, define_class, msg_send, AnyThread, DefinedClass, Message};
// Renamed `AVCaptureDeviceTypeExternal` in macOS 14; the old name is for older systems.
#[allow(deprecated)]
use objc2_av_foundation::AVCaptureDeviceTypeExternalUnknown;
use objc2_av_foundation::{
    AVAuthorizationStatus, AVCaptureConnection, AVCaptureDevice, AVCaptureDeviceDiscoverySession,
    AVCaptureDeviceFormat, AVCaptureDeviceInput, AVCaptureDevicePosition, AVCaptureDeviceType,
    AVCaptureDeviceTypeBuiltInWideAngleCamera, AVCaptureOutput, AVCaptureSession,
    AVCaptureVideoDataOutput, AVCaptureVideoDataOutputSampleBufferDelegate, AVFrameRateRange,
    AVMediaTypeVideo,
};
use objc2_core_foundation::CFString;
use objc2_core_media::{
    kCMPixelFormat_24RGB, kCMPixelFormat_32BGRA, kCMPixelFormat_422YpCbCr8_yuvs,
    kCMPixelFormat_8IndexedGray_WhiteIsZero, kCMVideoCodecType_422YpCbCr8, kCMVideoCodecType_JPEG,
    kCMVideoCodecType_JPEG_OpenDML, CMSampleBuffer, CMTime, CMVideoFormatDescriptionGetDimensions,
};
use objc2_core_video::{
    kCVPixelBufferPixelFormatTypeKey, CVPixelBufferGetBaseAddress, CVPixelBufferGetBytesPerRow,
    CVPixelBufferGetHeight, CVPixelBufferGetPixelFormatType, CVPixelBufferGetWidth,
    CVPixelBufferLockBaseAddress, CVPixelBufferLockFlags, CVPixelBufferUnlockBaseAddress,
};
use objc2_foundation::{NSArray, NSDictionary, NSNumber, NSString};

use super::choice::{usb_model, CameraEntry};
use super::pixels::{choose_output, fourcc_text, OutputFormat};
use crate::contain;
use crate::source::FrameError;

/// Core Video's 4:2:0 formats (objc2-core-video names them, but as `u32` consts of another
/// type): `kCVPixelFormatType_420YpCbCr8BiPlanarVideoRange` ('420v'), `…FullRange` ('420f')
/// and `kCVPixelFormatType_420YpCbCr10BiPlanarVideoRange` ('x420').
const CV_420V: u32 = u32::from_be_bytes(*b"420v");
const CV_420F: u32 = u32::from_be_bytes(*b"420f");
const CV_X420: u32 = u32::from_be_bytes(*b"x420");
/// Frames waiting for the reader; the callback replaces the oldest when it falls behind.
const QUEUED_FRAMES: usize = 2;

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
            if available!(macos = 14.0) {
                // By value rather than through their extern statics: a reference to a macOS 14
                // symbol is bound at launch (stable Rust cannot weak-link statics), so the binary
                // would not start on macOS 13. Each constant's value is its name; a macOS-only
                // test checks that against the statics.
                types.push(NSString::from_str(EXTERNAL));
                types.push(NSString::from_str(CONTINUITY_CAMERA));
            } else {
                // SAFETY: as above; renamed `External` in macOS 14.
                #[allow(deprecated)]
                types.push(unsafe { AVCaptureDeviceTypeExternalUnknown }.retain());
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

fn entry(index: u32, device: &AVCaptureDevice) -> CameraEntry {
    // SAFETY: property reads on a device the discovery session returned.
    let (id, name, kind, maker, model) = unsafe {
        (
            device.uniqueID().to_string(),
            device.localizedName(),
            device.deviceType(),
            device.manufacturer(),
            device.modelID().to_string(),
        )
    };
    let kind = kind.to_string();
    CameraEntry {
        index,
        usb: usb_model(&id, &model),
        id: Some(id),
        name: name.to_string(),
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

/// A frame's bytes as the callback copied them.
struct Raw {
    captured_at: Instant,
    width: usize,
    height: usize,
    bytes_per_row: usize,
    bytes: Vec<u8>,
}

/// What the frame callback needs: where frames go, and the format it asked for.
struct Frames {
    sender: Sender<Raw>,
    /// To drop the oldest frame when the reader falls behind.
    receiver: Receiver<Raw>,
    format: OutputFormat,
}

impl Frames {
    fn take(&self, sample: &CMSampleBuffer) {
        // SAFETY: a sample buffer the output just delivered; `None` when it holds no image.
        let Some(pixels) = (unsafe { sample.image_buffer() }) else {
            return;
        };
        if CVPixelBufferGetPixelFormatType(&pixels) != self.format.fourcc() {
            return;
        }
        let captured_at = Instant::now();
        // SAFETY: locked for reading before its base address is read, unlocked after; the
        // copy reads `height * bytes_per_row` bytes, the buffer's extent.
        let raw = unsafe {
            if CVPixelBufferLockBaseAddress(&pixels, CVPixelBufferLockFlags::ReadOnly) != 0 {
                return;
            }
            let (width, height) = (
                CVPixelBufferGetWidth(&pixels),
                CVPixelBufferGetHeight(&pixels),
            );
            let bytes_per_row = CVPixelBufferGetBytesPerRow(&pixels);
            let base = CVPixelBufferGetBaseAddress(&pixels).cast::<u8>();
            let bytes = if base.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(base, height * bytes_per_row).to_vec()
            };
            CVPixelBufferUnlockBaseAddress(&pixels, CVPixelBufferLockFlags::ReadOnly);
            Raw {
                captured_at,
                width,
                height,
                bytes_per_row,
                bytes,
            }
        };
        if let Err(TrySendError::Full(raw)) = self.sender.try_send(raw) {
            let _ = self.receiver.try_recv();
            let _ = self.sender.try_send(raw);
        }
    }
}

define_class!(
    // SAFETY: NSObject has no subclassing requirements; no `Drop` here.
    #[unsafe(super(NSObject))]
    #[name = "ScenedFrameReceiver"]
    #[ivars = Frames]
    struct FrameReceiver;

    unsafe impl NSObjectProtocol for FrameReceiver {}

    unsafe impl AVCaptureVideoDataOutputSampleBufferDelegate for FrameReceiver {
        #[unsafe(method(captureOutput:didOutputSampleBuffer:fromConnection:))]
        fn did_output(
            &self,
            _output: &AVCaptureOutput,
            sample: &CMSampleBuffer,
            _connection: &AVCaptureConnection,
        ) {
            // A panic must not unwind into the dispatch queue: the frame is dropped.
            let _ = contain::catch(|| guarded("copying a frame", || self.ivars().take(sample)));
        }
    }
);

impl FrameReceiver {
    fn new(frames: Frames) -> Retained<Self> {
        let this = Self::alloc().set_ivars(frames);
        // SAFETY: NSObject's `init` on a freshly allocated object.
        unsafe { msg_send![super(this), init] }
    }
}

/// A running capture session of one camera, delivering frames in an uncompressed format.
pub struct Session {
    session: Retained<AVCaptureSession>,
    input: Retained<AVCaptureDeviceInput>,
    output: Retained<AVCaptureVideoDataOutput>,
    /// Kept alive while the output may call it.
    _receiver: Retained<FrameReceiver>,
    _queue: DispatchRetained<DispatchQueue>,
    frames: Receiver<Raw>,
    format: OutputFormat,
    /// What is running: size and frames per second, read back from the device.
    pub running: (u32, u32, f64),
    /// Whether the mode was set; `false` when another app held the configuration lock and
    /// the camera runs in the mode that app chose.
    pub configured: bool,
}

// SAFETY: the session's objects are made, used and released on one thread, the source's
// worker (`source::deadline`); the move into it happens before any of them is used, and
// AVFoundation's capture objects may be used from any one thread at a time.
unsafe impl Send for Session {}

impl Session {
    /// Opens the camera `id` in `mode` (or the nearest its formats allow) and starts it.
    /// Holds the camera's configuration lock only from setting the mode until the session has
    /// started (Apple: without it, the session's preset would override the mode); a camera
    /// whose lock another app holds opens in the mode it is in.
    pub fn open(id: &str, mode: CameraFormat) -> Result<Self, MacError> {
        guarded("opening the camera", || {
            autoreleasepool(|_| {
                let device = device(id)?;
                // SAFETY: a class method; access refused or a busy device is an NSError.
                let input = unsafe { AVCaptureDeviceInput::deviceInputWithDevice_error(&device) }
                    .map_err(|error| {
                    MacError::Input(error.localizedDescription().to_string())
                })?;
                // SAFETY: plain constructors.
                let (session, output) =
                    unsafe { (AVCaptureSession::new(), AVCaptureVideoDataOutput::new()) };
                // SAFETY: a property read.
                let offered: Vec<u32> = unsafe { output.availableVideoCVPixelFormatTypes() }
                    .to_vec()
                    .iter()
                    .map(|code| code.as_u32())
                    .collect();
                let format = choose_output(&offered).ok_or_else(|| {
                    let offered: Vec<String> = offered.iter().copied().map(fourcc_text).collect();
                    MacError::NoPixelFormat(offered.join(", "))
                })?;
                // SAFETY: Core Video's key, a CFString, is toll-free bridged to NSString.
                let key: &NSString = unsafe {
                    &*std::ptr::from_ref::<CFString>(kCVPixelBufferPixelFormatTypeKey).cast()
                };
                let code = NSNumber::new_u32(format.fourcc());
                let code: &AnyObject = &code;
                let settings = NSDictionary::from_slices(&[key], &[code]);
                let (sender, frames) = crossbeam_channel::bounded(QUEUED_FRAMES);
                let receiver = FrameReceiver::new(Frames {
                    sender,
                    receiver: frames.clone(),
                    format,
                });
                let queue = DispatchQueue::new("scened.camera", None);
                guarded("the capture output's settings", || unsafe {
                    output.setVideoSettings(Some(&*settings));
                    output.setAlwaysDiscardsLateVideoFrames(true);
                    output.setSampleBufferDelegate_queue(
                        Some(ProtocolObject::from_ref(&*receiver)),
                        Some(&*queue),
                    );
                })?;
                guarded("adding the camera to a capture session", || unsafe {
                    session.beginConfiguration();
                    let added = session.canAddInput(&input)
                        && {
                            session.addInput(&input);
                            session.canAddOutput(&output)
                        }
                        && {
                            session.addOutput(&output);
                            true
                        };
                    session.commitConfiguration();
                    added
                })?
                .then_some(())
                .ok_or(MacError::Refused("the camera or its output"))?;
                let mut opened = Self {
                    session,
                    input,
                    output,
                    _receiver: receiver,
                    _queue: queue,
                    frames,
                    format,
                    running: (0, 0, 0.0),
                    configured: false,
                };
                // SAFETY: fails with an NSError when another app holds the lock.
                let locked = unsafe { device.lockForConfiguration() }.is_ok();
                let started = (|| {
                    if locked {
                        set_mode(&device, mode)?;
                        opened.configured = true;
                    }
                    guarded("starting the capture session", || unsafe {
                        opened.session.startRunning();
                        opened.session.isRunning()
                    })
                })();
                if locked {
                    // SAFETY: the lock taken above; unlocking cannot raise.
                    unsafe { device.unlockForConfiguration() };
                }
                if !started? {
                    return Err(MacError::NotRunning);
                }
                opened.running = running(&device);
                Ok(opened)
            })
        })?
    }

    /// The next frame, waiting up to `limit`: a camera that sends nothing (a lid closed,
    /// unplugged) fails here instead of blocking, so its worker can close it.
    /// A frame over `max_pixels` (another app's mode) is refused before it is converted.
    pub fn frame(
        &mut self,
        limit: Duration,
        max_pixels: u64,
    ) -> Result<(Instant, RgbImage), MacError> {
        let raw = match self.frames.recv_timeout(limit) {
            Ok(raw) => raw,
            Err(RecvTimeoutError::Timeout) => return Err(MacError::NoFrame(limit)),
            Err(RecvTimeoutError::Disconnected) => return Err(MacError::Stopped),
        };
        let (width, height) = (raw.width as u64, raw.height as u64);
        if width * height > max_pixels {
            return Err(MacError::Frame(FrameError::TooLarge {
                width: raw.width as u32,
                height: raw.height as u32,
                max_pixels,
            }));
        }
        let image = self
            .format
            .to_rgb(raw.width, raw.height, raw.bytes_per_row, &raw.bytes)
            .map_err(MacError::Frame)?;
        Ok((raw.captured_at, image))
    }
}

/// Sets the device's format and frame rate to `mode`'s; the device is locked.
fn set_mode(device: &AVCaptureDevice, mode: CameraFormat) -> Result<(), MacError> {
    let wanted = (mode.width(), mode.height(), mode.format());
    let rate = f64::from(mode.frame_rate());
    // SAFETY: property read.
    let chosen = unsafe { device.formats() }
        .to_vec()
        .into_iter()
        .find_map(|format| {
            if describe(&format)? != wanted {
                return None;
            }
            let range = ranges(&format)
                .into_iter()
                .find(|(min, max, _)| *min - 0.5 <= rate && rate <= *max + 0.5)?;
            Some((format, range))
        });
    let (format, (_, max, range)) = chosen.ok_or_else(|| MacError::NoSuchMode(mode.to_string()))?;
    // The range's own duration at its maximum (29.97 is 1001/30000, not 1/30); else 1/rate.
    let duration = if (rate - max).abs() < 0.5 {
        // SAFETY: property read.
        unsafe { range.minFrameDuration() }
    } else {
        // SAFETY: a Core Media constructor.
        unsafe { CMTime::new(1, mode.frame_rate() as i32) }
    };
    guarded("setting the camera's mode", || unsafe {
        device.setActiveFormat(&format);
        device.setActiveVideoMinFrameDuration(duration);
        device.setActiveVideoMaxFrameDuration(duration);
    })
}

/// The size and rate the device runs at, read back: what the log reports.
fn running(device: &AVCaptureDevice) -> (u32, u32, f64) {
    // SAFETY: property reads.
    let (format, duration) =
        unsafe { (device.activeFormat(), device.activeVideoMinFrameDuration()) };
    let (width, height, _) = describe(&format).unwrap_or((0, 0, FrameFormat::YUYV));
    let fps = if duration.value > 0 {
        f64::from(duration.timescale) / duration.value as f64
    } else {
        0.0
    };
    (width, height, fps)
}

impl Drop for Session {
    /// Stops the session and takes the camera out of it, so nothing keeps running once the
    /// source is gone. Blocks while AVFoundation stops it.
    fn drop(&mut self) {
        let _ = guarded("stopping the capture session", || unsafe {
            self.session.stopRunning();
            self.session.beginConfiguration();
            self.session.removeOutput(&self.output);
            self.session.removeInput(&self.input);
            self.session.commitConfiguration();
            self.output.setSampleBufferDelegate_queue(None, None);
        });
    }
}

#[cfg(test)]
mod tests {
    use objc2_av_foundation::{AVCaptureDeviceTypeContinuityCamera, AVCaptureDeviceTypeExternal};

    use super::*;

    /// The values `cameras` spells out are the framework's. The test binary may reference
    /// the macOS 14 statics: CI runs it on macOS 14 or later.
    #[test]
    fn device_type_values_are_the_frameworks() {
        // SAFETY: reading framework constants.
        let (external, continuity) = unsafe {
            (
                AVCaptureDeviceTypeExternal,
                AVCaptureDeviceTypeContinuityCamera,
            )
        };
        assert_eq!(external.to_string(), EXTERNAL);
        assert_eq!(continuity.to_string(), CONTINUITY_CAMERA);
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

    /// A capture output made here (no camera needed) offers the formats the choice expects,
    /// and the choice is uncompressed; asking for it raises nothing.
    #[test]
    fn a_capture_output_takes_the_chosen_format() {
        // SAFETY: a plain constructor and a property read.
        let output = unsafe { AVCaptureVideoDataOutput::new() };
        let offered: Vec<u32> = unsafe { output.availableVideoCVPixelFormatTypes() }
            .to_vec()
            .iter()
            .map(|code| code.as_u32())
            .collect();
        let names: Vec<String> = offered.iter().copied().map(fourcc_text).collect();
        eprintln!("a capture output offers {}", names.join(", "));
        if offered.is_empty() {
            // Not seen in AVFoundation's headers, but an output in no session might list
            // nothing: then there is nothing to check here.
            eprintln!("skipped: a capture output outside a session lists no formats here");
            return;
        }
        let format = choose_output(&offered).expect("an uncompressed format");
        // SAFETY: as in `Session::open`.
        let key: &NSString =
            unsafe { &*std::ptr::from_ref::<CFString>(kCVPixelBufferPixelFormatTypeKey).cast() };
        assert_eq!(key.to_string(), "PixelFormatType");
        let settings = |code: u32| {
            let code = NSNumber::new_u32(code);
            let code: &AnyObject = &code;
            NSDictionary::from_slices(&[key], &[code])
        };
        let good = settings(format.fourcc());
        guarded("setVideoSettings", || unsafe {
            output.setVideoSettings(Some(&*good))
        })
        .expect("accepted");
        // And a compressed code is refused with an exception that is caught, not an abort.
        let bad = settings(u32::from_be_bytes(*b"jpeg"));
        let refused = guarded("setVideoSettings", || unsafe {
            output.setVideoSettings(Some(&*bad))
        });
        eprintln!("asking for 'jpeg': {refused:?}");
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
