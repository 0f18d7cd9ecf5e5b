//! macOS only: which cameras AVFoundation has, the modes nokhwa can open each in, and whether
//! camera access is granted, read through `objc2-av-foundation`. Opening and reading stay
//! nokhwa's (by unique id); this covers what nokhwa 0.10 gets wrong (see `mod.rs`).
//!
//! This file is not compiled by Linux builds: `scripts/check_macos.sh` type-checks it for
//! `aarch64-apple-darwin` on Linux, and the macOS CI job builds and runs it.
//! Every call below is a property read or a class method of AVFoundation or Core Media; none
//! needs the main thread.

use std::collections::BTreeMap;

use nokhwa::utils::{CameraFormat, FrameFormat, Resolution};
use objc2::rc::{autoreleasepool, Retained};
use objc2::{available, Message};
// Renamed `AVCaptureDeviceTypeExternal` in macOS 14; the old name is for older systems.
#[allow(deprecated)]
use objc2_av_foundation::AVCaptureDeviceTypeExternalUnknown;
use objc2_av_foundation::{
    AVAuthorizationStatus, AVCaptureDevice, AVCaptureDeviceDiscoverySession, AVCaptureDeviceFormat,
    AVCaptureDevicePosition, AVCaptureDeviceType, AVCaptureDeviceTypeBuiltInWideAngleCamera,
    AVMediaTypeVideo,
};
use objc2_core_media::{
    kCMPixelFormat_24RGB, kCMPixelFormat_422YpCbCr8_yuvs, kCMPixelFormat_8IndexedGray_WhiteIsZero,
    kCMVideoCodecType_422YpCbCr8, kCMVideoCodecType_JPEG, kCMVideoCodecType_JPEG_OpenDML,
    CMVideoFormatDescriptionGetDimensions,
};
use objc2_foundation::{NSArray, NSString};

use super::choice::CameraEntry;

/// Core Video's 4:2:0 formats, which nokhwa maps to YUYV (objc2-core-video is not needed for
/// three constants): `kCVPixelFormatType_420YpCbCr8BiPlanarVideoRange` ('420v'), `…FullRange`
/// ('420f') and `kCVPixelFormatType_420YpCbCr10BiPlanarVideoRange` ('x420').
const CV_420V: u32 = u32::from_be_bytes(*b"420v");
const CV_420F: u32 = u32::from_be_bytes(*b"420f");
const CV_X420: u32 = u32::from_be_bytes(*b"x420");

#[derive(Debug, thiserror::Error)]
pub enum ModesError {
    #[error("no camera has this id now")]
    Gone,
    #[error(
        "it offers a {0} format, which nokhwa 0.10 cannot open (it fails on any format it does \
         not know)"
    )]
    Unopenable(String),
}

/// Every video camera, listed in AVFoundation's order: built-in, then external (USB, capture
/// cards), then Continuity Cameras (iPhones), each by its unique id.
pub fn cameras() -> Vec<CameraEntry> {
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
}

pub(super) const EXTERNAL: &str = "AVCaptureDeviceTypeExternal";
pub(super) const CONTINUITY_CAMERA: &str = "AVCaptureDeviceTypeContinuityCamera";

fn entry(index: u32, device: &AVCaptureDevice) -> CameraEntry {
    // SAFETY: property reads on a device the discovery session returned.
    let (id, name, kind, maker, model) = unsafe {
        (
            device.uniqueID(),
            device.localizedName(),
            device.deviceType(),
            device.manufacturer(),
            device.modelID(),
        )
    };
    let kind = kind.to_string();
    CameraEntry {
        index,
        id: Some(id.to_string()),
        name: name.to_string(),
        description: format!(
            "{}: {maker} {model}",
            kind.strip_prefix("AVCaptureDeviceType").unwrap_or(&kind)
        ),
    }
}

/// The modes nokhwa can open the camera `id` in, as nokhwa labels them. nokhwa's
/// `AVCaptureDevice::set_all` picks the *last* format of the asked size and, in it, the
/// frame-rate range whose *maximum* is the asked rate (a rate from an earlier format of the
/// same size can make AVFoundation throw, nokhwa PR #246): so each size is reported with the
/// range maxima of its last format only.
pub fn modes(id: &str) -> Result<Vec<CameraFormat>, ModesError> {
    autoreleasepool(|_| {
        // SAFETY: a class method; nil (None) for an unknown id.
        let device = unsafe { AVCaptureDevice::deviceWithUniqueID(&NSString::from_str(id)) }
            .ok_or(ModesError::Gone)?;
        let mut by_size = BTreeMap::new();
        // SAFETY: property read.
        for format in unsafe { device.formats() }.to_vec() {
            let (size, mode) = describe(&format)?;
            by_size.insert(size, mode);
        }
        Ok(by_size
            .into_iter()
            .flat_map(|((width, height), (format, rates))| {
                rates.into_iter().map(move |rate: u32| {
                    CameraFormat::new(Resolution::new(width, height), format, rate)
                })
            })
            .collect())
    })
}

type Mode = (FrameFormat, Vec<u32>);

fn describe(format: &AVCaptureDeviceFormat) -> Result<((u32, u32), Mode), ModesError> {
    // SAFETY: property reads; the description of a video format is a video description.
    let (media, description, ranges) = unsafe {
        (
            format.mediaType(),
            format.formatDescription(),
            format.videoSupportedFrameRateRanges(),
        )
    };
    // SAFETY: reading a framework constant.
    let video = unsafe { AVMediaTypeVideo }.is_some_and(|video| media.isEqualToString(video));
    if !video {
        // nokhwa's `AVCaptureDeviceFormat::try_from` refuses a non-video format the same way.
        return Err(ModesError::Unopenable(format!("non-video ({media})")));
    }
    // SAFETY: as above.
    let (dimensions, subtype) = unsafe {
        (
            CMVideoFormatDescriptionGetDimensions(&description),
            description.media_sub_type(),
        )
    };
    let format = frame_format(subtype).ok_or_else(|| {
        ModesError::Unopenable(String::from_utf8_lossy(&subtype.to_be_bytes()).into_owned())
    })?;
    let size = (
        u32::try_from(dimensions.width).unwrap_or(0),
        u32::try_from(dimensions.height).unwrap_or(0),
    );
    let mut rates: Vec<u32> = ranges
        .to_vec()
        .iter()
        // SAFETY: property read. nokhwa takes the maximum as a whole number too (29.97 → 29
        // there; `set_all` accepts any rate within 0.999 of a maximum, so rounding is safe).
        .map(|range| unsafe { range.maxFrameRate() }.round() as u32)
        .filter(|&rate| rate > 0)
        .collect();
    rates.sort_unstable();
    rates.dedup();
    Ok((size, (format, rates)))
}

/// nokhwa-bindings-macos 0.2.4 `raw_fcc_to_frameformat`, case by case: every 4:2:0 and 4:2:2
/// layout is "YUYV" (the video output converts to 'yuvs', which is YUYV order).
#[allow(non_upper_case_globals)]
fn frame_format(subtype: u32) -> Option<FrameFormat> {
    match subtype {
        kCMVideoCodecType_422YpCbCr8 | kCMPixelFormat_422YpCbCr8_yuvs => Some(FrameFormat::YUYV),
        CV_420V | CV_420F | CV_X420 => Some(FrameFormat::YUYV),
        kCMVideoCodecType_JPEG | kCMVideoCodecType_JPEG_OpenDML => Some(FrameFormat::MJPEG),
        kCMPixelFormat_8IndexedGray_WhiteIsZero => Some(FrameFormat::GRAY),
        kCMPixelFormat_24RGB => Some(FrameFormat::RAWRGB),
        _ => None,
    }
}

/// Camera access as macOS has recorded it for this program (the terminal app it runs in, or
/// the launchd job): `Some(true)` granted, `Some(false)` denied or restricted, `None` not asked
/// yet.
pub fn access() -> Option<bool> {
    // SAFETY: a class method with a framework constant; `None` media type is not passed.
    let status = unsafe { AVMediaTypeVideo }
        .map(|video| unsafe { AVCaptureDevice::authorizationStatusForMediaType(video) });
    match status {
        Some(AVAuthorizationStatus::Authorized) => Some(true),
        Some(AVAuthorizationStatus::NotDetermined) => None,
        _ => Some(false),
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
    fn fourccs_map_as_nokhwa_maps_them() {
        assert_eq!(frame_format(CV_420V), Some(FrameFormat::YUYV));
        assert_eq!(
            frame_format(kCMVideoCodecType_JPEG),
            Some(FrameFormat::MJPEG)
        );
        assert_eq!(frame_format(u32::from_be_bytes(*b"hvc1")), None);
    }

    /// Listing needs no camera access, so it runs on a CI runner too (usually with nothing
    /// to list); every camera it finds has an id and its modes can be asked for.
    #[test]
    fn cameras_are_listed_with_ids() {
        for camera in cameras() {
            let id = camera.id.expect("AVFoundation gives every camera an id");
            match modes(&id) {
                Ok(modes) => assert!(modes.iter().all(|mode| mode.frame_rate() > 0)),
                Err(error) => eprintln!("{}: {error}", camera.name),
            }
        }
        assert!(matches!(modes("no such camera"), Err(ModesError::Gone)));
    }
}
