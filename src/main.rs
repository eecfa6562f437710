//! `resnet8`: run, check and benchmark a Keras ResNet8 on CPU and GPU.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A write past the file-size limit (ulimit -f) then fails with EFBIG and
    // is reported, its temporary file removed, instead of killing the process.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Output piped into a reader that stops early (`resnet8 devices | head
    // -1`) ends the process quietly, as for other command-line tools, instead
    // of a panic on the next print (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    resnet8::engine::gpu::prefer_wide_cpu_vectors();
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
