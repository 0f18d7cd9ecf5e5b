//! A raw clip file, decoded through the same nokhwa path as a camera's frames: MJPEG (JPEG
//! frames back to back, as `ffmpeg -f mjpeg` writes) or packed YUYV (`-f rawvideo
//! -pix_fmt yuyv422`).
//!
//! MJPEG frames are delimited by walking each JPEG's segments ([`crate::jpeg`]). A frame that
//! breaks off (another frame starts, or the file ends) is an error, counted and skipped;
//! reading resumes at the next frame start.

use std::error::Error;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nokhwa::utils::Resolution;
use nokhwa::Buffer;
use serde::{Deserialize, Serialize};

use super::reconnect::Reopen;
use super::{
    check_fps, check_max_pixels, check_size, decode, FrameError, Pacer, PixelFormat, Sequence,
    SourceError, DEFAULT_MAX_PIXELS,
};
use crate::error::Invalid;
use crate::frame::Frame;
use crate::jpeg::{self, Parse, SOI};
use crate::stage::{Shutdown, Source, StageError};

/// The demo clip's rate.
pub const DEFAULT_FPS: f64 = 15.0;
pub const DEFAULT_LOOP: bool = false;
/// A JPEG frame still unfinished after this many bytes is treated as corrupt.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
const READ_CHUNK: usize = 1 << 20;
/// Played when a clip source names no file, so a first run needs no camera and no download:
/// 640×480 MJPEG, 90 frames (see `tests/data/clips/scenes.json`).
pub const DEMO_CLIP: &[u8] = include_bytes!("../../../tests/data/clips/scenes.mjpeg");
/// What errors call the demo clip.
const DEMO_NAME: &str = "(built-in demo clip)";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    /// The clip file; without one, the built-in demo clip (photos of a cat, a coffee and a
    /// camera, 30 frames each, panned and zoomed).
    pub path: Option<PathBuf>,
    /// How frames are stored: `mjpeg` (JPEGs back to back) or `yuyv` (packed 4:2:2).
    pub format: PixelFormat,
    /// Frame width in pixels, even, 2 to 8192: required for `yuyv`, whose frames carry no
    /// header; not allowed for `mjpeg`, whose frames carry their own size.
    pub width: Option<u32>,
    /// Frame height in pixels, 1 to 8192: required for `yuyv`, not allowed for `mjpeg`.
    pub height: Option<u32>,
    /// Frames per second by the wall clock; 0 plays as fast as possible.
    pub fps: f64,
    /// Start again from the beginning at the end of the file.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Most pixels a frame may have: a frame claiming more is refused from its header, counted
    /// as a frame error, and the clip plays on.
    pub max_pixels: u64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            path: None,
            format: PixelFormat::default(),
            width: None,
            height: None,
            fps: DEFAULT_FPS,
            looping: DEFAULT_LOOP,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl ClipConfig {
    /// Checks the settings; gives how frames are laid out in the file.
    pub(super) fn check(&self) -> Result<Layout, Invalid> {
        check_fps(self.fps)?;
        check_max_pixels(self.max_pixels)?;
        Ok(match self.format {
            PixelFormat::Mjpeg => {
                for (key, value) in [("source.width", self.width), ("source.height", self.height)] {
                    let expected = "left out for mjpeg, whose frames carry their size";
                    Invalid::check(value.is_none(), key, expected, value.unwrap_or_default())?;
                }
                Layout::Mjpeg
            }
            PixelFormat::Yuyv => {
                let required = |value: Option<u32>, key| {
                    Invalid::check(value.is_some(), key, "set for yuyv clips", "nothing")
                        .map(|()| value.unwrap_or_default())
                };
                let width = required(self.width, "source.width")?;
                let height = required(self.height, "source.height")?;
                check_size(width, height)?;
                // YUYV packs two pixels in four bytes.
                Invalid::check(width % 2 == 0, "source.width", "even for yuyv", width)?;
                let pixels = u64::from(width) * u64::from(height);
                let expected = "width x height within source.max_pixels";
                Invalid::check(pixels <= self.max_pixels, "source.width", expected, pixels)?;
                Layout::Yuyv {
                    size: (width, height),
                    frame_len: width as usize * height as usize * 2,
                }
            }
        })
    }

    /// The file, or what errors call the demo clip.
    pub fn name(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(DEMO_NAME))
    }

    pub fn build(&self) -> Result<ClipSource, SourceError> {
        let layout = self.check()?;
        let (path, reader): (PathBuf, Box<dyn Reader>) = match &self.path {
            Some(path) => {
                let io_error = |source| SourceError::Io {
                    path: path.clone(),
                    source,
                };
                // A FIFO (a live feed from another program) has no length to check.
                let file = File::open(path).map_err(io_error)?;
                let metadata = file.metadata().map_err(io_error)?;
                if metadata.is_file() && metadata.len() == 0 {
                    return Err(SourceError::EmptyClip { path: path.clone() });
                }
                (path.clone(), Box::new(file))
            }
            None => (PathBuf::from(DEMO_NAME), Box::new(Cursor::new(DEMO_CLIP))),
        };
        Ok(ClipSource {
            path,
            layout,
            format: self.format,
            input: Input::new(reader),
            looping: self.looping,
            frames_this_pass: 0,
            max_pixels: self.max_pixels,
            pacer: Pacer::new(self.fps),
            sequence: Sequence::default(),
        })
    }
}

/// A clip paced at fps > 0 is live: a read that outlasts its deadline (a FIFO whose writer
/// paused) reopens it. Any other fatal error is the file's, and ends the run.
impl Reopen for ClipConfig {
    type Source = ClipSource;

    fn reopen(&self) -> Result<ClipSource, SourceError> {
        self.build()
    }

    fn describe(&self) -> String {
        let path = self.path.as_deref().unwrap_or(Path::new(DEMO_NAME));
        format!("clip {}", path.display())
    }

    fn is_loss(&self, _error: &(dyn Error + 'static)) -> bool {
        false
    }
}

pub struct ClipSource {
    /// The file, as errors name it.
    path: PathBuf,
    layout: Layout,
    format: PixelFormat,
    input: Input,
    looping: bool,
    /// Frames decoded since the file was last (re)started: a loop over a clip with none
    /// would spin on errors forever.
    frames_this_pass: u64,
    max_pixels: u64,
    pacer: Pacer,
    sequence: Sequence,
}

impl ClipSource {
    fn next_chunk(&mut self) -> io::Result<Chunk> {
        loop {
            if let Some(chunk) = self.layout.chunk(self.input.data(), self.input.eof) {
                return Ok(chunk);
            }
            self.input.fill()?;
        }
    }

    fn io_error(&self, source: io::Error) -> StageError {
        StageError::fatal(SourceError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Source for ClipSource {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        loop {
            let chunk = self.next_chunk().map_err(|e| self.io_error(e))?;
            let offset = self.input.offset;
            let bad = |reason: FrameError| {
                StageError::item(SourceError::BadFrame {
                    path: self.path.clone(),
                    offset,
                    reason,
                })
            };
            match chunk {
                Chunk::End if !self.looping => return Ok(None),
                Chunk::End if self.frames_this_pass == 0 => {
                    return Err(StageError::fatal(SourceError::NoFrames {
                        path: self.path.clone(),
                    }))
                }
                Chunk::End => {
                    self.frames_this_pass = 0;
                    self.input.rewind().map_err(|e| self.io_error(e))?;
                }
                Chunk::Bad { len, reason } => {
                    self.input.consume(len);
                    return Err(bad(FrameError::Malformed(reason)));
                }
                Chunk::Frame {
                    len,
                    size: (width, height),
                } => {
                    if !self.pacer.wait(shutdown) {
                        return Ok(None);
                    }
                    let captured_at = Instant::now();
                    let bytes = &self.input.data()[..len];
                    let buffer = Buffer::new(
                        Resolution::new(width, height),
                        bytes,
                        self.format.frame_format(),
                    );
                    self.input.consume(len);
                    let image = decode(&buffer, self.max_pixels).map_err(bad)?;
                    self.frames_this_pass += 1;
                    return Ok(Some(self.sequence.frame(captured_at, image)));
                }
            }
        }
    }
}

/// Where clip bytes come from: a file, or the demo clip in memory.
trait Reader: Read + Seek + Send {}

impl<R: Read + Seek + Send> Reader for R {}

/// The clip, read in chunks; `data()` is what has been read and not yet consumed.
struct Input {
    file: Box<dyn Reader>,
    buf: Vec<u8>,
    start: usize,
    /// File offset of `data()[0]`.
    offset: u64,
    eof: bool,
}

impl Input {
    fn new(file: Box<dyn Reader>) -> Self {
        Self {
            file,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            eof: false,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        self.offset += len as u64;
    }

    fn fill(&mut self) -> io::Result<()> {
        self.buf.drain(..self.start);
        self.start = 0;
        let kept = self.buf.len();
        self.buf.resize(kept + READ_CHUNK, 0);
        let read = loop {
            match self.file.read(&mut self.buf[kept..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                result => break result,
            }
        };
        self.buf.truncate(kept + *read.as_ref().unwrap_or(&0));
        self.eof = read? == 0;
        Ok(())
    }

    fn rewind(&mut self) -> io::Result<()> {
        self.file.rewind()?;
        self.buf.clear();
        self.start = 0;
        self.offset = 0;
        self.eof = false;
        Ok(())
    }
}

pub(super) enum Layout {
    Mjpeg,
    Yuyv { size: (u32, u32), frame_len: usize },
}

/// What the unconsumed bytes start with.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// A frame of `len` bytes and `size` pixels.
    Frame { len: usize, size: (u32, u32) },
    /// `len` bytes that are no frame, up to where the next one may start.
    Bad { len: usize, reason: &'static str },
    /// The end of the file.
    End,
}

impl Layout {
    /// `None` when more bytes are needed to tell.
    fn chunk(&self, data: &[u8], eof: bool) -> Option<Chunk> {
        match *self {
            Self::Mjpeg => mjpeg_chunk(data, eof),
            Self::Yuyv { size, frame_len } => yuyv_chunk(data, eof, size, frame_len),
        }
    }
}

fn yuyv_chunk(data: &[u8], eof: bool, size: (u32, u32), frame_len: usize) -> Option<Chunk> {
    if data.len() >= frame_len {
        Some(Chunk::Frame {
            len: frame_len,
            size,
        })
    } else if !eof {
        None
    } else if data.is_empty() {
        Some(Chunk::End)
    } else {
        Some(Chunk::Bad {
            len: data.len(),
            reason: "frame cut short by the end of the file",
        })
    }
}

fn mjpeg_chunk(data: &[u8], eof: bool) -> Option<Chunk> {
    if data.is_empty() {
        return eof.then_some(Chunk::End);
    }
    let parsed = if data.starts_with(&SOI) {
        jpeg::parse(data)
    } else if data.len() < SOI.len() && !eof {
        return None;
    } else {
        Parse::Bad("bytes outside a frame")
    };
    match parsed {
        Parse::Frame { len, size } => Some(Chunk::Frame { len, size }),
        Parse::Bad(reason) => resync(data, eof, reason),
        Parse::Incomplete if eof => Some(Chunk::Bad {
            len: data.len(),
            reason: "frame cut short by the end of the file",
        }),
        Parse::Incomplete if data.len() > MAX_FRAME_BYTES => {
            resync(data, eof, "frame larger than 64 MiB")
        }
        Parse::Incomplete => None,
    }
}

/// Marks everything up to the next frame start after `data[0]` as bad.
fn resync(data: &[u8], eof: bool, reason: &'static str) -> Option<Chunk> {
    let len = match data[1..].windows(2).position(|pair| pair == SOI) {
        Some(at) => at + 1,
        None if eof => data.len(),
        // Keep the last byte: it may be the first half of a frame start.
        None if data.len() > MAX_FRAME_BYTES => data.len() - 1,
        None => return None,
    };
    Some(Chunk::Bad { len, reason })
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::fs;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::source::testing::{is_about, jpeg, jpeg_bomb};

    const RED: [u8; 3] = [200, 30, 30];
    const GREEN: [u8; 3] = [30, 200, 30];
    const BLUE: [u8; 3] = [30, 30, 200];

    fn mjpeg(path: &Path) -> ClipConfig {
        ClipConfig {
            path: Some(path.to_owned()),
            fps: 0.0,
            ..ClipConfig::default()
        }
    }

    fn clip_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("clip.mjpeg");
        fs::write(&path, bytes).expect("write clip");
        (dir, path)
    }

    #[derive(Debug)]
    enum Played {
        Frame {
            size: (u32, u32),
            color: Option<[u8; 3]>,
        },
        Error(String),
    }

    /// Plays up to `calls` reads; a frame is reported with the colour it is about, if any.
    fn play(config: &ClipConfig, calls: usize) -> Vec<Played> {
        let mut source = config.build().expect("builds");
        let shutdown = Shutdown::new();
        (0..calls)
            .map_while(|_| match source.next_frame(&shutdown) {
                Ok(Some(frame)) => Some(Played::Frame {
                    size: frame.image.dimensions(),
                    color: [RED, GREEN, BLUE]
                        .into_iter()
                        .find(|&c| is_about(&frame.image, c)),
                }),
                Ok(None) => None,
                Err(StageError::Item(error)) => Some(Played::Error(error.to_string())),
                Err(fatal) => Some(Played::Error(format!("fatal: {fatal}"))),
            })
            .collect()
    }

    fn frame(played: &Played) -> ((u32, u32), Option<[u8; 3]>) {
        match played {
            Played::Frame { size, color } => (*size, *color),
            Played::Error(error) => panic!("expected a frame, got error {error}"),
        }
    }

    fn error(played: &Played) -> &str {
        match played {
            Played::Error(error) => error,
            Played::Frame { size, .. } => panic!("expected an error, got a {size:?} frame"),
        }
    }

    /// `jpeg` with an APP1 segment holding `thumbnail`, as EXIF thumbnails are stored.
    fn with_thumbnail(jpeg: &[u8], thumbnail: &[u8]) -> Vec<u8> {
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(thumbnail);
        let length = u16::try_from(payload.len() + 2).expect("small thumbnail");
        let mut out = SOI.to_vec();
        out.extend([0xFF, 0xE1]);
        out.extend(length.to_be_bytes());
        out.extend(payload);
        out.extend(&jpeg[2..]);
        out
    }

    /// A frame whose header claims 65535x65535 between two good ones: refused from its header
    /// (no gigabytes allocated, no wait), one error, and the clip plays on.
    #[test]
    fn a_header_bomb_is_refused_and_the_clip_plays_on() {
        let bytes = [jpeg(8, 8, RED), jpeg_bomb(), jpeg(8, 8, BLUE)].concat();
        let (_dir, path) = clip_file(&bytes);
        let played = play(&mjpeg(&path), 10);
        assert_eq!(played.len(), 3, "{played:?}");
        assert_eq!(frame(&played[0]), ((8, 8), Some(RED)));
        assert!(
            error(&played[1]).ends_with(
                "the frame claims 65535x65535 pixels, over source.max_pixels (67108864)"
            ),
            "{played:?}"
        );
        assert_eq!(frame(&played[2]), ((8, 8), Some(BLUE)));
        // A smaller bound refuses smaller frames alike; a yuyv clip's size is checked up front.
        let strict = ClipConfig {
            max_pixels: 63,
            ..mjpeg(&path)
        };
        assert!(play(&strict, 10)
            .iter()
            .all(|p| matches!(p, Played::Error(_))));
        let yuyv = ClipConfig {
            format: PixelFormat::Yuyv,
            width: Some(8),
            height: Some(8),
            max_pixels: 63,
            ..mjpeg(&path)
        };
        assert_eq!(
            yuyv.build().err().unwrap().to_string(),
            "source.width must be width x height within source.max_pixels, got 64"
        );
    }

    #[test]
    fn back_to_back_jpegs_decode_through_the_camera_path() {
        let bytes = [jpeg(16, 8, RED), jpeg(8, 8, GREEN), jpeg(32, 16, BLUE)].concat();
        let (_dir, path) = clip_file(&bytes);
        let played = play(&mjpeg(&path), 10);
        let frames: Vec<_> = played.iter().map(frame).collect();
        assert_eq!(
            frames,
            [
                ((16, 8), Some(RED)),
                ((8, 8), Some(GREEN)),
                ((32, 16), Some(BLUE))
            ]
        );
    }

    #[test]
    fn without_a_path_the_demo_clip_plays() {
        let config = ClipConfig {
            fps: 0.0,
            ..ClipConfig::default()
        };
        let played = play(&config, 100);
        assert_eq!(played.len(), 90);
        assert!(played.iter().all(|p| frame(p).0 == (640, 480)));
    }

    #[test]
    fn a_thumbnail_inside_app1_does_not_end_the_frame() {
        let thumbnail = jpeg(4, 4, BLUE);
        let first = with_thumbnail(&jpeg(16, 16, RED), &thumbnail);
        // A search for the end marker would stop inside the thumbnail.
        let naive_end = first
            .windows(2)
            .position(|w| w == [0xFF, 0xD9])
            .expect("an end marker")
            + 2;
        assert!(naive_end < first.len());
        assert_eq!(
            mjpeg_chunk(&first, true),
            Some(Chunk::Frame {
                len: first.len(),
                size: (16, 16)
            })
        );
        let (_dir, path) = clip_file(&[first, jpeg(8, 8, GREEN)].concat());
        let frames: Vec<_> = play(&mjpeg(&path), 10).iter().map(frame).collect();
        assert_eq!(frames, [((16, 16), Some(RED)), ((8, 8), Some(GREEN))]);
    }

    #[test]
    fn a_frame_cut_short_is_one_error_and_the_next_frame_plays() {
        let red = jpeg(16, 8, RED);
        let green = jpeg(64, 64, GREEN);
        // Cut inside the entropy-coded data, after the scan header.
        let cut = &green[..green.len() - 20];
        let scan_start = green
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        assert!(scan_start + 12 < cut.len());
        let (_dir, path) = clip_file(&[&red[..], cut, &jpeg(8, 8, BLUE)].concat());
        let played = play(&mjpeg(&path), 10);
        assert_eq!(played.len(), 3, "{played:?}");
        assert_eq!(frame(&played[0]), ((16, 8), Some(RED)));
        let expected = format!(
            "clip {}: bad frame at byte {}: frame cut short by the next frame",
            path.display(),
            red.len()
        );
        assert_eq!(error(&played[1]), expected);
        assert_eq!(frame(&played[2]), ((8, 8), Some(BLUE)));
    }

    #[test]
    fn bytes_between_frames_and_a_cut_final_frame_are_errors() {
        let red = jpeg(8, 8, RED);
        let bytes = [
            &b"junk"[..],
            &red,
            &b"\x00\x01\x02"[..],
            &red[..red.len() - 10],
        ]
        .concat();
        let (_dir, path) = clip_file(&bytes);
        let played = play(&mjpeg(&path), 10);
        assert_eq!(played.len(), 4, "{played:?}");
        assert!(error(&played[0]).ends_with("at byte 0: bytes outside a frame"));
        assert_eq!(frame(&played[1]), ((8, 8), Some(RED)));
        assert!(error(&played[2]).ends_with("bytes outside a frame"));
        assert!(error(&played[3]).ends_with("frame cut short by the end of the file"));
    }

    /// libjpeg rejects the table by unwinding; the source must turn that into an error.
    #[test]
    fn a_frame_with_corrupt_tables_fails_decoding_without_a_crash() {
        let mut broken = jpeg(8, 8, RED);
        let dht = broken
            .windows(2)
            .position(|w| w == [0xFF, 0xC4])
            .expect("a Huffman table");
        // The 16 code counts after length and class: far more codes than a table can hold.
        broken[dht + 5..dht + 21].fill(0xFE);
        let (_dir, path) = clip_file(&[broken, jpeg(8, 8, GREEN)].concat());
        let played = play(&mjpeg(&path), 10);
        assert_eq!(played.len(), 2, "{played:?}");
        assert!(
            error(&played[0]).contains("bad frame at byte 0: "),
            "{played:?}"
        );
        assert_eq!(frame(&played[1]), ((8, 8), Some(GREEN)));
    }

    #[test]
    fn a_looped_clip_starts_over() {
        let (_dir, path) = clip_file(&[jpeg(8, 8, RED), jpeg(8, 8, GREEN)].concat());
        let config = ClipConfig {
            looping: true,
            ..mjpeg(&path)
        };
        let colors: Vec<_> = play(&config, 5).iter().map(|p| frame(p).1).collect();
        assert_eq!(
            colors,
            [Some(RED), Some(GREEN), Some(RED), Some(GREEN), Some(RED)]
        );
    }

    #[test]
    fn a_looped_clip_without_a_good_frame_is_fatal() {
        let (_dir, path) = clip_file(b"no jpeg here");
        let config = ClipConfig {
            looping: true,
            ..mjpeg(&path)
        };
        let played = play(&config, 3);
        assert!(error(&played[0]).ends_with("bytes outside a frame"));
        assert_eq!(
            error(&played[1]),
            format!("fatal: clip {} has no decodable frames", path.display())
        );
    }

    #[test]
    fn frames_are_paced_by_fps() {
        let (_dir, path) = clip_file(
            &[
                jpeg(8, 8, RED),
                jpeg(8, 8, RED),
                jpeg(8, 8, RED),
                jpeg(8, 8, RED),
            ]
            .concat(),
        );
        let config = ClipConfig {
            fps: 40.0,
            ..mjpeg(&path)
        };
        let started = Instant::now();
        assert_eq!(play(&config, 10).len(), 4);
        // Three 25 ms periods at least.
        assert!(started.elapsed() >= Duration::from_millis(75));
    }

    #[test]
    fn yuyv_frames_decode_and_a_partial_tail_is_an_error() {
        // Y 76, U 85, V 255 is saturated red in BT.601; 4 × 2 pixels, 2 bytes each.
        let red_frame: Vec<u8> = [76, 85, 76, 255].repeat(4);
        let bytes = [&red_frame[..], &red_frame, &red_frame[..6]].concat();
        let (_dir, path) = clip_file(&bytes);
        let config = ClipConfig {
            format: PixelFormat::Yuyv,
            width: Some(4),
            height: Some(2),
            ..mjpeg(&path)
        };
        let mut source = config.build().expect("builds");
        let shutdown = Shutdown::new();
        for seq in 0..2 {
            let frame = source.next_frame(&shutdown).expect("ok").expect("frame");
            assert_eq!((frame.seq, frame.image.dimensions()), (seq, (4, 2)));
            assert!(is_about(&frame.image, [255, 0, 0]), "{:?}", frame.image);
        }
        let err = source.next_frame(&shutdown).expect_err("partial frame");
        assert!(err
            .to_string()
            .ends_with("at byte 32: frame cut short by the end of the file"));
        assert!(source.next_frame(&shutdown).expect("ok").is_none());
    }

    #[test]
    fn build_refuses_an_empty_or_missing_clip_naming_it() {
        let (dir, path) = clip_file(b"");
        let err = mjpeg(&path).build().err().expect("refused");
        assert_eq!(err.to_string(), format!("clip {} is empty", path.display()));
        let missing = dir.path().join("missing.mjpeg");
        let err = mjpeg(&missing).build().err().expect("refused");
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", missing.display())
        );
        assert!(
            err.source().is_some(),
            "the io::Error is kept as the source"
        );
    }

    #[test]
    fn build_checks_sizes_against_the_format() {
        let (_dir, path) = clip_file(b"x");
        let with_size = ClipConfig {
            width: Some(640),
            ..mjpeg(&path)
        };
        let err = with_size.build().err().expect("refused");
        assert_eq!(
            err.to_string(),
            "source.width must be left out for mjpeg, whose frames carry their size, got 640"
        );
        let yuyv = ClipConfig {
            format: PixelFormat::Yuyv,
            width: Some(5),
            height: Some(2),
            ..mjpeg(&path)
        };
        let err = yuyv.build().err().expect("refused");
        assert_eq!(err.to_string(), "source.width must be even for yuyv, got 5");
        let err = ClipConfig {
            width: None,
            ..yuyv
        }
        .build()
        .err()
        .expect("refused");
        assert_eq!(
            err.to_string(),
            "source.width must be set for yuyv clips, got nothing"
        );
    }
}
