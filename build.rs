//! Compiles every `.proto` under `proto/` with a pure-Rust compiler (no
//! system `protoc`), generates tonic/prost code, and writes the encoded
//! `FileDescriptorSet` (imports included) that server reflection serves.

use std::path::{Path, PathBuf};

use prost::Message;

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            proto_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    proto_files(Path::new("proto"), &mut files);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    for file in &files {
        let relative = file.strip_prefix("proto")?;
        compiler.open_file(relative)?;
    }
    let descriptors = compiler.file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tailor_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Ordered maps: an answer encodes to the same bytes every time
        // (answer versions, caches and byte-for-byte comparisons rely on it).
        .btree_map(".")
        // Small per-call buffers: an open stream holds its buffers for as
        // long as it lasts (src/codec.rs).
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
