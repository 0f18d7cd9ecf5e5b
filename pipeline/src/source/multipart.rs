//! The parts of a `multipart/x-mixed-replace` stream, as MJPEG cameras send it: a boundary
//! line, a few header lines, a blank line, a JPEG, and again. Each JPEG's end is found by
//! walking its segments ([`crate::jpeg`], as for a clip), not from a `Content-Length`, which
//! cheap cameras get wrong or leave out; the boundary only finds where the next part starts.
//!
//! What is buffered is bounded: a part's headers by [`MAX_HEADER_BYTES`], its JPEG by the
//! limit given (a part over it is skipped, counted by the caller). A part that is not a JPEG
//! is skipped up to the next boundary.

use crate::jpeg::{self, Parse, SOI};

/// A part's header lines, all together.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// A JPEG up to this size is walked again after every read; a bigger one, after it grew by a
/// quarter (a frame's last bytes wait for a few more at most).
const WALK_EVERY_BYTE_UP_TO: usize = 1 << 20;

/// Where the buffered bytes are in a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for the next boundary line.
    Boundary,
    /// After a boundary line: header lines up to a blank one.
    Headers,
    /// The part's body: a JPEG.
    Body,
}

/// What the buffered bytes give next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// A whole JPEG of `size` (width, height) pixels, as its frame header claims.
    Frame { jpeg: &'a [u8], size: (u32, u32) },
    /// A part skipped, and why.
    Skipped(&'static str),
    /// More bytes are needed.
    More,
}

pub struct Multipart {
    /// The boundary as it appears in the stream, without the `--` before it; `None` until
    /// read from the first line (a server that says `application/octet-stream`).
    boundary: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out, dropped at the next call.
    used: usize,
    state: State,
    max_part: usize,
    /// Bytes dropped while looking for a boundary since the last one.
    junk: usize,
    /// How much of the JPEG begun the last walk saw: a big one is walked again only when it
    /// has grown by a quarter, so a slow one costs linear time, not quadratic.
    walked: usize,
}

impl Multipart {
    /// `boundary` from the `Content-Type` header, or `None` to take it from the first line.
    /// A part's JPEG may have up to `max_part` bytes.
    pub fn new(boundary: Option<&str>, max_part: usize) -> Self {
        // Some cameras put the `--` into the header's boundary too; the lines then start
        // with it either way, and the search finds the name wherever it starts.
        let boundary = boundary.map(|b| b.trim_start_matches('-').as_bytes().to_vec());
        Self {
            boundary: boundary.filter(|b| !b.is_empty()),
            buf: Vec::new(),
            used: 0,
            state: State::Boundary,
            max_part,
            junk: 0,
            walked: 0,
        }
    }

    /// The boundary of `multipart/x-mixed-replace; boundary=…`, unquoted; `None` without one.
    pub fn boundary_of(content_type: &str) -> Option<&str> {
        content_type.split(';').skip(1).find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| value.trim().trim_matches('"'))
                .filter(|value| !value.is_empty())
        })
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.drop_used();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, for tests of the bound.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.used
    }

    fn drop_used(&mut self) {
        self.buf.drain(..self.used);
        self.used = 0;
    }

    /// The next frame or skipped part from what has been pushed.
    pub fn step(&mut self) -> Step<'_> {
        self.drop_used();
        loop {
            match self.state {
                State::Boundary => match self.boundary_line() {
                    Ok(Some(end)) => {
                        self.buf.drain(..end);
                        self.state = State::Headers;
                    }
                    Ok(None) => return Step::More,
                    Err(reason) => return Step::Skipped(reason),
                },
                State::Headers => {
                    // A server that sends the JPEG straight after the boundary line.
                    if self.buf.starts_with(&SOI) {
                        self.state = State::Body;
                        continue;
                    }
                    match blank_line_end(&self.buf) {
                        Some(end) => {
                            self.buf.drain(..end);
                            self.state = State::Body;
                        }
                        None if self.buf.len() > MAX_HEADER_BYTES => {
                            self.skip_part();
                            return Step::Skipped("part headers over 16 KiB");
                        }
                        None => return Step::More,
                    }
                }
                State::Body => {
                    if self.buf.len() < SOI.len() {
                        return Step::More;
                    }
                    if !self.buf.starts_with(&SOI) {
                        self.skip_part();
                        return Step::Skipped("part is not a JPEG");
                    }
                    let len = self.buf.len();
                    if len > WALK_EVERY_BYTE_UP_TO && len < self.walked + self.walked / 4 {
                        return Step::More;
                    }
                    self.walked = len;
                    match jpeg::parse(&self.buf) {
                        Parse::Frame { len, size } => {
                            self.used = len;
                            self.walked = 0;
                            self.state = State::Boundary;
                            return Step::Frame {
                                jpeg: &self.buf[..len],
                                size,
                            };
                        }
                        Parse::Bad(reason) => {
                            self.walked = 0;
                            self.skip_part();
                            return Step::Skipped(reason);
                        }
                        Parse::Incomplete if len > self.max_part => {
                            self.walked = 0;
                            self.buf.clear();
                            self.state = State::Boundary;
                            return Step::Skipped("part over the size limit");
                        }
                        Parse::Incomplete => return Step::More,
                    }
                }
            }
        }
    }

    /// Gives up on the part begun: what follows is searched for the next boundary.
    fn skip_part(&mut self) {
        // Past the part's first bytes, so the search cannot stop where it started.
        self.buf.drain(..SOI.len().min(self.buf.len()));
        self.state = State::Boundary;
    }

    /// Where the boundary line ends in `buf`; `None` when more bytes are needed. Bytes before
    /// a boundary are no part of any frame: they are dropped as they come, so looking for a
    /// boundary holds little; more than a part's limit of them is reported once.
    fn boundary_line(&mut self) -> Result<Option<usize>, &'static str> {
        if self.boundary.is_none() {
            self.learn_boundary();
        }
        let found = self.boundary.as_ref().and_then(|b| find(&self.buf, b));
        let Some(at) = found else {
            // Keep what could be the start of a boundary split across reads.
            let keep = self.boundary.as_ref().map_or(MAX_HEADER_BYTES, Vec::len);
            let cut = self.buf.len().saturating_sub(keep);
            self.buf.drain(..cut);
            self.junk += cut;
            if self.junk > self.max_part {
                self.junk = 0;
                return Err("no part boundary within the size limit");
            }
            return Ok(None);
        };
        self.junk = 0;
        match line_end(&self.buf[at..]) {
            Some(end) => Ok(Some(at + end)),
            None if self.buf.len() - at > MAX_HEADER_BYTES => {
                self.buf.drain(..at + 2);
                Err("part headers over 16 KiB")
            }
            None => Ok(None),
        }
    }

    /// Takes the boundary from the first whole line that starts with `--`, for a server
    /// that does not give it in its `Content-Type`; lines before it are dropped.
    fn learn_boundary(&mut self) {
        let mut start = 0;
        while let Some(len) = line_end(&self.buf[start..]) {
            let line = trim_line(&self.buf[start..start + len]);
            let dashes = line.iter().take_while(|&&b| b == b'-').count();
            if dashes >= 2 && dashes < line.len() {
                self.boundary = Some(line[dashes..].to_vec());
                break;
            }
            start += len;
        }
        self.buf.drain(..start);
        self.junk += start;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The end of the first line (after its `\n`).
fn line_end(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n').map(|at| at + 1)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |at| at + 1);
    &line[..end]
}

/// The end of the first blank line (headers end with `\r\n\r\n`, or `\n\n` from some servers).
fn blank_line_end(data: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(len) = line_end(&data[start..]) {
        if trim_line(&data[start..start + len]).is_empty() {
            return Some(start + len);
        }
        start += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::jpeg as encode;

    fn part(boundary: &str, jpeg: &[u8]) -> Vec<u8> {
        let head = format!(
            "--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        );
        [head.as_bytes(), jpeg, b"\r\n"].concat()
    }

    /// Every step until more bytes are needed: frames by size, skips by reason.
    fn drain(parts: &mut Multipart) -> Vec<String> {
        let mut steps = Vec::new();
        loop {
            match parts.step() {
                Step::Frame { jpeg, size } => {
                    assert!(jpeg.ends_with(&[0xFF, 0xD9]));
                    steps.push(format!("{}x{}", size.0, size.1));
                }
                Step::Skipped(reason) => steps.push(reason.to_owned()),
                Step::More => return steps,
            }
        }
    }

    #[test]
    fn frames_come_out_whatever_the_reads_split_them_into() {
        let stream = [
            part("ffmpeg", &encode(32, 16, [200, 0, 0])),
            part("ffmpeg", &encode(8, 8, [0, 200, 0])),
        ]
        .concat();
        for chunk in [1, 7, 100, stream.len()] {
            let mut parts = Multipart::new(Some("ffmpeg"), 1 << 20);
            let mut steps = Vec::new();
            for bytes in stream.chunks(chunk) {
                parts.push(bytes);
                steps.extend(drain(&mut parts));
            }
            assert_eq!(steps, ["32x16", "8x8"], "chunks of {chunk}");
        }
    }

    #[test]
    fn the_boundary_comes_from_the_first_line_when_the_header_has_none() {
        let stream = [
            part("frame", &encode(8, 8, [1, 2, 3])),
            part("frame", &encode(16, 8, [1, 2, 3])),
        ]
        .concat();
        let mut parts = Multipart::new(None, 1 << 20);
        parts.push(&stream);
        assert_eq!(drain(&mut parts), ["8x8", "16x8"]);
        assert_eq!(
            Multipart::boundary_of("multipart/x-mixed-replace;boundary=ffmpeg"),
            Some("ffmpeg")
        );
        assert_eq!(
            Multipart::boundary_of("multipart/x-mixed-replace; Boundary=\"--myboundary\""),
            Some("--myboundary")
        );
        assert_eq!(Multipart::boundary_of("application/octet-stream"), None);
        // A header boundary with the dashes in it still finds `--myboundary` lines.
        let mut parts = Multipart::new(Some("--myboundary"), 1 << 20);
        parts.push(&part("myboundary", &encode(8, 8, [1, 2, 3])));
        assert_eq!(drain(&mut parts), ["8x8"]);
    }

    #[test]
    fn garbage_parts_are_skipped_and_the_next_good_one_is_read() {
        let good = encode(8, 8, [9, 9, 9]);
        let mut cut = good.clone();
        cut.truncate(good.len() / 2);
        let stream = [
            b"HTTP junk before the first boundary\r\n".to_vec(),
            part("b", b"<html>not a picture</html>"),
            // A JPEG cut short by the next part: its walk meets the next part's bytes.
            part("b", &cut),
            part("b", &good),
        ]
        .concat();
        let mut parts = Multipart::new(Some("b"), 1 << 20);
        parts.push(&stream);
        let steps = drain(&mut parts);
        assert_eq!(
            steps.first().map(String::as_str),
            Some("part is not a JPEG")
        );
        assert_eq!(steps.last().map(String::as_str), Some("8x8"));
        assert_eq!(steps.len(), 3, "{steps:?}");
    }

    #[test]
    fn what_is_buffered_stays_under_the_limits() {
        const LIMIT: usize = 4096;
        // A JPEG that never ends: its scan goes on and on.
        let mut parts = Multipart::new(Some("b"), LIMIT);
        let whole = encode(8, 8, [0, 0, 0]);
        // Without its end marker, and more scan bytes (no 0xFF) after.
        let endless = [&whole[..whole.len() - 2], &[0x11; 1000]].concat();
        parts.push(b"--b\r\n\r\n");
        parts.push(&endless);
        let mut skipped = Vec::new();
        for _ in 0..100 {
            parts.push(&[0x22; 1000]);
            skipped.extend(drain(&mut parts));
            assert!(parts.buffered() <= LIMIT + 1000 + 100);
        }
        assert!(
            skipped.contains(&"part over the size limit".to_owned()),
            "{skipped:?}"
        );
        // No boundary at all.
        let mut parts = Multipart::new(Some("b"), LIMIT);
        for _ in 0..100 {
            parts.push(&[b'x'; 1000]);
            drain(&mut parts);
            assert!(parts.buffered() <= LIMIT + 1000);
        }
        // Headers that never end.
        let mut parts = Multipart::new(Some("b"), 1 << 20);
        parts.push(b"--b\r\n");
        let mut steps = Vec::new();
        for _ in 0..40 {
            parts.push(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                    .repeat(10)
                    .as_slice(),
            );
            steps.extend(drain(&mut parts));
            assert!(parts.buffered() <= MAX_HEADER_BYTES + 1000);
        }
        assert!(
            steps.contains(&"part headers over 16 KiB".to_owned()),
            "{steps:?}"
        );
    }
}
