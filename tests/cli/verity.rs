//! The dm-verity hash tree of ExtensionImages (spec/extension-image.md,
//! "dm-verity hash tree"; spec/signature.md block version 2): the spec's
//! test vector, `veritysetup` as the external judge of the tree `sik create`
//! and `sik sign` write, the refusals `sik verify` gives for each kind of
//! tampering, `--no-verity`, and images signed before the tree.

use std::path::{Path, PathBuf};

use crate::util::*;
use sik_image::signature as sig;
use sik_image::verity;

const SPEC: &str = include_str!("../../spec/extension-image.md");

/// The `text vector:NAME` block of the spec, trimmed.
fn vector(name: &str) -> String {
    let tag = format!("```text vector:{name}\n");
    let start = SPEC
        .find(&tag)
        .unwrap_or_else(|| panic!("no vector {name}"))
        + tag.len();
    let end = start + SPEC[start..].find("```").unwrap();
    SPEC[start..end].trim().to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(&sig::HashAlg::Sha256.hash(b))
}

/// 130 blocks, block i filled with the byte i (the spec's vector data).
fn vector_data() -> Vec<u8> {
    (0..130u8).flat_map(|i| [i; 4096]).collect()
}

#[test]
fn spec_vector() {
    let t = TestDir::new();
    let data = t.write("vector.data", vector_data());
    let f = std::fs::File::open(&data).unwrap();
    let salt: [u8; 32] = (0..32u8).collect::<Vec<_>>().try_into().unwrap();
    assert_eq!(hex(&salt), vector("verity-salt"));
    let (desc, tree) = verity::compute_tree_with_salt(&f, 130 * 4096, salt, 3).unwrap();
    assert_eq!(hex(&tree.root_hash), vector("verity-root"));
    assert_eq!(tree.bytes.len(), 12288);
    assert_eq!(sha256_hex(&tree.bytes), vector("verity-tree-sha256"));
    assert_eq!(hex(&desc.encode()), vector("verity-descriptor"));
    let tail = sig::encode_verity_tail(&desc, &[]);
    assert_eq!(hex(&tail[tail.len() - 32..]), vector("verity-footer"));
    // The same for any thread count.
    for threads in [1, 2, 7] {
        let (d, _) = verity::compute_tree_with_salt(&f, 130 * 4096, salt, threads).unwrap();
        assert_eq!(d, desc);
    }
    // veritysetup, the reference, writes the same tree for the same salt.
    if have_tool("veritysetup") {
        let hash = t.join("vector.hash");
        let out = run_ok(
            cmd("veritysetup")
                .arg("format")
                .arg(&data)
                .arg(&hash)
                .arg("--no-superblock")
                .arg(format!("--salt={}", hex(&salt))),
        );
        assert!(out.contains(&vector("verity-root")), "{out}");
        assert!(std::fs::read(&hash).unwrap() == tree.bytes);
    }
}

/// A tree with incompressible data spread over many blocks.
fn source(t: &TestDir) -> PathBuf {
    if t.join("src").exists() {
        return t.join("src");
    }
    let noise: Vec<u8> = (0..700_000u32)
        .flat_map(|i| (i.wrapping_mul(2654435761) ^ (i >> 7)).to_le_bytes())
        .collect();
    t.write("src/usr/lib/verity/noise.bin", noise);
    t.write("src/usr/lib/verity/hello.txt", "hello\n");
    t.write("src/usr/bin/tool", "#!/bin/sh\necho tool\n");
    t.join("src")
}

fn create(t: &TestDir, name: &str, extra: &[&str]) -> PathBuf {
    let img = t.join(format!("{name}.ExtensionImage"));
    run_ok(
        sik()
            .args(["create", "extension", "-q"])
            .arg(source(t))
            .arg("-o")
            .arg(&img)
            .args(extra),
    );
    img
}

fn inspect_verity(img: &Path) -> serde_json::Value {
    let out = run_ok(sik().args(["inspect", "--json"]).arg(img));
    let doc = assert_schema("inspect", &out);
    doc["extension"]["verity"].clone()
}

fn verify_json(img: &Path, trust: &Path) -> serde_json::Value {
    let out = run(sik()
        .args(["verify", "--json"])
        .arg(img)
        .arg("--trust")
        .arg(trust));
    assert_schema("verify", &String::from_utf8_lossy(&out.stdout))
}

/// `veritysetup verify IMAGE IMAGE ROOT` with the parameters inspect printed.
fn veritysetup_verify(img: &Path, v: &serde_json::Value) -> std::process::Output {
    run(cmd("veritysetup")
        .arg("verify")
        .arg(img)
        .arg(img)
        .arg(v["root_hash"].as_str().unwrap())
        .arg("--no-superblock")
        .arg(format!("--format={}", v["hash_type"]))
        .arg(format!("--hash={}", v["hash_algorithm"].as_str().unwrap()))
        .arg(format!("--data-block-size={}", v["data_block_size"]))
        .arg(format!("--hash-block-size={}", v["hash_block_size"]))
        .arg(format!("--data-blocks={}", v["data_blocks"]))
        .arg(format!("--hash-offset={}", v["hash_offset"]))
        .arg(format!("--salt={}", v["salt"].as_str().unwrap())))
}

#[test]
fn veritysetup_accepts_the_tree_sik_writes() {
    if !require_tool("veritysetup") || !require_tool("unsquashfs") {
        return;
    }
    let t = TestDir::new();
    let (key, public) = sik_key(&t, "k");
    let img = create(&t, "v", &[]);
    let v = inspect_verity(&img);
    assert!(v["data_blocks"].as_u64().unwrap() > 128, "{v}");
    let o = veritysetup_verify(&img, &v);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // veritysetup format of the same data with the same salt: same bytes.
    let bytes = std::fs::read(&img).unwrap();
    let p = v["hash_offset"].as_u64().unwrap() as usize;
    let size = v["hash_size"].as_u64().unwrap() as usize;
    let data = t.write("data", &bytes[..p]);
    let hash = t.join("hash");
    let out = run_ok(
        cmd("veritysetup")
            .arg("format")
            .arg(&data)
            .arg(&hash)
            .arg("--no-superblock")
            .arg(format!("--salt={}", v["salt"].as_str().unwrap())),
    );
    assert!(out.contains(v["root_hash"].as_str().unwrap()), "{out}");
    assert!(std::fs::read(&hash).unwrap() == bytes[p..p + size]);
    // The image is still a plain SquashFS for unsquashfs.
    let listing = run_ok(cmd("unsquashfs").arg("-l").arg(&img));
    assert!(listing.contains("noise.bin"), "{listing}");
    // Unsigned: verify checks the tree and says unsigned.
    let doc = verify_json(&img, &public);
    assert_eq!(doc["status"], "unsigned");
    assert_eq!(doc["verity"]["tree"], "ok");
    // Signed: the signature covers the descriptor, the tree is unchanged.
    run_ok(sik().arg("sign").arg(&img).arg("--key").arg(&key));
    let v2 = inspect_verity(&img);
    assert_eq!(v2, v, "signing keeps the tree");
    assert!(veritysetup_verify(&img, &v2).status.success());
    let doc = verify_json(&img, &public);
    assert_eq!(doc["status"], "trusted", "{doc}");
    assert_eq!(doc["verity"]["tree"], "ok");
    assert_eq!(doc["verity"]["root_hash"], v["root_hash"]);
    // The signed message is the descriptor: ssh-keygen agrees.
    let payload = run(sik().args(["inspect", "--payload"]).arg(&img)).stdout;
    assert_eq!(payload.len(), verity::DESCRIPTOR_LEN);
    assert_eq!(&payload[..8], b"SIK-VRTY");
    if have_tool("ssh-keygen") {
        let pl = t.write("payload", &payload);
        let sigtext = run_ok(sik().args(["inspect", "--signature"]).arg(&img));
        let sigf = t.write("payload.sig", sigtext);
        let line = std::fs::read_to_string(&public).unwrap();
        let signers = t.write("allowed", format!("me {line}"));
        run_ok(
            cmd("ssh-keygen")
                .args(["-Y", "verify", "-I", "me", "-n", "systemimagekit", "-f"])
                .arg(&signers)
                .arg("-s")
                .arg(&sigf)
                .stdin(std::fs::File::open(&pl).unwrap()),
        );
    }
    // create --sign gives the same bytes as create, then sign.
    let direct = create(
        &t,
        "direct",
        &["--name", "x", "--sign", key.to_str().unwrap()],
    );
    let created = create(&t, "later", &["--name", "x"]);
    run_ok(sik().arg("sign").arg(&created).arg("--key").arg(&key));
    assert!(std::fs::read(&direct).unwrap() == std::fs::read(&created).unwrap());
}

/// Flip one byte of a copy of `signed` at `off`, verify, and return the
/// verdict document.
fn tampered(t: &TestDir, signed: &[u8], off: usize, trust: &Path) -> serde_json::Value {
    let img = t.join("tampered.ExtensionImage");
    let mut b = signed.to_vec();
    b[off] ^= 0x01;
    std::fs::write(&img, &b).unwrap();
    let o = run(sik().arg("verify").arg(&img).arg("--trust").arg(trust));
    assert_eq!(o.status.code(), Some(1), "byte {off}");
    verify_json(&img, trust)
}

#[test]
fn each_kind_of_tampering_has_its_own_refusal() {
    let t = TestDir::new();
    let (key, public) = sik_key(&t, "k");
    let img = create(&t, "v", &["--sign", key.to_str().unwrap()]);
    let signed = std::fs::read(&img).unwrap();
    let v = inspect_verity(&img);
    let p = v["hash_offset"].as_u64().unwrap() as usize;
    let size = v["hash_size"].as_u64().unwrap() as usize;
    let desc = signed.len() - 160;
    // A data block.
    let doc = tampered(&t, &signed, 5 * 4096 + 17, &public);
    assert_eq!(doc["status"], "modified");
    assert!(
        doc["why"]
            .as_str()
            .unwrap()
            .starts_with("data block 5 (byte offset 20480) does not match"),
        "{doc}"
    );
    // A block of the tree (the lowest level, the last one stored).
    let doc = tampered(&t, &signed, p + size - 4096 + 3, &public);
    assert_eq!(doc["status"], "modified");
    assert!(
        doc["why"]
            .as_str()
            .unwrap()
            .contains(&format!("hash tree block at byte offset {}", size - 4096)),
        "{doc}"
    );
    // The top block of the tree.
    let doc = tampered(&t, &signed, p + 100, &public);
    assert_eq!(doc["why"], "the root hash does not match the hash tree");
    // The root hash and the salt in the descriptor: the signature no
    // longer matches, and the tree check says which.
    let doc = tampered(&t, &signed, desc + 96 + 5, &public);
    assert_eq!(doc["status"], "modified");
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .contains("signature invalid")
    );
    assert_eq!(
        doc["verity"]["tree_why"],
        "the root hash does not match the hash tree"
    );
    let doc = tampered(&t, &signed, desc + 64 + 5, &public);
    assert_eq!(doc["status"], "modified");
    assert!(
        doc["verity"]["tree_why"]
            .as_str()
            .unwrap()
            .contains("the salt is not the one the tree was made with"),
        "{doc}"
    );
    // Offsets and sizes: the block is malformed, named.
    for (off, needle) in [
        (desc + 40 + 7, "not at the end of the data"),
        (desc + 48 + 7, "the hash tree is"),
        (desc + 32 + 7, "not at the end of the data"),
        (desc + 24 + 2, "data block size"),
    ] {
        let doc = tampered(&t, &signed, off, &public);
        assert_eq!(doc["status"], "malformed", "{off}: {doc}");
        assert!(doc["why"].as_str().unwrap().contains(needle), "{doc}");
    }
    // The untouched image still verifies.
    std::fs::write(&img, &signed).unwrap();
    assert_eq!(verify_json(&img, &public)["status"], "trusted");
}

#[test]
fn no_verity_and_images_signed_before_the_tree() {
    let t = TestDir::new();
    let (key, public) = sik_key(&t, "k");
    let (key2, public2) = sik_key(&t, "k2");
    // --no-verity: the padded filesystem alone.
    let plain = create(&t, "plain", &["--no-verity"]);
    assert!(inspect_verity(&plain).is_null());
    let len = std::fs::metadata(&plain).unwrap().len();
    assert_eq!(len % 4096, 0);
    // Signed the old way: a version 1 block, still trusted.
    run_ok(
        sik()
            .arg("sign")
            .arg(&plain)
            .arg("--key")
            .arg(&key)
            .arg("--no-verity"),
    );
    assert!(inspect_verity(&plain).is_null());
    let doc = verify_json(&plain, &public);
    assert_eq!(doc["status"], "trusted");
    assert!(doc["verity"].is_null());
    let v1 = std::fs::read(&plain).unwrap();
    assert_eq!(&v1[v1.len() - 24..v1.len() - 20], &1u32.to_be_bytes());
    // Signing it again by default adds the tree; the old signature (over
    // the filesystem bytes) is dropped, since the signed message changed.
    run_ok(sik().arg("sign").arg(&plain).arg("--key").arg(&key2));
    assert!(!inspect_verity(&plain).is_null());
    let doc = verify_json(&plain, &public2);
    assert_eq!(doc["status"], "trusted");
    assert_eq!(doc["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(verify_json(&plain, &public)["status"], "untrusted");
    // A second key on a verity image keeps the first (same descriptor).
    run_ok(sik().arg("sign").arg(&plain).arg("--key").arg(&key));
    let doc = verify_json(&plain, &public);
    assert_eq!(doc["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(doc["status"], "trusted");
    assert_eq!(verify_json(&plain, &public2)["status"], "trusted");
    // --no-verity removes the tree again.
    run_ok(
        sik()
            .arg("sign")
            .arg(&plain)
            .arg("--key")
            .arg(&key)
            .arg("--no-verity"),
    );
    assert!(std::fs::read(&plain).unwrap() == v1);
}

#[test]
fn a_verity_image_mounts_with_the_kernel() {
    if !require_root() {
        return;
    }
    let t = TestDir::new();
    let (key, _) = sik_key(&t, "k");
    let img = create(&t, "m", &["--sign", key.to_str().unwrap()]);
    let mnt = t.mkdir("mnt");
    run_ok(cmd("mount").args(["-o", "loop,ro"]).arg(&img).arg(&mnt));
    let hello = std::fs::read_to_string(mnt.join("usr/lib/verity/hello.txt"));
    run_ok(cmd("umount").arg(&mnt));
    assert_eq!(hello.unwrap(), "hello\n");
}

/// A root for `sik link` whose os-release any image (`ID=_any`) fits.
fn root(t: &TestDir) -> PathBuf {
    t.write("root/usr/lib/os-release", "ID=debian\nVERSION_ID=12\n");
    t.mkdir("root/etc");
    std::os::unix::fs::symlink("../usr/lib/os-release", t.join("root/etc/os-release")).unwrap();
    t.join("root")
}

/// Where device-mapper cannot be had (the test machines' kernel), `sik
/// link` checks a verity image whole before it mounts it, says so in one
/// line and records it; a changed data block is refused before anything is
/// linked. (The dm-verity path runs in a guest with a Debian kernel.)
#[test]
fn link_without_device_mapper_checks_the_whole_file() {
    if !require_root() || std::path::Path::new("/dev/mapper/control").exists() {
        return;
    }
    let t = TestDir::new();
    let (key, public) = sik_key(&t, "k");
    let img = create(&t, "vx", &["--sign", key.to_str().unwrap()]);
    let root = root(&t);
    let out = run_ok(
        sik()
            .args(["link", "--root"])
            .arg(&root)
            .arg("--trust")
            .arg(&public)
            .arg(&img),
    );
    assert!(
        out.contains(
            "vx: verified by hashing the whole file (dm-verity not available: no device-mapper)"
        ),
        "{out}"
    );
    // The link points into the mount, as seen from inside ROOT.
    let target = std::fs::read_link(root.join("usr/lib/verity/hello.txt")).unwrap();
    let inside = root.join(target.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "hello\n");
    let st = run_ok(sik().args(["status", "--json", "--root"]).arg(&root));
    let doc = assert_schema("status", &st);
    assert_eq!(
        doc["extensions"][0]["verified"],
        "whole-file (dm-verity not available: no device-mapper)"
    );
    run_ok(sik().args(["unlink", "--root"]).arg(&root).arg("vx"));
    // A changed data block: refused, nothing linked.
    let mut b = std::fs::read(&img).unwrap();
    b[3 * 4096 + 5] ^= 0x01;
    std::fs::write(&img, &b).unwrap();
    let o = run(sik()
        .args(["link", "--root"])
        .arg(&root)
        .arg("--trust")
        .arg(&public)
        .arg(&img));
    assert_fails(&o, 1, &["data block 3 (byte offset 12288) does not match"]);
    assert!(!root.join("usr/lib/verity").exists());
}
