//! A moving test pattern: frames without a camera or files.

use std::time::Instant;

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::{check_fps, check_size, Pacer, Sequence, SourceError};
use crate::error::Invalid;
use crate::frame::Frame;
use crate::stage::{Shutdown, Source, StageError};

pub const DEFAULT_WIDTH: u32 = 640;
pub const DEFAULT_HEIGHT: u32 = 480;
pub const DEFAULT_FPS: f64 = 30.0;
/// How far the pattern moves per frame, in pixels.
const STEP: u64 = 4;
/// Colour bars, brightest first.
const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Frame width in pixels, 1 to 8192.
    pub width: u32,
    /// Frame height in pixels, 1 to 8192.
    pub height: u32,
    /// Frames per second by the wall clock; 0 makes them as fast as possible. The pattern
    /// runs until shutdown (or the pipeline's `stop` settings).
    pub fps: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: DEFAULT_FPS,
        }
    }
}

impl SyntheticConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        check_size(self.width, self.height)?;
        check_fps(self.fps)
    }

    pub fn build(&self) -> Result<SyntheticSource, SourceError> {
        self.check()?;
        Ok(SyntheticSource {
            width: self.width,
            height: self.height,
            pacer: Pacer::new(self.fps),
            sequence: Sequence::default(),
        })
    }
}

/// Colour bars scrolling sideways, darker towards the top.
pub struct SyntheticSource {
    width: u32,
    height: u32,
    pacer: Pacer,
    sequence: Sequence,
}

impl SyntheticSource {
    fn pattern(&self, seq: u64) -> RgbImage {
        let (width, height) = (u64::from(self.width), u64::from(self.height));
        let shift = seq.wrapping_mul(STEP) % width;
        RgbImage::from_fn(self.width, self.height, |x, y| {
            let bar = ((u64::from(x) + shift) % width) * BARS.len() as u64 / width;
            let shade = 128 + u64::from(y) * 127 / height;
            Rgb(BARS[bar as usize].map(|c| (u64::from(c) * shade / 255) as u8))
        })
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self, shutdown: &Shutdown) -> Result<Option<Frame>, StageError> {
        let seq = self.sequence.0;
        if !self.pacer.wait(shutdown) {
            return Ok(None);
        }
        let captured_at = Instant::now();
        let image = self.pattern(seq);
        Ok(Some(self.sequence.frame(captured_at, image)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(width: u32, height: u32, fps: f64) -> SyntheticConfig {
        SyntheticConfig { width, height, fps }
    }

    #[test]
    fn the_pattern_moves() {
        let mut source = config(64, 16, 0.0).build().expect("valid");
        let shutdown = Shutdown::new();
        let frames: Vec<Frame> = (0..3)
            .map(|_| source.next_frame(&shutdown).expect("ok").expect("a frame"))
            .collect();
        assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(frames.iter().all(|f| f.image.dimensions() == (64, 16)));
        assert_ne!(frames[0].image, frames[1].image, "the pattern moves");
        // Bars are 8 pixels wide and move 4 a frame: two frames on, each bar sits where the next was.
        assert_eq!(
            frames[2].image.get_pixel(0, 8),
            frames[0].image.get_pixel(8, 8)
        );
        assert!(frames
            .windows(2)
            .all(|w| w[0].captured_at <= w[1].captured_at));
    }

    #[test]
    fn frames_are_paced_by_fps() {
        let mut source = config(8, 8, 50.0).build().expect("valid");
        let shutdown = Shutdown::new();
        let started = Instant::now();
        for _ in 0..6 {
            source.next_frame(&shutdown).expect("ok").expect("a frame");
        }
        // Five 20 ms periods at least.
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_stop_ends_an_endless_pattern() {
        let mut source = config(8, 8, 1.0).build().expect("valid");
        let shutdown = Shutdown::new();
        assert!(source.next_frame(&shutdown).expect("ok").is_some());
        shutdown.trigger();
        assert!(source.next_frame(&shutdown).expect("ok").is_none());
    }

    #[test]
    fn build_names_the_bad_field() {
        let err = config(0, 8, 0.0).build().err().expect("refused");
        assert_eq!(err.to_string(), "source.width must be 1 to 8192, got 0");
        let err = config(8, 9000, 0.0).build().err().expect("refused");
        assert_eq!(err.to_string(), "source.height must be 1 to 8192, got 9000");
        let err = config(8, 8, -2.0).build().err().expect("refused");
        assert!(err.to_string().starts_with("source.fps must be"), "{err}");
    }
}
