//! AVERAGE_POOL_2D on int8, as LiteRT's builtin kernel computes it: input and output share one
//! grid, so the quantized values themselves are averaged over the taps inside the input, the
//! sum divided by their count rounding half away from zero, then clamped by the activation.

use super::window::Window;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AvgPool {
    pub window: Window,
    pub range: (i32, i32),
}

impl AvgPool {
    pub fn run(&self, x: &[i8], out: &mut [i8]) {
        let w = self.window;
        let [_, in_w, c] = w.input;
        let [out_h, out_w] = w.output;
        let mut acc = vec![0i32; c];
        for oy in 0..out_h {
            for ox in 0..out_w {
                acc.fill(0);
                let (rows, cols) = (w.taps(0, oy), w.taps(1, ox));
                let count = (rows.len() * cols.len()) as i32;
                for ky in rows {
                    let iy = oy * w.stride[0] + ky - w.pad[0];
                    for kx in cols.clone() {
                        let ix = ox * w.stride[1] + kx - w.pad[1];
                        let src = &x[(iy * in_w + ix) * c..][..c];
                        acc.iter_mut().zip(src).for_each(|(a, &v)| *a += v as i32);
                    }
                }
                let pixel = &mut out[(oy * out_w + ox) * c..][..c];
                for (o, &a) in pixel.iter_mut().zip(&acc) {
                    let avg = if a > 0 {
                        (a + count / 2) / count
                    } else {
                        (a - count / 2) / count
                    };
                    *o = avg.clamp(self.range.0, self.range.1) as i8;
                }
            }
        }
    }
}
