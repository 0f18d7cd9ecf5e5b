//! The sliding-window geometry CONV_2D, DEPTHWISE_CONV_2D and AVERAGE_POOL_2D share, with
//! TFLite's padding rule (`ComputePaddingWithOffset`: the smaller half of the padding on top
//! and left).

use tract_tflite::tflite::Padding;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Input height, width and channels (NHWC, batch 1).
    pub input: [usize; 3],
    pub filter: [usize; 2],
    pub stride: [usize; 2],
    /// Rows and columns of padding before the first input row and column.
    pub pad: [usize; 2],
    /// Output height and width.
    pub output: [usize; 2],
}

impl Window {
    /// `None` when the parameters are not a window TFLite would compute (zero strides, a
    /// filter larger than a VALID input).
    pub fn new(
        input: [usize; 3],
        filter: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    ) -> Option<Window> {
        let mut output = [0; 2];
        let mut pad = [0; 2];
        for d in 0..2 {
            let (size, f, s) = (input[d], filter[d], stride[d]);
            if s == 0 || f == 0 || size == 0 {
                return None;
            }
            output[d] = match padding {
                Padding::SAME => size.div_ceil(s),
                Padding::VALID => (size.checked_sub(f)? + s) / s,
                _ => return None,
            };
            let total = ((output[d] - 1) * s + f).saturating_sub(size);
            pad[d] = total / 2;
        }
        Some(Window {
            input,
            filter,
            stride,
            pad,
            output,
        })
    }

    /// The input row (or column, `d = 1`) under filter tap `f` of output position `o`, or
    /// `None` in the padding.
    #[inline(always)]
    pub fn source(&self, d: usize, o: usize, f: usize) -> Option<usize> {
        (o * self.stride[d] + f)
            .checked_sub(self.pad[d])
            .filter(|&i| i < self.input[d])
    }

    /// The input row (or column, `d = 1`) under the first filter tap of output position `o`,
    /// if every tap of the window falls inside the input.
    #[inline(always)]
    pub fn inside(&self, d: usize, o: usize) -> Option<usize> {
        (o * self.stride[d])
            .checked_sub(self.pad[d])
            .filter(|&i| i + self.filter[d] <= self.input[d])
    }

    /// The filter taps of output position `o` that fall inside the input.
    #[inline(always)]
    pub fn taps(&self, d: usize, o: usize) -> std::ops::Range<usize> {
        let start = self.pad[d].saturating_sub(o * self.stride[d]);
        let end = (self.input[d] + self.pad[d])
            .saturating_sub(o * self.stride[d])
            .min(self.filter[d]);
        start..end.max(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_after() {
        // 224 → 112 with a 3×3 stride-2 filter: one pixel of padding, at the bottom/right.
        let w = Window::new([224, 224, 3], [3, 3], [2, 2], Padding::SAME).unwrap();
        assert_eq!((w.output, w.pad), ([112, 112], [0, 0]));
        assert_eq!(w.taps(0, 111), 0..2);
        let w = Window::new([11, 11, 3], [3, 3], [2, 2], Padding::SAME).unwrap();
        assert_eq!((w.output, w.pad), ([6, 6], [1, 1]));
        assert_eq!(w.taps(0, 0), 1..3);
        assert_eq!(w.source(0, 0, 0), None);
        assert_eq!(w.source(0, 0, 1), Some(0));
        let w = Window::new([7, 7, 8], [7, 7], [1, 1], Padding::VALID).unwrap();
        assert_eq!((w.output, w.pad), ([1, 1], [0, 0]));
        assert!(Window::new([3, 3, 8], [5, 5], [1, 1], Padding::VALID).is_none());
    }

    #[test]
    fn a_window_is_inside_exactly_when_all_its_taps_are() {
        for (size, f, s, padding) in [(12, 5, 2, Padding::SAME), (9, 3, 1, Padding::VALID)] {
            let w = Window::new([size, size, 1], [f, f], [s, s], padding).unwrap();
            for o in 0..w.output[0] {
                let all = (0..f).all(|t| w.source(0, o, t).is_some());
                assert_eq!(w.inside(0, o), all.then(|| w.source(0, o, 0).unwrap()));
            }
        }
    }

    #[test]
    fn taps_are_exactly_the_sources_inside() {
        for (size, f, s, padding) in [
            (12, 5, 2, Padding::SAME),
            (13, 5, 2, Padding::SAME),
            (9, 3, 1, Padding::SAME),
            (9, 3, 2, Padding::VALID),
        ] {
            let w = Window::new([size, size, 1], [f, f], [s, s], padding).unwrap();
            for o in 0..w.output[0] {
                let inside: Vec<usize> = (0..f).filter(|&t| w.source(0, o, t).is_some()).collect();
                assert_eq!(
                    w.taps(0, o).collect::<Vec<_>>(),
                    inside,
                    "{size} {f} {s} {o}"
                );
            }
        }
    }
}
