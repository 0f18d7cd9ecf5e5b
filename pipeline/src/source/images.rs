//! A folder of still images, played in file-name order.

use std::error::Error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::ImageFormat;
use serde::{Deserialize, Serialize};

use super::reconnect::Reopen;
use super::{check_fps, check_max_pixels, Pacer, Sequence, SourceError, DEFAULT_MAX_PIXELS};
use crate::decode;
use crate::error::Invalid;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

/// A slideshow: each image is a scene long enough to read its label. With blocking edges,
/// 0 (as fast as possible) labels a folder quickest.
pub const DEFAULT_FPS: f64 = 2.0;
pub const DEFAULT_LOOP: bool = false;
pub const DEFAULT_RECURSIVE: bool = false;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Folder to read: its jpg, jpeg, png, bmp, webp, tif and tiff files, sorted by name;
    /// other files and subfolders are ignored. Required.
    pub dir: PathBuf,
    /// Start again from the first image after the last one.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Images per second by the wall clock; 0 reads them as fast as possible.
    pub fps: f64,
    /// Also read the subfolders, all of them, sorted by path (a labelled set's class folders).
    pub recursive: bool,
    /// Most pixels an image may have: one claiming more is refused from its header, counted
    /// as a frame error, and skipped.
    pub max_pixels: u64,
}

/// No folder: a config must name one, which [`ImagesConfig::check`] says.
impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            looping: DEFAULT_LOOP,
            fps: DEFAULT_FPS,
            recursive: DEFAULT_RECURSIVE,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

impl ImagesConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let named = !self.dir.as_os_str().is_empty();
        Invalid::check(named, "source.dir", "a folder of images", "nothing")?;
        check_max_pixels(self.max_pixels)?;
        check_fps(self.fps)
    }

    pub fn build(&self) -> Result<ImagesSource, SourceError> {
        self.check()?;
        let files = image_files(&self.dir, self.recursive).map_err(|source| SourceError::Io {
            path: self.dir.clone(),
            source,
        })?;
        if files.is_empty() {
            return Err(SourceError::NoImages {
                dir: self.dir.clone(),
            });
        }
        Ok(ImagesSource {
            dir: self.dir.clone(),
            files,
            next: 0,
            looping: self.looping,
            max_pixels: self.max_pixels,
            pacer: Pacer::new(self.fps),
            sequence: Sequence::default(),
        })
    }
}

/// A folder paced at fps > 0 is live: a read that outlasts its deadline (a network share that
/// hangs) reopens it, from its first image. Any other fatal error ends the run.
impl Reopen for ImagesConfig {
    type Source = ImagesSource;

    fn reopen(&self) -> Result<ImagesSource, SourceError> {
        self.build()
    }

    fn describe(&self) -> String {
        format!("images {}", self.dir.display())
    }

    fn is_loss(&self, _error: &(dyn Error + 'static)) -> bool {
        false
    }
}

/// The image files in `dir` (and its subfolders, all the way down, if `recursive`), sorted by
/// path; other files are ignored.
pub fn image_files(dir: &Path, recursive: bool) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if recursive {
                files.extend(image_files(&path, true)?);
            }
        } else if is_image(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn is_image(path: &Path) -> bool {
    ImageFormat::from_path(path).is_ok_and(|format| format.reading_enabled())
}

pub struct ImagesSource {
    dir: PathBuf,
    /// Still-readable files, in play order: a file that fails once is dropped, so it is
    /// counted and logged once, not on every loop.
    files: Vec<PathBuf>,
    next: usize,
    looping: bool,
    max_pixels: u64,
    pacer: Pacer,
    sequence: Sequence,
}

impl Source for ImagesSource {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        if self.next == self.files.len() {
            if !self.looping {
                return Ok(None);
            }
            if self.files.is_empty() {
                return Err(StageError::fatal(SourceError::NoReadableImages {
                    dir: self.dir.clone(),
                }));
            }
            self.next = 0;
        }
        if !self.pacer.wait(shutdown) {
            return Ok(None);
        }
        let captured_at = Instant::now();
        match decode::load_rgb(&self.files[self.next], self.max_pixels) {
            Ok(image) => {
                self.next += 1;
                Ok(Some(self.sequence.frame(captured_at, image)))
            }
            Err(error) => {
                self.files.remove(self.next);
                Err(StageError::item(SourceError::Image(error)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{encoded, is_about, jpeg, jpeg_bomb, solid};

    const RED: [u8; 3] = [200, 30, 30];
    const GREEN: [u8; 3] = [30, 200, 30];
    const BLUE: [u8; 3] = [30, 30, 200];

    fn config(dir: &Path, looping: bool) -> ImagesConfig {
        ImagesConfig {
            dir: dir.to_owned(),
            looping,
            fps: 0.0,
            ..ImagesConfig::default()
        }
    }

    /// `b.png` (green), `a.jpg` (red), `c.bmp` (blue), a broken `bad.jpg`, and a text file.
    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let write =
            |name: &str, bytes: &[u8]| fs::write(dir.path().join(name), bytes).expect("write");
        write("b.png", &encoded(&solid(6, 4, GREEN), ImageFormat::Png));
        write("a.jpg", &jpeg(8, 8, RED));
        write("c.bmp", &encoded(&solid(3, 3, BLUE), ImageFormat::Bmp));
        write("bad.jpg", b"\xFF\xD8 not really a jpeg");
        write("notes.txt", b"not an image");
        dir
    }

    /// Each call: the frame's size, or the error's full message.
    fn play(source: &mut ImagesSource, calls: usize) -> Vec<Result<(u32, u32), String>> {
        let shutdown = Shutdown::new();
        (0..calls)
            .map_while(|_| match source.next_frame(&shutdown) {
                Ok(Some(frame)) => Some(Ok(frame.image.dimensions())),
                Ok(None) => None,
                Err(StageError::Item(error)) => Some(Err(error.to_string())),
                Err(fatal) => panic!("unexpected fatal error {fatal}"),
            })
            .collect()
    }

    #[test]
    fn plays_images_in_name_order_and_skips_a_broken_one_once() {
        let dir = folder();
        let mut source = config(dir.path(), false).build().expect("builds");
        let played = play(&mut source, 10);
        assert_eq!(played.len(), 4, "{played:?}");
        assert_eq!(played[..2], [Ok((8, 8)), Ok((6, 4))]);
        let bad = played[2].as_ref().expect_err("bad.jpg fails");
        assert!(bad.contains("bad.jpg: cannot decode image: "), "{bad}");
        assert_eq!(played[3], Ok((3, 3)));
    }

    /// An image whose header claims 65535x65535 is refused before it is decoded, counted
    /// once, and the folder plays on.
    #[test]
    fn a_header_bomb_is_skipped_with_the_reason() {
        let dir = folder();
        fs::write(dir.path().join("bomb.jpg"), jpeg_bomb()).expect("write");
        let mut source = config(dir.path(), false).build().expect("builds");
        let played = play(&mut source, 10);
        let errors: Vec<&String> = played.iter().filter_map(|p| p.as_ref().err()).collect();
        assert_eq!(errors.len(), 2, "{played:?}");
        assert!(
            errors[1].ends_with(
                "bomb.jpg: cannot decode image: it claims 65535x65535 pixels, over \
                 source.max_pixels (67108864)"
            ),
            "{errors:?}"
        );
        assert_eq!(played.iter().filter(|p| p.is_ok()).count(), 3);
    }

    #[test]
    fn looping_repeats_without_the_broken_file() {
        let dir = folder();
        let mut source = config(dir.path(), true).build().expect("builds");
        let played = play(&mut source, 8);
        let errors = played.iter().filter(|r| r.is_err()).count();
        assert_eq!(errors, 1, "{played:?}");
        let sizes: Vec<_> = played.into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            sizes,
            [(8, 8), (6, 4), (3, 3), (8, 8), (6, 4), (3, 3), (8, 8)]
        );
    }

    #[test]
    fn recursive_reads_subfolders_in_path_order() {
        let dir = folder();
        let sub = dir.path().join("z/deeper");
        fs::create_dir_all(&sub).expect("mkdir");
        fs::write(
            sub.join("d.png"),
            encoded(&solid(5, 5, RED), ImageFormat::Png),
        )
        .expect("write");
        let flat = config(dir.path(), false).build().expect("builds");
        assert_eq!(flat.files.len(), 4);
        let all = ImagesConfig {
            recursive: true,
            ..config(dir.path(), false)
        };
        let mut source = all.build().expect("builds");
        assert_eq!(source.files.last(), Some(&sub.join("d.png")));
        let sizes: Vec<_> = play(&mut source, 10)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        assert_eq!(sizes, [(8, 8), (6, 4), (3, 3), (5, 5)]);
    }

    #[test]
    fn frames_hold_the_decoded_pixels() {
        let dir = folder();
        let mut source = config(dir.path(), false).build().expect("builds");
        let shutdown = Shutdown::new();
        let first = source.next_frame(&shutdown).expect("ok").expect("frame");
        assert!(is_about(&first.image, RED));
    }

    #[test]
    fn a_loop_with_no_readable_image_is_fatal() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("x.png"), b"garbage").expect("write");
        let mut source = config(dir.path(), true).build().expect("builds");
        let shutdown = Shutdown::new();
        assert!(matches!(
            source.next_frame(&shutdown),
            Err(StageError::Item(_))
        ));
        let fatal = source.next_frame(&shutdown).expect_err("nothing left");
        assert!(matches!(fatal, StageError::Fatal(_)));
        assert!(
            fatal.to_string().starts_with("no readable images left in "),
            "{fatal}"
        );
    }

    #[test]
    fn build_fails_on_a_missing_or_imageless_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope");
        let err = config(&missing, false).build().err().expect("refused");
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", missing.display())
        );
        fs::write(dir.path().join("readme.txt"), b"hi").expect("write");
        let err = config(dir.path(), false).build().err().expect("refused");
        assert!(err
            .to_string()
            .ends_with("holds no image files (jpg, jpeg, png, bmp, webp, tif, tiff)"));
    }
}
