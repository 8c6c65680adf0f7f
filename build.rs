//! Builds the CUDA emulation harness (`emu/`) and every kernel family `kernels/*.cu` for the host.
//!
//! For each `kernels/<family>.cu` this generates one C++ translation unit in `OUT_DIR/emu_gen/`: the
//! emulation header (`emu/cuda_emu.h`, which defines `ORTHO_EMU`), then `kernels/common.cuh` (if it exists)
//! and the family's source inside `namespace ortho_emu_fam_<family>` with every `extern "C"` blanked out
//! (C linkage ignores namespaces), `#line` directives keeping `__FILE__`/`__LINE__` pointing at the
//! original files, and one `ORTHO_EMU_REGISTER` trampoline per entry point. A registry unit lists every
//! entry point of every family. Everything is compiled with `cc` (C++17, -O2, warnings on) into the static
//! library `ortho_emu`.
//!
//! What a kernel file must look like to be picked up:
//! - it lies directly in `kernels/` and its name ends in `.cu`; its stem is the family name;
//! - each entry point is declared `extern "C" __global__ void <name>(...)` (a `__launch_bounds__(...)`, or
//!   any identifier with or without a parenthesized list, may stand before or after `void`; see
//!   `emu/kernel_scan.rs`); `extern "C" { ... }` blocks are rejected; names are unique across all files;
//! - CUDA headers (`<cuda_fp16.h>`, `<cuda_bf16.h>`) are included only under `#ifndef ORTHO_EMU`;
//! - `kernels/common.cuh` is prepended to every family, so families do not `#include` it.
//!
//! Entry points are found by running the C++ preprocessor over `common.cuh` + the family (with
//! `ORTHO_EMU` defined and the CUDA keywords left as plain identifiers), so entry points stamped out by
//! macros are found too, and commented-out or `#if 0` ones are not.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "emu/kernel_scan.rs"]
mod kernel_scan;
use kernel_scan::{lines_from, scan_entry_points, strip_extern_c, strip_pragma_once};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("emu_gen");
    let kernels_dir = root.join("kernels");
    let emu_dir = root.join("emu");
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=emu");
    println!("cargo:rerun-if-env-changed=ORTHO_EMU_UCONTEXT");
    fs::create_dir_all(&out).unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .include(&emu_dir)
        .include(&kernels_dir)
        .define("ORTHO_EMU", "1")
        .flag("-fno-strict-aliasing")
        // `#pragma unroll` is for NVRTC; the host compiler may ignore it quietly.
        .flag_if_supported("-Wno-unknown-pragmas")
        .warnings(true);
    if std::env::var_os("ORTHO_EMU_UCONTEXT").is_some() {
        build.define("ORTHO_EMU_UCONTEXT", "1");
    }

    let common = read_optional(&kernels_dir.join("common.cuh"));
    let mut registry: Vec<(String, String)> = Vec::new(); // (family, kernel)
    let mut owner: BTreeMap<String, String> = BTreeMap::new(); // kernel -> family
    for path in kernel_files(&kernels_dir) {
        let family = path.file_stem().and_then(|s| s.to_str()).expect("kernel file names are UTF-8").to_string();
        let source = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let combined = with_line_markers(common.as_deref(), &source, &family, false);
        let kernels = entry_points(&build, &out, &family, &combined);
        for k in &kernels {
            if let Some(other) = owner.insert(k.clone(), family.clone()) {
                panic!("kernel entry point `{k}` is defined in both kernels/{other}.cu and kernels/{family}.cu");
            }
            registry.push((family.clone(), k.clone()));
        }
        let tu = out.join(format!("fam_{}.cpp", ident(&family)));
        write_if_changed(&tu, &family_unit(common.as_deref(), &source, &family, &kernels));
        build.file(&tu);
    }
    let reg = out.join("registry.cpp");
    write_if_changed(&reg, &registry_unit(&registry));
    build.file(&reg).file(emu_dir.join("runtime.cpp")).file(emu_dir.join("fiber.cpp"));
    build.compile("ortho_emu");
}

/// `kernels/*.cu`, sorted; none if the directory does not exist.
fn kernel_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "cu"))
        .collect();
    files.sort();
    files
}

fn read_optional(path: &Path) -> Option<String> {
    path.is_file().then(|| fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())))
}

/// Writes only when the content differs, so unchanged units are not recompiled needlessly.
fn write_if_changed(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// A C++ identifier made from a file stem.
fn ident(stem: &str) -> String {
    stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// `common.cuh` and the family source with `#line` markers, `#pragma once` blanked (it would warn in a
/// main file) and, with `strip`, `extern "C"` blanked too; line numbers are kept.
fn with_line_markers(common: Option<&str>, source: &str, family: &str, strip: bool) -> String {
    let prep = |s: &str| if strip { strip_extern_c(&strip_pragma_once(s)) } else { strip_pragma_once(s) };
    let mut text = String::new();
    if let Some(c) = common {
        text.push_str("#line 1 \"kernels/common.cuh\"\n");
        text.push_str(&prep(c));
        text.push('\n');
    }
    text.push_str(&format!("#line 1 \"kernels/{family}.cu\"\n"));
    text.push_str(&prep(source));
    text.push('\n');
    text
}

/// The entry points of one family, in source order, found in its preprocessed text.
fn entry_points(build: &cc::Build, out: &Path, family: &str, combined: &str) -> Vec<String> {
    let scan = out.join(format!("scan_{}.cpp", ident(family)));
    write_if_changed(&scan, &format!("#define ORTHO_EMU 1\n{combined}"));
    let mut cmd: Command = build.get_compiler().to_command();
    cmd.args(["-E", "-x", "c++", "-std=c++17"]).arg(&scan);
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run the C++ preprocessor ({cmd:?}): {e}"));
    if !output.status.success() {
        panic!("preprocessing kernels/{family}.cu failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    // Only what came from kernels/: system headers have extern "C" blocks of their own.
    let text = lines_from(&String::from_utf8_lossy(&output.stdout), "kernels/");
    match scan_entry_points(&text) {
        Ok(names) => names,
        Err(msg) => panic!("kernels/{family}.cu: {msg}"),
    }
}

/// The translation unit of one kernel family.
fn family_unit(common: Option<&str>, source: &str, family: &str, kernels: &[String]) -> String {
    let ns = format!("ortho_emu_fam_{}", ident(family));
    let mut t = format!(
        "// @generated by build.rs from kernels/{family}.cu{}: do not edit.\n\
         #include \"cuda_emu.h\"\n#include \"emu_launch.h\"\n\nnamespace {ns} {{\n",
        if common.is_some() { " and kernels/common.cuh" } else { "" }
    );
    t.push_str(&with_line_markers(common, source, family, true));
    t.push_str(&format!("}}  // namespace {ns}\n\n#line 1 \"emu_gen/fam_{}.cpp\"\n", ident(family)));
    for k in kernels {
        t.push_str(&format!("ORTHO_EMU_REGISTER(\"{family}\", {ns}, {k})\n"));
    }
    t
}

/// The registry of every entry point of every family.
fn registry_unit(registry: &[(String, String)]) -> String {
    let mut t = String::from("// @generated by build.rs: every kernel of kernels/*.cu. Do not edit.\n");
    t.push_str("#include \"emu_abi.h\"\n\nextern \"C\" {\n");
    for (_, k) in registry {
        t.push_str(&format!("extern const emu::KernelInfo ortho_emu_info_{k};\n"));
    }
    t.push_str("}\n\nstatic const emu::KernelInfo* const kRegistry[] = {\n");
    for (f, k) in registry {
        t.push_str(&format!("    &ortho_emu_info_{k},  // {f}\n"));
    }
    t.push_str(&format!(
        "    nullptr,\n}};\n\nextern \"C\" const emu::KernelInfo* const* ortho_emu_registry(size_t* count) {{\n    \
         *count = {};\n    return kRegistry;\n}}\n",
        registry.len()
    ));
    t
}
