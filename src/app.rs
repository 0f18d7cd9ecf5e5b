//! `scened run` and `scened validate`, and the lifecycle `run` and `bench` share: a config
//! becomes a started [`Daemon`]; running it feeds a sink and ends with the report.
//!
//! SIGINT and SIGTERM stop the source; the frames in flight drain, every thread is joined and
//! the report printed before exiting 0. A signal exits at once (130), without a report, if it
//! comes while the pipeline is still being built (a model load cannot be interrupted), if it
//! is the second, or if the drain stops moving for [`DRAIN_STALL`] (a stage or the reader of
//! stdout is stuck). A drain is judged by progress, not by its length: on a busy machine a
//! clean one may take seconds, and still ends with the report and exit 0.

use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use scened_pipeline::config::Config;
use scened_pipeline::daemon::{Daemon, DaemonReport};
use scened_pipeline::events::{self, Event, Subscriber};
use scened_pipeline::frame::LabelEvent;
use scened_pipeline::metrics::output_dropped;
use scened_pipeline::pipeline::Pipeline;
use scened_pipeline::queue::EdgeWatch;
use scened_pipeline::reload::{self, Reloader};
use scened_pipeline::rss;
use scened_pipeline::runner::{PipelineReport, StageWatch, WorkerWatches};
use scened_pipeline::source::SourceConfig;
use scened_pipeline::stage::Shutdown;
use tracing::info;

use crate::cli::{PipelineArgs, RunArgs};
use crate::config;

/// Events waiting for stdout; past this the oldest are dropped, so a reader that stops
/// reading holds back neither the pipeline nor the other outputs.
const STDOUT_QUEUE: usize = 256;
/// How long a drain may go without an item moving along an edge; then it is stuck and the
/// process exits without the report. Longer than an inference on a loaded machine.
const DRAIN_STALL: Duration = Duration::from_secs(3);
/// The exit status of a run cut short by a signal, as a shell reports SIGINT.
const SIGNALLED: i32 = 130;

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut started = Started::start(&args.pipeline, |config| {
        config.output.every_frame |= args.every_frame;
        Ok(())
    })?;
    started.reload_on_hangup(&args.pipeline)?;
    started.print_events()?;
    let Finished { report, printed } = started.run(|_| ControlFlow::Continue(()))?;
    eprint!("{}", report.pipeline);
    eprintln!("peak RSS {:.1} MiB", rss::mib(rss::peak_bytes()));
    for mqtt in &report.mqtt {
        eprint!("{mqtt}");
    }
    let report = report.pipeline;
    printed.context("cannot write to stdout")?;
    no_failed_stage(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// A run whose stage failed is an error naming the stage.
pub fn no_failed_stage(report: &PipelineReport) -> anyhow::Result<()> {
    match report.failure() {
        Some(failed) => anyhow::bail!("stage {} {}", failed.title(), failed.stop),
        None => Ok(()),
    }
}

pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    in_file(config.check(), Some(path))?;
    if let Some(mqtt) = &config.output.mqtt {
        for camera in config.cameras() {
            in_file(mqtt.build(&camera.name), Some(path))?;
        }
    }
    // A network camera is not connected to: its URL's form was checked above, and the rest
    // of the pipeline is built around a stand-in source.
    let mut offline = config.clone();
    if offline.source.is_remote() {
        offline.source = SourceConfig::Synthetic(Default::default());
    }
    in_file(Pipeline::build(&offline), Some(path))?;
    println!("{}: ok", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `scened reload`: asks the daemon running `path` to reload it; prints the outcome's event.
pub fn reload(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(path)?;
    let (took, event) = reload::ask(&config).map_err(anyhow::Error::msg)?;
    println!("{event}");
    Ok(if took {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A started pipeline, with the signal handling around it: what `run` and `bench` share.
pub struct Started {
    pub config: Config,
    daemon: Daemon,
    shutdown: Shutdown,
    phase: Phase,
    /// The thread printing the event stream, when printing.
    printer: Option<JoinHandle<io::Result<()>>>,
}

/// A run that is over: its report, and whether stdout took every event line.
pub struct Finished {
    pub report: DaemonReport,
    pub printed: io::Result<()>,
}

impl Started {
    /// Installs the signal handler (first, so a signal during the model load is handled too),
    /// reads the config of `args` and lets `adjust` change it, then starts the daemon.
    pub fn start(
        args: &PipelineArgs,
        adjust: impl FnOnce(&mut Config) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let shutdown = Shutdown::new();
        let phase = Phase::default();
        stop_on_signals(shutdown.clone(), phase.clone())?;
        let mut config = config::for_args(args)?;
        adjust(&mut config)?;
        info!("building the pipeline");
        let daemon = in_file(Daemon::start(&config), args.config.as_deref())?;
        info!(model = %daemon.pipeline().engine().path().display(), "pipeline built");
        if let Some(addr) = daemon.telemetry() {
            eprintln!(
                "serving the live view (/) and /metrics /healthz /readyz /status on http://{addr}"
            );
        }
        let pipeline = daemon.pipeline();
        let _ = EDGES.set((pipeline.edges(), pipeline.worker_watches()));
        phase.set(PhaseKind::Running);
        Ok(Self {
            config,
            daemon,
            shutdown,
            phase,
            printer: None,
        })
    }

    pub fn pipeline(&self) -> &Pipeline {
        self.daemon.pipeline()
    }

    /// SIGHUP and `POST /reload` reload the config file, read with `args`' flags again
    /// (docs/running.md#reload).
    pub fn reload_on_hangup(&self, args: &PipelineArgs) -> anyhow::Result<()> {
        let file = args.config.as_deref().unwrap_or(Path::new("(no file)"));
        let file = file.display().to_string();
        let (args, every_frame) = (args.clone(), self.config.output.every_frame);
        let load = move || {
            let mut config = config::for_args(&args).map_err(|e| format!("{e:#}"))?;
            config.output.every_frame = every_frame;
            Ok(config)
        };
        let reloader = Reloader::new(&self.daemon, self.config.clone(), file, Box::new(load));
        let reloader = Arc::new(reloader);
        let hangup = Arc::clone(&reloader);
        reload::on_hangup(move || drop(hangup.reload()))
            .context("cannot install the SIGHUP handler")?;
        self.daemon.on_reload(move || {
            let event = reloader.reload();
            (matches!(event, Event::Reloaded(_)), event.to_json())
        });
        Ok(())
    }

    /// Prints the event stream on stdout, a JSON object a line, until the run is over. What a
    /// reader that stops reading leaves is dropped, counted in
    /// `scened_output_dropped_total{output="stdout"}`; stdout gone stops the run.
    pub fn print_events(&mut self) -> anyhow::Result<()> {
        let lines = self.daemon.events().subscribe(Subscriber::dropping_oldest(
            STDOUT_QUEUE,
            output_dropped("stdout"),
        ));
        let shutdown = self.shutdown.clone();
        let printer = thread::Builder::new()
            .name("scened-stdout".into())
            .spawn(move || {
                let printed = events::write_lines(lines, io::stdout().lock());
                if printed.is_err() {
                    shutdown.trigger();
                }
                printed
            })
            .context("cannot start the stdout thread")?;
        self.printer = Some(printer);
        Ok(())
    }

    /// Runs until the source ends, a signal, or `sink` says stop, and the printing of the
    /// events is over: a stuck stdout keeps the run from being done.
    pub fn run(self, sink: impl FnMut(&LabelEvent) -> ControlFlow<()>) -> anyhow::Result<Finished> {
        let report = self
            .daemon
            .run(&self.shutdown, sink)
            .context("cannot start the pipeline's threads")?;
        let printed = match self.printer {
            Some(printer) => printer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the stdout thread panicked"))),
            None => Ok(()),
        };
        self.phase.set(PhaseKind::Done);
        Ok(Finished { report, printed })
    }
}

/// An error of a config's setting, prefixed with the config file if there is one.
fn in_file<T, E>(result: Result<T, E>, file: Option<&Path>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match file {
        Some(file) => result.with_context(|| file.display().to_string()),
        None => Ok(result?),
    }
}

/// Where `scened run` or `scened bench` is, as the signal handler needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum PhaseKind {
    /// Loading the model and opening the source: nothing to drain yet.
    Building,
    Running,
    /// Drained and joined: the report is being written.
    Done,
}

/// The phase, shared with the signal handler.
#[derive(Clone, Default)]
struct Phase(Arc<AtomicU8>);

impl Phase {
    fn set(&self, phase: PhaseKind) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    fn get(&self) -> PhaseKind {
        match self.0.load(Ordering::SeqCst) {
            0 => PhaseKind::Building,
            1 => PhaseKind::Running,
            _ => PhaseKind::Done,
        }
    }
}

/// The pipeline's edges and its inference workers, set once it is built: what the drain watch
/// reads. The workers' counts cover the cameras a reload started, whose edges came later.
static EDGES: OnceLock<(Vec<EdgeWatch>, WorkerWatches)> = OnceLock::new();

/// Exits 130 once no item has moved along an edge or through inference for [`DRAIN_STALL`]
/// before the run is done.
fn watch_drain(phase: &Phase) {
    let Some((edges, workers)) = EDGES.get() else {
        return;
    };
    let moved = || -> u64 {
        let edges = edges.iter().map(EdgeWatch::stats);
        let inferred: u64 = workers.get().iter().map(StageWatch::frames).sum();
        edges.map(|s| s.sent + s.received).sum::<u64>() + inferred
    };
    let mut last = (moved(), Instant::now());
    while phase.get() != PhaseKind::Done {
        thread::sleep(Duration::from_millis(50));
        let now = moved();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= DRAIN_STALL {
            exit_signalled(&format!(
                "the drain made no progress for {} s, exiting without the report",
                DRAIN_STALL.as_secs()
            ));
        }
    }
}

fn stop_on_signals(shutdown: Shutdown, phase: Phase) -> anyhow::Result<()> {
    let signalled = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if phase.get() == PhaseKind::Building {
            exit_signalled("signalled while starting, before any frame");
        }
        if signalled.swap(true, Ordering::SeqCst) {
            exit_signalled("signalled again, exiting without draining");
        }
        info!("signal received: stopping the source and draining");
        shutdown.trigger();
        let phase = phase.clone();
        thread::spawn(move || watch_drain(&phase));
    })
    .context("cannot install the SIGINT/SIGTERM handler")
}

fn exit_signalled(why: &str) -> ! {
    eprintln!("error: {why}");
    std::process::exit(SIGNALLED);
}
