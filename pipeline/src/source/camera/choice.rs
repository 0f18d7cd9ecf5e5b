//! What to open: which camera, and in which of the modes it offers. Pure functions over what
//! the OS and the camera report, so every decision is tested without a camera (this machine
//! has none) on lists shaped like each backend's answers.

use std::fmt;

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{CameraFormat, FrameFormat};
use nokhwa::{FormatDecoder, NokhwaError};
use serde::{Deserialize, Serialize};

use crate::source::SourceError;

/// A camera as `scened cameras` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraEntry {
    /// What `index` selects: the place in the list on macOS, N of `/dev/videoN` on Linux.
    pub index: u32,
    /// Stable across replugs and reboots where the OS gives one: AVFoundation's unique id on
    /// macOS, the `/dev/v4l/by-id` name on Linux (udev makes those for USB cameras).
    pub id: Option<String>,
    pub name: String,
    pub description: String,
    /// A USB camera's vendor and product, where the OS tells them (macOS): what finds it again
    /// when it is plugged into another port and its id changed with it.
    pub usb: Option<UsbModel>,
}

/// A USB camera's vendor and product ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsbModel {
    pub vendor: u16,
    pub product: u16,
}

impl fmt::Display for UsbModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.product)
    }
}

/// The USB vendor and product of a macOS camera: from its model id, which AVFoundation gives
/// UVC cameras as `UVC Camera VendorID_1133 ProductID_2093` (decimal), else from its unique
/// id, `0x` and 16 hex digits: the USB location (8), which changes with the port, then vendor
/// (4) and product (4). `None` for a camera that is not on USB (built-in on Apple silicon,
/// Continuity Cameras: their ids are UUIDs).
pub fn usb_model(unique_id: &str, model_id: &str) -> Option<UsbModel> {
    let decimal = |key: &str| -> Option<u16> {
        let rest = &model_id[model_id.find(key)? + key.len()..];
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse().ok()
    };
    if let (Some(vendor), Some(product)) = (decimal("VendorID_"), decimal("ProductID_")) {
        return Some(UsbModel { vendor, product });
    }
    let hex = unique_id.strip_prefix("0x")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(UsbModel {
        vendor: u16::from_str_radix(&hex[8..12], 16).ok()?,
        product: u16::from_str_radix(&hex[12..16], 16).ok()?,
    })
}

/// A camera pinned by `id` that no camera has now, found as the same model on another USB
/// port: the one camera whose vendor and product are those of `like` (the camera as first
/// found; else those the id itself encodes) and, when `like` is known, whose name is its name.
/// `None` when there is no such camera, or more than one (two identical webcams: which is
/// which cannot be told).
pub fn moved<'a>(
    cameras: &'a [CameraEntry],
    id: &str,
    like: Option<&CameraEntry>,
) -> Option<&'a CameraEntry> {
    let model = like
        .and_then(|camera| camera.usb)
        .or_else(|| usb_model(id, ""))?;
    let mut same = cameras.iter().filter(|camera| {
        camera.usb == Some(model)
            && camera.id.as_deref() != Some(id)
            && like.is_none_or(|like| like.name == camera.name)
    });
    let found = same.next()?;
    same.next().is_none().then_some(found)
}

/// How a config picks its camera.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Index(u32),
    Id(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Index(index) => write!(f, "camera {index}"),
            Self::Id(id) => write!(f, "camera {id:?}"),
        }
    }
}

/// The camera `selector` names among `cameras`.
pub fn select<'a>(
    cameras: &'a [CameraEntry],
    selector: &Selector,
) -> Result<&'a CameraEntry, SourceError> {
    if cameras.is_empty() {
        return Err(SourceError::NoCamera);
    }
    let found = match selector {
        Selector::Index(index) => cameras.iter().find(|camera| camera.index == *index),
        Selector::Id(id) => cameras.iter().find(|camera| camera.id.as_ref() == Some(id)),
    };
    found.ok_or_else(|| match selector {
        Selector::Index(index) => SourceError::CameraIndex {
            index: *index,
            count: cameras.len(),
        },
        Selector::Id(id) => {
            let ids: Vec<&str> = cameras.iter().filter_map(|c| c.id.as_deref()).collect();
            SourceError::CameraId {
                id: id.clone(),
                ids: if ids.is_empty() {
                    "none".into()
                } else {
                    ids.join(", ")
                },
            }
        }
    })
}

/// How a camera found at start-up is reopened after a loss: by its id when it has one, so a
/// list that changed meanwhile (a phone came or went, `/dev/videoN` renumbered on replug)
/// cannot swap in another camera; by index only where the OS gives no id.
pub fn pinned(camera: &CameraEntry) -> Selector {
    match &camera.id {
        Some(id) => Selector::Id(id.clone()),
        None => Selector::Index(camera.index),
    }
}

/// The pixel format a camera config asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraPixelFormat {
    /// MJPEG where offered (USB webcams on Linux: it fits more frames through USB 2), else
    /// YUYV (what AVFoundation labels every 4:2:0 and 4:2:2 mode), else another format scened
    /// decodes.
    #[default]
    Auto,
    Mjpeg,
    Yuyv,
}

/// What a config asks of the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub format: CameraPixelFormat,
}

/// The offered modes worth trying, best first: the asked format (for `auto`: MJPEG, then
/// YUYV, then the rest), then the nearest size, then the nearest rate (the higher on a tie).
/// Modes scened cannot decode or larger than `max_pixels` are left out.
pub fn ranked_modes(
    wanted: Wanted,
    offered: &[CameraFormat],
    max_pixels: u64,
) -> Vec<CameraFormat> {
    let mut modes: Vec<CameraFormat> = offered
        .iter()
        .copied()
        .filter(|mode| {
            RgbFormat::FORMATS.contains(&mode.format())
                && u64::from(mode.width()) * u64::from(mode.height()) <= max_pixels
        })
        .collect();
    modes.sort_by_key(|mode| {
        let (dw, dh) = (
            u64::from(mode.width().abs_diff(wanted.width)),
            u64::from(mode.height().abs_diff(wanted.height)),
        );
        (
            format_rank(wanted.format, mode.format()),
            dw * dw + dh * dh,
            mode.frame_rate().abs_diff(wanted.fps),
            std::cmp::Reverse(mode.frame_rate()),
            // Last, so that equal modes end up side by side for `dedup`.
            (mode.width(), mode.height()),
        )
    });
    modes.dedup();
    modes
}

/// The frame duration to set for a mode listed at `rate` (a range's maximum, rounded) within
/// a range of `min` to `max` frames per second. A device takes only a duration inside the
/// range and raises an exception otherwise, so a rate at or past an end gets that end's own
/// duration (29.97 fps is 1001/30000 s and 7.5 fps 2/15 s, where 1/30 and 1/8 s are outside),
/// and a rate inside gets 1/rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameDuration {
    /// The range's shortest: its maximum rate, exactly.
    Shortest,
    /// The range's longest: its minimum rate, exactly.
    Longest,
    /// 1/rate seconds.
    PerSecond(u32),
}

pub fn frame_duration(rate: u32, min: f64, max: f64) -> FrameDuration {
    let fps = f64::from(rate);
    if fps >= max {
        FrameDuration::Shortest
    } else if fps <= min {
        FrameDuration::Longest
    } else {
        FrameDuration::PerSecond(rate)
    }
}

fn format_rank(wanted: CameraPixelFormat, offered: FrameFormat) -> u8 {
    match (wanted, offered) {
        (CameraPixelFormat::Mjpeg, FrameFormat::MJPEG)
        | (CameraPixelFormat::Yuyv, FrameFormat::YUYV) => 0,
        (CameraPixelFormat::Auto, FrameFormat::MJPEG) => 1,
        (CameraPixelFormat::Auto | CameraPixelFormat::Mjpeg, FrameFormat::YUYV)
        | (CameraPixelFormat::Yuyv, FrameFormat::MJPEG) => 2,
        _ => 3,
    }
}

/// Whether opening failed on the mode (so the next one is worth a try) rather than on the
/// camera (busy, gone, no access). nokhwa 0.10 says "cannot fulfill" in three ways: V4L2
/// `GetPropertyError` ("Failed to Fufill") and `SetPropertyError` (format, rate, "Not
/// same/Rejected"), AVFoundation `OpenDeviceError("Cannot fulfill request", …)` and
/// `SetPropertyError` ("Not Found/Rejected/Unsupported" from `set_all`).
pub fn is_mode_refusal(error: &NokhwaError) -> bool {
    match error {
        NokhwaError::GetPropertyError { .. } | NokhwaError::SetPropertyError { .. } => true,
        NokhwaError::OpenDeviceError(what, _) => what == "Cannot fulfill request",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    /// A UVC camera lists 7.5 fps as a range of its own, shown as 8: asking for 1/8 s would be
    /// refused with an exception, so the range's own 2/15 s is set. Likewise 29.97 shown as 30.
    #[test]
    fn a_rate_at_a_range_end_gets_that_end_s_own_duration() {
        use super::{frame_duration, FrameDuration::*};
        assert_eq!(frame_duration(8, 7.5, 7.5), Shortest);
        assert_eq!(frame_duration(30, 29.97, 29.97), Shortest);
        assert_eq!(frame_duration(30, 1.0, 30.0), Shortest);
        assert_eq!(frame_duration(2, 2.5, 30.0), Longest);
        assert_eq!(frame_duration(1, 1.0, 30.0), Longest);
        assert_eq!(frame_duration(15, 1.0, 30.0), PerSecond(15));
        assert_eq!(frame_duration(3, 2.5, 30.0), PerSecond(3));
    }

    use nokhwa::utils::Resolution;

    use super::*;

    const ANY_SIZE: u64 = u64::MAX;

    fn mode(width: u32, height: u32, format: FrameFormat, fps: u32) -> CameraFormat {
        CameraFormat::new(Resolution::new(width, height), format, fps)
    }

    fn wanted(format: CameraPixelFormat) -> Wanted {
        Wanted {
            width: 1280,
            height: 720,
            fps: 30,
            format,
        }
    }

    /// A UVC webcam through V4L2 (`compatible_camera_formats()`): MJPEG up to 1080p at 30,
    /// YUYV at 30 only up to 640x480 (USB 2's bandwidth).
    fn v4l2_webcam() -> Vec<CameraFormat> {
        vec![
            mode(640, 480, FrameFormat::YUYV, 30),
            mode(1280, 720, FrameFormat::YUYV, 10),
            mode(1920, 1080, FrameFormat::YUYV, 5),
            mode(640, 480, FrameFormat::MJPEG, 30),
            mode(1280, 720, FrameFormat::MJPEG, 30),
            mode(1280, 720, FrameFormat::MJPEG, 15),
            mode(1920, 1080, FrameFormat::MJPEG, 30),
        ]
    }

    /// A Mac's camera as `macos::modes` reports it: every mode labelled YUYV (AVFoundation
    /// offers 420v, 420f and yuvs; nokhwa maps all to YUYV), rates from several frame-rate
    /// ranges per size, no MJPEG.
    fn avfoundation_camera() -> Vec<CameraFormat> {
        vec![
            mode(1920, 1080, FrameFormat::YUYV, 30),
            mode(1920, 1080, FrameFormat::YUYV, 15),
            mode(1280, 720, FrameFormat::YUYV, 30),
            mode(1280, 720, FrameFormat::YUYV, 60),
            mode(1280, 720, FrameFormat::YUYV, 30),
            mode(640, 480, FrameFormat::YUYV, 30),
            mode(3840, 2160, FrameFormat::YUYV, 30),
        ]
    }

    #[test]
    fn auto_takes_mjpeg_from_a_usb_webcam() {
        let ranked = ranked_modes(wanted(CameraPixelFormat::Auto), &v4l2_webcam(), ANY_SIZE);
        assert_eq!(ranked[0], mode(1280, 720, FrameFormat::MJPEG, 30));
        assert_eq!(ranked[1], mode(1280, 720, FrameFormat::MJPEG, 15));
        // Every MJPEG mode before any YUYV one.
        let first_yuyv = ranked.iter().position(|m| m.format() == FrameFormat::YUYV);
        assert_eq!(first_yuyv, Some(4));
    }

    #[test]
    fn auto_takes_yuyv_from_a_mac_camera_and_the_nearest_size_and_rate() {
        let ranked = ranked_modes(
            wanted(CameraPixelFormat::Auto),
            &avfoundation_camera(),
            ANY_SIZE,
        );
        // 1280x720 twice at 30 (two ranges) counts once; 60 fps is further from 30.
        assert_eq!(
            ranked[..3],
            [
                mode(1280, 720, FrameFormat::YUYV, 30),
                mode(1280, 720, FrameFormat::YUYV, 60),
                mode(640, 480, FrameFormat::YUYV, 30),
            ]
        );
        assert_eq!(ranked.len(), 6);
        // The old request, MJPEG exactly, has nothing to fall back on within its own format:
        // the ranking does.
        let mjpeg = ranked_modes(
            wanted(CameraPixelFormat::Mjpeg),
            &avfoundation_camera(),
            ANY_SIZE,
        );
        assert_eq!(mjpeg[0], mode(1280, 720, FrameFormat::YUYV, 30));
    }

    #[test]
    fn an_exact_format_comes_first_and_a_missing_size_falls_to_the_nearest() {
        let yuyv = ranked_modes(wanted(CameraPixelFormat::Yuyv), &v4l2_webcam(), ANY_SIZE);
        assert_eq!(yuyv[0], mode(1280, 720, FrameFormat::YUYV, 10));
        let odd = Wanted {
            width: 1000,
            height: 600,
            fps: 25,
            format: CameraPixelFormat::Mjpeg,
        };
        // 1280x720 is nearer 1000x600 than 640x480; 30 is nearer 25 than 15.
        assert_eq!(
            ranked_modes(odd, &v4l2_webcam(), ANY_SIZE)[0],
            mode(1280, 720, FrameFormat::MJPEG, 30)
        );
    }

    #[test]
    fn undecodable_and_oversized_modes_are_left_out() {
        let offered = [
            mode(640, 480, FrameFormat::GRAY, 30),
            mode(3840, 2160, FrameFormat::MJPEG, 30),
            mode(640, 480, FrameFormat::NV12, 30),
        ];
        let ranked = ranked_modes(wanted(CameraPixelFormat::Auto), &offered, 1920 * 1080);
        assert_eq!(ranked, [mode(640, 480, FrameFormat::NV12, 30)]);
        assert!(ranked_modes(wanted(CameraPixelFormat::Auto), &[], ANY_SIZE).is_empty());
    }

    #[test]
    fn the_backends_cannot_fulfill_errors_are_mode_refusals() {
        let refusals = [
            NokhwaError::OpenDeviceError(
                "Cannot fulfill request".into(),
                "RequestedFormat { .. }".into(),
            ),
            NokhwaError::GetPropertyError {
                property: "CameraFormat".into(),
                error: "Failed to Fufill".into(),
            },
            NokhwaError::SetPropertyError {
                property: "CameraFormat".into(),
                value: "1280x720@30FPS, YUYV".into(),
                error: "Not Found/Rejected/Unsupported".into(),
            },
        ];
        assert!(refusals.iter().all(is_mode_refusal));
        let camera_faults = [
            NokhwaError::OpenDeviceError("0x1420000005ac8600".into(), "Device is null".into()),
            NokhwaError::OpenStreamError("busy".into()),
            NokhwaError::ReadFrameError("gone".into()),
        ];
        assert!(!camera_faults.iter().any(is_mode_refusal));
    }

    fn entry(index: u32, id: Option<&str>) -> CameraEntry {
        CameraEntry {
            index,
            id: id.map(str::to_owned),
            name: format!("camera {index}"),
            description: String::new(),
            usb: id.and_then(|id| usb_model(id, "")),
        }
    }

    #[test]
    fn usb_vendor_and_product_come_from_the_model_id_or_the_unique_id() {
        let c920 = UsbModel {
            vendor: 0x046d,
            product: 0x082d,
        };
        assert_eq!(
            usb_model(
                "0x14200000046d082d",
                "UVC Camera VendorID_1133 ProductID_2093"
            ),
            Some(c920)
        );
        assert_eq!(usb_model("0x01100000046d082d", ""), Some(c920));
        assert_eq!(c920.to_string(), "046d:082d");
        // Apple silicon's built-in camera and an iPhone: UUIDs, not USB.
        assert_eq!(
            usb_model("47B4B64B-7067-4B9C-AD2B-AE273A71F4B5", "FaceTime HD Camera"),
            None
        );
        assert_eq!(usb_model("0x1420000005ac86", ""), None);
        assert_eq!(usb_model("0x14200000zzzz082d", ""), None);
    }

    /// A webcam pinned by id (its unique id holds its USB location) is plugged into another
    /// port: found by vendor, product and name, unless that is ambiguous.
    #[test]
    fn a_camera_pinned_by_id_is_found_again_on_another_usb_port() {
        let named = |index, id, name: &str| CameraEntry {
            name: name.into(),
            ..entry(index, Some(id))
        };
        let before = named(1, "0x14200000046d082d", "HD Pro Webcam C920");
        let after = [
            named(
                0,
                "47B4B64B-7067-4B9C-AD2B-AE273A71F4B5",
                "FaceTime HD Camera",
            ),
            named(1, "0x01100000046d082d", "HD Pro Webcam C920"),
            named(2, "0x0120000005ac8600", "Other"),
        ];
        let pin = pinned(&before);
        assert!(select(&after, &pin).is_err());
        let Selector::Id(id) = pin else {
            panic!("pinned by id")
        };
        assert_eq!(moved(&after, &id, Some(&before)).unwrap().index, 1);
        // A config's id alone (the camera not seen yet this run): vendor and product only.
        assert_eq!(moved(&after, &id, None).unwrap().index, 1);
        // Same model, another name: not the same camera.
        let renamed = [named(0, "0x01100000046d082d", "C920 (2)")];
        assert!(moved(&renamed, &id, Some(&before)).is_none());
        // Two of them: which is which cannot be told.
        let two = [
            named(0, "0x01100000046d082d", "HD Pro Webcam C920"),
            named(1, "0x01200000046d082d", "HD Pro Webcam C920"),
        ];
        assert!(moved(&two, &id, Some(&before)).is_none());
        // An iPhone's or a built-in camera's id holds no model: nothing to fall back on.
        assert!(moved(&after, "2C5E1A3F-0000-0000-0000-000000000000", None).is_none());
    }

    #[test]
    fn a_camera_is_selected_by_index_or_by_id() {
        let cameras = [
            entry(0, Some("0x1420000005ac8600")),
            entry(1, Some("47B4B64B-7067-4B9C-AD2B-AE273A71F4B5")),
        ];
        let by_id = Selector::Id("47B4B64B-7067-4B9C-AD2B-AE273A71F4B5".into());
        assert_eq!(select(&cameras, &by_id).unwrap().index, 1);
        assert_eq!(select(&cameras, &Selector::Index(0)).unwrap(), &cameras[0]);
        let err = select(&cameras, &Selector::Index(2)).unwrap_err();
        assert_eq!(err.to_string(), "camera index 2 out of range (2 cameras)");
        let err = select(&cameras, &Selector::Id("nope".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no camera with id \"nope\" (ids: 0x1420000005ac8600, \
             47B4B64B-7067-4B9C-AD2B-AE273A71F4B5)"
        );
        let err = select(&[], &Selector::Index(0)).unwrap_err();
        assert_eq!(err.to_string(), "no camera found");
    }

    /// A phone comes and goes: positions shift, ids do not. A camera chosen by index is
    /// reopened by the id resolved at the first open, so the reopen finds the same camera at
    /// its new place, or fails, rather than opening whatever is at the old index.
    #[test]
    fn a_reconnect_reopens_by_the_id_resolved_at_the_first_open() {
        let before = [entry(0, Some("iphone")), entry(1, Some("facetime"))];
        let first = select(&before, &Selector::Index(1)).unwrap();
        let pin = pinned(first);
        assert_eq!(pin, Selector::Id("facetime".into()));
        assert_eq!(pin.to_string(), "camera \"facetime\"");
        // The phone left: the FaceTime camera is now index 0, and index 1 is nobody.
        let after = [entry(0, Some("facetime"))];
        assert_eq!(select(&after, &pin).unwrap().index, 0);
        assert!(select(&after, &Selector::Index(1)).is_err());
        // Gone altogether: the reopen fails (and is retried) instead of opening the phone.
        assert!(select(&[entry(0, Some("iphone"))], &pin).is_err());
        // Without an id (V4L2 without udev), the index is all there is.
        assert_eq!(pinned(&entry(3, None)), Selector::Index(3));
    }
}
