//! The `scened` binary: parses flags, sets up logging, runs a command, and turns an error into
//! one line on stderr and a non-zero exit.

mod classify;
mod cli;
mod models;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCENED_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = match cli.command {
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
