//! The `scened` binary: parses flags, sets up logging, runs a command, and turns an error into
//! one line on stderr and a non-zero exit.

mod alloc;
mod app;
mod bench;
mod cameras;
mod classify;
mod cli;
mod config;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod cpu;
mod eval;
mod models;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

// macOS reads camera permission's prompt text and the Continuity Camera opt-in from the
// executable's __TEXT,__info_plist section when it is not in an app bundle (docs/macos.md).
#[cfg(target_os = "macos")]
embed_plist::embed_info_plist!("../macos/Info.plist");

fn main() -> ExitCode {
    alloc::tune();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a file, a pipe or the journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCENED_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => app::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
        cli::Command::Eval(args) => eval::run(&args),
        cli::Command::Validate { config } => app::validate(&config),
        cli::Command::Reload { config } => app::reload(&config),
        cli::Command::Cameras => cameras::list(),
        cli::Command::Classify(args) => classify::run(&args),
        cli::Command::Models(cli::ModelsCommand::Check { models }) => models::check(&models),
        cli::Command::Models(cli::ModelsCommand::Bench(args)) => models::bench(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a command that goes on past a failed item: non-zero if `failed` > 0.
fn exit_for(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
