//! Golden tests: the text reports of the synthetic app trace, compared with
//! `tests/golden/*.txt`. `ASYNCTRACE_BLESS=1 cargo test -p tracer-core golden` rewrites them.

use std::path::PathBuf;

use super::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

#[track_caller]
fn check(name: &str, actual: &[u8]) {
    let path = golden_dir().join(name);
    let actual = String::from_utf8_lossy(actual).into_owned();
    if std::env::var_os("ASYNCTRACE_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("create tests/golden");
        std::fs::write(&path, &actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let tmp = std::env::temp_dir().join(format!("asynctrace-golden-{name}"));
        let _ = std::fs::write(&tmp, &actual);
        panic!(
            "{} differs from the report (actual output in {}).\n\
             If the change is intended, bless it: ASYNCTRACE_BLESS=1 cargo test -p tracer-core golden\n\
             --- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            tmp.display()
        );
    }
}

#[test]
fn golden_tree() {
    let buf = app_trace();
    let mut pass = Tree::new(TreeOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let mut out = Vec::new();
    write_tree_text(&mut out, &r).unwrap();
    check("tree.txt", &out);
}

#[test]
fn golden_leaks() {
    let buf = app_trace();
    let mut pass = Leaks::new(LeakOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let mut out = Vec::new();
    write_leaks_text(&mut out, &r, &TextOptions::default()).unwrap();
    check("leaks.txt", &out);
    let mut out = Vec::new();
    write_leaks_text(
        &mut out,
        &r,
        &TextOptions {
            all: true,
            ..Default::default()
        },
    )
    .unwrap();
    check("leaks-all.txt", &out);
    let mut json = serde_json::to_vec_pretty(&r).unwrap();
    json.push(b'\n');
    check("leaks.json", &json);
}

#[test]
fn golden_slow() {
    let buf = app_trace();
    let mut pass = Slow::new(SlowOptions {
        threshold_ns: 100_000,
        limit: 20,
    });
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let mut out = Vec::new();
    write_slow_text(&mut out, &r).unwrap();
    check("slow.txt", &out);
}

#[test]
fn golden_requests() {
    let buf = app_trace();
    let mut pass = Requests::new(RequestOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let mut out = Vec::new();
    write_requests_text(&mut out, &r).unwrap();
    check("requests.txt", &out);
}
