//! Signing and verification (spec/signature.md): keys, `sik sign`,
//! `sik verify`, interop with `ssh-keygen -Y sign/verify` both ways,
//! tampering, hostile signature blocks, and signed images that still mount.

use std::path::{Path, PathBuf};

use crate::util::*;
use sik_image::signature::{self as sig, HashAlg, SshSig};

const SPEC: &str = include_str!("../../spec/signature.md");

/// The `text vector:NAME` block of the spec.
fn vector(name: &str) -> String {
    let tag = format!("```text vector:{name}\n");
    let start = SPEC
        .find(&tag)
        .unwrap_or_else(|| panic!("no vector {name}"))
        + tag.len();
    let end = start + SPEC[start..].find("```").unwrap();
    SPEC[start..end].to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn out_str(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A small tree with several files (so the image has data, inodes, directories).
fn tree(t: &TestDir, name: &str, salt: &str) -> PathBuf {
    let root = t.mkdir(name);
    std::fs::create_dir_all(root.join("usr/lib/firmware")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("usr/lib/firmware/blob.bin"),
        vec![0x5au8; 300_000],
    )
    .unwrap();
    std::fs::write(root.join("etc/hello.conf"), format!("hello {salt}\n")).unwrap();
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes())
        .collect();
    std::fs::write(root.join("usr/lib/random.dat"), big).unwrap();
    root
}

/// An ExtensionImage made by mksquashfs.
fn extension(t: &TestDir, name: &str) -> PathBuf {
    let src = tree(t, &format!("{name}.tree"), name);
    let img = t.join(format!("{name}.ExtensionImage"));
    run_ok(cmd("mksquashfs").arg(&src).arg(&img).args([
        "-all-root",
        "-no-progress",
        "-quiet",
        "-comp",
        "gzip",
    ]));
    img
}

/// A minimal type 2 AppImage: /bin/true with the four reserved sections,
/// the AppImage magic at offset 8, and a SquashFS appended.
fn appimage(t: &TestDir, name: &str, with_sig_sections: bool) -> PathBuf {
    let dir = t.mkdir(&format!("{name}.parts"));
    let mut args: Vec<String> = Vec::new();
    let mut sections = vec![(".digest_md5", 16usize), (".upd_info", 1024)];
    if with_sig_sections {
        sections.extend([(".sha256_sig", 1024), (".sig_key", 8192)]);
    }
    for (sec, size) in sections {
        let f = dir.join(sec.trim_start_matches('.'));
        let mut content = vec![0u8; size];
        if sec == ".upd_info" {
            content[..20].copy_from_slice(b"zsync|https://x/y.zs");
        }
        std::fs::write(&f, content).unwrap();
        args.push("--add-section".into());
        args.push(format!("{sec}={}", f.display()));
    }
    let runtime = dir.join("runtime");
    run_ok(cmd("objcopy").args(&args).arg("/bin/true").arg(&runtime));
    let mut bytes = std::fs::read(&runtime).unwrap();
    bytes[8..11].copy_from_slice(b"AI\x02");
    let sfs = dir.join("payload.squashfs");
    let src = tree(t, &format!("{name}.appdir"), name);
    run_ok(cmd("mksquashfs").arg(&src).arg(&sfs).args([
        "-all-root",
        "-no-progress",
        "-quiet",
        "-comp",
        "gzip",
    ]));
    bytes.extend_from_slice(&std::fs::read(&sfs).unwrap());
    let img = t.join(format!("{name}.AppImage"));
    std::fs::write(&img, bytes).unwrap();
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    img
}

/// Sign the way images were signed before the dm-verity tree (the form
/// these tests cover; `tests/cli/verity.rs` covers the tree).
fn sign(img: &Path, key: &Path) {
    run_ok(
        sik()
            .arg("sign")
            .arg(img)
            .arg("--key")
            .arg(key)
            .arg("--no-verity"),
    );
}

fn verify(img: &Path, trust: &Path) -> std::process::Output {
    run(sik().arg("verify").arg(img).arg("--trust").arg(trust))
}

/// `sik verify --json`, checked against formats/schema/verify.json.
fn verify_json(img: &Path, trust: &Path) -> serde_json::Value {
    let out = run(sik()
        .arg("verify")
        .arg("--json")
        .arg(img)
        .arg("--trust")
        .arg(trust));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../formats/schema/verify.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "verify --json does not match its schema: {errors:?}\n{doc:#}"
    );
    assert_eq!(
        out.status.code(),
        Some(if doc["trusted"] == true { 0 } else { 1 }),
        "{doc:#}"
    );
    doc
}

fn assert_trusted(img: &Path, trust: &Path) {
    let out = verify(img, trust);
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out_str(&out).contains("signed by trusted key SHA256:"),
        "{}",
        out_str(&out)
    );
}

fn assert_verdict(img: &Path, trust: &Path, status: &str, needle: &str) {
    let out = verify(img, trust);
    assert_fails(&out, 1, &["verification failed", needle]);
    assert_eq!(verify_json(img, trust)["status"], status);
}

fn flip(img: &Path, offset: u64) {
    let mut b = std::fs::read(img).unwrap();
    b[offset as usize] ^= 0x01;
    std::fs::write(img, b).unwrap();
}

fn payload_file(img: &Path, out: &Path) {
    let mut f = std::fs::File::create(out).unwrap();
    sig::write_payload(img, &mut f).unwrap();
}

fn allowed_signers(t: &TestDir, principal: &str, pubkey: &Path) -> PathBuf {
    let line = std::fs::read_to_string(pubkey).unwrap();
    t.write(
        &format!("allowed_signers.{principal}"),
        format!("{principal} {line}"),
    )
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with(".sik-sign-"), "temporary file left: {n}");
    }
}

fn tools() -> bool {
    require_tool("mksquashfs")
        && require_tool("ssh-keygen")
        && require_tool("objcopy")
        && require_tool("unsquashfs")
}

#[test]
fn spec_vectors() {
    let seed: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&vector("seed").trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let key = sik_sign::Key::from_seed(&seed, "rfc8032-test1");
    assert_eq!(key.public_key_line(), vector("public-key-line").trim());
    assert_eq!(key.fingerprint(), vector("fingerprint").trim());
    let parsed =
        sik_sign::Key::from_openssh(vector("private-key").as_bytes(), None, Path::new("vector"))
            .unwrap();
    assert_eq!(parsed.public_key_line(), key.public_key_line());
    let msg = vector("message");
    assert_eq!(msg.len(), 27);
    let d256 = HashAlg::Sha256.hash(msg.as_bytes());
    assert_eq!(hex(&d256), vector("sha256").trim());
    assert_eq!(
        hex(&sig::signed_data(sig::NAMESPACE, &[], "sha256", &d256)),
        vector("signed-data-sha256").trim()
    );
    let s256 = key.sign_message(HashAlg::Sha256, msg.as_bytes());
    assert_eq!(s256.armor(), vector("armored-sha256"));
    assert_eq!(
        key.sign_message(HashAlg::Sha512, msg.as_bytes()).armor(),
        vector("armored-sha512")
    );
    assert!(sik_verify::signature_valid(&s256, &d256));
    let block = sig::encode_block(std::slice::from_ref(&s256), 4096);
    assert_eq!(hex(&block), vector("block-4096").trim());
    assert_eq!(sig::decode_block(&block, 4096).unwrap(), vec![s256.clone()]);
    assert_eq!(
        SshSig::from_armored(&vector("armored-sha256")).unwrap(),
        s256
    );

    // The same key and message through ssh-keygen give the same bytes.
    if !require_tool("ssh-keygen") {
        return;
    }
    let t = TestDir::new();
    let k = t.write("rfc", vector("private-key"));
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let m = t.write("msg", &msg);
    run_ok(
        cmd("ssh-keygen")
            .args([
                "-Y",
                "sign",
                "-n",
                "systemimagekit",
                "-O",
                "hashalg=sha256",
                "-f",
            ])
            .arg(&k)
            .arg(&m),
    );
    assert_eq!(
        std::fs::read_to_string(t.join("msg.sig")).unwrap(),
        vector("armored-sha256")
    );
    let pubout = run_ok(cmd("ssh-keygen").arg("-y").arg("-f").arg(&k));
    assert_eq!(pubout.trim(), vector("public-key-line").trim());
}

#[test]
fn key_generate_and_fingerprint_match_ssh_keygen() {
    if !require_tool("ssh-keygen") {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "alice");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&k).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let theirs = run_ok(cmd("ssh-keygen").arg("-lf").arg(&p));
    let ours = run_ok(sik().args(["key", "fingerprint"]).arg(&p));
    assert_eq!(ours, theirs);
    assert_eq!(run_ok(sik().args(["key", "fingerprint"]).arg(&k)), theirs);
    // ssh-keygen reads the private key and derives the same public key.
    let derived = run_ok(cmd("ssh-keygen").arg("-y").arg("-f").arg(&k));
    let pubtext = std::fs::read_to_string(&p).unwrap();
    assert_eq!(
        derived.split_whitespace().take(2).collect::<Vec<_>>(),
        pubtext.split_whitespace().take(2).collect::<Vec<_>>()
    );
    assert!(pubtext.trim().ends_with("alice@test"));
    // No overwrite.
    assert_fails(
        &run(sik().args(["key", "generate", "-o"]).arg(&k)),
        2,
        &["exists"],
    );
    // Encrypted: ssh-keygen opens it with the passphrase, sik signs with it.
    let pass = t.write("pass.txt", "correct horse\n");
    let ek = t.join("enc");
    run_ok(
        sik()
            .args(["key", "generate", "-o"])
            .arg(&ek)
            .arg("--passphrase-file")
            .arg(&pass),
    );
    let derived = run_ok(
        cmd("ssh-keygen")
            .args(["-y", "-P", "correct horse", "-f"])
            .arg(&ek),
    );
    assert!(derived.starts_with("ssh-ed25519 "));
    assert!(
        !run(cmd("ssh-keygen").args(["-y", "-P", "wrong", "-f"]).arg(&ek))
            .status
            .success()
    );
    let img = extension(&t, "enc");
    let before = std::fs::read(&img).unwrap();
    let out = run(sik().arg("sign").arg(&img).arg("--key").arg(&ek));
    assert_fails(&out, 2, &["encrypted"]);
    let wrong = t.write("wrong.txt", "nope\n");
    assert_fails(
        &run(sik()
            .arg("sign")
            .arg(&img)
            .arg("--key")
            .arg(&ek)
            .arg("--passphrase-file")
            .arg(&wrong)),
        2,
        &["passphrase"],
    );
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "failed signing must leave the image untouched"
    );
    run_ok(
        sik()
            .arg("sign")
            .arg(&img)
            .arg("--key")
            .arg(&ek)
            .arg("--passphrase-file")
            .arg(&pass),
    );
    assert_trusted(&img, &PathBuf::from(format!("{}.pub", ek.display())));
    no_temp_files(t.path());
    // Bad key files.
    let junk = t.write("junk", "not a key\n");
    assert_fails(
        &run(sik().args(["key", "fingerprint"]).arg(&junk)),
        2,
        &["junk"],
    );
    assert_fails(
        &run(sik().arg("sign").arg(&img).arg("--key").arg(&junk)),
        2,
        &["cannot use key"],
    );
}

#[test]
fn ssh_keygen_keys_sign_through_sik() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let k = t.join("id_ed25519");
    run_ok(
        cmd("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "bob@host", "-f"])
            .arg(&k),
    );
    let ek = t.join("id_enc");
    run_ok(
        cmd("ssh-keygen")
            .args([
                "-q", "-t", "ed25519", "-N", "s3cret", "-C", "enc@host", "-f",
            ])
            .arg(&ek),
    );
    let rsa = t.join("id_rsa");
    run_ok(
        cmd("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f"])
            .arg(&rsa),
    );
    let img = extension(&t, "kg");
    sign(&img, &k);
    let doc = verify_json(&img, &t.join("id_ed25519.pub"));
    assert_eq!(doc["status"], "trusted");
    assert_eq!(doc["comment"], "bob@host");
    let pass = t.write("p", "s3cret");
    run_ok(
        sik()
            .arg("sign")
            .arg(&img)
            .arg("--key")
            .arg(&ek)
            .arg("--passphrase-file")
            .arg(&pass),
    );
    assert_trusted(&img, &t.join("id_enc.pub"));
    assert_fails(
        &run(sik().arg("sign").arg(&img).arg("--key").arg(&rsa)),
        2,
        &["Ed25519"],
    );
}

#[test]
fn extension_round_trip_and_ssh_keygen_interop() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "vendor");
    let img = extension(&t, "fw");
    let unsigned_len = std::fs::metadata(&img).unwrap().len();
    assert_verdict(&img, &p, "unsigned", "unsigned");
    sign(&img, &k);
    let len = std::fs::metadata(&img).unwrap().len();
    assert_eq!(
        len,
        unsigned_len + 4 + 184 + 32,
        "one entry and the footer follow the padded filesystem"
    );
    let doc = verify_json(&img, &p);
    assert_eq!(doc["status"], "trusted");
    assert_eq!(doc["kind"], "extension");
    assert_eq!(doc["payload_len"], unsigned_len);
    assert_eq!(doc["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(
        doc["fingerprint"].as_str().unwrap(),
        run_ok(sik().args(["key", "fingerprint"]).arg(&p))
            .split(' ')
            .nth(1)
            .unwrap()
    );
    // unsquashfs ignores the block.
    let x = t.join("x");
    run_ok(cmd("unsquashfs").arg("-d").arg(&x).arg(&img));
    assert_eq!(
        std::fs::read_to_string(x.join("etc/hello.conf")).unwrap(),
        "hello fw\n"
    );

    // sik -> ssh-keygen: exported payload + armored signature verify with ssh-keygen.
    let payload = t.join("payload");
    payload_file(&img, &payload);
    assert_eq!(std::fs::metadata(&payload).unwrap().len(), unsigned_len);
    let armored = sig::armored_signatures(&img).unwrap().unwrap();
    let sigf = t.write("vendor.sig", &armored);
    let signers = allowed_signers(&t, "vendor@example.org", &p);
    run_ok(
        cmd("ssh-keygen")
            .args([
                "-Y",
                "verify",
                "-n",
                "systemimagekit",
                "-I",
                "vendor@example.org",
                "-f",
            ])
            .arg(&signers)
            .arg("-s")
            .arg(&sigf)
            .stdin(std::fs::File::open(&payload).unwrap()),
    );
    // allowed_signers as trust: the principal is reported.
    assert_eq!(
        verify_json(&img, &signers)["principal"],
        "vendor@example.org"
    );

    // ssh-keygen -> sik: a signature made offline is embedded and verifies.
    let other = t.join("offline");
    run_ok(
        cmd("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "offline", "-f"])
            .arg(&other),
    );
    run_ok(
        cmd("ssh-keygen")
            .args(["-Y", "sign", "-n", "systemimagekit", "-f"])
            .arg(&other)
            .arg(&payload),
    );
    run_ok(
        sik()
            .arg("sign")
            .arg(&img)
            .arg("--signature")
            .arg(t.join("payload.sig")),
    );
    let doc = verify_json(&img, &t.join("offline.pub"));
    assert_eq!(doc["status"], "trusted");
    // Both signatures coexist; each key alone is enough.
    assert_eq!(doc["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(doc["signatures"][1]["hash"], "sha512");
    assert_trusted(&img, &p);
    // A trust directory holding both.
    let dir = t.mkdir("trusted.d");
    std::fs::copy(&p, dir.join("vendor.pub")).unwrap();
    assert_trusted(&img, &dir);
    // Re-signing with the same key replaces its entry.
    run_ok(sik().arg("sign").arg(&img).arg("--key").arg(&k).args([
        "--hash",
        "sha512",
        "--no-verity",
    ]));
    let doc = verify_json(&img, &p);
    let sigs = doc["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    assert_eq!(
        sigs.iter()
            .filter(|s| s["fingerprint"] == doc["fingerprint"])
            .count(),
        1
    );

    // A signature over other bytes, or for another namespace, is refused before embedding.
    let before = std::fs::read(&img).unwrap();
    let wrong = t.write("wrong", "other bytes");
    run_ok(
        cmd("ssh-keygen")
            .args(["-Y", "sign", "-n", "systemimagekit", "-f"])
            .arg(&other)
            .arg(&wrong),
    );
    assert_fails(
        &run(sik()
            .arg("sign")
            .arg(&img)
            .arg("--signature")
            .arg(t.join("wrong.sig"))),
        2,
        &["does not match"],
    );
    std::fs::remove_file(t.join("payload.sig")).unwrap();
    run_ok(
        cmd("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(&other)
            .arg(&payload),
    );
    assert_fails(
        &run(sik()
            .arg("sign")
            .arg(&img)
            .arg("--signature")
            .arg(t.join("payload.sig"))),
        2,
        &["namespace"],
    );
    assert_fails(
        &run(sik().arg("sign").arg(&img).arg("--signature").arg(&wrong)),
        2,
        &["armored"],
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);
    no_temp_files(t.path());
}

#[test]
fn appimage_round_trip_and_interop() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "appsigner");
    let img = appimage(&t, "App", true);
    let len = std::fs::metadata(&img).unwrap().len();
    assert_verdict(&img, &p, "unsigned", "unsigned");
    sign(&img, &k);
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        len,
        "AppImage signatures live in sections"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&img).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755, "mode kept");
    let doc = verify_json(&img, &p);
    assert_eq!(doc["status"], "trusted");
    assert_eq!(doc["kind"], "appimage");
    // .sig_key holds the public key line; .sha256_sig the armored signature.
    let mut f = std::fs::File::open(&img).unwrap();
    let layout = sik_image::elf::read_layout(&mut f).unwrap();
    let key_sec =
        sik_image::elf::read_section(&mut f, layout.section(".sig_key").unwrap()).unwrap();
    let pubtext = std::fs::read_to_string(&p).unwrap();
    assert_eq!(sik_image::elf::nul_padded_text(&key_sec).unwrap(), pubtext);
    let sig_sec =
        sik_image::elf::read_section(&mut f, layout.section(".sha256_sig").unwrap()).unwrap();
    let armored = sik_image::elf::nul_padded_text(&sig_sec).unwrap();
    assert_eq!(
        Some(armored.clone()),
        sig::armored_signatures(&img).unwrap()
    );
    // The signed AppImage still runs (the runtime here is /bin/true).
    run_ok(&mut cmd(&img));
    // Payload = file with both sections zeroed: ssh-keygen verifies.
    let payload = t.join("payload");
    payload_file(&img, &payload);
    let pb = std::fs::read(&payload).unwrap();
    assert_eq!(pb.len() as u64, len);
    let s = layout.section(".sha256_sig").unwrap();
    assert!(
        pb[s.offset as usize..(s.offset + s.size) as usize]
            .iter()
            .all(|&b| b == 0)
    );
    let sigf = t.write("app.sig", &armored);
    let signers = allowed_signers(&t, "app@example.org", &p);
    run_ok(
        cmd("ssh-keygen")
            .args([
                "-Y",
                "verify",
                "-n",
                "systemimagekit",
                "-I",
                "app@example.org",
                "-f",
            ])
            .arg(&signers)
            .arg("-s")
            .arg(&sigf)
            .stdin(std::fs::File::open(&payload).unwrap()),
    );
    // ssh-keygen -> sik; it replaces the one signature.
    let other = t.join("offline");
    run_ok(
        cmd("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "offline", "-f"])
            .arg(&other),
    );
    run_ok(
        cmd("ssh-keygen")
            .args(["-Y", "sign", "-n", "systemimagekit", "-f"])
            .arg(&other)
            .arg(&payload),
    );
    run_ok(
        sik()
            .arg("sign")
            .arg(&img)
            .arg("--signature")
            .arg(t.join("payload.sig")),
    );
    assert_trusted(&img, &t.join("offline.pub"));
    assert_verdict(&img, &p, "untrusted", "key not trusted");

    // Without the sections: a clear error, the file untouched, verify says unsigned.
    let bare = appimage(&t, "Bare", false);
    let before = std::fs::read(&bare).unwrap();
    assert_fails(
        &run(sik().arg("sign").arg(&bare).arg("--key").arg(&k)),
        2,
        &[".sha256_sig", "cannot carry a signature"],
    );
    assert_eq!(std::fs::read(&bare).unwrap(), before);
    assert_verdict(&bare, &p, "unsigned", "unsigned");
    no_temp_files(t.path());
}

#[test]
fn tampering_anywhere_in_the_payload_is_detected() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "k");
    let img = extension(&t, "ext");
    sign(&img, &k);
    let signed = std::fs::read(&img).unwrap();
    let sb =
        sik_image::squashfs::read_superblock(&mut std::fs::File::open(&img).unwrap(), 0).unwrap();
    let u64_at = |o: usize| u64::from_le_bytes(signed[o..o + 8].try_into().unwrap());
    let (inode_table, dir_table, id_table) = (u64_at(64), u64_at(72), u64_at(48));
    let offsets = [
        8,                   // superblock: modification time
        4,                   // superblock: inode count
        200,                 // first data block
        sb.bytes_used / 2,   // data
        inode_table + 3,     // inode table
        dir_table + 3,       // directory table
        id_table + 1,        // id table
        sb.bytes_used + 10,  // padding
        sb.padded_len() - 1, // last payload byte
    ];
    for off in offsets {
        assert!(off < sb.padded_len(), "offset {off}");
        flip(&img, off);
        assert_verdict(&img, &p, "modified", "payload was modified");
        std::fs::write(&img, &signed).unwrap();
    }
    assert_trusted(&img, &p);
    // Every superblock byte but the magic: still "modified", even where the
    // superblock no longer parses or no longer ends where the block starts.
    let trust = sik_verify::TrustStore::load(std::slice::from_ref(&p)).unwrap();
    for off in 4..96u64 {
        let mut b = signed.clone();
        b[off as usize] ^= 0x10;
        std::fs::write(&img, &b).unwrap();
        assert_eq!(
            sik_verify::verify_path(&img, &trust).unwrap(),
            sik_verify::Verdict::Modified,
            "superblock byte {off}"
        );
    }
    let mut b = signed.clone();
    b[41] ^= 0x10; // bytes_used
    std::fs::write(&img, &b).unwrap();
    assert_verdict(&img, &p, "modified", "payload was modified");
    assert_fails(
        &run(sik().arg("sign").arg(&img).arg("--key").arg(&k)),
        2,
        &["superblock"],
    );
    std::fs::write(&img, &signed).unwrap();

    let app = appimage(&t, "App", true);
    sign(&app, &k);
    let signed = std::fs::read(&app).unwrap();
    let layout = sik_image::elf::read_layout(&mut std::fs::File::open(&app).unwrap()).unwrap();
    let upd = layout.section(".upd_info").unwrap().offset;
    let key_sec = layout.section(".sig_key").unwrap();
    let offsets = [
        0x18,                    // ELF header: entry point
        0x100,                   // program headers / code
        upd + 2,                 // .upd_info
        layout.end + 8,          // SquashFS superblock
        layout.end + 500,        // SquashFS data
        signed.len() as u64 - 1, // last byte
    ];
    for off in offsets {
        flip(&app, off);
        assert_verdict(&app, &p, "modified", "payload was modified");
        std::fs::write(&app, &signed).unwrap();
    }
    // .sig_key is outside the payload: changing it does not matter.
    flip(&app, key_sec.offset + 1);
    assert_trusted(&app, &p);
}

#[test]
fn every_failure_names_its_reason() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "good");
    let (_k2, p2) = sik_key(&t, "stranger");
    let a = extension(&t, "a");
    let b = extension(&t, "b");
    let unsigned_a = std::fs::read(&a).unwrap();
    sign(&a, &k);
    sign(&b, &k);
    let signed_a = std::fs::read(&a).unwrap();
    let payload_len = unsigned_a.len();

    // Wrong key: untrusted, with the signer's fingerprint.
    let fp = run_ok(sik().args(["key", "fingerprint"]).arg(&p));
    let fp = fp.split(' ').nth(1).unwrap();
    assert_verdict(&a, &p2, "untrusted", fp);
    assert_eq!(verify_json(&a, &p2)["fingerprint"], fp);
    // Empty trust store: untrusted and a hint.
    let empty = t.mkdir("empty.d");
    let err = assert_fails(&verify(&a, &empty), 1, &["key not trusted"]);
    assert!(err.contains("hint:"), "{err}");
    // allowed_signers restricting the key to other namespaces: untrusted.
    let line = std::fs::read_to_string(&p).unwrap();
    let ns = t.write(
        "ns_signers",
        format!("good@x namespaces=\"git,file\" {line}"),
    );
    assert_verdict(&a, &ns, "untrusted", "key not trusted");
    let expired = t.write("expired", format!("good@x valid-before=20000101 {line}"));
    assert_verdict(&a, &expired, "untrusted", "key not trusted");

    // Truncated block.
    std::fs::write(&a, &signed_a[..signed_a.len() - 7]).unwrap();
    assert_verdict(&a, &p, "malformed", "malformed");
    std::fs::write(&a, &signed_a[..payload_len + 20]).unwrap();
    assert_verdict(&a, &p, "malformed", "malformed");
    // Garbage in the block (entry bytes, footer fields).
    for (off, byte) in [
        (payload_len + 6, 0xaa),
        (payload_len + 1, 0x7f),
        (signed_a.len() - 20, 0x09),
        (signed_a.len() - 3, 0x55),
    ] {
        let mut g = signed_a.clone();
        g[off] = byte;
        std::fs::write(&a, &g).unwrap();
        assert_verdict(&a, &p, "malformed", "malformed");
    }
    // Garbage appended to an unsigned image.
    let mut g = unsigned_a.clone();
    g.extend_from_slice(&[0x42; 100]);
    std::fs::write(&a, &g).unwrap();
    assert_verdict(&a, &p, "malformed", "not a signature block");
    // A signature moved from another image.
    let b_sigs = match sig::read_embedded(
        &mut std::fs::File::open(&b).unwrap(),
        &sig::payload_of_path(&b).unwrap(),
    )
    .unwrap()
    {
        sig::Embedded::Signatures(s) => s,
        other => panic!("{other:?}"),
    };
    let mut moved = unsigned_a.clone();
    moved.extend_from_slice(&sig::encode_block(&b_sigs, payload_len as u64));
    std::fs::write(&a, &moved).unwrap();
    assert_verdict(&a, &p, "modified", "another image");
    // Another namespace.
    let key = sik_sign::Key::load(&k, None).unwrap();
    let digest = HashAlg::Sha256.hash(&unsigned_a);
    let other_ns = key.sign_digest_ns("file", HashAlg::Sha256, &digest);
    let mut wrong = unsigned_a.clone();
    wrong.extend_from_slice(&sig::encode_block(&[other_ns], payload_len as u64));
    std::fs::write(&a, &wrong).unwrap();
    assert_verdict(&a, &p, "wrong-namespace", "\"file\"");
    // Re-signing a malformed image replaces the block.
    sign(&a, &k);
    assert_eq!(std::fs::read(&a).unwrap(), signed_a);

    // AppImage: garbage in .sha256_sig, and a signature moved from another AppImage.
    let app1 = appimage(&t, "One", true);
    let app2 = appimage(&t, "Two", true);
    sign(&app2, &k);
    let layout = sik_image::elf::read_layout(&mut std::fs::File::open(&app1).unwrap()).unwrap();
    let s = layout.section(".sha256_sig").unwrap();
    let mut bytes = std::fs::read(&app1).unwrap();
    bytes[s.offset as usize..s.offset as usize + 5].copy_from_slice(b"hello");
    std::fs::write(&app1, &bytes).unwrap();
    assert_verdict(&app1, &p, "malformed", "malformed");
    let two = std::fs::read(&app2).unwrap();
    let range = s.offset as usize..(s.offset + s.size) as usize;
    bytes[range.clone()].copy_from_slice(&two[range]);
    std::fs::write(&app1, &bytes).unwrap();
    assert_verdict(&app1, &p, "modified", "payload was modified");

    // Input errors: exit 2.
    let text = t.write("notes.txt", "just text");
    assert_fails(&verify(&text, &p), 2, &["notes.txt"]);
    assert_fails(
        &run(sik().arg("sign").arg(&text).arg("--key").arg(&k)),
        2,
        &["notes.txt"],
    );
    assert_fails(&verify(&t.join("missing"), &p), 2, &["missing"]);
    assert_fails(&verify(&b, &t.join("no-such-trust")), 2, &["trust"]);
    let bad_trust = t.write("bad_trust", "this is not a key line\n");
    assert_fails(&verify(&b, &bad_trust), 2, &["bad_trust", "line 1"]);
}

/// The effective uid of this test process (the owner of `/proc/self`).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// `sik verify` as user 12345 (`setpriv`), for the paths of a non-root user.
fn verify_as_user(img: &Path, env: &[(&str, &Path)]) -> std::process::Output {
    let mut c = cmd("setpriv");
    c.args(["--reuid=12345", "--regid=12345", "--clear-groups", "--"])
        .arg(sik_bin())
        .arg("verify")
        .arg(img)
        .env_remove("XDG_CONFIG_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn default_trust_paths_use_xdg_config_home_except_for_root() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "home");
    let img = extension(&t, "h");
    sign(&img, &k);
    let cfg = t.mkdir("cfg/sik/trusted.d");
    std::fs::copy(&p, cfg.join("home.pub")).unwrap();
    let home = t.mkdir("userhome/.config/sik/trusted.d");
    std::fs::copy(&p, home.join("home.pub")).unwrap();
    let root_trusts_system_only = !Path::new("/etc/sik/trusted.d").exists();
    if euid() != 0 {
        let out = run(sik()
            .arg("verify")
            .arg(&img)
            .env("XDG_CONFIG_HOME", t.join("cfg")));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    // Root never trusts keys found through HOME or XDG_CONFIG_HOME (sudo
    // keeps the caller's HOME): only /etc/sik/trusted.d.
    for (var, dir) in [
        ("XDG_CONFIG_HOME", t.join("cfg")),
        ("HOME", t.join("userhome")),
    ] {
        let out = run(sik()
            .arg("verify")
            .arg("--json")
            .arg(&img)
            .env_remove("HOME")
            .env(var, &dir));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            doc["trust_paths"],
            serde_json::json!(["/etc/sik/trusted.d"]),
            "{doc:#}"
        );
        if root_trusts_system_only {
            assert_eq!(out.status.code(), Some(1), "{doc:#}");
            assert_eq!(doc["status"], "untrusted", "{doc:#}");
        }
    }
    // Another user does trust them.
    if !have_tool("setpriv") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = verify_as_user(&img, &[("XDG_CONFIG_HOME", &t.join("cfg"))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify_as_user(&img, &[("HOME", &t.join("userhome"))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify_as_user(&img, &[("HOME", &t.join("nohome"))]);
    if root_trusts_system_only {
        assert_fails(&out, 1, &["key not trusted"]);
    }
}

/// A stray file in a trust directory (a README, a broken key line) is
/// skipped with a warning, and the directory's other keys still work, in
/// `sik verify` (text and JSON) and `sik link`.
#[test]
fn stray_file_in_a_trust_directory_is_skipped_with_a_warning() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "good");
    let img = extension(&t, "stray");
    sign(&img, &k);
    let keys = t.mkdir("keys");
    std::fs::copy(&p, keys.join("good.pub")).unwrap();
    t.write("keys/README", "Put the release keys here.\n");
    t.write("keys/zz-broken.pub", "ssh-ed25519 AAAA-not-base64 x\n");
    let out = verify(&img, &keys);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out_str(&out).contains("signed by trusted key SHA256:"));
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sik: warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].contains("trust file skipped") && warnings[0].contains("README"),
        "{stderr}"
    );
    assert!(warnings[0].contains("line 1"), "{stderr}");
    assert!(warnings[1].contains("zz-broken.pub"), "{stderr}");
    let doc = verify_json(&img, &keys);
    assert_eq!(doc["status"], "trusted");
    let skipped = doc["skipped_trust_files"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{doc:#}");
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("/README"));

    if !require_root() {
        return;
    }
    let root = t.mkdir("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").unwrap();
    let out = run(sik()
        .arg("link")
        .arg(&img)
        .arg("--root")
        .arg(&root)
        .arg("--trust")
        .arg(&keys)
        .arg("--ignore-compat"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sik: warning: trust file skipped:") && stderr.contains("README"),
        "{stderr}"
    );
    assert!(out_str(&out).contains("signed by"), "{}", out_str(&out));
    assert!(root.join("etc/hello.conf").is_symlink());
    run_ok(sik().arg("unlink").arg("--all").arg("--root").arg(&root));
}

#[test]
fn signed_extension_still_mounts() {
    if !require_root() || !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "m");
    let img = extension(&t, "mnt");
    sign(&img, &k);
    assert_trusted(&img, &p);
    let mnt = t.mkdir("mnt");
    run_ok(
        cmd("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(&img)
            .arg(&mnt),
    );
    let content = std::fs::read_to_string(mnt.join("etc/hello.conf"));
    let big = std::fs::metadata(mnt.join("usr/lib/random.dat")).map(|m| m.len());
    run_ok(cmd("umount").arg(&mnt));
    assert_eq!(content.unwrap(), "hello mnt\n");
    assert_eq!(big.unwrap(), 800_000);
}

#[test]
fn inspect_exports_what_ssh_keygen_verifies() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "insp");
    let signers = allowed_signers(&t, "insp@example.org", &p);
    for img in [extension(&t, "ie"), appimage(&t, "IA", true)] {
        assert_fails(
            &run(sik().args(["inspect", "--signature"]).arg(&img)),
            1,
            &["unsigned"],
        );
        sign(&img, &k);
        let payload = t.join("payload.bin");
        let out = run(sik()
            .args(["inspect", "--payload"])
            .arg(&img)
            .stdout(std::fs::File::create(&payload).unwrap()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lib = Vec::new();
        sig::write_payload(&img, &mut lib).unwrap();
        assert_eq!(std::fs::read(&payload).unwrap(), lib);
        let armored = run_ok(sik().args(["inspect", "--signature"]).arg(&img));
        assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
        let sigf = t.write("payload.sig", &armored);
        run_ok(
            cmd("ssh-keygen")
                .args([
                    "-Y",
                    "verify",
                    "-n",
                    "systemimagekit",
                    "-I",
                    "insp@example.org",
                    "-f",
                ])
                .arg(&signers)
                .arg("-s")
                .arg(&sigf)
                .stdin(std::fs::File::open(&payload).unwrap()),
        );
    }
}

#[test]
fn images_made_by_sik_create_sign_verify_and_run() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "create");
    let app = t.mkdir("Hello.AppDir");
    std::fs::write(
        app.join("AppRun"),
        "#!/bin/sh\necho hello-from-app \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        app.join("AppRun"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        app.join("hello.desktop"),
        "[Desktop Entry]\nType=Application\nName=Hello\nExec=hello\nIcon=hello\nCategories=Utility;\n",
    )
    .unwrap();
    std::fs::write(app.join("hello.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    let img = t.join("Hello.AppImage");
    run_ok(
        sik()
            .args(["create", "appimage", "-q"])
            .arg(&app)
            .arg("-o")
            .arg(&img),
    );
    sign(&img, &k);
    assert_trusted(&img, &p);
    // The signed AppImage runs and its runtime prints the embedded signature.
    let out = run_ok(cmd(&img).args(["--appimage-extract-and-run", "one", "two"]));
    assert!(out.contains("hello-from-app one two"), "{out}");
    let printed = run_ok(cmd(&img).arg("--appimage-signature"));
    assert_eq!(
        printed.trim_end(),
        sig::armored_signatures(&img).unwrap().unwrap().trim_end()
    );

    // An ExtensionImage made by sik, signed through a symlink: the file is
    // signed, the symlink stays.
    let tree = tree(&t, "ext.tree", "x");
    let ext = t.join("x.ExtensionImage");
    run_ok(
        sik()
            .args(["create", "extension", "-q", "--os-id", "_any"])
            .arg(&tree)
            .arg("-o")
            .arg(&ext),
    );
    let link = t.join("link.ExtensionImage");
    std::os::unix::fs::symlink(&ext, &link).unwrap();
    sign(&link, &k);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_trusted(&ext, &p);
    let x = t.join("x");
    run_ok(cmd("unsquashfs").arg("-d").arg(&x).arg(&ext));
    assert_eq!(
        std::fs::read_to_string(x.join("etc/hello.conf")).unwrap(),
        "hello x\n"
    );
}

#[test]
fn unpadded_squashfs_gets_its_padding_when_signed() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let (k, p) = sik_key(&t, "pad");
    let src = tree(&t, "np.tree", "np");
    let img = t.join("np.ExtensionImage");
    run_ok(cmd("mksquashfs").arg(&src).arg(&img).args([
        "-all-root",
        "-no-progress",
        "-quiet",
        "-nopad",
    ]));
    let unpadded = std::fs::read(&img).unwrap();
    assert_ne!(unpadded.len() % 4096, 0, "fixture should be unpadded");
    let padded_len = unpadded.len().div_ceil(4096) * 4096;
    // The payload export already includes the padding the signature covers.
    let mut exported = Vec::new();
    sig::write_payload(&img, &mut exported).unwrap();
    assert_eq!(exported.len(), padded_len);
    assert_verdict(&img, &p, "unsigned", "unsigned");
    sign(&img, &k);
    let signed = std::fs::read(&img).unwrap();
    assert_eq!(&signed[..unpadded.len()], &unpadded[..]);
    assert!(signed[unpadded.len()..padded_len].iter().all(|&b| b == 0));
    assert_trusted(&img, &p);
    run_ok(cmd("unsquashfs").arg("-d").arg(t.join("x")).arg(&img));
}

#[test]
fn concurrent_signers_keep_every_signature() {
    if !tools() {
        return;
    }
    let t = TestDir::new();
    let keys: Vec<(PathBuf, PathBuf)> = (0..4).map(|i| sik_key(&t, &format!("c{i}"))).collect();
    let img = extension(&t, "conc");
    let children: Vec<_> = keys
        .iter()
        .map(|(k, _)| {
            sik()
                .arg("sign")
                .arg(&img)
                .arg("--key")
                .arg(k)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let doc = verify_json(&img, &keys[0].1);
    assert_eq!(doc["signatures"].as_array().unwrap().len(), 4, "{doc:#}");
    for (_, p) in &keys {
        assert_trusted(&img, p);
    }
    no_temp_files(t.path());
}
