//! `--source`, the command line's way to name a source: its forms parsed, and a config's
//! `[source]` overridden by it.

use std::path::PathBuf;
use std::str::FromStr;

use super::camera::choice::Selector;
use super::camera::CameraConfig;
use super::clip::ClipConfig;
use super::http::HttpConfig;
use super::images::ImagesConfig;
use super::rtsp::RtspConfig;
use super::SourceConfig;

/// `--source`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceFlag {
    Camera(Option<Selector>),
    Clip(Option<PathBuf>),
    Images(PathBuf),
    Synthetic,
    /// A network camera's URL, `rtsp://…`, `http://…` or `https://…`; its form is checked
    /// with the rest of the config, naming `source.url`.
    Rtsp(String),
    Http(String),
}

impl FromStr for SourceFlag {
    type Err = String;

    fn from_str(arg: &str) -> Result<Self, String> {
        let scheme = arg.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("rtsp") => return Ok(Self::Rtsp(arg.to_owned())),
            Some("http" | "https") => return Ok(Self::Http(arg.to_owned())),
            _ => {}
        }
        let (kind, rest) = match arg.split_once(':') {
            Some((kind, rest)) => (kind, Some(rest)),
            None => (arg, None),
        };
        match (kind, rest) {
            ("camera", None) => Ok(Self::Camera(None)),
            ("camera", Some(which)) if !which.is_empty() => Ok(Self::Camera(Some(
                which
                    .parse()
                    .map_or_else(|_| Selector::Id(which.to_owned()), Selector::Index),
            ))),
            ("clip", None) => Ok(Self::Clip(None)),
            ("clip", Some(path)) if !path.is_empty() => Ok(Self::Clip(Some(path.into()))),
            ("images", Some(dir)) if !dir.is_empty() => Ok(Self::Images(dir.into())),
            ("synthetic", None) => Ok(Self::Synthetic),
            _ => Err(
                "expected camera[:INDEX|:ID], clip[:PATH], images:DIR, synthetic, \
                      rtsp://HOST/PATH or http[s]://HOST/PATH"
                    .into(),
            ),
        }
    }
}

impl SourceConfig {
    /// The source `flag` names. One of the kind this config already has keeps its other
    /// settings, so `--source clip:other.mjpeg` replays another clip the way the config plays
    /// its own, and another camera's URL keeps the credentials, fps and limits.
    pub fn with_flag(self, flag: &SourceFlag) -> Self {
        match (self, flag.clone()) {
            (Self::Clip(clip), SourceFlag::Clip(path)) => Self::Clip(ClipConfig { path, ..clip }),
            (_, SourceFlag::Clip(path)) => Self::Clip(ClipConfig {
                path,
                ..ClipConfig::default()
            }),
            (Self::Images(images), SourceFlag::Images(dir)) => {
                Self::Images(ImagesConfig { dir, ..images })
            }
            (_, SourceFlag::Images(dir)) => Self::Images(ImagesConfig {
                dir,
                ..ImagesConfig::default()
            }),
            (current, SourceFlag::Camera(selector)) => {
                let camera = match current {
                    Self::Camera(camera) => camera,
                    _ => CameraConfig::default(),
                };
                // A camera named on the command line replaces the config's choice.
                Self::Camera(match selector {
                    None => camera,
                    Some(Selector::Index(index)) => CameraConfig {
                        index: Some(index),
                        id: None,
                        ..camera
                    },
                    Some(Selector::Id(id)) => CameraConfig {
                        index: None,
                        id: Some(id),
                        ..camera
                    },
                })
            }
            (current @ Self::Synthetic(_), SourceFlag::Synthetic) => current,
            (_, SourceFlag::Synthetic) => Self::Synthetic(Default::default()),
            (Self::Http(http), SourceFlag::Http(url)) => Self::Http(HttpConfig { url, ..http }),
            (_, SourceFlag::Http(url)) => Self::Http(HttpConfig {
                url,
                ..HttpConfig::default()
            }),
            (Self::Rtsp(rtsp), SourceFlag::Rtsp(url)) => Self::Rtsp(RtspConfig { url, ..rtsp }),
            (_, SourceFlag::Rtsp(url)) => Self::Rtsp(RtspConfig {
                url,
                ..RtspConfig::default()
            }),
        }
    }

    /// `--fps`.
    pub fn set_fps(&mut self, fps: f64) {
        match self {
            Self::Synthetic(config) => config.fps = fps,
            Self::Images(config) => config.fps = fps,
            Self::Clip(config) => config.fps = fps,
            // A camera is asked for whole frame rates; the source checks the range.
            Self::Camera(config) => config.fps = fps.round() as u32,
            Self::Http(config) => config.fps = fps,
            Self::Rtsp(config) => config.fps = fps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_a_bad_one_lists_them() {
        let parse = |arg: &str| arg.parse::<SourceFlag>();
        assert_eq!(parse("camera"), Ok(SourceFlag::Camera(None)));
        assert_eq!(
            parse("camera:2"),
            Ok(SourceFlag::Camera(Some(Selector::Index(2))))
        );
        assert_eq!(
            parse("camera:0x1420000005ac8600"),
            Ok(SourceFlag::Camera(Some(Selector::Id(
                "0x1420000005ac8600".into()
            ))))
        );
        assert_eq!(parse("clip"), Ok(SourceFlag::Clip(None)));
        assert_eq!(parse("images:d"), Ok(SourceFlag::Images("d".into())));
        assert_eq!(parse("synthetic"), Ok(SourceFlag::Synthetic));
        let url = "RTSP://u:p@cam/live";
        assert_eq!(parse(url), Ok(SourceFlag::Rtsp(url.into())));
        assert_eq!(
            parse("https://cam/v"),
            Ok(SourceFlag::Http("https://cam/v".into()))
        );
        for bad in [
            "images",
            "images:",
            "camera:",
            "webcam",
            "synthetic:1",
            "ftp://cam",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("rtsp://HOST/PATH"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_network_camera_flag_keeps_the_config_s_credentials_and_limits() {
        let config = SourceConfig::Rtsp(RtspConfig {
            url: "rtsp://a/x".into(),
            password_env: Some("PW".into()),
            fps: 5.0,
            ..RtspConfig::default()
        });
        let SourceConfig::Rtsp(rtsp) = config.with_flag(&SourceFlag::Rtsp("rtsp://b/y".into()))
        else {
            panic!("rtsp expected")
        };
        assert_eq!(
            (rtsp.url.as_str(), rtsp.password_env.as_deref(), rtsp.fps),
            ("rtsp://b/y", Some("PW"), 5.0)
        );
        let mut http = SourceConfig::Synthetic(Default::default())
            .with_flag(&SourceFlag::Http("http://c/v".into()));
        http.set_fps(2.5);
        assert_eq!(
            http,
            SourceConfig::Http(HttpConfig {
                url: "http://c/v".into(),
                fps: 2.5,
                ..HttpConfig::default()
            })
        );
    }
}
