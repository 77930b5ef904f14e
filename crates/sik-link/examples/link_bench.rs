//! Benchmark driver: `link_bench link IMAGE ROOT` links IMAGE (unsigned,
//! compatibility not checked) into ROOT; `link_bench unlink NAME ROOT`
//! removes it. The same library calls as `sik link`/`sik unlink`, in a
//! binary that builds without the rest of the workspace.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(what), Some(root)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: link_bench link IMAGE ROOT | link_bench unlink NAME ROOT");
        return ExitCode::from(2);
    };
    match cmd.as_str() {
        "link" => {
            let mut opts = sik_link::LinkOptions::new(root);
            opts.allow_unsigned = true;
            opts.ignore_compat = true;
            match sik_link::link(&[PathBuf::from(what)], &opts) {
                Ok(r) if r.refused.is_empty() => ExitCode::SUCCESS,
                Ok(r) => {
                    eprintln!("refused: {:?}", r.refused);
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        "unlink" => match sik_link::unlink(std::slice::from_ref(what), root.as_ref(), None) {
            Ok(v) if v.iter().all(|(_, r)| r.is_ok()) => ExitCode::SUCCESS,
            Ok(v) => {
                eprintln!("{v:?}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        _ => ExitCode::from(2),
    }
}
