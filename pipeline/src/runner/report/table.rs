//! The report as `scened run` and `scened bench` print it: a table of the stages (and each
//! worker's row), the sink's row, then the frame age and capture-to-label latency lines; with
//! several cameras, the same for each camera.

use std::fmt;
use std::time::Duration;

use super::{PipelineReport, SinkReport, StageReport};
use crate::runner::Probe;

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rows(f, &self.stages, self.sink.as_ref())?;
        for camera in &self.cameras {
            writeln!(f, "camera {}:", camera.name)?;
            write_rows(f, &camera.stages, Some(&camera.sink))?;
            let d = camera.infer.dropped;
            writeln!(
                f,
                "dropped before infer (full/evicted/gone): {}/{}/{}",
                d.queue_full, d.evicted, d.disconnected
            )?;
        }
        Ok(())
    }
}

/// The table of `stages` and the sink's row, then the frame age and latency lines.
fn write_rows(
    f: &mut fmt::Formatter<'_>,
    stages: &[StageReport],
    sink: Option<&SinkReport>,
) -> fmt::Result {
    let millis = |d: Duration| d.as_secs_f64() * 1e3;
    writeln!(
        f,
        "{:<10} {:>8} {:>8} {:>6} {:>7} {:>8} {:>8}  {:<32} stop",
        "stage",
        "in",
        "out",
        "errors",
        "fps",
        "p50 ms",
        "p99 ms",
        "dropped before (full/evicted/gone)"
    )?;
    let row = |f: &mut fmt::Formatter<'_>, title: &str, stage: &StageReport| {
        let dropped = stage.input.as_ref().map_or_else(
            || "-".to_owned(),
            |edge| {
                let d = edge.dropped;
                format!("{}/{}/{}", d.queue_full, d.evicted, d.disconnected)
            },
        );
        writeln!(
            f,
            "{:<10} {:>8} {:>8} {:>6} {:>7.1} {:>8.2} {:>8.2}  {:<32} {}",
            title,
            stage.frames_in,
            stage.frames_out,
            stage.errors,
            stage.fps(),
            millis(stage.process_quantile(0.5)),
            millis(stage.process_quantile(0.99)),
            dropped,
            stage.stop
        )
    };
    for stage in stages {
        row(f, stage.name, stage)?;
        // One worker's row would repeat the stage's.
        if stage.workers.len() > 1 {
            for worker in &stage.workers {
                row(
                    f,
                    &format!(" worker {}", worker.worker.unwrap_or(0)),
                    worker,
                )?;
            }
        }
    }
    if let Some(SinkReport { edge, .. }) = sink {
        let d = edge.dropped;
        let dropped = format!("{}/{}/{}", d.queue_full, d.evicted, d.disconnected);
        writeln!(
            f,
            "{:<10} {:>8} {:>8} {:>6} {:>7} {:>8} {:>8}  {dropped:<32} -",
            edge.name, edge.received, edge.received, 0, "-", "-", "-"
        )?;
    }
    for stage in stages {
        if stage.probe == Probe::FrameAge {
            writeln!(
                f,
                "frame age at {}: p50 {:.2} ms, p99 {:.2} ms",
                stage.name,
                millis(stage.probe_quantile(0.5)),
                millis(stage.probe_quantile(0.99))
            )?;
        }
    }
    if let Some(SinkReport { latency, .. }) = sink {
        write!(
            f,
            "capture-to-label latency: p50 {:.2} ms, p99 {:.2} ms",
            millis(latency.quantile(0.5)),
            millis(latency.quantile(0.99))
        )?;
        if let Some(deadline) = latency.deadline {
            write!(
                f,
                ", {} over the {:.2} ms deadline",
                latency.deadline_misses,
                millis(deadline)
            )?;
        }
        writeln!(f)?;
    }
    Ok(())
}
