//! `sik inspect FILE`: what a file is and the facts users ask about.

use std::path::PathBuf;
use std::process::ExitCode;

use sik_inspect::Report;

use crate::fail::{CmdResult, Failure};
use crate::output::print_json;

#[derive(clap::Args)]
#[command(
    after_help = "Checked: nothing. The signer shown is what the signature block claims; `sik verify` checks it (the firmware checks a PE file's Authenticode signature).\n\nExamples:\n  sik inspect firmware.ExtensionImage\n  sik inspect /usr/lib/shim/shimx64.efi.signed\n  sik inspect --list App-1.0-x86_64.AppImage\n  sik inspect --json live.iso"
)]
pub struct Args {
    /// The file to inspect.
    pub file: PathBuf,
    /// Print one JSON document (schema: formats/schema/inspect.json, or
    /// formats/schema/list.json with --list).
    #[arg(long)]
    pub json: bool,
    /// List the tree like `unsquashfs -lln` (type and mode, uid/gid, size,
    /// mtime in UTC, path, link target; directories show size 0).
    #[arg(long)]
    pub list: bool,
    /// Print the armored SSH signature(s) of an ExtensionImage or AppImage (spec/signature.md).
    #[arg(long, conflicts_with_all = ["list", "json", "payload"])]
    pub signature: bool,
    /// Write the exact signed payload bytes to stdout (for `ssh-keygen -Y sign/verify`).
    #[arg(long, conflicts_with_all = ["list", "json"])]
    pub payload: bool,
}

/// Map a library error to the CLI's wording (exit 2: input error).
pub fn input_error(what: &str, file: &std::path::Path, e: sik_inspect::Error) -> Failure {
    let f = Failure::input(what, Some(file), &e);
    match e {
        sik_inspect::Error::Unknown => {
            f.hint("sik knows ExtensionImages (SquashFS), AppImages, ISO 9660 images and PE (EFI, kernel) files")
        }
        _ => f,
    }
}

pub fn run(a: Args) -> CmdResult {
    if a.signature {
        return crate::cmd::verify::print_signature(&a.file);
    }
    if a.payload {
        return crate::cmd::verify::print_payload(&a.file);
    }
    if a.list {
        let failed = |e| input_error("cannot list", &a.file, e);
        if a.json {
            let entries = sik_inspect::list(&a.file).map_err(failed)?;
            print_json(&serde_json::json!({ "path": a.file, "entries": entries }));
        } else {
            // Streamed: lines are written as the tree is walked, so memory
            // does not grow with the image.
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            sik_inspect::list_each(&a.file, &mut |e| {
                let _ = writeln!(
                    out,
                    "{}",
                    sik_inspect::tree::format_line(e, "squashfs-root")
                );
            })
            .map_err(failed)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report =
        sik_inspect::inspect(&a.file).map_err(|e| input_error("cannot inspect", &a.file, e))?;
    let verity = report
        .extension
        .as_ref()
        .and_then(|_| sik_image::signature::payload_of_path(&a.file).ok())
        .and_then(|p| p.verity)
        .map(|d| sik_image::verity::Facts::from(&d));
    if a.json {
        let mut doc = serde_json::to_value(&report).unwrap_or_default();
        if let Some(x) = doc.get_mut("extension") {
            x["verity"] = serde_json::to_value(&verity).unwrap_or_default();
        }
        print_json(&doc);
    } else {
        print_text(&report);
        if report.extension.is_some() {
            print_verity(verity.as_ref());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_verity(v: Option<&sik_image::verity::Facts>) {
    let Some(v) = v else {
        println!("  dm-verity:          none (checked by hashing the whole file)");
        return;
    };
    println!(
        "  dm-verity:          {} hash tree, {} data blocks of {} bytes",
        v.hash_algorithm, v.data_blocks, v.data_block_size
    );
    println!("    root hash:        {}", v.root_hash);
    println!("    salt:             {}", v.salt);
    println!(
        "    hash tree:        {} bytes at offset {}",
        v.hash_size, v.hash_offset
    );
}

fn print_text(r: &Report) {
    println!("{}: {}", r.path.display(), r.kind);
    println!("  size:               {} bytes", r.file_len);
    let sq = |s: &sik_inspect::SquashfsSummary| {
        println!("  compression:        {}", s.compression);
        println!("  block size:         {}", s.block_size);
        println!("  inodes:             {}", s.inodes);
        println!("  bytes used:         {}", s.bytes_used);
        println!("  created:            {} UTC", s.created_utc);
        println!(
            "  xattrs:             {}",
            if s.xattrs { "yes" } else { "no" }
        );
    };
    if let Some(x) = &r.extension {
        sq(&x.squashfs);
        println!(
            "  name:               {}",
            x.name
                .as_deref()
                .unwrap_or("(none: no extension-release file)")
        );
        for (k, v) in &x.release.0 {
            println!("  release {k:<11} {v}");
        }
        for p in &x.packages {
            println!(
                "  package:            {} {} {} ({})",
                p.name, p.version, p.arch, p.format
            );
        }
        println!(
            "  ExtensionRun:       {}",
            if x.extension_run { "yes" } else { "no" }
        );
        println!(
            "  sysext compatible:  {} ({})",
            if x.sysext.compatible { "yes" } else { "no" },
            x.sysext.reason
        );
        println!("  signature:          {}", signature_text(x));
    }
    if let Some(a) = &r.appimage {
        println!("  type:               {}", a.image_type);
        println!("  architecture:       {}", a.arch);
        println!("  runtime size:       {} bytes", a.runtime_size);
        println!("  payload offset:     {}", a.payload_offset);
        println!(
            "  update info:        {}",
            a.update_info.as_deref().unwrap_or("(none)")
        );
        println!(
            "  signature:          {}",
            if a.signature_present {
                "present"
            } else {
                "absent"
            }
        );
        if let Some(s) = &a.squashfs {
            sq(s);
        }
        match &a.desktop {
            Some(d) => {
                println!("  desktop entry:      {}", d.file);
                println!(
                    "    Name:             {}",
                    d.name.as_deref().unwrap_or("(missing)")
                );
                println!(
                    "    Exec:             {}",
                    d.exec.as_deref().unwrap_or("(missing)")
                );
                println!(
                    "    Icon:             {}",
                    d.icon.as_deref().unwrap_or("(missing)")
                );
            }
            None => println!("  desktop entry:      (none)"),
        }
    }
    if let Some(i) = &r.iso {
        println!(
            "  volume label:       {}",
            i.label.as_deref().unwrap_or("(none)")
        );
    }
    if let Some(p) = &r.pe {
        print_pe(p);
    }
}

/// The Secure Boot facts of a PE file: what it is, its SBAT lines, shim's
/// vendor certificate and who signed it (as the signature says; the
/// firmware checks it).
fn print_pe(p: &sik_image::pe::PeInfo) {
    use sik_image::pe::PeKind;
    let kind = match p.kind {
        PeKind::LinuxKernel => "Linux kernel (EFI stub)",
        PeKind::EfiApplication => "EFI application",
        PeKind::EfiDriver => "EFI driver",
        PeKind::Other => "other PE file",
    };
    println!("  type:               {kind}, {}", p.machine);
    let names: Vec<&str> = p.sections.iter().map(|s| s.name.as_str()).collect();
    println!("  sections:           {}", names.join(" "));
    match &p.sbat {
        Some(lines) => {
            println!("  SBAT:");
            for e in lines {
                println!(
                    "    {},{},{},{},{},{}",
                    e.component, e.generation, e.vendor, e.package, e.version, e.url
                );
            }
        }
        None if p.kind == PeKind::LinuxKernel => println!("  SBAT:               (none)"),
        None => println!("  SBAT:               (none: shim 15.3 and later refuse to start it)"),
    }
    if let Some(v) = &p.vendor_cert {
        for c in &v.certificates {
            println!("  vendor certificate: {} (sha256 {})", c.subject, c.sha256);
        }
        println!("  vendor revocations: {} bytes", v.deauthorized_bytes);
    }
    if p.signatures.is_empty() {
        println!("  signed:             no (Secure Boot refuses it unless its hash is enrolled)");
    }
    for (i, s) in p.signatures.iter().enumerate() {
        match &s.signer {
            Some(c) => println!(
                "  signature {}:        {} (issued by {})",
                i + 1,
                c.subject,
                c.issuer
            ),
            None => println!(
                "  signature {}:        certificate not included (issued by {})",
                i + 1,
                s.signer_issuer
            ),
        }
    }
    for problem in &p.problems {
        println!("  problem:            {problem}");
    }
}

fn signature_text(x: &sik_inspect::ExtensionFacts) -> String {
    let sig = &x.signature;
    match sig.state.as_str() {
        "signed" => format!(
            "present, not checked: {} signature(s) naming {} (`sik verify` checks them)",
            sig.signers.len(),
            sig.signers.join(", ")
        ),
        "malformed" => format!(
            "malformed block ({})",
            sig.why.as_deref().unwrap_or("unknown")
        ),
        _ => "absent".into(),
    }
}
