//! The items that flow between stages, and the stamp each one carries from capture.

use std::time::{Duration, Instant};

use image::RgbImage;
use tract_tflite::prelude::Tensor;

/// Identifies a captured frame: every item derived from it carries the same stamp, so a
/// label can be traced back to the exact frame and moment it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Position in the source's output, from 0, with no gaps.
    pub seq: u64,
    /// When the source got the frame, before decoding.
    pub captured_at: Instant,
}

impl Stamp {
    /// Time from capture to `now`; zero if `now` is earlier.
    pub fn age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.captured_at)
    }
}

/// Any item the runner moves: it can tell which frame it came from.
pub trait Stamped {
    fn stamp(&self) -> Stamp;
}

/// A decoded frame, as a source produces it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: u64,
    pub captured_at: Instant,
    pub image: RgbImage,
}

impl Stamped for Frame {
    fn stamp(&self) -> Stamp {
        Stamp {
            seq: self.seq,
            captured_at: self.captured_at,
        }
    }
}

/// A frame as the model takes it, as the resize stage produces it.
#[derive(Clone, Debug)]
pub struct ModelInput {
    pub stamp: Stamp,
    /// `[1, height, width, 3]`, normalized and encoded per the model's input.
    pub tensor: Tensor,
}

impl Stamped for ModelInput {
    fn stamp(&self) -> Stamp {
        self.stamp
    }
}

/// Class probabilities for one frame, as the inference stage produces them.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub stamp: Stamp,
    /// Softmax probabilities, one per class, in the model's label order.
    pub probs: Vec<f32>,
}

impl Stamped for Scores {
    fn stamp(&self) -> Stamp {
        self.stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_never_goes_negative() {
        let stamp = Stamp {
            seq: 0,
            captured_at: Instant::now(),
        };
        let later = stamp.captured_at + Duration::from_millis(5);
        assert_eq!(stamp.age_at(later), Duration::from_millis(5));
        let earlier = stamp.captured_at - Duration::from_millis(5);
        assert_eq!(stamp.age_at(earlier), Duration::ZERO);
    }

    #[test]
    fn a_frame_stamp_is_its_seq_and_capture_time() {
        let frame = Frame {
            seq: 7,
            captured_at: Instant::now(),
            image: RgbImage::new(2, 2),
        };
        let stamp = frame.stamp();
        assert_eq!((stamp.seq, stamp.captured_at), (7, frame.captured_at));
    }
}
