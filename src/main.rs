//! `ortho-rnn`: train, benchmark and inspect recurrent networks with orthogonal and spectrally
//! bounded transition matrices.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread starts: SIGTERM/SIGINT/SIGHUP (scancel, preemption, Ctrl-C) release this
    // process's locks before it exits.
    ortho_rnn::lock::release_on_termination();
    let args = cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
