//! MIND loader benchmark on MIND-large-shaped files (100k news, 1M behaviour rows),
//! generated deterministically.
//!
//! `cargo bench --bench loaders`                      generate into a temp folder, load, print
//! `cargo bench --bench loaders -- --generate DIR`    only write DIR/news.tsv + DIR/behaviors.tsv
//! `cargo bench --bench loaders -- --load DIR [--repeat N]`  load DIR N times (best time) and
//!                                                    print a `RESULT` line with peak memory
//! Options: `--news N` (100000), `--rows N` (1000000).
//! `scripts/bench_loaders.sh` runs this beside pandas `read_csv` of the same files.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trsr::data::{load_dir, FormatChoice, LoadOptions};

const CATEGORIES: [&str; 17] = [
    "news",
    "sports",
    "finance",
    "lifestyle",
    "health",
    "foodanddrink",
    "travel",
    "weather",
    "autos",
    "entertainment",
    "music",
    "movies",
    "tv",
    "video",
    "kids",
    "middleeast",
    "northamerica",
];

fn vocab(rng: &mut ChaCha8Rng) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ra", "to", "mi", "ne", "sa", "lo", "ver", "con", "ta", "ber", "ing", "pre", "dent", "al",
        "tion", "for", "mar", "ket", "win", "ter", "sto", "ry", "pla", "yer",
    ];
    (0..3000)
        .map(|_| {
            let n = rng.random_range(1..=3);
            (0..n)
                .map(|_| SYL[rng.random_range(0..SYL.len())])
                .collect()
        })
        .collect()
}

fn words(rng: &mut ChaCha8Rng, vocab: &[String], lo: usize, hi: usize, out: &mut String) {
    let n = rng.random_range(lo..=hi);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let w = &vocab[rng.random_range(0..vocab.len())];
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.extend(f.to_uppercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push_str(w);
        }
    }
}

fn entities(rng: &mut ChaCha8Rng, vocab: &[String], out: &mut String) {
    let n = rng.random_range(0..=3);
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        let label = &vocab[rng.random_range(0..vocab.len())];
        out.push_str(&format!(
            "{{\"Label\": \"{label}\", \"Type\": \"P\", \"WikidataId\": \"Q{}\", \"Confidence\": 0.99, \
             \"OccurrenceOffsets\": [{}], \"SurfaceForms\": [\"{label}\"]}}",
            rng.random_range(1..9_999_999),
            rng.random_range(0..80)
        ));
    }
    out.push(']');
}

fn generate(dir: &Path, n_news: usize, n_rows: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2019);
    let vocab = vocab(&mut rng);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("news.tsv"))?);
    let mut line = String::new();
    for k in 1..=n_news {
        line.clear();
        let cat = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
        line.push_str(&format!("N{k}\t{cat}\t{cat}_{}\t", rng.random_range(0..12)));
        words(&mut rng, &vocab, 6, 14, &mut line);
        line.push('\t');
        if rng.random_bool(0.95) {
            words(&mut rng, &vocab, 12, 40, &mut line);
        }
        line.push_str(&format!(
            "\thttps://assets.msn.com/labs/mind/AA{k:06}.html\t"
        ));
        entities(&mut rng, &vocab, &mut line);
        line.push('\t');
        entities(&mut rng, &vocab, &mut line);
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    w.flush()?;

    // MIND-large train: ~2.23M impressions of ~711k users (~3.1 rows per user).
    let n_users = (n_rows as f64 * 711.0 / 2232.0).ceil() as u64;
    let mut w =
        BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("behaviors.tsv"))?);
    for imp in 1..=n_rows {
        line.clear();
        let user = rng.random_range(0..n_users);
        let (day, hour) = (rng.random_range(9..=15), rng.random_range(1..=12));
        line.push_str(&format!(
            "{imp}\tU{user}\t11/{day}/2019 {hour}:{:02}:{:02} {}\t",
            rng.random_range(0..60),
            rng.random_range(0..60),
            if rng.random_bool(0.5) { "AM" } else { "PM" }
        ));
        // A user's history is the same in each of their rows (as in MIND).
        let mut urng = ChaCha8Rng::seed_from_u64(user);
        let len = if urng.random_bool(0.03) {
            0
        } else {
            // Mean ~33 clicks, long tail.
            (urng.random::<f64>().powi(2) * 96.0) as usize + 1
        };
        for i in 0..len {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&format!("N{}", urng.random_range(1..=n_news)));
        }
        line.push('\t');
        let shown = rng.random_range(5..=70);
        for i in 0..shown {
            if i > 0 {
                line.push(' ');
            }
            let label = u8::from(rng.random_bool(0.04));
            line.push_str(&format!("N{}-{label}", rng.random_range(1..=n_news)));
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    w.flush()
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn file_bytes(dir: &Path) -> u64 {
    ["news.tsv", "behaviors.tsv"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn load(dir: &Path, repeat: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let ds = match load_dir(dir, FormatChoice::Mind, &LoadOptions::default()) {
            Ok(ds) => ds,
            Err(e) => {
                eprintln!("load failed: {e}");
                std::process::exit(1);
            }
        };
        let secs = t.elapsed().as_secs_f64();
        best = best.min(secs);
        println!(
            "trsr MIND loader: {secs:.3} s ({} rows, {} items, {} sequences, {} skipped)",
            ds.report.rows_read,
            ds.catalogue.len(),
            ds.sequences.len(),
            ds.report.skipped_total()
        );
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n_news: usize = value("--news")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let n_rows: usize = value("--rows")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let repeat: usize = value("--repeat").and_then(|v| v.parse().ok()).unwrap_or(3);
    if let Some(dir) = value("--generate") {
        let t = Instant::now();
        if let Err(e) = generate(Path::new(&dir), n_news, n_rows) {
            eprintln!("generate failed: {e}");
            std::process::exit(1);
        }
        println!(
            "generated {n_news} news + {n_rows} behaviour rows ({:.1} MB) in {:.1} s",
            file_bytes(Path::new(&dir)) as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        return;
    }
    let (dir, _tmp) = match value("--load") {
        Some(d) => (std::path::PathBuf::from(d), None),
        None => {
            let tmp = tempfile::tempdir().expect("temp dir");
            let dir = tmp.path().to_path_buf();
            if let Err(e) = generate(&dir, n_news, n_rows) {
                eprintln!("generate failed: {e}");
                std::process::exit(1);
            }
            (dir, Some(tmp))
        }
    };
    let best = load(&dir, repeat);
    let bytes = file_bytes(&dir);
    let peak = peak_rss_kib().unwrap_or(0) * 1024;
    println!(
        "RESULT best_s={best:.3} files_bytes={bytes} peak_rss_bytes={peak} peak_over_files={:.2}",
        peak as f64 / bytes as f64
    );
}
