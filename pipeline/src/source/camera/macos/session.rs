//! A capture session of scened's own for one camera: opened in a mode, its frames copied by a
//! callback on a dispatch queue (the oldest replaced when the reader falls behind), converted
//! to RGB when read.

use std::sync::Once;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use dispatch2::{DispatchQueue, DispatchRetained};
use image::RgbImage;
use nokhwa::utils::{CameraFormat, FrameFormat};
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::{AnyObject, NSObject, NSObjectProtocol, ProtocolObject};
use objc2::{define_class, msg_send, AnyThread, DefinedClass};
use objc2_av_foundation::{
    AVCaptureConnection, AVCaptureDevice, AVCaptureDeviceInput, AVCaptureOutput, AVCaptureSession,
    AVCaptureVideoDataOutput, AVCaptureVideoDataOutputSampleBufferDelegate,
};
use objc2_core_foundation::CFString;
use objc2_core_media::{CMSampleBuffer, CMTime};
use objc2_core_video::{
    kCVPixelBufferPixelFormatTypeKey, CVPixelBufferGetBaseAddress, CVPixelBufferGetBytesPerRow,
    CVPixelBufferGetHeight, CVPixelBufferGetPixelFormatType, CVPixelBufferGetWidth,
    CVPixelBufferLockBaseAddress, CVPixelBufferLockFlags, CVPixelBufferUnlockBaseAddress,
};
use objc2_foundation::{NSDictionary, NSNumber, NSString};
use tracing::warn;

use super::super::choice::{frame_duration, FrameDuration};
use super::super::pixels::{choose_output, fourcc_text, OutputFormat};
use super::{describe, device, guarded, ranges, MacError};
use crate::contain;
use crate::source::FrameError;

/// Frames waiting for the reader; the callback replaces the oldest when it falls behind.
const QUEUED_FRAMES: usize = 2;

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
    /// Frames in another format are dropped; the first is logged, or the camera would seem
    /// only to time out.
    other_format: Once,
}

impl Frames {
    fn take(&self, sample: &CMSampleBuffer) {
        // SAFETY: a sample buffer the output just delivered; `None` when it holds no image.
        let Some(pixels) = (unsafe { sample.image_buffer() }) else {
            return;
        };
        let fourcc = CVPixelBufferGetPixelFormatType(&pixels);
        if fourcc != self.format.fourcc() {
            self.other_format.call_once(|| {
                let (got, asked) = (fourcc_text(fourcc), fourcc_text(self.format.fourcc()));
                warn!(%got, %asked, "camera: frames in another pixel format than asked for, dropped");
            });
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
            // A panic must not unwind into the dispatch queue: the frame is dropped. A queue of
            // our own drains no autorelease pool per block (only its thread's, at times GCD
            // picks): this one frees whatever a frame autoreleases with the frame.
            let take = || guarded("copying a frame", || self.ivars().take(sample));
            let _ = contain::catch(|| autoreleasepool(|_| take()));
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
                    other_format: Once::new(),
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
    let (format, (min, max, range)) =
        chosen.ok_or_else(|| MacError::NoSuchMode(mode.to_string()))?;
    // SAFETY: property reads, and a Core Media constructor.
    let duration = match frame_duration(mode.frame_rate(), min, max) {
        FrameDuration::Shortest => unsafe { range.minFrameDuration() },
        FrameDuration::Longest => unsafe { range.maxFrameDuration() },
        FrameDuration::PerSecond(rate) => unsafe { CMTime::new(1, rate as i32) },
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
    use super::*;

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
}
