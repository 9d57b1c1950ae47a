//! `capsule`: the command-line front end. Parsing is in [`cli`], each verb in [`cmd`]; the
//! logic lives in capsule-core. Exit codes: 0 success, 1 failure (the message names the file,
//! capsule or digest), 2 usage error; `run` will return the application's status, or 125, 126,
//! 127 as docker does. A broken pipe on stdout exits 0, as ripgrep does.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod fixture;

use std::process::ExitCode;

use cli::{Cli, Output};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    cli::log::init();
    let out = Output { json: cli.globals.json, quiet: cli.globals.quiet };
    match cmd::dispatch(cli, out) {
        Ok(code) => code,
        Err(err) => {
            let broken_pipe = err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("capsule: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}
