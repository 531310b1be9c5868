//! Replays every checked-in fuzz input on stable: `fuzz/corpus/<target>/*` (seeds and what the
//! fuzzer kept) and `fuzz/regressions/<target>/*` (crashes found so far, now fixed).

use std::path::Path;

#[test]
fn every_corpus_and_regression_file_passes_its_check() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut ran = 0;
    for (target, check) in fuzz_checks::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                continue;
            };
            for e in entries {
                let path = e.expect("dir entry").path();
                let data = std::fs::read(&path).expect("read input");
                let result = std::panic::catch_unwind(|| check(&data));
                assert!(
                    result.is_ok(),
                    "{target}: {} fails its check",
                    path.display()
                );
                ran += 1;
            }
        }
    }
    assert!(ran > 0, "no corpus found under {}", fuzz.display());
}
